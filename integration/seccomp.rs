//! linux.seccomp: profiles observed from inside real containers, the SCMP_ACT_NOTIFY agent
//! protocol, podman's default profile, and bad profiles failing `create` cleanly.

use crate::common::*;
use serde_json::{Value, json};
use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

/// `corten run`'s exit status for a process killed by SIGSYS.
const KILLED_BY_SIGSYS: i32 = 128 + libc::SIGSYS;

/// podman's default profile, shipped by containers-common.
const PODMAN_PROFILE: &str = "/usr/share/containers/seccomp.json";

/// A container whose linux.seccomp is `default` for everything but `rules`.
fn with_profile(test: &str, default: &str, rules: Value) -> Container {
    let mut c = Container::new(test);
    c.set(
        "/linux/seccomp",
        json!({ "defaultAction": default, "syscalls": rules }),
    );
    c
}

/// A container whose filter fails mkdir with EPERM, with or without noNewPrivileges.
fn mkdir_denied(test: &str, no_new_privileges: bool) -> Container {
    let mut c = with_profile(
        test,
        "SCMP_ACT_ALLOW",
        json!([mkdir_rule("SCMP_ACT_ERRNO")]),
    );
    c.set("/process/noNewPrivileges", json!(no_new_privileges));
    c
}

/// A rule for mkdir (busybox may call mkdir or mkdirat).
fn mkdir_rule(action: &str) -> Value {
    json!({ "names": ["mkdir", "mkdirat"], "action": action })
}

/// Every filter flag this host supports (`features`), so that the tests exercise them.
fn supported_flags() -> Value {
    let features: Value = serde_json::from_str(&rt(&["features"]).ok().stdout).unwrap();
    features["linux"]["seccomp"]["supportedFlags"].clone()
}

/// Runs `mkdir DIR` in the shell; prints its error (if any) and `rc=N`.
const TRY_MKDIR: &str = "mkdir /dev/shm/d 2>&1; echo rc=$?";

/// startContainer hooks run in the container under its filter, as runc runs them: a hook
/// making a filtered syscall fails `start`; without hooks the filter still comes last.
#[test]
fn start_container_hooks_run_under_the_filter() {
    for nnp in [true, false] {
        let mut c = mkdir_denied("hook-filter", nnp);
        c.set(
            "/hooks",
            json!({"startContainer": [
                {"path": "/bin/sh", "args": ["sh", "-c", "mkdir /dev/shm/hook"]}
            ]}),
        );
        c.args(&["sleep", "100"]);
        c.create_ok();
        assert_err(
            &c.rt(&["start", &c.id]),
            &["error running startContainer hook #0"],
            &["startContainer"],
        );
    }
}

#[test]
fn errno_ret_is_what_the_process_sees() {
    for (errno_ret, text) in [
        (Some(1), "Operation not permitted"),
        (Some(38), "Function not implemented"),
        (None, "Operation not permitted"),
    ] {
        let mut rule = mkdir_rule("SCMP_ACT_ERRNO");
        if let Some(e) = errno_ret {
            rule["errnoRet"] = json!(e);
        }
        let mut c = with_profile("errno", "SCMP_ACT_ALLOW", json!([rule]));
        let out = c.run_sh(&format!(
            "{TRY_MKDIR}; echo @@status; cat /proc/self/status"
        ));
        let s = sections(&out);
        assert!(s[""].contains(text), "errnoRet {errno_ret:?}:\n{out}");
        assert!(s[""].contains("rc=1"), "{out}");
        assert_eq!(
            status_field(&s["status"], "Seccomp").as_deref(),
            Some("2"),
            "{out}"
        );
        assert_eq!(
            status_field(&s["status"], "Seccomp_filters").as_deref(),
            Some("1")
        );
    }
}

