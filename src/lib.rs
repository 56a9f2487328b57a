//! corten: an OCI runtime-spec container runtime, a drop-in replacement for runc.
//!
//! The `corten` binary is a thin clap front end; every decision lives in these modules so
//! that tests can reach it.

#![deny(clippy::undocumented_unsafe_blocks)]

pub mod args;
pub mod cgroups;
pub mod config;
pub mod console;
pub mod container;
pub mod criu;
pub mod default_spec;
pub mod error;
pub mod hooks;
pub mod idlist;
pub mod idmap;
pub mod idrange;
pub mod image;
pub mod init;
pub mod intelrdt;
pub mod log;
pub mod netdev;
pub mod numa;
pub mod output;
pub mod passwd;
pub mod pid;
pub mod relay;
pub mod runtime;
pub mod safepath;
pub mod sched;
pub mod seccomp;
pub mod selfprotect;
pub mod spec_version;
pub mod sync;
pub mod sys;
pub mod wait;
