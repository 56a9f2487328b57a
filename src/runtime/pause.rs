//! `pause` and `resume`: freeze and thaw every process of a running container.

use std::path::Path;

use anyhow::{Result, bail};

use crate::container::{ContainerDir, Status};
use crate::error::Error;

pub fn pause(root: &Path, id: &str) -> Result<()> {
    set(root, id, true)
}

pub fn resume(root: &Path, id: &str) -> Result<()> {
    set(root, id, false)
}

fn set(root: &Path, id: &str, frozen: bool) -> Result<()> {
    let dir = ContainerDir::open(root, id, true)?;
    let state = dir.load_existing()?;
    match (dir.status(&state), frozen) {
        (Status::Running, true) | (Status::Paused, false) => {}
        (Status::Paused, true) => bail!("container {id} is already paused"),
        (Status::Running, false) => bail!("container {id} is not paused"),
        (status, _) => {
            return Err(Error::NotRunning {
                id: Some(id.to_string()),
                status: Some(status.as_str()),
            }
            .into());
        }
    }
    let Some(cg) = &state.cgroup else {
        bail!("container {id} has no cgroup")
    };
    cg.set_frozen(frozen)
}
