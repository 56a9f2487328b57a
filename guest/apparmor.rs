//! AppArmor for real (Debian's kernel has it enabled): a profile loaded with
//! apparmor_parser confines the container's init and its `exec`'d processes, and denies
//! what it says.

use serde_json::json;
use std::fs;
use std::process::Command;

use crate::common::*;
use crate::on_v2_host;

/// A loaded AppArmor profile, removed from the kernel on drop.
struct Profile {
    name: String,
    file: std::path::PathBuf,
    _dir: TempDir,
}

impl Profile {
    /// Loads `profile NAME { everything, except writes under /tmp }`.
    fn load(tag: &str) -> Profile {
        let dir = TempDir::new("g-aa");
        let name = format!("corten-guest-{tag}-{}", std::process::id());
        let text = format!(
            "profile {name} flags=(attach_disconnected,mediate_deleted) {{\n  file,\n  \
             capability,\n  network,\n  mount,\n  umount,\n  pivot_root,\n  signal,\n  \
             ptrace,\n  unix,\n  deny /tmp/** w,\n}}\n"
        );
        let file = dir.join("profile");
        fs::write(&file, text).unwrap();
        let out = Command::new("apparmor_parser")
            .args(["-r", "-W"])
            .arg(&file)
            .output()
            .expect("apparmor_parser (apparmor in the guest image)");
        assert!(
            out.status.success(),
            "apparmor_parser: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Profile {
            name,
            file,
            _dir: dir,
        }
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        let _ = Command::new("apparmor_parser")
            .arg("-R")
            .arg(&self.file)
            .output();
    }
}

/// A container under `profile` whose init writes what `PROBE` shows to `<out>/init`, then
/// sleeps; returns once that output is complete.
fn confined(profile: &Profile, out: &TempDir) -> Container {
    let mut c = Container::new("g-aa");
    c.add_mount(bind("/out", out.path(), &["bind", "rw"]));
    c.set("/process/apparmorProfile", json!(profile.name));
    c.set("/root/readonly", json!(false));
    c.sh(&format!(
        "{{ {PROBE}; }} >/out/tmp 2>&1; mv /out/tmp /out/init; sleep 100"
    ));
    c.create_ok();
    c.start_ok();
    assert!(
        poll_until(STATE_TIMEOUT, || out.join("init").exists()),
        "the init wrote nothing"
    );
    c
}

/// What a confined process shows: its label, a write the profile allows, one it denies.
const PROBE: &str = "cat /proc/self/attr/current; touch /allowed && echo allowed; \
                     touch /tmp/denied 2>/dev/null || echo denied";

fn want(profile: &Profile) -> String {
    format!("{} (enforce)\nallowed\ndenied\n", profile.name)
}

/// apparmorProfile: the init runs under the profile (enforce), and a write it denies fails
/// while one it allows works.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn apparmor_profile_confines_the_init() {
    if !on_v2_host("apparmor_profile_confines_the_init") {
        return;
    }
    let profile = Profile::load("init");
    let out = TempDir::new("g-aa-out");
    let _c = confined(&profile, &out);
    assert_eq!(
        fs::read_to_string(out.join("init")).unwrap(),
        want(&profile)
    );
}

/// An `exec`'d process gets the container's apparmorProfile too (runc does).
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn apparmor_profile_confines_exec() {
    if !on_v2_host("apparmor_profile_confines_exec") {
        return;
    }
    let profile = Profile::load("exec");
    let out = TempDir::new("g-aa-out");
    let c = confined(&profile, &out);
    let exec = c.exec_sh(PROBE);
    exec.ok();
    assert_eq!(exec.stdout, want(&profile), "in exec:\n{exec}");
}
