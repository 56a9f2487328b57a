//! `start`: wake the parked init; returns once the user program has been exec'd.

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::container::{ContainerDir, Status};

pub fn start(root: &Path, id: &str) -> Result<()> {
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
    crate::hooks::poststart(&state)
}
