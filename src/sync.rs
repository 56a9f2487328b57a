//! The parent <-> init protocol: small JSON messages over a SOCK_SEQPACKET socketpair
//! (one message per datagram, so no framing is needed). A datagram is at most
//! [`MAX_MSG`] bytes: an error message longer than that is cut in its middle, keeping what
//! failed (its start) and why (its end).

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

/// The largest datagram sent or accepted.
pub const MAX_MSG: usize = 64 * 1024;

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

/// `msg` as JSON of at most [`MAX_MSG`] bytes: an error too long for that is shortened
/// (never dropped), more for text that JSON escapes.
fn encode(msg: &Msg) -> Result<Vec<u8>> {
    let buf = serde_json::to_vec(msg)?;
    let Msg::Error { msg: text } = msg else {
        return Ok(buf);
    };
    let mut keep = MAX_MSG / 2;
    let mut buf = buf;
    while buf.len() > MAX_MSG {
        buf = serde_json::to_vec(&Msg::Error {
            msg: shorten(text, keep),
        })?;
        keep /= 2;
    }
    Ok(buf)
}

/// `text` cut to about `keep` bytes: its start and its end, with the middle replaced by a
/// note of how much was cut.
fn shorten(text: &str, keep: usize) -> String {
    if text.len() <= keep {
        return text.to_string();
    }
    let head = text.floor_char_boundary(keep / 2);
    let tail = text.ceil_char_boundary(text.len() - keep / 2);
    format!(
        "{}[...{} bytes cut...]{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<()> {
        let buf = encode(msg)?;
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
        // One byte more than a message may have: a longer one shows as such.
        let mut buf = vec![0u8; MAX_MSG + 1];
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
        if n > MAX_MSG {
            bail!("sync message longer than {MAX_MSG} bytes");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_errors_are_shortened_in_the_middle() {
        for text in [
            format!("start {} end", "x".repeat(200_000)),
            format!("start {} end", "\u{1}".repeat(200_000)),
            format!("start {} end", "é".repeat(100_000)),
        ] {
            let buf = encode(&Msg::Error { msg: text }).unwrap();
            assert!(buf.len() <= MAX_MSG, "{}", buf.len());
            let Msg::Error { msg } = serde_json::from_slice(&buf).unwrap() else {
                panic!("not an error");
            };
            assert!(msg.starts_with("start "), "{}", &msg[..20]);
            assert!(msg.ends_with(" end"));
            assert!(msg.contains("bytes cut"));
        }
        let short = Msg::Error {
            msg: "short".into(),
        };
        assert_eq!(encode(&short).unwrap(), serde_json::to_vec(&short).unwrap());
    }

    #[test]
    fn a_long_error_arrives_whole_enough() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::Error {
            msg: format!("what {} why", "y".repeat(100_000)),
        })
        .unwrap();
        let Msg::Error { msg } = b.recv("peer").unwrap() else {
            panic!("not an error");
        };
        assert!(msg.starts_with("what ") && msg.ends_with(" why"));
    }
}
