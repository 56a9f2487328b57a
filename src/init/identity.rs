//! The process's identity: rlimits, capability sets, uid/gid/groups, no_new_privs, umask.
//! Order matters and follows runc: limits and the bounding set while still root, then keep
//! caps across setuid, then set E/P/I in one capset and raise the ambient set.

use std::collections::HashSet;

use anyhow::{Context, Result, bail};
use nix::sys::prctl;
use nix::sys::resource::{Resource, setrlimit};
use nix::unistd::{self, Gid, Uid};
use oci_spec::runtime::{Capability, LinuxCapabilities, PosixRlimit, PosixRlimitType, Process};

/// Applies rlimits, groups, uid/gid and capabilities, in that order.
pub fn apply(process: &Process) -> Result<()> {
    for rl in process.rlimits().iter().flatten() {
        set_rlimit(rl)?;
    }
    let caps = process.capabilities().as_ref();
    let last = last_cap();
    if let Some(caps) = caps {
        let keep = mask(caps.bounding().as_ref(), last);
        for cap in 0..=last {
            if keep & (1 << cap) == 0 {
                // SAFETY: prctl with integer arguments.
                if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } != 0
                {
                    return Err(std::io::Error::last_os_error())
                        .with_context(|| format!("drop capability {cap} from the bounding set"));
                }
            }
        }
    }
    let _ = prctl::set_keepcaps(true);
    set_user(process)?;
    let _ = prctl::set_keepcaps(false);
    let empty = LinuxCapabilities::default();
    let caps = caps.unwrap_or(&empty);
    let eff = mask(caps.effective().as_ref(), last);
    let prm = mask(caps.permitted().as_ref(), last);
    let inh = mask(caps.inheritable().as_ref(), last);
    capset(eff, prm, inh)?;
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    let amb = mask(caps.ambient().as_ref(), last);
    for cap in 0..=last {
        if amb & (1 << cap) != 0 {
            // SAFETY: prctl with integer arguments.
            let r = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            };
            // The kernel refuses a cap that is not also permitted and inheritable. runc's own
            // default config asks for such ambient caps, and runc skips them: so do we.
            if r != 0 {
                crate::log::debug(&format!(
                    "ambient capability {cap} not raised: {}",
                    std::io::Error::last_os_error()
                ));
            }
        }
    }
    if process.no_new_privileges().unwrap_or(false) {
        prctl::set_no_new_privs()
            .map_err(std::io::Error::from)
            .context("set no_new_privs")?;
    }
    Ok(())
}

fn set_user(process: &Process) -> Result<()> {
    let user = process.user();
    let (uid, gid) = (user.uid(), user.gid());
    let groups: Vec<u32> = user.additional_gids().clone().unwrap_or_default();
    // (uid_t)-1 means "leave unchanged" to the set*id calls: it is not an id one can be.
    if gid == u32::MAX || groups.contains(&u32::MAX) {
        bail!("setgid {gid}: 4294967295 is not a valid group id");
    }
    if uid == u32::MAX {
        bail!("setuid {uid}: 4294967295 is not a valid user id");
    }
    // A user namespace made by an unprivileged parent has setgroups denied (rootless):
    // then there is nothing to drop, and extra groups can't be had.
    let denied = std::fs::read_to_string("/proc/self/setgroups").is_ok_and(|s| s.trim() == "deny");
    if denied && !groups.is_empty() {
        bail!("additionalGids {groups:?} need setgroups(2), which this user namespace denies");
    }
    if !denied {
        let gids: Vec<Gid> = groups.iter().copied().map(Gid::from_raw).collect();
        unistd::setgroups(&gids)
            .map_err(std::io::Error::from)
            .with_context(|| format!("setgroups {groups:?}"))?;
    }
    let (g, u) = (Gid::from_raw(gid), Uid::from_raw(uid));
    unistd::setresgid(g, g, g)
        .map_err(std::io::Error::from)
        .with_context(|| format!("setgid {gid}"))?;
    unistd::setresuid(u, u, u)
        .map_err(std::io::Error::from)
        .with_context(|| format!("setuid {uid}"))?;
    Ok(())
}

