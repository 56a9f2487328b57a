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
pub mod hooks;
pub mod idmap;
pub mod image;
pub mod init;
pub mod log;
pub mod output;
pub mod passwd;
pub mod runtime;
pub mod safepath;
pub mod seccomp;
pub mod selfprotect;
pub mod sync;
pub mod sys;
