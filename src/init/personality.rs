//! `linux.personality`: the execution domain (personality(2)), set just before exec.
//! Like runc, only the domain is applied: the spec defines no flag values, so flags are
//! ignored with a warning.

use anyhow::Result;
use oci_spec::runtime::{LinuxPersonality, LinuxPersonalityDomain};

const PER_LINUX: libc::c_ulong = 0x0000;
const PER_LINUX32: libc::c_ulong = 0x0008;

pub fn apply(p: &LinuxPersonality) -> Result<()> {
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        crate::log::warn(&format!(
            "linux.personality.flags {:?} ignored: no flag is supported",
            p.flags().as_deref().unwrap_or(&[])
        ));
    }
    let domain = match p.domain() {
        LinuxPersonalityDomain::PerLinux => PER_LINUX,
        LinuxPersonalityDomain::PerLinux32 => PER_LINUX32,
    };
    // SAFETY: personality takes and returns integers.
    if unsafe { libc::personality(domain) } == -1 {
        return Err(std::io::Error::last_os_error())
            .map_err(|e| anyhow::anyhow!("linux.personality: personality {}: {e}", p.domain()));
    }
    Ok(())
}
