//! `run`: create + start, then (unless detached) wait for the container, forwarding
//! signals to it, delete it, and exit with its status (128+N for a signal).

use anyhow::{Context, Result};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::create::{CreateOpts, create};

pub fn run(opts: &CreateOpts, detach: bool, keep: bool) -> Result<i32> {
    let created = create(opts)?;
    let pid = created.pid;
    drop(created.dir);
    if let Err(e) = super::start::start(opts.root, opts.id) {
        let _ = super::delete::delete(opts.root, opts.id, true);
        return Err(e);
    }
    if detach {
        return Ok(0);
    }
    let status = wait_forwarding(pid)?;
    if !keep {
        super::delete::delete(opts.root, opts.id, true)?;
    }
    Ok(status)
}

/// Waits for `pid` (our child), relaying SIGINT, SIGTERM and friends to it.
pub fn wait_forwarding(pid: i32) -> Result<i32> {
    let forwarded = [
        Signal::SIGHUP,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGTERM,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGCONT,
    ];
    let mut set = SigSet::empty();
    for s in forwarded {
        set.add(s);
    }
    set.add(Signal::SIGCHLD);
    set.thread_block().context("block signals")?;
    let child = Pid::from_raw(pid);
    loop {
        // The child may already be gone before we blocked SIGCHLD: check first.
        match waitpid(child, Some(WaitPidFlag::WNOHANG)).context("wait for the container")? {
            WaitStatus::Exited(_, code) => return Ok(code),
            WaitStatus::Signaled(_, sig, _) => return Ok(128 + sig as i32),
            _ => {}
        }
        let sig = set.wait().context("sigwait")?;
        if sig != Signal::SIGCHLD {
            let _ = nix::sys::signal::kill(child, sig);
        }
    }
}