#[test]
fn default_errno_ret_with_an_allow_list() {
    // podman's allow-list without mkdir: everything else runs, mkdir gets defaultErrnoRet.
    let mut profile = podman_profile(DOCKER_DEFAULT_CAPS);
    profile["defaultErrnoRet"] = json!(libc::EACCES);
    for rule in profile["syscalls"].as_array_mut().unwrap() {
        let names = rule["names"].as_array_mut().unwrap();
        names.retain(|n| n != "mkdir" && n != "mkdirat");
    }
    let mut c = Container::new("default-errno");
    c.set("/linux/seccomp", profile);
    let out = c.run_sh(&format!("echo hello; {TRY_MKDIR}"));
    assert!(out.starts_with("hello\n"), "{out}");
    assert!(
        out.contains("Permission denied") && out.contains("rc=1"),
        "{out}"
    );
}

#[test]
fn kill_and_trap_end_the_process_with_sigsys() {
    for action in [
        "SCMP_ACT_KILL",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_TRAP",
    ] {
        let mut c = with_profile("kill", "SCMP_ACT_ALLOW", json!([mkdir_rule(action)]));
        c.args(&["mkdir", "/dev/shm/d"]);
        let out = c.run(&[]);
        assert_no_panic(&out);
        assert_eq!(out.code, Some(KILLED_BY_SIGSYS), "{action}:\n{out}");
    }
}

#[test]
fn log_and_allow_let_the_syscall_through() {
    // ALLOW equal to the default action is skipped (libseccomp refuses such a rule).
    let rules =
        json!([mkdir_rule("SCMP_ACT_LOG"), {"names": ["rmdir"], "action": "SCMP_ACT_ALLOW"}]);
    let mut c = with_profile("log", "SCMP_ACT_ALLOW", rules);
    c.set("/linux/seccomp/flags", supported_flags());
    let out = c
        .run_sh("mkdir /dev/shm/d && rmdir /dev/shm/d && echo ok; grep Seccomp: /proc/self/status");
    assert!(out.starts_with("ok\n") && out.contains("\t2"), "{out}");
}

#[test]
fn arg_conditions_eq_and_masked_eq() {
    let eperm = |names: &[&str], args: Value| json!({"names": names, "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": args});
    let o_trunc = libc::O_TRUNC as u64;
    let rules = json!([
        // personality(PER_LINUX32) only: `linux32` fails, `linux64` (PER_LINUX) works.
        eperm(
            &["personality"],
            json!([{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}])
        ),
        // Opening with O_TRUNC: `value` is the mask, `valueTwo` the value. So `>` fails
        // and `>>` works.
        eperm(
            &["open"],
            json!([{"index": 1, "value": o_trunc, "valueTwo": o_trunc, "op": "SCMP_CMP_MASKED_EQ"}])
        ),
        eperm(
            &["openat"],
            json!([{"index": 2, "value": o_trunc, "valueTwo": o_trunc, "op": "SCMP_CMP_MASKED_EQ"}])
        ),
    ]);
    let mut c = with_profile("args", "SCMP_ACT_ALLOW", rules);
    let out = c.run_sh(
        "linux32 true && echo linux32-ok; linux64 true && echo linux64-ok; \
         (echo a > /dev/shm/f) 2>&1; echo b >> /dev/shm/f && cat /dev/shm/f",
    );
    assert!(
        !out.contains("linux32-ok") && out.contains("linux64-ok"),
        "{out}"
    );
    assert!(out.contains("/dev/shm/f: Operation not permitted"), "{out}");
    assert!(out.ends_with("\nb\n"), "{out}");
}

#[test]
fn args_on_one_index_each_match_on_their_own() {
    // runc's rule: two conditions on arg 0 become two rules (either matches), not one rule
    // no value can satisfy.
    let args = json!([
        {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}
    ]);
    let rule = json!({"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": args});
    let mut c = with_profile("same-index", "SCMP_ACT_ALLOW", json!([rule]));
    let out =
        c.run_sh("linux32 true && echo linux32-ok; linux64 true && echo linux64-ok; echo done");
    assert_eq!(out.lines().last(), Some("done"), "{out}");
    assert!(!out.contains("-ok"), "{out}");
}