/// The highest capability number this kernel knows.
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

/// A set of capabilities as a bit mask; names the kernel doesn't know are left out, as runc
/// does, so a config written for a newer kernel still runs.
pub fn mask(caps: Option<&HashSet<Capability>>, last: u32) -> u64 {
    let mut m = 0u64;
    for cap in caps.into_iter().flatten() {
        if let Some(n) = cap_number(cap)
            && n <= last
        {
            m |= 1 << n;
        }
    }
    m
}

/// The kernel's number for a capability (via the caps crate's table).
pub fn cap_number(cap: &Capability) -> Option<u32> {
    let name = format!("CAP_{cap}");
    name.parse::<caps::Capability>()
        .ok()
        .map(|c| c.index() as u32)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// One capset(2) for all three sets, so no intermediate state is ever invalid.
fn capset(eff: u64, prm: u64, inh: u64) -> Result<()> {
    const V3: u32 = 0x2008_0522;
    let hdr = CapHeader {
        version: V3,
        pid: 0,
    };
    let data = [
        CapData {
            effective: eff as u32,
            permitted: prm as u32,
            inheritable: inh as u32,
        },
        CapData {
            effective: (eff >> 32) as u32,
            permitted: (prm >> 32) as u32,
            inheritable: (inh >> 32) as u32,
        },
    ];
    // SAFETY: header and a two-element data array, the layout capset v3 expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const CapHeader, data.as_ptr()) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).context("capset");
    }
    Ok(())
}

fn set_rlimit(rl: &PosixRlimit) -> Result<()> {
    let resource = rlimit_resource(rl.typ());
    if rl.soft() > rl.hard() {
        bail!(
            "rlimit {}: soft limit {} is above hard limit {}",
            rl.typ(),
            rl.soft(),
            rl.hard()
        );
    }
    setrlimit(resource, rl.soft(), rl.hard())
        .map_err(std::io::Error::from)
        .with_context(|| {
            format!(
                "setrlimit {} (soft {}, hard {})",
                rl.typ(),
                rl.soft(),
                rl.hard()
            )
        })
}

fn rlimit_resource(t: PosixRlimitType) -> Resource {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => Resource::RLIMIT_CPU,
        RlimitFsize => Resource::RLIMIT_FSIZE,
        RlimitData => Resource::RLIMIT_DATA,
        RlimitStack => Resource::RLIMIT_STACK,
        RlimitCore => Resource::RLIMIT_CORE,
        RlimitRss => Resource::RLIMIT_RSS,
        RlimitNproc => Resource::RLIMIT_NPROC,
        RlimitNofile => Resource::RLIMIT_NOFILE,
        RlimitMemlock => Resource::RLIMIT_MEMLOCK,
        RlimitAs => Resource::RLIMIT_AS,
        RlimitLocks => Resource::RLIMIT_LOCKS,
        RlimitSigpending => Resource::RLIMIT_SIGPENDING,
        RlimitMsgqueue => Resource::RLIMIT_MSGQUEUE,
        RlimitNice => Resource::RLIMIT_NICE,
        RlimitRtprio => Resource::RLIMIT_RTPRIO,
        RlimitRttime => Resource::RLIMIT_RTTIME,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_from_names() {
        let set: HashSet<Capability> =
            [Capability::Chown, Capability::Kill, Capability::SysAdmin].into();
        assert_eq!(mask(Some(&set), 40), (1 << 0) | (1 << 5) | (1 << 21));
        assert_eq!(
            mask(Some(&set), 4),
            1,
            "caps past the kernel's last are dropped"
        );
        assert_eq!(mask(None, 40), 0);
    }

    #[test]
    fn rlimit_names_render_like_the_spec() {
        assert_eq!(PosixRlimitType::RlimitNofile.to_string(), "RLIMIT_NOFILE");
    }
}
