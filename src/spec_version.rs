//! The version of the OCI runtime-spec corten implements: what `--version`, the features
//! document and the state JSON report, and the major version a bundle must have.

/// The runtime-spec version corten implements (printed by `--version` and `state`).
pub const OCI_VERSION: &str = "1.2.1";