#[test]
fn unknown_syscall_names_are_skipped() {
    let rule = json!({"names": ["corten_no_such_syscall", "mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"});
    let mut c = with_profile("unknown-name", "SCMP_ACT_ALLOW", json!([rule]));
    let out = c.run_sh(TRY_MKDIR);
    assert!(out.contains("Operation not permitted"), "{out}");
}

#[test]
fn filter_is_loaded_without_no_new_privileges() {
    // Without no_new_privs the filter must be loaded while the process still has
    // CAP_SYS_ADMIN, before its capabilities (and, for uid 1000, root) are dropped.
    for user in [
        json!({"uid": 0, "gid": 0}),
        json!({"uid": 1000, "gid": 1000}),
    ] {
        let mut c = with_profile(
            "no-nnp",
            "SCMP_ACT_ALLOW",
            json!([mkdir_rule("SCMP_ACT_ERRNO")]),
        );
        c.set("/process/noNewPrivileges", json!(false));
        c.set("/process/user", user.clone());
        let out = c.run_sh(&format!(
            "{TRY_MKDIR}; echo @@status; cat /proc/self/status"
        ));
        let s = sections(&out);
        assert!(s[""].contains("Operation not permitted"), "{user}:\n{out}");
        assert_eq!(status_field(&s["status"], "Seccomp").as_deref(), Some("2"));
        assert_eq!(
            status_field(&s["status"], "NoNewPrivs").as_deref(),
            Some("0")
        );
        assert_eq!(
            status_field(&s["status"], "CapEff")
                .as_deref()
                .map(|h| u64::from_str_radix(h, 16).unwrap()),
            Some(if user["uid"] == 0 {
                cap_mask(DOCKER_DEFAULT_CAPS)
            } else {
                0
            })
        );
    }
}

#[test]
fn podman_default_profile() {
    // With CAP_SYS_ADMIN, swapoff of a missing file would say ENOENT; the profile's EPERM
    // shows the filter at work.
    let mut caps: Vec<&str> = DOCKER_DEFAULT_CAPS.to_vec();
    caps.push("CAP_SYS_ADMIN");
    let script = "echo hello; ls /bin >/dev/null && echo ls-ok; swapoff /nonexistent 2>&1; \
                  echo @@status; cat /proc/self/status";
    let run = |profile: Option<Value>| {
        let mut c = Container::new("podman-profile");
        for set in ["bounding", "effective", "permitted"] {
            c.set(&format!("/process/capabilities/{set}"), json!(caps));
        }
        if let Some(p) = profile {
            c.set("/linux/seccomp", p);
        }
        sections(&c.run_sh(script))
    };
    let s = run(Some(podman_profile(&caps)));
    assert!(s[""].starts_with("hello\nls-ok\n"), "{s:?}");
    assert!(
        s[""].contains("swapoff: /nonexistent: Operation not permitted"),
        "{s:?}"
    );
    assert_eq!(status_field(&s["status"], "Seccomp").as_deref(), Some("2"));
    // The same container without the profile.
    let s = run(None);
    assert!(
        s[""].contains("swapoff: /nonexistent: No such file or directory"),
        "{s:?}"
    );
    assert_eq!(status_field(&s["status"], "Seccomp").as_deref(), Some("0"));
}

/// What the test's seccomp agent saw.
struct AgentReport {
    /// The container process state message.
    msg: Value,
    /// NSpid of the message's pid, read while the container waited for an answer.
    nspid: String,
    /// The syscalls it answered.
    answered: Vec<String>,
}

/// A seccomp agent on `listener`: receives the listener fd and the state, then answers
/// every notification with a fake success (0) until the container is gone.
fn spawn_agent(listener: UnixListener) -> std::thread::JoinHandle<Result<AgentReport, String>> {
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let (msg, fd) = agent_receive(&listener, deadline)?;
        answer_notifications(msg, fd, deadline)
    })
}

