//! `kill`: send a signal to the init (or, with --all, to every process of its cgroup; so
//! does SIGKILL to a container without a pid namespace of its own). "Its cgroup" is one
//! corten made, without its sub-cgroups: in a cgroup that existed before, only the init is
//! signalled, since the other members need not be the container's.
//! The pid is pinned with a pidfd and re-checked, so a recycled pid is never signalled.

use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::container::{ContainerDir, Status};
use crate::error::Error;
use crate::sys;

/// Parses "KILL", "SIGKILL", "kill", "9".
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        // 0 checks that the init is alive, as kill(2)'s.
        if (0..=64).contains(&n) {
            return Ok(n);
        }
        bail!("invalid signal {s:?}");
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rt) = name.strip_prefix("SIGRTMIN") {
        let base = libc::SIGRTMIN();
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.trim_start_matches('+').parse().unwrap_or(-1)
        };
        if (0..=libc::SIGRTMAX() - base).contains(&off) {
            return Ok(base + off);
        }
    }
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| anyhow::anyhow!("invalid signal {s:?}"))
}

pub fn kill(root: &Path, id: &str, signal: &str, all: bool) -> Result<()> {
    let sig = parse_signal(signal)?;
    let dir = ContainerDir::open(root, id, false)?;
    let state = dir.load_existing()?;
    let status = dir.status(&state);
    if sig == libc::SIGKILL
        && state.shared_pid_ns
        && let Some(cg) = &state.cgroup
    {
        // As runc: without a pid namespace of its own, the init's death leaves the others
        // running; they all go, even once the init is gone.
        if status != Status::Stopped {
            signal_init_if_alive(state.pid, state.pid_start, sig)?;
        }
        cg.signal_own(sig, state.pid);
        return Ok(());
    }
    // runc: -a (obsolete) makes a container that is no longer running no error.
    if status == Status::Stopped {
        if all {
            return Ok(());
        }
        return Err(Error::NOT_RUNNING.into());
    }
    // The init first (through its pidfd); with --all then every other pid of the cgroup,
    // where one that has exited meanwhile is no error.
    if !signal_init_if_alive(state.pid, state.pid_start, sig)? {
        if all {
            return Ok(());
        }
        return Err(Error::NOT_RUNNING.into());
    }
    if all && let Some(cg) = &state.cgroup {
        cg.signal_own(sig, state.pid);
    }
    Ok(())
}

/// Signals the init through a pidfd after checking it is still the same process.
pub fn signal_init(pid: i32, start: u64, sig: i32) -> Result<()> {
    if !signal_init_if_alive(pid, start, sig)? {
        return Err(Error::NOT_RUNNING.into());
    }
    Ok(())
}

/// `signal_init`; false when the init is gone.
fn signal_init_if_alive(pid: i32, start: u64, sig: i32) -> Result<bool> {
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(false),
        Err(e) => return Err(e).context("pidfd_open"),
    };
    if !crate::pid::process_alive(pid, start) {
        return Ok(false);
    }
    match sys::pidfd_send_signal(pidfd.as_fd(), sig) {
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        r => r
            .map(|()| true)
            .with_context(|| format!("send signal {sig} to pid {pid}")),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn signal_names_and_numbers() {
        assert_eq!(parse_signal("KILL").unwrap(), 9);
        assert_eq!(parse_signal("SIGTERM").unwrap(), 15);
        assert_eq!(parse_signal("hup").unwrap(), 1);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert_eq!(parse_signal("RTMIN+1").unwrap(), libc::SIGRTMIN() + 1);
        assert!(parse_signal("NOPE").is_err());
        assert_eq!(parse_signal("0").unwrap(), 0);
        assert!(parse_signal("-1").is_err());
        assert!(parse_signal("65").is_err());
    }
}
