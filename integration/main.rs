//! End-to-end integration tests for the `corten` OCI runtime.
//!
//! The runtime under test is `$CORTEN_TEST_RUNTIME` when set (e.g.
//! `CORTEN_TEST_RUNTIME=/usr/sbin/runc` to validate the suite against runc,
//! whose behaviour is the reference), otherwise the `corten` binary built by
//! cargo. The tests need root (namespaces, mounts, cgroups) and a static
//! busybox at /bin/busybox, which is copied into every test bundle.
//!
//! Every test builds its own bundle and `--root` directory in unique temporary
//! directories, and a `Container` guard force-deletes the container and removes
//! those directories even if the test panics, so the tests can run in parallel.

#![deny(clippy::undocumented_unsafe_blocks)]

mod cgroups;
mod cgroups_path;
mod checkpoint;
mod cli_input;
mod common;
mod engines;
mod errors;
mod escapes;
mod exec;
mod hooks;
mod image;
mod image_net;
mod image_resilience;
mod image_runflags;
mod image_support;
mod lifecycle;
mod procattrs;
mod process;
mod rootfs;
mod runc_parity;
mod seccomp;
mod spec_fields;
mod terminal;
mod userns;
mod uts;
