//! Input checked at the edge: every command checks the container id before it builds a
//! path (runc's rule, "invalid container ID format"), `delete` removes nothing corten did
//! not make, and hostile argument values (huge, negative, empty, control characters,
//! `..`) give one clear line, a non-zero exit and no panic, with nothing created or
//! removed.

use crate::common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, symlink};
use std::path::{Path, PathBuf};

/// A scratch area: `base/root` (the --root), `base/victim` (a sibling that must survive),
/// `base/work` (the cwd the runtime runs in). Every directory a hostile path can name
/// holds an invalid config.json, so neither `spec` nor `create` can succeed there.
struct Scratch {
    base: TempDir,
}

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let base = TempDir::new(tag);
        for d in ["root", "victim", "work"] {
            fs::create_dir(base.join(d)).unwrap();
        }
        for d in [".", "root", "victim", "work"] {
            fs::write(base.join(d).join("config.json"), "{}").unwrap();
        }
        fs::write(base.join("victim/data"), "precious").unwrap();
        fs::write(base.join("root/keep"), "keep").unwrap();
        Scratch { base }
    }

    fn root(&self) -> String {
        self.base.join("root").to_string_lossy().into_owned()
    }

    fn victim(&self) -> String {
        self.base.join("victim").to_string_lossy().into_owned()
    }

    /// `RUNTIME --root ROOT ARGS...` from `base/work` (ARGS as given when they have their
    /// own --root).
    fn rt(&self, args: &[&str]) -> Out {
        let root = self.root();
        let mut full = vec!["--root", root.as_str()];
        if args.contains(&"--root") {
            full.clear();
        }
        full.extend_from_slice(args);
        rt_in(&self.base.join("work"), &full)
    }

    /// Every path under base with what it is (file content, link target, type).
    fn snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut out = BTreeMap::new();
        walk(self.base.path(), &mut out);
        out
    }
}

fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        let t = e.file_type().unwrap();
        let what = if t.is_symlink() {
            format!("link -> {}", fs::read_link(&p).unwrap().display())
        } else if t.is_dir() {
            walk(&p, out);
            "dir".to_string()
        } else if t.is_socket() {
            "socket".to_string()
        } else {
            format!("file {:?}", fs::read_to_string(&p).unwrap_or_default())
        };
        out.insert(p, what);
    }
}

/// A failure as the project wants it: non-zero exit, exactly one line on stderr that
/// starts with "corten:", no control character in it, no panic.
fn one_clear_line(out: &Out) {
    assert!(
        !out.success() && out.code.is_some(),
        "should have failed:\n{out}"
    );
    assert_no_panic(out);
    let body = out.stderr.strip_suffix('\n').unwrap_or(&out.stderr);
    assert!(
        body.starts_with("corten: ") && !body.is_empty(),
        "stderr should be one line starting with 'corten: ':\n{out}"
    );
    assert!(
        !body.chars().any(|c| c.is_control()),
        "stderr should be one line without control characters:\n{out:?}"
    );
}

/// The commands that take a container id, with `ID` where it goes.
const ID_COMMANDS: &[&[&str]] = &[
    &["state", "ID"],
    &["start", "ID"],
    &["kill", "ID", "KILL"],
    &["kill", "-a", "ID", "KILL"],
    &["delete", "ID"],
    &["delete", "-f", "ID"],
    &["delete", "--force", "ID"],
    &["pause", "ID"],
    &["resume", "ID"],
    &["ps", "ID"],
    &["ps", "-f", "json", "ID"],
    &["events", "ID"],
    &["events", "--stats", "ID"],
    &["update", "--pids-limit", "10", "ID"],
    &["exec", "ID", "true"],
    &["exec", "-d", "ID", "true"],
    &["create", "--bundle", "BUNDLE", "ID"],
    &["run", "-d", "--bundle", "BUNDLE", "ID"],
];

/// Ids that name something outside the container's own directory under --root.
fn attack_ids(s: &Scratch) -> Vec<String> {
    vec![
        "../victim".into(),
        s.victim(),
        "".into(),
        ".".into(),
        "..".into(),
        "root/../../victim".into(),
        "a/b".into(),
        "victim/".into(),
    ]
}

