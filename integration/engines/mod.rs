//! corten under the real engines: containerd (through `ctr`), podman (through conmon) and
//! dockerd, each started by the test with everything in temporary directories, and cleaned
//! up (daemons, shims, leftover containers, cgroups, mounts) by Drop guards even when a test
//! fails. The engines come from Debian (hack/install-deps.sh): a missing one fails the test.
//! Images are made here from busybox-static, with no network.

#![allow(dead_code)]

mod containerd;
mod containerd_daemon;
mod cri;
mod cri_suite;
mod docker;
mod podman;
pub mod support;

pub use support::*;

// What the engines' test files take from here with `use super::*`.
use serde_json::json;

use crate::common::{Tmux, poll_until, runtime};
