//! Error handling: every failure gives a clear one-line message, a non-zero
//! exit status and no panic, and a failed create leaves nothing behind.

use crate::common::*;
use serde_json::{Value, json};
use std::fs;

fn does_not_exist(out: &Out, id: &str) {
    assert_err(
        out,
        &[&format!("container \"{id}\" does not exist")],
        &["does not exist"],
    );
}

/// Spec (runtime.md, Query State): "Attempting to query a container that does not exist MUST
/// generate an error."
#[test]
fn unknown_id_does_not_exist() {
    let c = Container::new("unknown");
    let id = c.id.as_str();
    does_not_exist(&c.rt(&["state", id]), id);
    does_not_exist(&c.rt(&["start", id]), id);
    does_not_exist(&c.rt(&["kill", id, "KILL"]), id);
    does_not_exist(&c.rt(&["delete", id]), id);
}

#[test]
fn delete_force_unknown_id_succeeds() {
    let c = Container::new("delete-f-unknown");
    let out = c.rt(&["delete", "-f", &c.id]);
    out.ok();
}

/// Spec (runtime.md, Create): "If the ID provided is not unique across all containers within
/// the scope of the runtime, or is not valid in any other way, the implementation MUST generate
/// an error and a new container MUST NOT be created."
#[test]
fn second_create_already_exists() {
    let c = sleeper("exists");
    c.create_ok();
    assert_err(
        &c.create(),
        &[&format!("container \"{}\" already exists", c.id)],
        &["already exists"],
    );
    assert_eq!(c.state()["status"], "created");
}

