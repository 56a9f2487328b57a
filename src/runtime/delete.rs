//! `delete`: remove a stopped (or, with --force, any) container. Works on whatever a
//! crashed `create` left: a state dir without state.json (if it holds only what `create`
//! makes), a half-made cgroup. The init is killed (its pid namespace takes the rest); only
//! what corten made of the cgroup is removed (see `cgroups`).

use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::cgroups::Cgroup;
use crate::container::{ContainerDir, Status};
use crate::error::Error;
use crate::sys;

pub fn delete(root: &Path, id: &str, force: bool) -> Result<()> {
    let dir = match ContainerDir::open(root, id, true) {
        Ok(d) => d,
        // containerd's shim calls `delete --force` on containers that are already gone.
        Err(e) if force && matches!(Error::of(&e), Some(Error::NoSuchContainer { .. })) => {
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let Some(mut state) = dir.load()? else {
        return dir.remove_leftover();
    };
    if let Some(cg) = &mut state.cgroup {
        // Before the init is killed: only a live init tells whose the unit is.
        crate::cgroups::systemd::adopt(cg, state.pid, state.pid_start);
    }
    match dir.status(&state) {
        Status::Stopped => {}
        // A created container has run nothing of the user's yet: runc deletes it too.
        Status::Created | Status::Creating => kill_and_wait(state.pid, state.cgroup.as_ref())?,
        _ if force => kill_and_wait(state.pid, state.cgroup.as_ref())?,
        status => {
            return Err(Error::NotStopped {
                id: id.to_string(),
                status: status.as_str(),
            }
            .into());
        }
    }
    if let Some(cg) = &mut state.cgroup {
        // Again once the init is gone: its scope is empty now.
        crate::cgroups::systemd::adopt(cg, state.pid, state.pid_start);
    }
    if let Some(before) = state.rootfs_mount_before {
        crate::container::detach_rootfs_mounts(&state.rootfs, before);
    }
    if let Some(cg) = &state.cgroup {
        if state.shared_pid_ns {
            // As runc's destroy: without a pid namespace of its own, what the init left
            // running goes too (only the members of a cgroup corten made).
            cg.signal_own(libc::SIGKILL, 0);
        }
        let left = cg.destroy();
        if !left.is_empty() {
            crate::log::warn(&format!("could not remove cgroup {}", left[0].display()));
        }
    }
    dir.remove()?;
    crate::hooks::poststop(&state);
    Ok(())
}

/// SIGKILL the init and wait (through a pidfd, it need not be our child) until it is gone.
/// A frozen cgroup is thawed first, or the kill would wait for a `resume`.
fn kill_and_wait(pid: i32, cgroup: Option<&Cgroup>) -> Result<()> {
    let pidfd = match sys::pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(e) => return Err(e).context("pidfd_open"),
    };
    match sys::pidfd_send_signal(pidfd.as_fd(), libc::SIGKILL) {
        Err(e) if e.raw_os_error() != Some(libc::ESRCH) => {
            return Err(e).context("kill the container init");
        }
        _ => {}
    }
    if let Some(cg) = cgroup {
        cg.thaw();
    }
    let mut fds = [PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(Duration::from_secs(10)).unwrap_or(PollTimeout::MAX);
    match poll(&mut fds, timeout) {
        Ok(0) => bail!("container init {pid} did not exit after SIGKILL"),
        Ok(_) => Ok(()),
        Err(e) => Err(e).context("wait for the container init to exit"),
    }
}
