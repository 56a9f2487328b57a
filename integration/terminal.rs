//! Terminals (process.terminal): the pty a container's process gets from the container's
//! own devpts, handed to an engine over `--console-socket` or relayed by `run` and `exec`
//! themselves; runc's rules on when each is allowed; a hostile /dev/console in the image.

use std::fs;
use std::os::fd::OwnedFd;
use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::json;

use crate::common::*;
use crate::escapes::{host_mounts_under, sentinel, shared_host_dir, snapshot};

/// A container whose process, `sh -c SCRIPT`, has a terminal.
fn with_terminal(test: &str, script: &str) -> Container {
    let mut c = Container::new(test);
    c.set("/process/terminal", json!(true));
    c.sh(script);
    c
}

/// `create --console-socket S` and `start`, as an engine does: the master sent to S.
fn start_on_console(c: &Container) -> OwnedFd {
    let socket = ConsoleSocket::new();
    create_on(c, &socket.path_str()).ok();
    let (master, name) = socket.recv_master();
    assert!(!name.is_empty(), "the master came without a message");
    c.start_ok();
    master
}

/// Writes config.json and runs `create --console-socket SOCKET --bundle B ID`.
fn create_on(c: &Container, socket: &str) -> Out {
    c.write_config();
    let bundle = c.bundle_str();
    c.rt(&[
        "create",
        "--console-socket",
        socket,
        "--bundle",
        &bundle,
        &c.id,
    ])
}

