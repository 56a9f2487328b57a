//! The `cgroup` mount inside the container: cgroup2 on a unified host; on v1 and hybrid
//! hosts a tmpfs with one cgroup mount per hierarchy (runc's layout).

use std::os::fd::BorrowedFd;
use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;

use super::mounts::Options;
use crate::cgroups;
use crate::safepath::{ensure_in_root, fd_path};

pub fn mount_cgroup(root: BorrowedFd, m: &Mount, opts: &Options, cgroupns: bool) -> Result<()> {
    let dest = m.destination();
    let flags = (opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT))
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    let hierarchies = cgroups::hierarchies()?;
    let unified_only = hierarchies.iter().all(|h| h.v2);
    if unified_only {
        let target = ensure_in_root(root, dest, true)?;
        return mount_cg(&target, "cgroup2", None, flags, cgroupns, dest);
    }
    // v1/hybrid: a tmpfs to hold one directory per hierarchy, read-only once filled.
    let target = ensure_in_root(root, dest, true)?;
    mount(
        Some("tmpfs"),
        fd_path(&target).as_c_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .context("mount tmpfs")?;
    for h in &hierarchies {
        let name = if h.v2 {
            "unified".to_string()
        } else {
            h.mount
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        if name.is_empty() {
            continue;
        }
        let sub = dest.join(&name);
        let t = ensure_in_root(root, &sub, true)?;
        if h.v2 {
            mount_cg(&t, "cgroup2", None, flags, cgroupns, &sub)?;
        } else {
            mount_cg(
                &t,
                "cgroup",
                Some(&h.controllers.join(",")),
                flags,
                cgroupns,
                &sub,
            )?;
        }
        // Co-mounted controllers (cpu,cpuacct) are also reachable under each name.
        if h.controllers.len() > 1 && !h.v2 && name.contains(',') {
            for c in &h.controllers {
                let link = dest.join(c);
                let (parent, base) = crate::safepath::split(&link)?;
                let pfd = crate::safepath::mkdir_all_in_root(root, parent, 0o755)?;
                let _ = nix::unistd::symlinkat(name.as_str(), pfd, base);
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let fd = super::mounts::reopen(root, dest)?;
        super::mounts::setattr(&fd, crate::sys::MOUNT_ATTR_RDONLY, 0, false)?;
    }
    Ok(())
}

/// With a cgroup namespace, a fresh cgroup mount shows the container's own cgroup as its
/// root. Without one it would show the host's tree, so bind the container's directory.
fn mount_cg(
    target: &std::os::fd::OwnedFd,
    fstype: &str,
    data: Option<&str>,
    flags: MsFlags,
    cgroupns: bool,
    dest: &Path,
) -> Result<()> {
    let t = fd_path(target);
    if cgroupns {
        mount(Some(fstype), t.as_c_str(), Some(fstype), flags, data)
            .with_context(|| format!("mount {fstype} on {}", dest.display()))
    } else {
        let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let host = cgroups::hierarchies()?;
        let h = host.iter().find(|h| {
            (fstype == "cgroup2" && h.v2)
                || (!h.v2 && Some(h.controllers.join(",").as_str()) == data)
        });
        let Some(h) = h else { return Ok(()) };
        let path = own_path(h, &own);
        let src = h.mount.join(path.trim_start_matches('/'));
        mount(
            Some(&src),
            t.as_c_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("bind {} on {}", src.display(), dest.display()))
    }
}

fn own_path(h: &cgroups::Hierarchy, proc_cgroup: &str) -> String {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let hit = if h.v2 {
            ctrls.is_empty()
        } else {
            let mut a: Vec<&str> = ctrls.split(',').collect();
            a.sort_unstable();
            let mut b: Vec<&str> = h.controllers.iter().map(String::as_str).collect();
            b.sort_unstable();
            a == b
        };
        if hit {
            return path.to_string();
        }
    }
    "/".to_string()
}
