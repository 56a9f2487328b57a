//! `run`: create + start, then (unless detached) wait for the container, forwarding
//! signals to it (or relaying its terminal), delete it, and exit with its status (128+N
//! for a signal). A failed start leaves nothing behind, unless --keep.

use std::path::Path;

use anyhow::Result;

use super::create::{CreateOpts, create_with};
use crate::wait::wait_forwarding;

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
        Some(m) => crate::relay::relay(m, pid)?,
        None => wait_forwarding(pid)?,
    };
    if !keep {
        super::delete::delete(root, &opts.id, true)?;
    }
    Ok(status)
}
