//! Terminals: the `--console-socket` listener and pty reads/writes, and tmux sessions for
//! tests that drive an interactive shell (plus `sh_quote` for their command lines).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A unix socket listening for a runtime's pty master (`--console-socket`), as engines
/// (containerd's shim, conmon) listen.
pub struct ConsoleSocket {
    _dir: TempDir,
    path: PathBuf,
    listener: std::os::unix::net::UnixListener,
}

impl ConsoleSocket {
    pub fn new() -> ConsoleSocket {
        let dir = TempDir::new("console");
        let path = dir.join("console.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path)
            .unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        listener.set_nonblocking(true).unwrap();
        ConsoleSocket {
            _dir: dir,
            path,
            listener,
        }
    }

    pub fn path_str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// A connection made so far, if any (never waits).
    fn accept(&self) -> Option<std::os::unix::net::UnixStream> {
        self.listener.accept().ok().map(|(s, _)| s)
    }

    /// Whether a runtime has connected.
    pub fn was_connected(&self) -> bool {
        self.accept().is_some()
    }

    /// Accepts the runtime's connection and receives what it sent: the fd (SCM_RIGHTS)
    /// and the message that came with it. Panics if nothing comes in STATE_TIMEOUT.
    pub fn recv_master(&self) -> (std::os::fd::OwnedFd, Vec<u8>) {
        use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
        let mut stream = None;
        assert!(
            poll_until(STATE_TIMEOUT, || {
                stream = self.accept();
                stream.is_some()
            }),
            "nothing connected to the console socket"
        );
        let stream = stream.unwrap();
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(STATE_TIMEOUT)).unwrap();
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .expect("recvmsg on the console socket");
        let mut fds: Vec<OwnedFd> = Vec::new();
        for cmsg in msg.cmsgs().unwrap() {
            if let ControlMessageOwned::ScmRights(got) = cmsg {
                // SAFETY: SCM_RIGHTS installed these fds for us; nothing else owns them.
                fds.extend(
                    got.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        let n = msg.bytes;
        assert_eq!(fds.len(), 1, "expected exactly one fd, got {}", fds.len());
        (fds.pop().unwrap(), buf[..n].to_vec())
    }
}

/// What a pty master shows (with "\r\n" as "\n") until `until` appears, or, with None,
/// until no process holds the terminal any more. Panics after STATE_TIMEOUT.
pub fn read_pty(master: &std::os::fd::OwnedFd, until: Option<&str>) -> String {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    use std::os::fd::AsFd;
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        let text = String::from_utf8_lossy(&out).replace("\r\n", "\n");
        if until.is_some_and(|u| text.contains(u)) {
            return text;
        }
        assert!(
            start.elapsed() < STATE_TIMEOUT,
            "terminal output did not show {until:?} in time:\n{text}"
        );
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        if poll(&mut fds, PollTimeout::from(100u16)).unwrap_or(0) == 0 {
            continue;
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(master, &mut buf) {
            Ok(0) | Err(nix::errno::Errno::EIO) => {
                assert!(until.is_none(), "terminal closed before {until:?}:\n{text}");
                return text;
            }
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(nix::errno::Errno::EINTR | nix::errno::Errno::EAGAIN) => {}
            Err(e) => panic!("read the terminal: {e}"),
        }
    }
}

/// Types `text` into a pty master.
pub fn write_pty(master: &std::os::fd::OwnedFd, text: &str) {
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        let n = nix::unistd::write(master, rest).expect("write to the terminal");
        rest = &rest[n..];
    }
}

/// Runs the shell command line `cmd` on a terminal of its own under util-linux `script`,
/// with `input` typed into it: (exit status, what the terminal showed, "\r\n" as "\n").
/// Panics after RUNTIME_TIMEOUT (after killing it).
pub fn on_terminal(cmd: &str, input: &str) -> (Option<i32>, String) {
    use std::io::{Read, Write};
    let mut child = Command::new("script")
        .args(["-qec", cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("these tests need util-linux script");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stdout.read_to_end(&mut s);
        s
    });
    // Kept open until the end: an EOF would reach the terminal as one.
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    let exited = poll_until(RUNTIME_TIMEOUT, || matches!(child.try_wait(), Ok(Some(_))));
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    drop(stdin);
    let text = String::from_utf8_lossy(&reader.join().unwrap()).replace("\r\n", "\n");
    assert!(exited, "timed out on a terminal: {cmd}\n{text}");
    (status.code(), text)
}

// ---------------------------------------------------------------------------
// Terminals: shell command lines, tmux
// ---------------------------------------------------------------------------

/// How long a terminal session may take to show what a test waits for.
const TMUX_TIMEOUT: Duration = Duration::from_secs(60);

/// `arg` quoted for sh.
pub fn sh_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// A detached tmux server of a test's own (socket in its dir), running one command in a
/// window of a given size; killed on drop.
pub struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Runs `line` (then `echo exit=$?` and a wait, so its end stays readable) in a
    /// `cols`x`rows` window.
    pub fn start(dir: &Path, line: &str, cols: u16, rows: u16) -> Tmux {
        let t = Tmux {
            socket: dir.join("tmux.sock"),
        };
        let script = format!("{line}; echo exit=$?; sleep 60");
        let (x, y) = (cols.to_string(), rows.to_string());
        let out = t
            .cmd()
            .args(["new-session", "-d", "-s", "t", "-x", &x, "-y", &y, &script])
            .output()
            .expect("these tests need tmux");
        assert!(
            out.status.success(),
            "tmux: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.env("TERM", "xterm")
            .arg("-S")
            .arg(&self.socket)
            .args(["-f", "/dev/null"]);
        c
    }

    /// Types `keys` and Enter.
    pub fn type_line(&self, keys: &str) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "t", "-l", keys])
            .status()
            .is_ok_and(|s| s.success())
            && self
                .cmd()
                .args(["send-keys", "-t", "t", "Enter"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(ok, "tmux send-keys failed");
    }

    pub fn screen(&self) -> String {
        let out = self.cmd().args(["capture-pane", "-p", "-t", "t"]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// Waits until the screen contains `text`; returns the screen.
    pub fn wait_for_text(&self, text: &str) -> String {
        let mut screen = String::new();
        let seen = poll_until(TMUX_TIMEOUT, || {
            screen = self.screen();
            screen.contains(text)
        });
        assert!(seen, "{text:?} never showed on the terminal:\n{screen}");
        screen
    }

    /// (rows, columns) of the pane.
    pub fn size(&self) -> (u32, u32) {
        let out = self
            .cmd()
            .args([
                "display-message",
                "-p",
                "-t",
                "t",
                "#{pane_height} #{pane_width}",
            ])
            .output()
            .expect("tmux display-message");
        let s = String::from_utf8_lossy(&out.stdout);
        let v: Vec<u32> = s.split_whitespace().map(|v| v.parse().unwrap()).collect();
        (v[0], v[1])
    }

    /// Resizes the window (the program on it gets SIGWINCH).
    pub fn resize(&self, cols: u16, rows: u16) {
        let (x, y) = (cols.to_string(), rows.to_string());
        let ok = self
            .cmd()
            .args(["resize-window", "-t", "t", "-x", &x, "-y", &y])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "tmux resize-window failed");
    }

    /// Waits until the screen has a line that is exactly `line` (trimmed).
    pub fn wait_for_line(&self, line: &str) -> String {
        let mut screen = String::new();
        let seen = poll_until(TMUX_TIMEOUT, || {
            screen = self.screen();
            screen.lines().any(|l| l.trim() == line)
        });
        assert!(seen, "no line {line:?} on the terminal:\n{screen}");
        screen
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
    }
}
