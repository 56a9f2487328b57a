//! Bind mounts made by `create` in the host's context, as detached mounts the init moves
//! into place: id-mapped binds (`mounts[].uidMappings/gidMappings`, options
//! `idmap`/`ridmap`), and, for a container in a user namespace, every other bind: its
//! source may be reachable only by the host's root (a 0700 directory on the way), so it
//! is opened before the init is in the user namespace, as runc does.
//!
//! Each id-mapping line is `containerID hostID size` as the spec gives it: an on-disk id
//! `containerID + n` of the source shows as `hostID + n` through the mount. Each clone
//! gets the propagation the container's other mounts start with (rslave by default):
//! cloned from a shared host mount it would otherwise stay the host's peer, and mounts
//! made under it in the container would reach the host.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::mount::MsFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Mount, Spec};

use crate::sys;

const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// A detached bind mount for the config's mount at `index`.
pub struct Prepared {
    pub index: usize,
    pub mount: OwnedFd,
    /// The bind's source on the host.
    pub source: PathBuf,
    pub idmapped: bool,
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

fn is_bind(m: &Mount) -> bool {
    options(m).any(|o| o == "bind" || o == "rbind") || m.typ().as_deref() == Some("bind")
}

/// The bind's source, relative to the bundle when not absolute.
fn source(m: &Mount, bundle: &Path) -> Result<PathBuf> {
    let src = m.source().as_ref().context("a bind mount needs a source")?;
    Ok(if src.is_absolute() {
        src.clone()
    } else {
        bundle.join(src)
    })
}

/// Makes every id-mapped mount the config asks for and, in a user namespace, a clone of
/// every other bind's source; each gets `propagation`, the one the container's mounts
/// start with (`init::rootfs::initial_propagation`).
pub fn prepare(spec: &Spec, bundle: &Path, propagation: MsFlags) -> Result<Vec<Prepared>> {
    let userns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|v| v.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    // Without mount_setattr (before 5.12) the propagation can't be set: the init binds
    // by path, as before.
    let mut clone_binds = userns && sys::has_mount_setattr();
    let mut out = Vec::new();
    for (index, m) in spec.mounts().iter().flatten().enumerate() {
        let dest = m.destination().display();
        let (mount, source, idmapped) = if wanted(m) {
            let (mount, source) =
                prepare_one(m, bundle).with_context(|| format!("id-mapped mount on {dest}"))?;
            (mount, source, true)
        } else if clone_binds && is_bind(m) {
            let source = source(m, bundle).with_context(|| format!("mount bind on {dest}"))?;
            match clone_source(&source, options(m).any(|o| o == "rbind")) {
                Ok(mount) => (mount, source, false),
                // No CAP_SYS_ADMIN over our mount namespace (rootless): nothing can be
                // cloned, and the init reaches no less than we do. It binds by path.
                Err(e)
                    if e.downcast_ref::<std::io::Error>()
                        .and_then(|e| e.raw_os_error())
                        == Some(libc::EPERM) =>
                {
                    clone_binds = false;
                    continue;
                }
                Err(e) => return Err(e.context(format!("mount bind on {dest}"))),
            }
        } else {
            continue;
        };
        set_propagation(&mount, propagation)
            .with_context(|| format!("set the propagation of the bind on {dest}"))?;
        out.push(Prepared {
            index,
            mount,
            source,
            idmapped,
        });
    }
    Ok(out)
}

/// A detached clone of the mount at `src` (with its submounts when `recursive`).
fn clone_source(src: &Path, recursive: bool) -> Result<OwnedFd> {
    let at = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH)
        .open(src)
        .with_context(|| format!("source {}", src.display()))?;
    sys::open_tree_clone(at.as_fd(), recursive)
        .map_err(anyhow::Error::from)
        .map_err(|e| e.context(format!("open_tree {}", src.display())))
}

/// Sets `propagation` (MS_SLAVE, ...) on every mount of the detached tree `mount`.
fn set_propagation(mount: &OwnedFd, propagation: MsFlags) -> Result<()> {
    let attr = sys::MountAttr {
        propagation: (propagation & !MsFlags::MS_REC).bits(),
        ..Default::default()
    };
    let flags = libc::AT_EMPTY_PATH as u32 | libc::AT_RECURSIVE as u32;
    sys::mount_setattr(mount.as_raw_fd(), c"", flags, &attr).context("mount_setattr")
}

fn prepare_one(m: &Mount, bundle: &Path) -> Result<(OwnedFd, PathBuf)> {
    let (Some(uids), Some(gids)) = (
        m.uid_mappings().as_ref().filter(|v| !v.is_empty()),
        m.gid_mappings().as_ref().filter(|v| !v.is_empty()),
    ) else {
        bail!("it needs both uidMappings and gidMappings");
    };
    if !is_bind(m) {
        bail!("only bind mounts can be id-mapped (add the \"bind\" or \"rbind\" option)");
    }
    let src = source(m, bundle)?;
    let userns = userns_with(uids, gids)?;
    let tree = clone_source(&src, options(m).any(|o| o == "rbind"))?;
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
    Ok((tree, src))
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
