//! `run`: create + start, then (unless detached) wait for the container, forwarding
//! signals to it (or relaying its terminal), delete it, and exit with its status (128+N
//! for a signal). A failed start leaves nothing behind, unless --keep.

use std::path::Path;

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::create::{CreateOpts, create_with};

pub fn run(root: &Path, opts: &CreateOpts, detach: bool, keep: bool) -> Result<i32> {
    let created = create_with(root, opts, detach)?;
    let pid = created.pid;
    drop(created.dir);
    // The init sent its terminal before it reported ready.
    let started = created
        .relay
        .as_ref()
        .map(crate::console::recv_master)
        .transpose()
        .and_then(|master| super::start::start_with(root, &opts.id, keep).map(|()| master));
    let master = match started {
        Ok(m) => m,
        // As runc's: nothing is left after a failure, unless --keep.
        Err(e) => {
            if !keep {
                let _ = super::delete::delete(root, &opts.id, true);
            }
            return Err(e);
        }
    };
    if detach {
        return Ok(0);
    }
    let status = match master {
        Some(m) => super::relay::relay(m, pid)?,
        None => wait_forwarding(pid)?,
    };
    if !keep {
        super::delete::delete(root, &opts.id, true)?;
    }
    Ok(status)
}

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
pub(super) fn block_forwarded() -> Result<SigSet> {
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
pub(super) fn exit_status(child: Pid) -> Result<Option<i32>> {
    Ok(
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).context("wait for the container")? {
            WaitStatus::Exited(_, code) => Some(code),
            WaitStatus::Signaled(_, sig, _) => Some(128 + sig as i32),
            _ => None,
        },
    )
}
