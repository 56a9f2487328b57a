//! The container process: pid namespace, identity, environment, limits,
//! capabilities and inherited state, observed from inside the container.

use crate::common::*;
use serde_json::json;

#[test]
fn process_is_pid_1() {
    let mut c = Container::new("pid1");
    let out = c.run_sh("echo $$; echo @@cmdline; cat /proc/1/cmdline | tr '\\0' ' '; echo");
    let s = sections(&out);
    assert_eq!(s[""].trim(), "1", "$$ in the container:\n{out}");
    assert!(s["cmdline"].starts_with("sh -c"), "pid 1 is not sh:\n{out}");
}

#[test]
fn hostname_is_applied() {
    let mut c = Container::new("hostname");
    c.set("/hostname", json!("corten-host"));
    let out = c.run_sh("hostname; cat /proc/sys/kernel/hostname");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, vec!["corten-host", "corten-host"], "{out}");
}

#[test]
fn domainname_is_applied() {
    let mut c = Container::new("domainname");
    c.set("/hostname", json!("corten-host"));
    c.set("/domainname", json!("corten.example"));
    let out = c.run_sh("cat /proc/sys/kernel/domainname");
    assert_eq!(out.trim(), "corten.example");
}

/// Spec (config.md, Process): "`cwd` (string, REQUIRED) is the working directory that will be
/// set for the executable. This value MUST be an absolute path."
#[test]
fn cwd_is_applied() {
    let mut c = Container::new("cwd");
    c.set("/process/cwd", json!("/tmp"));
    let out = c.run_sh("pwd");
    assert_eq!(out.trim(), "/tmp");
}

#[test]
fn env_is_applied() {
    let mut c = Container::new("env");
    c.set(
        "/process/env",
        json!([DEFAULT_PATH, "TERM=xterm", "FOO=bar", "SPACED=a b  c"]),
    );
    let out = c.run_sh("env");
    let lines: Vec<&str> = out.lines().collect();
    for want in ["FOO=bar", "SPACED=a b  c", DEFAULT_PATH, "TERM=xterm"] {
        assert!(lines.contains(&want), "{want} missing from env:\n{out}");
    }
}

/// A variable set twice keeps its last value, once; an empty HOME is filled from the
/// image's /etc/passwd (runc's rules).
#[test]
fn env_duplicates_and_empty_home() {
    let mut c = Container::new("env-dup");
    c.set(
        "/process/env",
        json!([DEFAULT_PATH, "ONE=two", "HOME=", "ONE=three"]),
    );
    c.args(&["env"]);
    let out = c.run_ok();
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(lines, ["HOME=/root", "ONE=three", DEFAULT_PATH], "{out}");
}

/// A capability name the kernel interface can't map is an error (config.md: "MUST cause
/// an error"; runc 1.1 only warns), naming it, and nothing is left.
#[test]
fn unknown_capabilities_are_an_error() {
    let mut c = Container::new("caps-unknown");
    c.set(
        "/process/capabilities/bounding",
        json!(["CAP_UNKNOWN", "CAP_KILL"]),
    );
    c.args(&["true"]);
    assert_err(
        &c.create(),
        &["unknown capabilities", "CAP_UNKNOWN"],
        &["CAP_UNKNOWN"],
    );
    c.assert_no_leftovers();
}

