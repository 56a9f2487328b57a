//! `linux.intelRdt`. The spec requires an error when no resctrl filesystem is mounted;
//! corten does not manage resctrl groups yet, so a config that asks for Intel RDT fails
//! at `create`, before anything exists, with a message saying which of the two it is.

use anyhow::{Result, bail};
use oci_spec::runtime::Spec;

/// The closID rule runc applies: a single directory name.
pub fn validate(spec: &Spec) -> Result<()> {
    let Some(rdt) = spec.linux().as_ref().and_then(|l| l.intel_rdt().as_ref()) else {
        return Ok(());
    };
    if let Some(id) = rdt.clos_id().as_deref()
        && (id == "." || id == ".." || id.contains('/'))
    {
        bail!("linux.intelRdt.closID {id:?} is not a valid directory name");
    }
    Ok(())
}

pub fn check_host(spec: &Spec) -> Result<()> {
    if spec
        .linux()
        .as_ref()
        .and_then(|l| l.intel_rdt().as_ref())
        .is_none()
    {
        return Ok(());
    }
    match resctrl_mount() {
        None => bail!("linux.intelRdt: the host has no resctrl filesystem mounted"),
        Some(at) => bail!(
            "linux.intelRdt: Intel RDT is not supported by corten yet (resctrl is mounted at {at})"
        ),
    }
}

/// Where resctrl is mounted in our mount namespace, if anywhere.
fn resctrl_mount() -> Option<String> {
    let mounts = procfs::process::Process::myself().ok()?.mountinfo().ok()?;
    mounts
        .into_iter()
        .find(|m| m.fs_type == "resctrl")
        .map(|m| m.mount_point.to_string_lossy().into_owned())
}
