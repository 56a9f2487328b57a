//! The `cgroup` mount inside the container: cgroup2 on a unified host; on v1 and hybrid
//! hosts a tmpfs with one cgroup mount per hierarchy (runc's layout).
//!
//! The hierarchies come from the parent's plan: inside a cgroup namespace, mountinfo shows
//! the host's cgroup mounts with roots like "/..", so the init must not rediscover them.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::Path;

use anyhow::{Context, Result};
use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;

use super::mounts::Options;
use crate::cgroups::{Cgroup, Dir};
use crate::safepath::{ensure_in_root, fd_path};

pub fn mount_cgroup(
    root: BorrowedFd,
    m: &Mount,
    opts: &Options,
    cgroupns: bool,
    cgroup: &Cgroup,
) -> Result<()> {
    let dest = m.destination();
    let flags = (opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT))
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    let target = ensure_in_root(root, dest, true)?;
    if let [only] = cgroup.dirs.as_slice()
        && only.hierarchy.v2
    {
        return mount_one(&target, only, flags, cgroupns, dest);
    }
    // v1/hybrid: a tmpfs to hold one directory per hierarchy, read-only once filled.
    mount(
        Some("tmpfs"),
        fd_path(&target).as_c_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .context("mount tmpfs")?;
    for (sub, dir) in cgroup.v1_mounts(dest) {
        let name = match sub.file_name() {
            Some(n) => n.to_string_lossy().into_owned(),
            None => continue,
        };
        let t = ensure_in_root(root, &sub, true)?;
        mount_one(&t, dir, flags, cgroupns, &sub)?;
        // Co-mounted controllers (cpu,cpuacct) are also reachable under each name.
        if name.contains(',') {
            for c in &dir.hierarchy.controllers {
                let link = dest.join(c);
                let (parent, base) = crate::safepath::split(&link)?;
                let pfd = crate::safepath::mkdir_all_in_root(root, parent, 0o755)?;
                let _ = nix::unistd::symlinkat(name.as_str(), pfd, base);
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let fd = super::mounts::reopen(root, dest, &target)?;
        super::mounts::setattr(&fd, crate::sys::MOUNT_ATTR_RDONLY, 0, false)?;
    }
    Ok(())
}

/// With a cgroup namespace, a fresh cgroup mount shows the container's own cgroup as its
/// root. Without one it would show the host's whole tree: bind the container's directory.
fn mount_one(
    target: &OwnedFd,
    dir: &Dir,
    flags: MsFlags,
    cgroupns: bool,
    dest: &Path,
) -> Result<()> {
    let t = fd_path(target);
    if cgroupns {
        let (fstype, data) = if dir.hierarchy.v2 {
            ("cgroup2", None)
        } else {
            ("cgroup", Some(dir.hierarchy.controllers.join(",")))
        };
        mount(
            Some(fstype),
            t.as_c_str(),
            Some(fstype),
            flags,
            data.as_deref(),
        )
        .with_context(|| format!("mount {fstype} on {}", dest.display()))
    } else {
        mount(
            Some(&dir.path),
            t.as_c_str(),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("bind {} on {}", dir.path.display(), dest.display()))
    }
}