#[test]
fn user_uid_gid_and_additional_groups() {
    let mut c = Container::new("user");
    c.set(
        "/process/user",
        json!({ "uid": 1000, "gid": 1000, "additionalGids": [10, 20] }),
    );
    let out = c.run_sh("id; echo @@status; cat /proc/self/status");
    let s = sections(&out);
    let id = s[""].trim();
    assert!(
        id.starts_with("uid=1000(test) gid=1000(test)"),
        "id output: {id}"
    );
    let status = &s["status"];
    let fields = |name: &str| -> Vec<String> {
        status_field(status, name)
            .unwrap_or_else(|| panic!("{name} missing:\n{status}"))
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    assert_eq!(
        fields("Uid"),
        vec!["1000"; 4],
        "real/effective/saved/fs uid"
    );
    assert_eq!(
        fields("Gid"),
        vec!["1000"; 4],
        "real/effective/saved/fs gid"
    );
    let mut groups = fields("Groups");
    groups.sort();
    assert_eq!(groups, vec!["10", "20"], "supplementary groups");
}

#[test]
fn root_user_has_no_supplementary_groups_from_host() {
    let mut c = Container::new("rootgroups");
    let out = c.run_sh("cat /proc/self/status");
    assert_eq!(
        status_field(&out, "Uid")
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec!["0"; 4]
    );
    assert_eq!(
        status_field(&out, "Gid")
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        vec!["0"; 4]
    );
    assert_eq!(
        status_field(&out, "Groups").unwrap(),
        "",
        "groups should be empty"
    );
}

#[test]
fn umask_is_applied() {
    let mut c = Container::new("umask");
    c.set("/process/user/umask", json!(0o027));
    let out = c.run_sh("umask");
    assert_eq!(out.trim(), "0027");
}

/// Spec (config.md, POSIX process): "`rlim.rlim_cur` MUST match the configured value."
/// Spec (config.md, POSIX process): "`rlim.rlim_max` MUST match the configured value."
#[test]
fn rlimit_nofile_is_applied() {
    let mut c = Container::new("rlimit");
    c.config["process"]["rlimits"] =
        json!([{ "type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024 }]);
    let out = c.run_sh("cat /proc/self/limits");
    let line = out
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap_or_else(|| panic!("no 'Max open files' line:\n{out}"));
    let f: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&f[3..5], &["512", "1024"], "soft/hard: {line}");
}

fn cap_fields(status: &str) -> [u64; 5] {
    ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"].map(|n| {
        let v = status_field(status, n).unwrap_or_else(|| panic!("{n} missing:\n{status}"));
        u64::from_str_radix(&v, 16).unwrap_or_else(|e| panic!("{n}: {v}: {e}"))
    })
}

#[test]
fn capabilities_default_set_for_root() {
    let mut c = Container::new("caps-default");
    // `cat /proc/$$/status` shows the container process itself (the shell,
    // pid 1), not the `cat` child.
    let out = c.run_sh("cat /proc/$$/status");
    let [inh, prm, eff, bnd, amb] = cap_fields(&out);
    let want = cap_mask(DOCKER_DEFAULT_CAPS);
    assert_eq!(bnd, want, "CapBnd {bnd:016x} want {want:016x}");
    assert_eq!(prm, want, "CapPrm {prm:016x} want {want:016x}");
    assert_eq!(eff, want, "CapEff {eff:016x} want {want:016x}");
    assert_eq!(inh, 0, "CapInh {inh:016x}");
    assert_eq!(amb, 0, "CapAmb {amb:016x}");
}

#[test]
fn capabilities_small_set_with_ambient_for_non_root() {
    let mut c = Container::new("caps-small");
    c.set("/process/user", json!({ "uid": 1000, "gid": 1000 }));
    // For a non-root user the kernel recomputes the sets at execve: permitted
    // and effective become the ambient set. The configuration is therefore
    // chosen self-consistent (permitted = effective = inheritable = ambient),
    // so each line of /proc/PID/status must equal its configured set.
    c.set(
        "/process/capabilities",
        json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL"],
            "inheritable": ["CAP_KILL"],
            "ambient": ["CAP_KILL"]
        }),
    );
    let out = c.run_sh("cat /proc/$$/status");
    let [inh, prm, eff, bnd, amb] = cap_fields(&out);
    let kill = cap_mask(&["CAP_KILL"]);
    let bset = cap_mask(&["CAP_CHOWN", "CAP_KILL"]);
    assert_eq!(bset, 0x21);
    assert_eq!(bnd, bset, "CapBnd {bnd:016x}");
    assert_eq!(prm, kill, "CapPrm {prm:016x}");
    assert_eq!(eff, kill, "CapEff {eff:016x}");
    assert_eq!(inh, kill, "CapInh {inh:016x}");
    assert_eq!(amb, kill, "CapAmb {amb:016x}");
    assert_eq!(
        status_field(&out, "Uid").unwrap().split_whitespace().next(),
        Some("1000")
    );
}

#[test]
fn capabilities_empty_for_non_root_without_ambient() {
    let mut c = Container::new("caps-none");
    c.set("/process/user", json!({ "uid": 1000, "gid": 1000 }));
    c.set(
        "/process/capabilities",
        json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
            "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
        }),
    );
    let out = c.run_sh("cat /proc/$$/status");
    let [inh, prm, eff, bnd, amb] = cap_fields(&out);
    assert_eq!(
        bnd,
        cap_mask(&["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"])
    );
    assert_eq!((inh, prm, eff, amb), (0, 0, 0, 0), "{out}");
}