/// The agent's side of the handoff: the first connection to `listener` and the message
/// (state and listener fd) on it, if both come before `deadline`.
fn agent_receive(listener: &UnixListener, deadline: Instant) -> Result<(Value, OwnedFd), String> {
    if !wait_readable(listener.as_fd(), deadline) {
        return Err("nobody connected to the agent".into());
    }
    let (conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
    // The message may come with the hang-up of a process that has exec'd since.
    if poll_in(conn.as_fd(), deadline).is_none() {
        return Err("the agent got a connection but no listener fd".into());
    }
    recv_state(conn.as_raw_fd())
}

/// Answers every notification on `fd` with a fake success (0) until the container is gone
/// (or `deadline`); `msg` is the handoff message.
fn answer_notifications(msg: Value, fd: OwnedFd, deadline: Instant) -> Result<AgentReport, String> {
    let pid = msg["pid"].as_i64().unwrap_or(0);
    let mut report = AgentReport {
        msg,
        nspid: String::new(),
        answered: Vec::new(),
    };
    while wait_readable(fd.as_fd(), deadline) {
        let req = match libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()) {
            Ok(r) => r,
            Err(_) => break, // the container is gone
        };
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        report.nspid = status_field(&status, "NSpid").unwrap_or_default();
        let name = req
            .data
            .syscall
            .get_name_by_arch(req.data.arch)
            .unwrap_or_default();
        report.answered.push(name);
        let resp =
            libseccomp::ScmpNotifResp::new_val(req.id, 0, libseccomp::ScmpNotifRespFlags::empty());
        resp.respond(fd.as_raw_fd())
            .map_err(|e| format!("respond: {e}"))?;
    }
    Ok(report)
}

/// Polls `fd` until it is readable (true) or hung up / the deadline passed (false).
fn wait_readable(fd: BorrowedFd, deadline: Instant) -> bool {
    poll_in(fd, deadline).is_some_and(|r| !r.contains(nix::poll::PollFlags::POLLHUP))
}

/// Polls `fd` until it has input, which may come with a hang-up; None by `deadline`.
fn poll_in(fd: BorrowedFd, deadline: Instant) -> Option<nix::poll::PollFlags> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    while Instant::now() < deadline {
        let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) > 0 {
            let r = fds[0].revents().unwrap_or(PollFlags::empty());
            return r.contains(PollFlags::POLLIN).then_some(r);
        }
    }
    None
}

/// One message with one fd (SCM_RIGHTS): the state JSON and the seccomp listener.
fn recv_state(sock: RawFd) -> Result<(Value, OwnedFd), String> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (len, fds) = {
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let m = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .map_err(|e| format!("recvmsg: {e}"))?;
        let fds: Vec<RawFd> = m
            .cmsgs()
            .map_err(|e| format!("cmsgs: {e}"))?
            .flat_map(|c| match c {
                ControlMessageOwned::ScmRights(f) => f,
                _ => Vec::new(),
            })
            .collect();
        (m.bytes, fds)
    };
    let [fd] = fds[..] else {
        return Err(format!("expected one fd, got {fds:?}"));
    };
    // SAFETY: the kernel just installed this fd for us.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let msg = serde_json::from_slice(&buf[..len]).map_err(|e| format!("state JSON: {e}"))?;
    Ok((msg, fd))
}

/// A container whose mkdir is SCMP_ACT_NOTIFY, with listenerPath at a fresh socket: the
/// socket's directory (to keep), the agent's listener and the container.
fn notify_container(test: &str) -> (TempDir, UnixListener, Container) {
    let dir = TempDir::new("agent");
    let sock = dir.join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let mut c = with_profile(
        test,
        "SCMP_ACT_ALLOW",
        json!([mkdir_rule("SCMP_ACT_NOTIFY")]),
    );
    c.set("/linux/seccomp/listenerPath", json!(sock));
    (dir, listener, c)
}

