//! `state`: the runtime-spec state JSON of one container.

use std::path::Path;

use anyhow::Result;

use crate::container::{ContainerDir, spec_state};

pub fn state(root: &Path, id: &str) -> Result<serde_json::Value> {
    let dir = ContainerDir::open(root, id, false)?;
    let state = dir.load_existing()?;
    Ok(spec_state(&state, dir.status(&state)))
}
