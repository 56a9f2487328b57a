//! Waiting for a process corten is the parent of (`run` and `exec` without -d): the
//! signals it forwards to the process are blocked and waited for alongside SIGCHLD, and the
//! exit is turned into a status (its exit code, or 128+N for signal N). Without a terminal
//! [`wait_forwarding`] does it all; with one, `relay` waits the same way around its copying.

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Waits for `pid` (our child), relaying SIGINT, SIGTERM and friends to it.
pub fn wait_forwarding(pid: i32) -> Result<i32> {
    let set = block_forwarded()?;
    let child = Pid::from_raw(pid);
    loop {
        // The child may already be gone before we blocked SIGCHLD: check first.
        if let Some(code) = exit_status(child)? {
            return Ok(code);
        }
        let sig = set.wait().context("sigwait")?;
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
        }
    }
}

/// Blocks the signals passed on to the process, and SIGCHLD, so they can be waited for;
/// returns that set.
pub fn block_forwarded() -> Result<SigSet> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
        Signal::SIGCHLD,
    ] {
        set.add(s);
    }
    set.thread_block().context("block signals")?;
    Ok(set)
}

/// The status of `child` if it has exited: its exit code, or 128+N for signal N.
pub fn exit_status(child: Pid) -> Result<Option<i32>> {
    Ok(
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).context("wait for the container")? {
            WaitStatus::Exited(_, code) => Some(code),
            WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
            _ => None,
        },
    )
}