fn notify_case(no_new_privileges: bool) {
    let (_dir, listener, mut c) = notify_container("notify");
    let agent = spawn_agent(listener);
    c.set(
        "/linux/seccomp/listenerMetadata",
        json!("corten-test-metadata"),
    );
    c.set("/annotations", json!({"org.corten.test": "seccomp"}));
    c.set("/process/noNewPrivileges", json!(no_new_privileges));
    c.set("/linux/seccomp/flags", supported_flags());
    // The agent says mkdir succeeded, but it made nothing.
    let out =
        c.run_sh("mkdir /dev/shm/d && echo made; test -d /dev/shm/d && echo exists || echo absent");
    assert_eq!(out, "made\nabsent\n");
    let r = agent.join().unwrap().unwrap();
    let msg = &r.msg;
    assert_eq!(msg["fds"], json!(["seccompFd"]), "{msg}");
    assert_eq!(msg["metadata"], "corten-test-metadata", "{msg}");
    assert!(
        msg["ociVersion"]
            .as_str()
            .is_some_and(|v| v.starts_with("1.")),
        "{msg}"
    );
    let st = &msg["state"];
    assert_eq!(st["id"], c.id.as_str(), "{msg}");
    assert_eq!(st["pid"], msg["pid"], "{msg}");
    assert_eq!(st["status"], "creating", "{msg}");
    assert_eq!(st["bundle"], c.bundle_str(), "{msg}");
    assert_eq!(st["annotations"]["org.corten.test"], "seccomp", "{msg}");
    // The pid is the container init's, as the host sees it.
    assert_eq!(r.nspid, format!("{}\t1", msg["pid"]), "{msg}");
    assert!(
        !r.answered.is_empty() && r.answered.iter().all(|n| n.starts_with("mkdir")),
        "{:?}",
        r.answered
    );
}

#[test]
fn notify_agent_gets_the_fd_and_answers() {
    notify_case(true);
}

#[test]
fn notify_agent_gets_the_fd_without_no_new_privileges() {
    notify_case(false);
}

/// runc sends the SCMP_ACT_NOTIFY listener during `create` (its init loads the filter
/// before it reports ready, libcontainer/standard_init_linux.go; the parent passes the fd
/// on, process_linux.go procSeccomp), so an agent is attached while the container is still
/// `created`: also with noNewPrivileges, where the filter otherwise comes right before
/// execve. The process's mkdir then goes to that agent.
#[test]
fn notify_agent_gets_the_fd_during_create() {
    for nnp in [true, false] {
        let (_dir, listener, mut c) = notify_container("notify-create");
        c.set("/process/noNewPrivileges", json!(nnp));
        c.sh("mkdir /dev/shm/d");
        c.create_ok();
        let deadline = Instant::now() + Duration::from_secs(5);
        let (msg, fd) = agent_receive(&listener, deadline)
            .unwrap_or_else(|e| panic!("noNewPrivileges {nnp}: during create: {e}"));
        assert_eq!(c.state()["status"], "created", "noNewPrivileges {nnp}");
        assert_eq!(msg["fds"], json!(["seccompFd"]), "{msg}");
        assert_eq!(msg["state"]["id"], c.id.as_str(), "{msg}");
        let agent = std::thread::spawn(move || {
            answer_notifications(msg, fd, Instant::now() + Duration::from_secs(20))
        });
        c.start_ok();
        c.wait_status("stopped", STATE_TIMEOUT);
        let r = agent.join().unwrap().unwrap();
        assert!(
            !r.answered.is_empty() && r.answered.iter().all(|n| n.starts_with("mkdir")),
            "noNewPrivileges {nnp}: {:?}",
            r.answered
        );
        c.delete().ok();
    }
}

/// A listenerPath without a SCMP_ACT_NOTIFY rule is never contacted (runc makes no
/// listener then, and sends nothing): create and start neither wait for an agent nor
/// fail for lack of one, and the other rules apply.
#[test]
fn listener_path_without_notify_rules_is_not_contacted() {
    let dir = TempDir::new("agent");
    let sock = dir.join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    listener.set_nonblocking(true).unwrap();
    for (path, nnp) in [(sock.clone(), true), (dir.join("nobody-here.sock"), false)] {
        let mut c = mkdir_denied("listener-no-notify", nnp);
        c.set("/linux/seccomp/listenerPath", json!(path));
        c.set("/linux/seccomp/listenerMetadata", json!("unused"));
        let out = c.run_sh(TRY_MKDIR);
        assert!(out.contains("Operation not permitted"), "{out}");
        assert!(out.contains("rc=1"), "{out}");
    }
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the agent was contacted: {other:?}"),
    }
}