/// Spec (runtime.md, Create): "If the ID provided is not unique across all containers within
/// the scope of the runtime, or is not valid in any other way, the implementation MUST generate
/// an error and a new container MUST NOT be created."
#[test]
fn invalid_container_ids() {
    let c = sleeper("invalid-id");
    c.write_config();
    let bundle = c.bundle_str();
    let escape = format!("corten-it-escape-{}-{}", std::process::id(), c.id);
    let dotdot = format!("../{escape}");
    for bad in [dotdot.as_str(), "a/b", "", "..", "."] {
        let out = c.rt(&["create", "--bundle", &bundle, bad]);
        assert_err(
            &out,
            &["invalid container id"],
            &["invalid container id", "cannot be empty"],
        );
    }
    // Nothing was created outside (or inside) the --root directory.
    assert!(!c.root().parent().unwrap().join(&escape).exists());
    assert!(!c.root().join("a").exists());
    let entries: Vec<_> = fs::read_dir(c.root())
        .map(|rd| rd.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(entries.is_empty(), "--root has entries: {entries:?}");
}

/// Spec (runtime.md, Start): "Attempting to `start` a container that is not `created` MUST have
/// no effect on the container and MUST generate an error."
#[test]
fn start_running_container_fails() {
    let c = sleeper("start-running");
    c.create_ok();
    c.start_ok();
    c.wait_status("running", STATE_TIMEOUT);
    assert_err(&c.start(), &["cannot start"], &["cannot start"]);
    assert_eq!(c.state()["status"], "running");
}

/// Spec (runtime.md, Start): "Attempting to `start` a container that is not `created` MUST have
/// no effect on the container and MUST generate an error."
#[test]
fn start_stopped_container_fails() {
    let c = sleeper("start-stopped");
    c.create_ok();
    c.start_ok();
    c.kill(Some("KILL")).ok();
    c.wait_status("stopped", STATE_TIMEOUT);
    assert_err(&c.start(), &["cannot start"], &["cannot start"]);
}

/// Spec (runtime.md, Delete): "Attempting to `delete` a container that is not `stopped` MUST
/// have no effect on the container and MUST generate an error."
#[test]
fn delete_running_without_force_fails() {
    let c = sleeper("delete-running");
    c.create_ok();
    c.start_ok();
    c.wait_status("running", STATE_TIMEOUT);
    let out = c.delete();
    assert_err(
        &out,
        &[&format!(
            "cannot delete container {} that is not stopped",
            c.id
        )],
        &["that is not stopped"],
    );
    assert_eq!(c.state()["status"], "running");
}

/// Spec (runtime.md, Kill): "Attempting to send a signal to a container that is neither
/// `created` nor `running` MUST have no effect on the container and MUST generate an error."
#[test]
fn kill_stopped_container_fails() {
    let c = sleeper("kill-stopped");
    c.create_ok();
    c.start_ok();
    c.kill(Some("KILL")).ok();
    c.wait_status("stopped", STATE_TIMEOUT);
    for sig in ["KILL", "0"] {
        assert_err(
            &c.kill(Some(sig)),
            &["container not running"],
            &["container not running"],
        );
    }
    // runc: -a (obsolete) makes a stopped container no error.
    c.rt(&["kill", "-a", &c.id]).ok();
    c.rt(&["kill", "--all", &c.id, "KILL"]).ok();
}

#[test]
fn missing_bundle_dir() {
    let c = sleeper("missing-bundle");
    let missing = c.bundle().join("does-not-exist");
    let m = missing.to_string_lossy().into_owned();
    let out = c.rt(&["create", "--bundle", &m, &c.id]);
    assert_err(
        &out,
        &[&m, "No such file or directory"],
        &["no such file or directory"],
    );
    c.assert_no_leftovers();
}

#[test]
fn missing_config_json() {
    let c = sleeper("missing-config");
    // Bundle exists (with rootfs) but config.json was never written.
    let bundle = c.bundle_str();
    let out = c.rt(&["create", "--bundle", &bundle, &c.id]);
    assert_err(
        &out,
        &[&bundle, "config.json", "No such file or directory"],
        &["config.json not found", "no such file or directory"],
    );
    c.assert_no_leftovers();
}

#[test]
fn malformed_config_json() {
    let c = sleeper("malformed");
    let bundle = c.bundle_str();
    fs::write(
        c.bundle().join("config.json"),
        "{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {\n    \"args\": [\"sh\",,]\n",
    )
    .unwrap();
    let out = c.rt(&["create", "--bundle", &bundle, &c.id]);
    assert_err(
        &out,
        &["config.json", "line 4 column"],
        &["invalid character", "unexpected"],
    );
    c.assert_no_leftovers();
}

#[test]
fn config_with_wrong_type_is_rejected() {
    let mut c = sleeper("wrong-type");
    c.set("/process/args", json!("sleep 100"));
    let out = c.create();
    assert_err(&out, &["config.json"], &["cannot unmarshal", "json"]);
    c.assert_no_leftovers();
}

#[test]
fn unsupported_oci_version_old() {
    let mut c = sleeper("ociversion-old");
    c.set("/ociVersion", json!("0.1.0"));
    let out = c.create();
    assert_err(&out, &["unsupported ociVersion", "0.1.0"], &["ociVersion"]);
    c.assert_no_leftovers();
}

#[test]
fn unsupported_oci_version_new_major() {
    let mut c = sleeper("ociversion-new");
    c.set("/ociVersion", json!("2.0.0"));
    let out = c.create();
    assert_err(&out, &["unsupported ociVersion", "2.0.0"], &["ociVersion"]);
    c.assert_no_leftovers();
}

/// Spec (runtime.md, Lifecycle): "If the runtime is unable to create the environment specified
/// in the `config.json`, it MUST generate an error."
#[test]
fn missing_executable_relative() {
    let mut c = Container::new("noexec-rel");
    c.args(&["no-such-command-xyz"]);
    let out = c.create();
    assert_err(
        &out,
        &["no-such-command-xyz", "executable file not found in $PATH"],
        &["executable file not found in $PATH"],
    );
    c.assert_no_leftovers();
}

#[test]
fn missing_executable_absolute() {
    let mut c = Container::new("noexec-abs");
    c.args(&["/no/such/binary"]);
    let out = c.create();
    assert_err(
        &out,
        &["/no/such/binary", "no such file or directory"],
        &["no such file or directory"],
    );
    c.assert_no_leftovers();
}

#[test]
fn missing_executable_with_run() {
    let mut c = Container::new("noexec-run");
    c.args(&["no-such-command-xyz"]);
    let out = c.run(&[]);
    assert_err(
        &out,
        &["executable file not found in $PATH"],
        &["executable file not found in $PATH"],
    );
    c.assert_no_leftovers();
}

/// Spec (runtime.md, Errors): "Unless otherwise stated, generating an error MUST leave the
/// state of the environment as if the operation were never attempted - modulo any possible
/// trivial ancillary changes such as logging."
#[test]
fn failing_mount() {
    let mut c = sleeper("badmount");
    c.add_mount(json!({
        "destination": "/mnt", "type": "nonexistentfs", "source": "none", "options": []
    }));
    let out = c.create();
    assert_err(&out, &["mount", "/mnt"], &["mount"]);
    assert!(out.stderr.contains("/mnt"), "{out}");
    c.assert_no_leftovers();
}

#[test]
fn bind_mount_of_missing_source() {
    let mut c = sleeper("badbind");
    let missing = c.bundle().join("no-such-source");
    c.add_mount(json!({
        "destination": "/data", "type": "bind",
        "source": missing.to_string_lossy(), "options": ["bind"]
    }));
    let out = c.create();
    assert_err(&out, &["mount", "/data"], &["no such file or directory"]);
    c.assert_no_leftovers();
}

#[test]
fn bad_uid() {
    let mut c = sleeper("baduid");
    c.set("/process/user", json!({ "uid": 4294967295u32, "gid": 0 }));
    let out = c.create();
    assert_err(&out, &["setuid"], &["setup user", "setuid"]);
    c.assert_no_leftovers();
}

#[test]
fn bad_gid() {
    let mut c = sleeper("badgid");
    c.set("/process/user", json!({ "uid": 0, "gid": 4294967295u32 }));
    let out = c.create();
    assert!(
        ["setgid", "setgroups"]
            .iter()
            .any(|s| out.stderr.contains(s))
            || is_runc(),
        "message should mention setgid/setgroups:\n{out}"
    );
    assert_err(&out, &[], &["setup user", "setgid", "setgroups"]);
    c.assert_no_leftovers();
}

#[test]
fn raising_hard_rlimit_fails() {
    let mut c = sleeper("rlimit");
    let hard_now = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .unwrap()
        .1;
    let hard = hard_now.saturating_add(10000).min(i64::MAX as u64);
    c.config["process"]["rlimits"] =
        json!([{ "type": "RLIMIT_NOFILE", "soft": 1024, "hard": hard }]);
    let out = c.create();
    if out.success() {
        // Only meaningful where raising the hard limit is not allowed (no
        // CAP_SYS_RESOURCE, as on this project's machines).
        let caps = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let eff = status_field(&caps, "CapEff")
            .and_then(|v| u64::from_str_radix(&v, 16).ok())
            .unwrap_or(0);
        assert!(
            eff & cap_mask(&["CAP_SYS_RESOURCE"]) != 0,
            "create succeeded although raising the hard limit is not permitted:\n{out}"
        );
        skip!("raising the hard limit is permitted here (CAP_SYS_RESOURCE)");
    }
    assert_err(
        &out,
        &["setrlimit", "RLIMIT_NOFILE", "Operation not permitted"],
        &["rlimit", "operation not permitted"],
    );
    c.assert_no_leftovers();
}

/// `--log LOG --log-format json create --bundle B ID`, run from `cwd`.
fn create_with_json_log(c: &Container, cwd: &std::path::Path, log: &str) -> Out {
    let root = c.root().to_string_lossy().into_owned();
    let bundle = c.bundle_str();
    rt_in(
        cwd,
        &[
            "--root",
            &root,
            "--log",
            log,
            "--log-format",
            "json",
            "create",
            "--bundle",
            &bundle,
            &c.id,
        ],
    )
}

#[test]
fn failed_create_writes_json_log() {
    let mut c = Container::new("jsonlog");
    c.args(&["no-such-command-xyz"]);
    c.write_config();
    let log = c.root().parent().unwrap().join(format!("{}.log", c.id));
    struct RmOnDrop(std::path::PathBuf);
    impl Drop for RmOnDrop {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }
    let _rm = RmOnDrop(log.clone());
    let log_s = log.to_string_lossy().into_owned();
    let out = create_with_json_log(&c, c.bundle(), &log_s);
    out.fails();
    let text = fs::read_to_string(&log).unwrap_or_else(|e| panic!("log file {log_s}: {e}\n{out}"));
    let entries: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}"))
        })
        .collect();
    let last = entries
        .last()
        .unwrap_or_else(|| panic!("empty log file\n{out}"));
    assert_eq!(last["level"], "error", "{last}");
    let msg = last["msg"]
        .as_str()
        .unwrap_or_else(|| panic!("no msg: {last}"));
    assert!(msg.contains("executable file not found"), "{last}");
    c.assert_no_leftovers();
}