/// `RUNTIME --root R ARGS...` as one shell command line (for `script` and tmux).
fn command_line(c: &Container, args: &[&str]) -> String {
    let mut words = vec![
        runtime().to_string_lossy().into_owned(),
        "--root".into(),
        c.root().to_string_lossy().into_owned(),
    ];
    words.extend(args.iter().map(|a| a.to_string()));
    words
        .iter()
        .map(|w| sh_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A container running an interactive `sh` on a terminal, and the command line that
/// `run`s it in the foreground.
fn interactive_shell(test: &str) -> (Container, String) {
    let mut c = Container::new(test);
    c.set("/process/terminal", json!(true));
    c.args(&["sh"]);
    c.write_config();
    let bundle = c.bundle_str();
    let cmd = command_line(&c, &["run", "--bundle", &bundle, &c.id]);
    (c, cmd)
}

/// `exec -t FLAGS ID sh -c SCRIPT` attached, on a terminal, with `input` typed.
fn exec_on_terminal(
    c: &Container,
    flags: &[&str],
    script: &str,
    input: &str,
) -> (Option<i32>, String) {
    let mut args = vec!["exec", "-t"];
    args.extend_from_slice(flags);
    args.extend_from_slice(&[&c.id, "sh", "-c", script]);
    on_terminal(&command_line(c, &args), input)
}

/// The number N of a "/dev/pts/N" line.
fn pts_number(tty: &str) -> u64 {
    tty.trim()
        .strip_prefix("/dev/pts/")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a /dev/pts/N terminal: {tty:?}"))
}

#[test]
fn console_socket_gets_the_terminal_of_the_container() {
    let mut c = with_terminal(
        "tty-socket",
        "echo @@tty; tty; echo @@size; stty size; echo @@owner; stat -c '%u:%g:%a' $(tty); \
         echo @@console; stat -c '%F|%t|%T' /dev/console; \
         echo @@stat; cut -d' ' -f6,7 /proc/self/stat; echo @@fds; ls -l /proc/self/fd; \
         echo @@input; read x; echo got:$x; exit 7",
    );
    c.set("/process/consoleSize", json!({"height": 27, "width": 91}));
    c.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let master = start_on_console(&c);
    let mut text = read_pty(&master, Some("@@input\n"));
    write_pty(&master, "typed words\n");
    text += &read_pty(&master, None);
    let s = sections(&text);
    let n = pts_number(&s["tty"]);
    assert_eq!(s["size"].trim(), "27 91", "consoleSize:\n{text}");
    // The process's user owns it; the group and mode are devpts' (gid=5, mode=620).
    assert_eq!(s["owner"].trim(), "1000:5:620", "{text}");
    assert_eq!(
        s["console"].trim(),
        format!("character special file|88|{n:x}"),
        "/dev/console is not the terminal:\n{text}"
    );
    // The session the init made (pid 1) has it as controlling terminal: major 136, minor N.
    let stat: Vec<u64> = s["stat"]
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(stat, [1, (136 << 8) | n], "session and tty_nr:\n{text}");
    // Nothing but the terminal reaches the process: not the socket, not the master.
    for leak in ["socket:", "ptmx"] {
        assert!(!s["fds"].contains(leak), "{leak} leaked:\n{text}");
    }
    assert!(s["fds"].contains(&format!("/dev/pts/{n}")), "{text}");
    assert!(s["input"].contains("got:typed words"), "{text}");
    c.wait_status("stopped", STATE_TIMEOUT);
    c.delete().ok();
    c.assert_no_leftovers();
}

#[test]
fn console_socket_rules_are_runcs() {
    // A terminal with nowhere to send it: create and run -d refuse, leaving nothing.
    let c = with_terminal("tty-nosock", "true");
    assert_err(&c.create(), &["--console-socket"], &["cannot allocate tty"]);
    c.assert_no_leftovers();
    assert_err(
        &c.run(&["-d"]),
        &["--console-socket"],
        &["cannot allocate tty"],
    );
    c.assert_no_leftovers();

    // A console socket that can't be used: refused before anything connects to it.
    let socket = ConsoleSocket::new();
    let path = socket.path_str();
    let out = c.run(&["--console-socket", &path]);
    assert_err(
        &out,
        &["--console-socket", "-d"],
        &["cannot use console socket"],
    );
    let mut plain = Container::new("tty-plain");
    plain.sh("true");
    let out = create_on(&plain, &path);
    assert_err(
        &out,
        &["--console-socket", "terminal"],
        &["cannot use console socket"],
    );
    // An id already in use: refused before the socket is reached.
    let busy = sleeper("tty-busy");
    busy.create_ok();
    let mut again = Container::with_root("tty-busy-again", busy.root_arc());
    again.set("/process/terminal", json!(true));
    again.id = busy.id.clone();
    let out = create_on(&again, &path);
    assert_err(&out, &["already exists"], &["already exists"]);
    assert!(!socket.was_connected(), "a refused create connected");
    c.assert_no_leftovers();
    plain.assert_no_leftovers();

    // No devpts in the container: nowhere to take a pty from.
    let mut no_pts = with_terminal("tty-nopts", "true");
    no_pts.config["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["destination"] != "/dev/pts");
    let out = create_on(&no_pts, &ConsoleSocket::new().path_str());
    assert_err(&out, &["devpts"], &["no such file"]);
    no_pts.assert_no_leftovers();

    // A console socket nobody listens on: a one-line error naming it.
    let gone = TempDir::new("tty-gone");
    let missing = gone.join("none.sock").to_string_lossy().into_owned();
    let out = create_on(&c, &missing);
    assert_err(&out, &[&missing], &["connect"]);
    c.assert_no_leftovers();
}

#[test]
fn run_relays_the_terminal_and_the_exit_status() {
    // On a terminal: typed input reaches the shell, its output comes back, `exit 3` is
    // run's status, and nothing is left.
    let (c, cmd) = interactive_shell("tty-run");
    let (code, text) = on_terminal(&cmd, "echo got-$((40+2)) $(tty)\nexit 3\n");
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("got-42 /dev/pts/0"), "{text}");
    c.assert_no_leftovers();

    // Not on a terminal (stdin /dev/null, stdout a file): relayed all the same (runc
    // wants a controlling terminal).
    if is_runc() {
        skip!("the rest is corten's own behaviour: runc wants a controlling terminal");
    }
    // Newlines come out as written: the relayed terminal has ONLCR cleared, as runc's.
    let c = with_terminal("tty-run-plain", "tty; echo done; exit 4");
    let out = c.run(&[]);
    assert_eq!(out.code, Some(4), "{out}");
    assert_eq!(out.stdout, "/dev/pts/0\ndone\n", "{out}");
    c.assert_no_leftovers();
    let c = sleeper("tty-exec-plain");
    c.create_ok();
    c.start_ok();
    let out = c.rt(&["exec", "-t", &c.id, "sh", "-c", "echo a; echo b; exit 6"]);
    assert_eq!(out.code, Some(6), "{out}");
    assert_eq!(out.stdout, "a\nb\n", "{out}");
}

#[test]
fn run_follows_the_window_size() {
    let (c, run) = interactive_shell("tty-winch");
    let dir = TempDir::new("tmux");
    let tmux = Tmux::start(dir.path(), &run, 100, 30);
    let (rows, cols) = tmux.size();
    tmux.type_line("stty size");
    tmux.wait_for_line(&format!("{rows} {cols}"));
    // SIGWINCH: corten copies the new size to the container's terminal.
    tmux.resize(73, 21);
    let (rows2, cols2) = tmux.size();
    assert_ne!((rows, cols), (rows2, cols2), "tmux did not resize");
    tmux.type_line("clear; stty size");
    tmux.wait_for_line(&format!("{rows2} {cols2}"));
    tmux.type_line("exit 3");
    tmux.wait_for_line("exit=3");
    drop(tmux);
    c.assert_no_leftovers();
}

#[test]
fn exec_gets_a_terminal() {
    let c = sleeper("tty-exec");
    c.create_ok();
    c.start_ok();

    // Detached, to a console socket (as engines run it).
    let socket = ConsoleSocket::new();
    let path = socket.path_str();
    let script = "echo @@tty; tty; echo @@stat; cut -d' ' -f7 /proc/self/stat; \
                  echo @@fds; ls -l /proc/self/fd; echo @@input; read x; echo got:$x";
    let args = [
        "exec",
        "-t",
        "-d",
        "--console-socket",
        &path,
        &c.id,
        "sh",
        "-c",
        script,
    ];
    c.rt(&args).ok();
    let (master, name) = socket.recv_master();
    assert!(!name.is_empty());
    let mut text = read_pty(&master, Some("@@input\n"));
    write_pty(&master, "hello\n");
    text += &read_pty(&master, None);
    let s = sections(&text);
    let n = pts_number(&s["tty"]);
    assert_eq!(
        s["stat"].trim(),
        ((136 << 8) | n).to_string(),
        "tty_nr:\n{text}"
    );
    for leak in ["socket:", "ptmx"] {
        assert!(!s["fds"].contains(leak), "{leak} leaked:\n{text}");
    }
    assert!(s["input"].contains("got:hello"), "{text}");

    // Attached: exec relays it on our terminal and exits with the process's status.
    let (code, text) = exec_on_terminal(&c, &[], "tty; read x; echo got:$x; exit 5", "typed\n");
    assert_eq!(code, Some(5), "{text}");
    assert!(
        text.contains("/dev/pts/") && text.contains("got:typed"),
        "{text}"
    );

    // runc's rules.
    let out = c.rt(&["exec", "-t", "-d", &c.id, "true"]);
    assert_err(&out, &["--console-socket"], &["cannot allocate tty"]);
    for args in [
        ["exec", "-d", "--console-socket", &path, &c.id, "true"],
        ["exec", "-t", "--console-socket", &path, &c.id, "true"],
    ] {
        let out = c.rt(&args);
        assert_err(&out, &["--console-socket"], &["cannot use console socket"]);
    }
    assert!(!socket.was_connected(), "a refused exec connected");
    // The container's own process is untouched by all this.
    assert_eq!(c.state()["status"], "running");
}

/// The image's /dev (no /dev tmpfs; the container's devpts mounted in it) with /dev/console
/// a symlink to a host file, propagation shared: the host file keeps its content and gets no
/// mount. corten replaces the link (as it does the image's device nodes) and the terminal
/// lands on /dev/console; runc refuses the symlink.
#[test]
fn dev_console_symlink_in_the_image_is_not_followed() {
    let files = shared_host_dir("tty-console-host");
    let host_file = sentinel(&files, "console");
    let mut c = with_terminal(
        "tty-hostile",
        "stat -c '%F|%t' /dev/console; echo through > /dev/console",
    );
    c.config["mounts"].as_array_mut().unwrap().retain(|m| {
        let dest = m["destination"].as_str().unwrap();
        dest == "/dev/pts" || !dest.starts_with("/dev")
    });
    c.set("/linux/rootfsPropagation", json!("shared"));
    symlink(&host_file, c.rootfs().join("dev/console")).unwrap();
    let before = snapshot(files.path());
    if is_runc() {
        let out = create_on(&c, &ConsoleSocket::new().path_str());
        assert_err(&out, &[], &["/dev/console"]);
        assert_eq!(snapshot(files.path()), before, "the host file changed");
        return;
    }
    let master = start_on_console(&c);
    let text = read_pty(&master, None);
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["character special file|88", "through"],
        "{text}"
    );
    assert_eq!(snapshot(files.path()), before, "the host file changed");
    assert_eq!(
        host_mounts_under(files.path()),
        vec![files.path().to_string_lossy().to_string()]
    );
    assert!(!in_rootfs_is_symlink(&c.rootfs().join("dev/console")));
    c.wait_status("stopped", STATE_TIMEOUT);
    c.delete().ok();
    c.assert_no_leftovers();
}

fn in_rootfs_is_symlink(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink())
}

/// In a user namespace the terminal still belongs to the process's user, for the init and
/// for exec (which becomes the namespace's root to make it, as the init does).
#[test]
fn terminal_in_a_user_namespace() {
    let mut c = with_terminal("tty-userns", "stat -c %u:%g $(tty); read x; echo got:$x");
    crate::userns::user_ns(&mut c, 100000);
    c.set("/process/user", json!({"uid": 1000, "gid": 1000}));
    let master = start_on_console(&c);
    let text = read_pty(&master, Some("1000:5\n"));
    assert!(text.starts_with("1000:5\n"), "{text}");
    let (code, text) = exec_on_terminal(&c, &["-u", "2000:2000"], "stat -c %u:%g $(tty)", "");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("2000:5\n"), "{text}");
    write_pty(&master, "bye\n");
    assert!(read_pty(&master, None).contains("got:bye"));
    c.wait_status("stopped", STATE_TIMEOUT);
}