#[test]
fn exec_processes_get_the_filter() {
    for nnp in [true, false] {
        let mut c = mkdir_denied("exec", nnp);
        c.args(&["sleep", "100"]);
        c.create_ok();
        c.start_ok();
        let out = c.exec_sh(&format!("{TRY_MKDIR}; grep Seccomp: /proc/self/status"));
        out.ok();
        assert!(out.stdout.contains("Operation not permitted"), "{out}");
        assert!(out.stdout.contains("Seccomp:\t2"), "{out}");
    }
}

#[test]
fn exec_notify_agent_gets_the_exec_process_fd() {
    let (_dir, listener, mut c) = notify_container("exec-notify");
    c.args(&["sleep", "100"]);
    c.create_ok();
    c.start_ok();
    // The init's connection and its filter's fd, both during create.
    let (conn, _) = listener.accept().unwrap();
    let (init_msg, _init_fd) = recv_state(conn.as_raw_fd()).unwrap();
    assert_eq!(init_msg["state"]["status"], "creating", "{init_msg}");
    // The next one is the exec's.
    let agent = spawn_agent(listener);
    let out = c
        .exec_sh("mkdir /dev/shm/e && echo made; test -d /dev/shm/e && echo exists || echo absent");
    assert_eq!(out.ok().stdout, "made\nabsent\n");
    let r = agent.join().unwrap().unwrap();
    let msg = &r.msg;
    assert_eq!(msg["fds"], json!(["seccompFd"]), "{msg}");
    assert_eq!(msg["state"]["id"], c.id.as_str(), "{msg}");
    assert_eq!(msg["state"]["status"], "running", "{msg}");
    assert_eq!(msg["state"]["pid"], msg["pid"], "{msg}");
    // The pid is the exec'd process's as the host sees it, not the init's.
    assert_ne!(msg["pid"], init_msg["pid"], "{msg}");
    let host_pid = r.nspid.split('\t').next().unwrap_or_default();
    assert_eq!(host_pid, msg["pid"].to_string(), "{msg} {}", r.nspid);
    assert!(
        !r.answered.is_empty() && r.answered.iter().all(|n| n.starts_with("mkdir")),
        "{:?}",
        r.answered
    );
}

/// A create of `c` fails with one line naming every string of `want`, leaving nothing.
fn create_fails(c: &Container, want: &[&str]) {
    assert_err(&c.create(), want, &["seccomp"]);
    c.assert_no_leftovers();
}

