//! The terminal of a process corten stays attached to (`run` and `exec` without -d and
//! without --console-socket): our stdin goes to the pty's master and its output to our
//! stdout, our window size follows SIGWINCH, and the other signals go to the process, until
//! it exits. Our stdin, when it is a terminal, is raw meanwhile (restored on every way out).

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::Signal;
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{SetArg, Termios, cfmakeraw, tcgetattr, tcsetattr};
use nix::unistd::Pid;

use crate::console;

/// After the process exits, its last output is read until the pty reports no writer, or
/// until it has been quiet this long (something else in the container may hold it open).
const DRAIN_QUIET: Duration = Duration::from_millis(200);

/// Relays `master` until `pid` (our child) exits; returns its status (128+N for signal N).
pub fn relay(master: OwnedFd, pid: i32) -> Result<i32> {
    let signals = crate::wait::block_forwarded()?;
    let signals = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .context("signalfd")?;
    let flags = fcntl(&master, FcntlArg::F_GETFL).context("fcntl the terminal")?;
    fcntl(
        &master,
        FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
    )
    .context("make the terminal non-blocking")?;
    let _raw = RawMode::enter()?;
    copy_size(master.as_fd());
    let mut r = Relay {
        master,
        pending: Vec::new(),
        stdin_open: true,
        master_open: true,
        stdout_ok: true,
    };
    let child = Pid::from_raw(pid);
    loop {
        if let Some(code) = crate::wait::exit_status(child)? {
            r.drain();
            return Ok(code);
        }
        r.poll_once(&signals, child)?;
    }
}

struct Relay {
    master: OwnedFd,
    /// Our input not yet taken by the pty (it is full while the process doesn't read).
    pending: Vec<u8>,
    stdin_open: bool,
    master_open: bool,
    stdout_ok: bool,
}

impl Relay {
    /// Waits for a signal, output, input or room for input, and handles what came.
    fn poll_once(&mut self, signals: &SignalFd, child: Pid) -> Result<()> {
        let stdin = std::io::stdin();
        let mut fds = vec![PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let master_at = self.master_open.then(|| {
            let mut ev = PollFlags::POLLIN;
            if !self.pending.is_empty() {
                ev |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(self.master.as_fd(), ev));
            fds.len() - 1
        });
        // New input only once the last has gone in: the pty is our buffer.
        let stdin_at = (self.stdin_open && self.pending.is_empty()).then(|| {
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => return Ok(()),
            r => r.context("poll the terminal")?,
        };
        let ready = |i: Option<usize>| {
            i.and_then(|i| fds[i].revents())
                .unwrap_or(PollFlags::empty())
        };
        let (master_ev, stdin_ev) = (ready(master_at), ready(stdin_at));
        drop(fds);
        while let Some(info) = signals.read_signal().context("read signalfd")? {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGWINCH) => copy_size(self.master.as_fd()),
                // Handled by the caller's exit check.
                Ok(Signal::SIGCHLD) | Err(_) => {}
                Ok(sig) => {
                    let _ = nix::sys::signal::kill(child, sig);
                }
            }
        }
        if master_ev.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            self.read_output();
        }
        if master_ev.contains(PollFlags::POLLOUT) {
            self.write_input();
        }
        if !stdin_ev.is_empty() {
            let mut buf = [0u8; 4096];
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) | Err(_) => self.stdin_open = false,
                Ok(n) => {
                    self.pending.extend_from_slice(&buf[..n]);
                    self.write_input();
                }
            }
        }
        Ok(())
    }

    /// Copies what the pty has to our stdout; notes when it has no writer left.
    fn read_output(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match nix::unistd::read(&self.master, &mut buf) {
                Ok(0) | Err(Errno::EIO) => {
                    self.master_open = false;
                    return;
                }
                Ok(n) => {
                    if self.stdout_ok {
                        // Our reader went away: keep reading, so the process never blocks.
                        self.stdout_ok = write_all(std::io::stdout().as_fd(), &buf[..n]).is_ok();
                    }
                }
                Err(Errno::EINTR) => {}
                Err(_) => return,
            }
        }
    }

    fn write_input(&mut self) {
        while !self.pending.is_empty() {
            match nix::unistd::write(&self.master, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => {
                    self.pending.clear();
                    self.stdin_open = false;
                }
            }
        }
    }

    /// The process has exited: its last output.
    fn drain(&mut self) {
        while self.master_open {
            let mut fds = [PollFd::new(self.master.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(DRAIN_QUIET).unwrap_or(PollTimeout::ZERO);
            match poll(&mut fds, timeout) {
                Ok(0) => return,
                Err(Errno::EINTR) => {}
                Err(_) => return,
                Ok(_) => self.read_output(),
            }
        }
    }
}

/// Writes all of `buf` to `fd`, waiting for room when it is non-blocking.
fn write_all(fd: BorrowedFd, mut buf: &[u8]) -> nix::Result<()> {
    while !buf.is_empty() {
        match nix::unistd::write(fd, buf) {
            Ok(n) => buf = &buf[n..],
            Err(Errno::EINTR) => {}
            Err(Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                poll(&mut fds, PollTimeout::NONE)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Gives the pty our window size: that of the first of our stdin, stdout and stderr that
/// is a terminal (none, or one without a size: the pty keeps process.consoleSize).
fn copy_size(master: BorrowedFd) {
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let ours = [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()];
    let size = ours.into_iter().find_map(|fd| console::winsize(fd).ok());
    if let Some(ws) = size.filter(|ws| ws.ws_row > 0 || ws.ws_col > 0) {
        let _ = console::set_winsize(master, &ws);
    }
}

/// Our stdin in raw mode while relaying (keys, ^C included, reach the process as typed);
/// the settings are restored on drop.
struct RawMode(Termios);

impl RawMode {
    fn enter() -> Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !nix::unistd::isatty(&stdin).unwrap_or(false) {
            return Ok(None);
        }
        let saved = tcgetattr(&stdin).context("read the settings of our terminal")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        // Output processing stays on (as runc keeps it): the container's terminal sends
        // bare "\n" (ONLCR cleared), which ours turns into "\r\n".
        raw.output_flags |= nix::sys::termios::OutputFlags::OPOST;
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("put our terminal in raw mode")?;
        Ok(Some(RawMode(saved)))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin(), SetArg::TCSANOW, &self.0);
    }
}
