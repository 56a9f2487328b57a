//! The parent <-> init protocol: small JSON messages over a SOCK_SEQPACKET socketpair
//! (one message per datagram, so no framing is needed).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use anyhow::{Context, Result, bail};
use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Msg {
    /// parent -> init: cgroups are placed (and id maps written); go on.
    Go,
    /// init -> parent: parked, waiting for `start`.
    Ready,
    /// init -> parent: setup failed; `msg` is the full cause chain.
    Error { msg: String },
    /// exec's joiner -> `corten exec`: the pid of the process it cloned; `corten exec` ->
    /// that process, when a seccomp agent is told its pid: the same pid.
    Pid { pid: i32 },
    /// init -> parent: mounts are made; run the prestart and createRuntime hooks.
    RunHooks,
    /// parent -> init: they ran; `pid` is the init's as the host sees it (for the state
    /// the init's own hooks get).
    HooksDone { pid: i32 },
}

pub struct Channel(OwnedFd);

/// A connected pair: one end for the parent, one for the init. Both close on exec.
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .context("socketpair")?;
    Ok((Channel(a), Channel(b)))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        let buf = serde_json::to_vec(msg)?;
        nix::unistd::write(self.0.as_fd(), &buf).context("write to sync socket")?;
        Ok(())
    }

    /// Receives one message; the peer closing its end is an error naming `peer`.
    pub fn recv(&self, peer: &str) -> Result<Msg> {
        match self.recv_or_eof()? {
            Some(m) => Ok(m),
            None => bail!("{peer} exited unexpectedly"),
        }
    }

    /// Receives one message, or None once every peer has closed its end.
    pub fn recv_or_eof(&self) -> Result<Option<Msg>> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut reset_seen = false;
        let n = loop {
            match nix::unistd::read(self.0.as_fd(), &mut buf) {
                Err(nix::errno::Errno::EINTR) => continue,
                // The peer exited with our message unread (a failed init never reads `Go`):
                // the kernel reports ECONNRESET once, then hands out what the peer sent.
                Err(nix::errno::Errno::ECONNRESET) if !reset_seen => {
                    reset_seen = true;
                    continue;
                }
                r => break r.context("read from sync socket")?,
            }
        };
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .context("malformed sync message")
    }

    pub fn raw_fd(&self) -> i32 {
        self.0.as_raw_fd()
    }

    /// Has the other end gone away (POLLHUP), without waiting?
    pub fn peer_closed(&self) -> bool {
        use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
        let mut fds = [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)];
        matches!(poll(&mut fds, PollTimeout::ZERO), Ok(n) if n > 0)
            && fds[0]
                .revents()
                .is_some_and(|r| r.contains(PollFlags::POLLHUP))
    }
}