#[test]
fn bad_profiles_fail_create_cleanly() {
    let bad_action = with_profile(
        "bad-action",
        "SCMP_ACT_ALLOW",
        json!([mkdir_rule("SCMP_ACT_FOO")]),
    );
    create_fails(
        &bad_action,
        &[r#"linux.seccomp.syscalls[0].action "SCMP_ACT_FOO" is unknown"#],
    );

    let rule = json!({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
        "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_ALMOST"}]});
    let bad_op = with_profile("bad-op", "SCMP_ACT_ALLOW", json!([rule]));
    create_fails(
        &bad_op,
        &[r#"linux.seccomp.syscalls[0].args[0].op "SCMP_CMP_ALMOST" is unknown"#],
    );

    let mut bad_arch = with_profile("bad-arch", "SCMP_ACT_ALLOW", json!([]));
    bad_arch.config["linux"]["seccomp"]["architectures"] =
        json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_VAX"]);
    create_fails(
        &bad_arch,
        &[r#"linux.seccomp.architectures[1] "SCMP_ARCH_VAX" is unknown"#],
    );

    // Known to the spec, but of the other byte order: no filter can hold it here.
    let mut foreign = with_profile("foreign-arch", "SCMP_ACT_ALLOW", json!([]));
    foreign.set("/linux/seccomp/architectures", json!(["SCMP_ARCH_S390X"]));
    create_fails(
        &foreign,
        &[r#"linux.seccomp.architectures[0] "SCMP_ARCH_S390X" cannot be filtered"#],
    );

    let no_listener = with_profile(
        "no-listener",
        "SCMP_ACT_ALLOW",
        json!([mkdir_rule("SCMP_ACT_NOTIFY")]),
    );
    create_fails(&no_listener, &["linux.seccomp.listenerPath is required"]);

    let mut no_agent = with_profile(
        "no-agent",
        "SCMP_ACT_ALLOW",
        json!([mkdir_rule("SCMP_ACT_NOTIFY")]),
    );
    no_agent.set(
        "/linux/seccomp/listenerPath",
        json!("/nonexistent/agent.sock"),
    );
    create_fails(
        &no_agent,
        &["connect to the seccomp agent at /nonexistent/agent.sock"],
    );

    let mut bad_flag = with_profile("bad-flag", "SCMP_ACT_ALLOW", json!([]));
    bad_flag.set("/linux/seccomp/flags", json!(["SECCOMP_FILTER_FLAG_NOPE"]));
    create_fails(
        &bad_flag,
        &[r#"linux.seccomp.flags[0] "SECCOMP_FILTER_FLAG_NOPE" is unknown"#],
    );
}

#[test]
fn unsupported_flags_fail_create_cleanly() {
    let features: Value = serde_json::from_str(&rt(&["features"]).ok().stdout).unwrap();
    let sc = &features["linux"]["seccomp"];
    let known = sc["knownFlags"].as_array().unwrap();
    let supported = sc["supportedFlags"].as_array().unwrap();
    for flag in known.iter().filter(|f| !supported.contains(f)) {
        let mut c = with_profile("flag", "SCMP_ACT_ALLOW", json!([]));
        c.set("/linux/seccomp/flags", json!([flag]));
        create_fails(
            &c,
            &[&format!("linux.seccomp.flags[0] {flag} is not supported")],
        );
    }
}

#[test]
fn features_describe_seccomp() {
    if is_runc() {
        skip!("corten's own behaviour, not runc's");
    }
    let features: Value = serde_json::from_str(&rt(&["features"]).ok().stdout).unwrap();
    let sc = &features["linux"]["seccomp"];
    assert_eq!(sc["enabled"], true);
    let list = |k: &str| -> Vec<String> {
        sc[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    for a in [
        "SCMP_ACT_ERRNO",
        "SCMP_ACT_NOTIFY",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_LOG",
    ] {
        assert!(list("actions").contains(&a.to_string()), "{sc}");
    }
    assert_eq!(list("operators").len(), 7, "{sc}");
    let native = match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "aarch64" => "SCMP_ARCH_AARCH64",
        other => panic!("no seccomp arch name for {other}"),
    };
    assert!(list("archs").contains(&native.to_string()), "{sc}");
    let known = list("knownFlags");
    assert!(
        list("supportedFlags").iter().all(|f| known.contains(f)),
        "{sc}"
    );
}

/// podman's default profile in the OCI form, as podman makes it for a container with
/// capabilities `caps` on this machine: the native architecture and its sub-architectures,
/// and the rules whose includes/excludes (arches, caps) apply.
fn podman_profile(caps: &[&str]) -> Value {
    let text = fs::read_to_string(PODMAN_PROFILE).unwrap_or_else(|e| {
        panic!(
            "{PODMAN_PROFILE}: {e} (hack/install-deps.sh installs golang-github-containers-common)"
        )
    });
    let p: Value = serde_json::from_str(&text).unwrap();
    let (native, goarch) = match std::env::consts::ARCH {
        "x86_64" => ("SCMP_ARCH_X86_64", "amd64"),
        "aarch64" => ("SCMP_ARCH_AARCH64", "arm64"),
        other => panic!("no seccomp arch name for {other}"),
    };
    let mut arches = vec![json!(native)];
    for m in p["archMap"].as_array().unwrap() {
        if m["architecture"] == native {
            arches.extend(m["subArchitectures"].as_array().unwrap().iter().cloned());
        }
    }
    let has = |list: &Value, v: &str| {
        list.as_array()
            .is_some_and(|l| l.iter().any(|x| x.as_str() == Some(v)))
    };
    let nonempty = |list: &Value| list.as_array().is_some_and(|l| !l.is_empty());
    let mut rules = Vec::new();
    for r in p["syscalls"].as_array().unwrap() {
        let (inc, exc) = (&r["includes"], &r["excludes"]);
        let skip = has(&exc["arches"], goarch)
            || caps.iter().any(|c| has(&exc["caps"], c))
            || nonempty(&inc["arches"]) && !has(&inc["arches"], goarch)
            || inc["caps"].as_array().is_some_and(|l| {
                l.iter()
                    .any(|c| !caps.iter().any(|h| c.as_str() == Some(*h)))
            });
        if skip {
            continue;
        }
        let mut rule = json!({"names": r["names"], "action": r["action"]});
        if !r["errnoRet"].is_null() {
            rule["errnoRet"] = r["errnoRet"].clone();
        }
        if nonempty(&r["args"]) {
            rule["args"] = r["args"].clone();
        }
        rules.push(rule);
    }
    json!({
        "defaultAction": p["defaultAction"],
        "defaultErrnoRet": p["defaultErrnoRet"],
        "architectures": arches,
        "syscalls": rules,
    })
}

/// corten's program cache (under --root): a program is cached once and reused; an entry
/// that is tampered with, truncated or writable by others is ignored and rebuilt, and the
/// container still gets the profile's filter.
#[test]
fn damaged_program_cache_entries_are_rebuilt() {
    use std::os::unix::fs::PermissionsExt;
    if is_runc() {
        skip!("corten's own cache");
    }
    let first = mkdir_denied("cache", true);
    let root = first.root_arc();
    // Runs a container of the shared root whose filter must deny mkdir.
    let denied = |mut c: Container| {
        let out = c.run_sh(TRY_MKDIR);
        assert!(
            out.contains("Operation not permitted") && out.contains("rc=1"),
            "{out}"
        );
    };
    let cache = first.root().join("seccomp:cache");
    let entry = || {
        let names: Vec<_> = fs::read_dir(&cache)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        names[0].clone()
    };
    let mode = |p: &std::path::Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    denied(first);
    assert_eq!(mode(&cache), 0o700);
    let path = entry();
    let good = fs::read(&path).unwrap();
    type Damage = fn(&std::path::Path, &[u8]);
    let damages: [(&str, Damage); 3] = [
        ("tampered", |p, good| {
            let mut bad = good.to_vec();
            let mid = bad.len() / 2;
            bad[mid] ^= 0xff;
            fs::write(p, bad).unwrap();
        }),
        ("truncated", |p, good| {
            fs::write(p, &good[..good.len() / 2]).unwrap()
        }),
        ("writable by others", |p, _| {
            fs::set_permissions(p, fs::Permissions::from_mode(0o666)).unwrap()
        }),
    ];
    for (what, damage) in damages {
        damage(&path, &good);
        let mut next = Container::with_root("cache", root.clone());
        next.set(
            "/linux/seccomp",
            json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": [mkdir_rule("SCMP_ACT_ERRNO")] }),
        );
        next.set("/process/noNewPrivileges", json!(true));
        denied(next);
        assert_eq!(entry(), path, "{what}");
        assert_eq!(fs::read(&path).unwrap(), good, "{what}: not rebuilt");
        assert_eq!(mode(&path), 0o600, "{what}");
    }
    // The cache is no container.
    let listed = rt(&["--root", &root.path().to_string_lossy(), "list", "-q"]);
    assert_eq!(listed.ok().stdout, "");
}