#[test]
fn no_new_privileges_true() {
    let mut c = Container::new("nnp-true");
    c.set("/process/noNewPrivileges", json!(true));
    let out = c.run_sh("cat /proc/$$/status");
    assert_eq!(status_field(&out, "NoNewPrivs").as_deref(), Some("1"));
}

#[test]
fn no_new_privileges_false() {
    let mut c = Container::new("nnp-false");
    c.set("/process/noNewPrivileges", json!(false));
    let out = c.run_sh("cat /proc/$$/status");
    assert_eq!(status_field(&out, "NoNewPrivs").as_deref(), Some("0"));
}

#[test]
fn only_stdio_fds_are_open() {
    let mut c = Container::new("fds");
    // `ls` runs as a child, listing the shell's (pid 1's) descriptors; `echo
    // end` keeps the shell from exec'ing `ls` in place of itself.
    let out = c.run_sh("ls -l /proc/$$/fd; echo end");
    let fds: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with('l'))
        .filter_map(|l| l.split(" -> ").next()?.split_whitespace().last())
        .collect();
    assert_eq!(
        fds,
        vec!["0", "1", "2"],
        "open fds of the container process:\n{out}"
    );
}

/// Spec (config.md, Linux Process): "If `oomScoreAdj` is set, the runtime MUST set
/// `oom_score_adj` to the given value."
#[test]
fn oom_score_adj_is_applied() {
    let mut c = Container::new("oom");
    c.set("/process/oomScoreAdj", json!(100));
    let out = c.run_sh("cat /proc/$$/oom_score_adj");
    assert_eq!(out.trim(), "100");
}

/// Spec (config.md, Process): "at least one entry is REQUIRED (non-Windows), and that entry is
/// used with the same semantics as `execvp`'s *file*."
#[test]
fn args_resolved_on_container_path() {
    let mut c = Container::new("path");
    c.args(&["echo", "hi", "there"]);
    assert_eq!(c.run_ok(), "hi there\n");
}

#[test]
fn args_absolute_path() {
    let mut c = Container::new("abspath");
    c.args(&["/bin/echo", "absolute"]);
    assert_eq!(c.run_ok(), "absolute\n");
}

#[test]
fn args_with_special_characters_are_passed_verbatim() {
    let mut c = Container::new("argv");
    c.args(&["printf", "[%s]\\n", "a b", "", "$HOME", "'q'"]);
    assert_eq!(c.run_ok(), "[a b]\n[]\n[$HOME]\n['q']\n");
}

#[test]
fn stdout_and_stderr_are_separate() {
    let mut c = Container::new("stdio");
    c.sh("echo to-stdout; echo to-stderr >&2");
    let out = c.run(&[]);
    out.ok();
    assert_eq!(out.stdout, "to-stdout\n", "{out}");
    assert!(out.stderr.contains("to-stderr"), "{out}");
    assert!(!out.stdout.contains("to-stderr"), "{out}");
}

#[test]
fn stdin_is_passed_through() {
    let mut c = Container::new("stdin");
    // The harness gives the runtime /dev/null as stdin: reading gives EOF.
    c.sh("cat; echo eof-reached");
    assert_eq!(c.run_ok(), "eof-reached\n");
}

#[test]
fn runtime_signal_state_does_not_leak_into_the_container() {
    // The Rust runtime ignores SIGPIPE; ignored signals survive execve, so the init must
    // restore the default before exec'ing the user's program (or `yes | head` never ends).
    let mut c = Container::new("sigpipe");
    let out = c.run_sh("cat /proc/$$/status");
    let ign = status_field(&out, "SigIgn").expect("SigIgn line");
    let ign = u64::from_str_radix(&ign, 16).unwrap();
    assert_eq!(
        ign & (1 << (libc::SIGPIPE - 1)),
        0,
        "SIGPIPE ignored in the container: {ign:#x}"
    );
    let blk = status_field(&out, "SigBlk").expect("SigBlk line");
    assert_eq!(
        u64::from_str_radix(&blk, 16).unwrap(),
        0,
        "signals blocked in the container"
    );
}
