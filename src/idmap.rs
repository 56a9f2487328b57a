//! ID-mapped bind mounts (`mounts[].uidMappings/gidMappings`, options `idmap`/`ridmap`):
//! made by `create` in the host's context, as detached mounts the init moves into place.
//!
//! Each mapping line is `containerID hostID size` as the spec gives it: an on-disk id
//! `containerID + n` of the source shows as `hostID + n` through the mount.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxIdMapping, Mount, Spec};

use crate::sys;

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// A detached id-mapped mount for the config's mount at `index`.
pub struct Prepared {
    pub index: usize,
    pub mount: OwnedFd,
}

/// Does the config ask for an id-mapped mount here?
fn wanted(m: &Mount) -> bool {
    let has = |v: &Option<Vec<LinuxIdMapping>>| v.as_ref().is_some_and(|v| !v.is_empty());
    has(m.uid_mappings())
        || has(m.gid_mappings())
        || options(m).any(|o| o == "idmap" || o == "ridmap")
}

fn options(m: &Mount) -> impl Iterator<Item = &str> {
    m.options().iter().flatten().map(String::as_str)
}

/// Makes every id-mapped mount the config asks for.
pub fn prepare(spec: &Spec, bundle: &Path) -> Result<Vec<Prepared>> {
    let mut out = Vec::new();
    for (index, m) in spec.mounts().iter().flatten().enumerate() {
        if !wanted(m) {
            continue;
        }
        let mount = prepare_one(m, bundle)
            .with_context(|| format!("id-mapped mount on {}", m.destination().display()))?;
        out.push(Prepared { index, mount });
    }
    Ok(out)
}

fn prepare_one(m: &Mount, bundle: &Path) -> Result<OwnedFd> {
    let (Some(uids), Some(gids)) = (
        m.uid_mappings().as_ref().filter(|v| !v.is_empty()),
        m.gid_mappings().as_ref().filter(|v| !v.is_empty()),
    ) else {
        bail!("it needs both uidMappings and gidMappings");
    };
    let bind =
        options(m).any(|o| o == "bind" || o == "rbind") || m.typ().as_deref() == Some("bind");
    if !bind {
        bail!("only bind mounts can be id-mapped (add the \"bind\" or \"rbind\" option)");
    }
    let src = m.source().as_ref().context("a bind mount needs a source")?;
    let src: PathBuf = if src.is_absolute() {
        src.clone()
    } else {
        bundle.join(src)
    };
    let userns = userns_with(uids, gids)?;
    let at = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(&src)
        .with_context(|| format!("open {}", src.display()))?;
    let tree = sys::open_tree_clone(at.as_fd(), options(m).any(|o| o == "rbind"))
        .with_context(|| format!("open_tree {}", src.display()))?;
    let flags = libc::AT_EMPTY_PATH as u32
        | if options(m).any(|o| o == "ridmap") {
            libc::AT_RECURSIVE as u32
        } else {
            0
        };
    let attr = sys::MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    sys::mount_setattr(tree.as_raw_fd(), c"", flags, &attr).with_context(|| {
        format!(
            "mount_setattr MOUNT_ATTR_IDMAP on {} (does its filesystem support id-mapped mounts?)",
            src.display()
        )
    })?;
    Ok(tree)
}

/// A user namespace with these maps, held by its fd: a child is cloned into a new user
/// namespace, its maps are written from here, and it exits once we hold the namespace.
fn userns_with(uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<OwnedFd> {
    let (hold_r, hold_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).context("pipe")?;
    // SAFETY: corten is single-threaded here; the child only blocks on a read and exits.
    let pid = unsafe { sys::fork_clone(libc::CLONE_NEWUSER) }.context("clone a user namespace")?;
    if pid == 0 {
        drop(hold_w);
        let mut b = [0u8; 1];
        let _ = nix::unistd::read(&hold_r, &mut b);
        // SAFETY: _exit in the child, no Rust cleanup wanted.
        unsafe { libc::_exit(0) }
    }
    drop(hold_r);
    let r = (|| -> Result<OwnedFd> {
        let lines = |v: &[LinuxIdMapping]| -> String {
            v.iter()
                .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
                .collect()
        };
        for (file, v) in [("uid_map", uids), ("gid_map", gids)] {
            let path = format!("/proc/{pid}/{file}");
            std::fs::write(&path, lines(v)).with_context(|| format!("write {path}"))?;
        }
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/user"))
            .context("open the mapping's user namespace")?;
        Ok(ns.into())
    })();
    drop(hold_w);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
    // The namespace outlives its last process while we hold the fd.
    r
}
