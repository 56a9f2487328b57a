//! `state`: the runtime-spec state JSON of one container.

use std::path::Path;

use anyhow::Result;

use crate::container::{ContainerDir, spec_state};

pub fn state(root: &Path, id: &str) -> Result<serde_json::Value> {
    let dir = ContainerDir::open(root, id, false)?;
    let state = dir.load_existing()?;
    let mut v = spec_state(&state, dir.status(&state));
    // runc fills `owner` in `list` only; its `state` prints it empty.
    v["owner"] = "".into();
    Ok(v)
}