/// podman reuses a container's `--log` file across restarts and parses it as ONE JSON
/// object: each failing command leaves its error as the file's only content (containerd,
/// which reads the last error object, is served as well).
#[test]
fn json_log_holds_only_the_last_error() {
    if is_runc() {
        return; // runc appends (podman then falls back to its stderr)
    }
    let dir = TempDir::new("jsonlog-reuse");
    let log = dir.join("oci-log");
    let log_s = log.to_string_lossy().into_owned();
    let root = dir.join("root");
    let root_s = root.to_string_lossy().into_owned();
    fs::write(&log, "{\"level\":\"warning\",\"msg\":\"earlier\"}\n").unwrap();
    for id in ["first-missing", "second-missing"] {
        let out = rt(&[
            "--root",
            &root_s,
            "--log",
            &log_s,
            "--log-format",
            "json",
            "kill",
            id,
            "KILL",
        ]);
        assert_err(&out, &["does not exist"], &[]);
        let text = fs::read_to_string(&log).unwrap();
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("the log is not one JSON object ({e}):\n{text}"));
        assert_eq!(v["level"], "error", "{text}");
        assert_eq!(
            v["msg"],
            format!("container \"{id}\" does not exist"),
            "{text}"
        );
    }
}

/// `create` and `run` with a relative `--log`: the file is the caller's cwd's, also for
/// the init's lines written after it entered the rootfs; in JSON format a failure leaves
/// its error as the file's only content there too.
#[test]
fn relative_log_is_the_callers_cwds() {
    let cwd = TempDir::new("relative-log");
    let mut c = Container::new("relative-log");
    c.args(&["true"]);
    c.write_config();
    let root = c.root().to_string_lossy().into_owned();
    let bundle = c.bundle_str();
    let out = rt_in(
        cwd.path(),
        &[
            "--root", &root, "--debug", "--log", "run.log", "run", "--bundle", &bundle, &c.id,
        ],
    );
    out.ok();
    let log = fs::read_to_string(cwd.join("run.log"))
        .unwrap_or_else(|e| panic!("run.log in the caller's cwd: {e}\n{out}"));
    assert!(log.contains("level=debug"), "{log}");
    if !is_runc() {
        assert!(log.contains("init: in the container's root"), "{log}");
    }
    assert!(!c.rootfs().join("run.log").exists(), "not the container's");

    c.args(&["no-such-command-xyz"]);
    c.write_config();
    fs::write(
        cwd.join("create.json"),
        "{\"level\":\"warning\",\"msg\":\"earlier\"}\n",
    )
    .unwrap();
    let out = create_with_json_log(&c, cwd.path(), "create.json");
    out.fails();
    let text = fs::read_to_string(cwd.join("create.json")).unwrap();
    let last: Value = serde_json::from_str(text.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not JSON ({e}):\n{text}"));
    assert_eq!(last["level"], "error", "{text}");
    if !is_runc() {
        assert_eq!(text.lines().count(), 1, "only the error: {text}");
    }
    c.assert_no_leftovers();
}

/// Spec (runtime.md, Create): "This operation MUST generate an error if it is not provided a
/// path to the bundle and the container ID to associate with the container."
/// Spec (runtime.md, Start): "This operation MUST generate an error if it is not provided the
/// container ID."
#[test]
fn unknown_subcommand_and_missing_args() {
    let c = Container::new("usage");
    let out = c.rt(&["no-such-subcommand"]);
    out.fails();
    let out = c.rt(&["create"]);
    out.fails();
    let out = c.rt(&["start"]);
    out.fails();
}

#[test]
fn bad_signal_name() {
    let c = sleeper("badsignal");
    c.create_ok();
    let out = c.kill(Some("NOSUCHSIG"));
    out.fails();
    // The container is not affected.
    assert_eq!(c.state()["status"], "created");
}

/// A reader that goes away (`corten features | head -1`) ends corten quietly with the
/// SIGPIPE status, not a panic and backtrace. stdout is a pipe whose read end is closed
/// before corten starts, so its first write fails with EPIPE.
#[test]
fn closed_stdout_is_not_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let out = std::process::Command::new(runtime())
        .arg("features")
        .stdout(std::process::Stdio::from(write_end))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(141),
        "{:?} {stderr}",
        out.status.signal()
    );
    assert!(stderr.is_empty(), "{stderr}");
}
