//! `start`: wake the parked init; returns once the user program has been exec'd and the
//! poststart hooks have run. A failing poststart hook is `start`'s error, and the container
//! is stopped and removed, as `delete` removes it (spec 1.3 goes on at "destroyed"; runc
//! destroys the container whose poststart hooks fail); `run --keep` keeps it, stopped.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::container::{ContainerDir, Status};

pub fn start(root: &Path, id: &str) -> Result<()> {
    start_with(root, id, false)
}

/// `start`; after a failing poststart hook the container is only stopped with `keep`.
pub fn start_with(root: &Path, id: &str, keep: bool) -> Result<()> {
    let dir = ContainerDir::open(root, id, true)?;
    let state = dir.load_existing()?;
    match dir.status(&state) {
        Status::Created => {}
        Status::Stopped => bail!("cannot start a container that has stopped"),
        Status::Running | Status::Paused => bail!("cannot start an already running container"),
        Status::Creating => bail!("cannot start a container that is still being created"),
    }
    let sock = dir.start_socket();
    let (dir_handle, addr) = dir.start_socket_addr()?;
    let mut conn =
        UnixStream::connect(&addr).with_context(|| format!("connect to {}", sock.display()))?;
    drop(dir_handle);
    // The init closes this connection by exec'ing (close-on-exec): EOF means the program
    // runs; anything written is the reason it could not.
    let mut reply = String::new();
    conn.read_to_string(&mut reply)
        .context("wait for the container process to start")?;
    let _ = std::fs::remove_file(&sock);
    if !reply.is_empty() {
        bail!("{reply}");
    }
    let Err(err) = crate::hooks::poststart(&state) else {
        return Ok(());
    };
    // `delete` takes the lock itself.
    drop(dir);
    let stopped = if keep {
        super::kill::signal_init(state.pid, state.pid_start, libc::SIGKILL)
    } else {
        super::delete::delete(root, id, true)
    };
    if let Err(e) = stopped {
        crate::log::warn(&format!("after the failed poststart hook: {e:#}"));
    }
    Err(err)
}