#[test]
fn every_command_checks_the_id() {
    if is_runc() {
        skip!("corten's own behaviour, not runc's");
    }
    let s = Scratch::new("ids");
    // A real bundle, so that create/run would get as far as making the state dir.
    let c = sleeper("ids");
    c.write_config();
    let bundle = c.bundle_str();
    let before = s.snapshot();
    for id in attack_ids(&s) {
        for cmd in ID_COMMANDS {
            let args: Vec<&str> = cmd
                .iter()
                .map(|a| match *a {
                    "ID" => id.as_str(),
                    "BUNDLE" => bundle.as_str(),
                    other => other,
                })
                .collect();
            let out = s.rt(&args);
            one_clear_line(&out);
            assert!(
                out.stderr.contains("invalid container ID format"),
                "{args:?}: {out}"
            );
            assert_eq!(s.snapshot(), before, "{args:?} changed the files:\n{out}");
        }
    }
}

/// `delete` of a valid id removes a directory without state.json only if it is what a
/// killed `create` leaves: a real directory holding nothing but corten's own files.
#[test]
fn delete_removes_only_corten_state_dirs() {
    if is_runc() {
        skip!("corten's own behaviour, not runc's");
    }
    let s = Scratch::new("del-own");
    let root = s.base.join("root");
    // Someone else's directory in the root, and a link to the victim.
    fs::create_dir(root.join("notours")).unwrap();
    fs::write(root.join("notours/data"), "x").unwrap();
    symlink(s.base.join("victim"), root.join("link")).unwrap();
    symlink(s.base.join("victim/data"), root.join("filelink")).unwrap();
    let before = s.snapshot();
    for id in ["notours", "link", "filelink", "keep"] {
        for force in [false, true] {
            let mut args = vec!["delete"];
            if force {
                args.push("-f");
            }
            args.push(id);
            let out = s.rt(&args);
            one_clear_line(&out);
            assert_eq!(s.snapshot(), before, "{args:?} changed the files:\n{out}");
        }
    }
    // What a create killed early leaves: an empty dir, or the start socket and a state
    // file being written. `delete -f` removes them.
    fs::create_dir(root.join("empty")).unwrap();
    fs::create_dir(root.join("half")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(root.join("half/start.sock")).unwrap();
    fs::write(root.join("half/.state.json.123.tmp"), "{").unwrap();
    for id in ["empty", "half"] {
        s.rt(&["delete", "-f", id]).ok();
        assert!(!root.join(id).exists(), "{id} was not removed");
    }
    assert_eq!(s.snapshot(), before);
}

/// The hostile values of the table test.
fn hostile_values(s: &Scratch) -> Vec<String> {
    vec![
        "99999999999999999999999999".into(),
        "18446744073709551616".into(),
        "4294967295".into(),
        "2147483647".into(),
        "-1".into(),
        "-9223372036854775809".into(),
        "".into(),
        "\u{1}".into(),
        "\\0".into(),
        "%00".into(),
        "a\nb".into(),
        "a\rb\u{1b}[2J".into(),
        "..".into(),
        "../victim".into(),
        s.victim(),
        "x".repeat(100_000),
    ]
}

/// Every command, with `V` where a hostile value goes. The container `ghost` does not
/// exist and `nobundle` is no bundle, so nothing may succeed.
const TABLE: &[&[&str]] = &[
    &["create", "--bundle", "nobundle", "V"],
    &["create", "--bundle", "V", "ghost"],
    &["create", "--pid-file", "V", "--bundle", "nobundle", "ghost"],
    &[
        "create",
        "--console-socket",
        "V",
        "--bundle",
        "nobundle",
        "ghost",
    ],
    &[
        "create",
        "--preserve-fds",
        "V",
        "--bundle",
        "nobundle",
        "ghost",
    ],
    &["run", "-d", "--bundle", "nobundle", "V"],
    &["run", "--bundle", "V", "ghost"],
    &[
        "run",
        "--preserve-fds",
        "V",
        "--bundle",
        "nobundle",
        "ghost",
    ],
    &["start", "V"],
    &["state", "V"],
    &["kill", "V"],
    &["kill", "ghost", "V"],
    &["kill", "-a", "V", "KILL"],
    &["delete", "V"],
    &["pause", "V"],
    &["resume", "V"],
    &["ps", "V"],
    &["ps", "-f", "V", "ghost"],
    &["ps", "ghost", "V"],
    &["events", "V"],
    &["events", "--stats", "V"],
    &["events", "--interval", "V", "ghost"],
    &["update", "V"],
    &["update", "-r", "V", "ghost"],
    &["update", "-m", "V", "ghost"],
    &["update", "--memory-reservation", "V", "ghost"],
    &["update", "--memory-swap", "V", "ghost"],
    &["update", "--cpu-quota", "V", "ghost"],
    &["update", "--cpu-period", "V", "ghost"],
    &["update", "--cpu-share", "V", "ghost"],
    &["update", "--cpu-rt-period", "V", "ghost"],
    &["update", "--cpu-rt-runtime", "V", "ghost"],
    &["update", "--cpuset-cpus", "V", "ghost"],
    &["update", "--cpuset-mems", "V", "ghost"],
    &["update", "--pids-limit", "V", "ghost"],
    &["update", "--blkio-weight", "V", "ghost"],
    &["exec", "V", "true"],
    &["exec", "ghost", "V"],
    &["exec", "-p", "V", "ghost"],
    &["exec", "--cwd", "V", "ghost", "true"],
    &["exec", "-e", "V", "ghost", "true"],
    &["exec", "-u", "V", "ghost", "true"],
    &["exec", "-g", "V", "ghost", "true"],
    &["exec", "-c", "V", "ghost", "true"],
    &["exec", "--apparmor", "V", "ghost", "true"],
    &["exec", "--process-label", "V", "ghost", "true"],
    &["exec", "--pid-file", "V", "ghost", "true"],
    &["exec", "--console-socket", "V", "ghost", "true"],
    &["exec", "--preserve-fds", "V", "ghost", "true"],
    &["exec", "--cgroup", "V", "ghost", "true"],
    &["list", "-f", "V"],
    &["spec", "--bundle", "V"],
    &["features", "V"],
    &["V"],
    &["--log-format", "V", "state", "ghost"],
    &["--rootless=V", "state", "ghost"],
    &["--root", "V", "state", "ghost"],
];

#[test]
fn hostile_values_give_one_line_and_touch_nothing() {
    if is_runc() {
        skip!("corten's own behaviour, not runc's");
    }
    let s = Scratch::new("hostile");
    let before = s.snapshot();
    for value in hostile_values(&s) {
        for cmd in TABLE {
            let args: Vec<String> = cmd.iter().map(|a| a.replace('V', &value)).collect();
            // Only the placeholder is replaced: no other word of the table holds a 'V'.
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let out = s.rt(&args);
            one_clear_line(&out);
            assert_eq!(s.snapshot(), before, "{args:?} changed the files:\n{out}");
        }
        // A valid id that names no container: `delete -f` is done (containerd relies on
        // it) and touches nothing; any other value is one clear line.
        let out = s.rt(&["delete", "-f", &value]);
        if !out.success() {
            one_clear_line(&out);
        } else {
            assert!(out.stderr.is_empty(), "{out}");
        }
        assert_eq!(
            s.snapshot(),
            before,
            "delete -f {value:?} changed the files"
        );
    }
}

#[test]
fn preserve_fds_is_bounded_by_the_fd_limit() {
    if is_runc() {
        skip!("corten's own behaviour, not runc's");
    }
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    let past = (hard - 2).to_string();
    for n in ["4294967295", "2147483647", "2147483645", past.as_str()] {
        for cmd in [&["create"][..], &["run", "-d"]] {
            let c = sleeper("preserve-big");
            c.write_config();
            let bundle = c.bundle_str();
            let mut args = cmd.to_vec();
            args.extend(["--preserve-fds", n, "--bundle", &bundle, &c.id]);
            let out = c.rt(&args);
            one_clear_line(&out);
            assert!(out.stderr.contains("--preserve-fds"), "{out}");
            assert!(out.stderr.contains("RLIMIT_NOFILE"), "{out}");
            c.assert_no_leftovers();
        }
    }
    // exec: refused, and the container is not disturbed.
    let c = sleeper("preserve-big-exec");
    c.create_ok();
    c.start_ok();
    for n in ["4294967295", "2147483647", past.as_str()] {
        let out = c.rt(&["exec", "--preserve-fds", n, &c.id, "true"]);
        one_clear_line(&out);
        assert!(out.stderr.contains("--preserve-fds"), "{out}");
    }
    assert_eq!(c.state()["status"], "running");
    // The largest count that fits is accepted.
    let max = (hard - 3).to_string();
    c.rt(&["exec", "--preserve-fds", &max, &c.id, "true"]).ok();
}

#[test]
fn events_interval_is_checked() {
    if is_runc() {
        skip!("corten's own behaviour, not runc's");
    }
    let s = Scratch::new("interval");
    for bad in [
        "100000000000000000000s",
        "1e30s",
        "0",
        "0s",
        "0ms",
        "0.0s",
        "-1s",
        "",
        "s",
        "5x",
        "NaN",
        "inf",
    ] {
        let out = s.rt(&["events", &format!("--interval={bad}"), "ghost"]);
        one_clear_line(&out);
        assert!(out.stderr.contains("--interval"), "{out}");
    }
    for good in ["5s", "500ms", "1m", "2", "1.5s", "1h", "1m30s"] {
        let out = s.rt(&["events", "--interval", good, "ghost"]);
        one_clear_line(&out);
        assert!(out.stderr.contains("does not exist"), "{good}: {out}");
    }
}

/// An init error longer than a sync datagram reaches the user cut in the middle, with its
/// start and its end.
#[test]
fn long_init_error_is_truncated_not_lost() {
    if is_runc() {
        skip!("corten's own behaviour, not runc's");
    }
    let mut c = Container::new("long-error");
    let name = format!("start-{}-end", "x".repeat(100_000));
    c.args(&[&name]);
    let out = c.create();
    let err = out.stderr.trim_end();
    let ends = |e: &str| {
        format!(
            "{} ... {}",
            &e[..e.len().min(100)],
            &e[e.len().saturating_sub(100)..]
        )
    };
    one_clear_line(&out);
    assert!(!err.contains("malformed"), "{}", ends(err));
    assert!(err.contains("exec \"start-xxx"), "{}", ends(err));
    assert!(err.contains("bytes cut"), "{}", ends(err));
    assert!(
        err.ends_with("x-end\": executable file not found in $PATH"),
        "{}",
        ends(err)
    );
    c.assert_no_leftovers();
}

/// A newline in a user-supplied value stays inside one escaped line: on stderr and in
/// the --log file, text and JSON.
#[test]
fn control_characters_in_errors_are_escaped() {
    if is_runc() {
        skip!("corten's own behaviour, not runc's");
    }
    let s = Scratch::new("escape");
    let bundle = format!("{}/no\nsuch\r\u{1b}[2Jbundle", s.base.path().display());
    let out = s.rt(&["create", "--bundle", &bundle, "ok-id"]);
    one_clear_line(&out);
    assert!(out.stderr.contains("no\\nsuch\\r"), "{out:?}");
    for format in ["text", "json"] {
        let log = s.base.join(format!("log.{format}"));
        let log_s = log.to_string_lossy().into_owned();
        let out = s.rt(&[
            "--log",
            &log_s,
            "--log-format",
            format,
            "create",
            "--bundle",
            &bundle,
            "ok-id",
        ]);
        one_clear_line(&out);
        let text = fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text:?}");
        let msg = if format == "json" {
            let v: Value = serde_json::from_str(lines[0]).unwrap();
            assert_eq!(v["level"], json!("error"), "{text}");
            v["msg"].as_str().unwrap().to_string()
        } else {
            lines[0].to_string()
        };
        assert!(!msg.chars().any(|c| c.is_control()), "{msg:?}");
        assert!(
            msg.contains("no\\nsuch") || msg.contains("no\\\\nsuch"),
            "{msg:?}"
        );
    }
}
