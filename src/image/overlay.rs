//! Bundles whose rootfs is an overlayfs mount: the image's layers, unpacked once in the
//! store, as read-only lower directories, and a per-bundle upper and work directory in
//! `BUNDLE/.overlay/`, beside `bundle.json`, the record `corten-image mount` re-mounts
//! from (the store and the layers, bottom first) after a reboot.
//!
//! The mount is made with mount(2), the lower directories named relative to the store's
//! `layers/` (the process's working directory for the call), which keeps the options
//! within the page the kernel copies; a longer list goes through fsconfig(2)'s
//! `lowerdir+`, one layer per call (kernel 6.8+).

use std::ffi::CString;
use std::fs::{self, File};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::mount::{MntFlags, MsFlags};
use serde::{Deserialize, Serialize};

use crate::sys;

/// Where a bundle keeps its overlay state.
pub const DIR: &str = ".overlay";

/// What `BUNDLE/.overlay/bundle.json` records, and the store's reference to the bundle
/// holds: enough to mount it again and to keep its layers in the store.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Record {
    /// The bundle directory (absolute).
    pub bundle: PathBuf,
    /// The store (absolute).
    pub store: PathBuf,
    /// The unpacked layers' names in the store's `layers/`, bottom first.
    pub layers: Vec<String>,
    pub reference: String,
    /// The image's manifest digest.
    pub manifest: String,
}

/// The paths of bundle `b`'s overlay.
pub struct Paths {
    pub rootfs: PathBuf,
    pub dir: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub record: PathBuf,
}

impl Paths {
    pub fn of(bundle: &Path) -> Paths {
        let dir = bundle.join(DIR);
        Paths {
            rootfs: bundle.join("rootfs"),
            upper: dir.join("upper"),
            work: dir.join("work"),
            record: dir.join("bundle.json"),
            dir,
        }
    }
}

/// Why this process can't make overlay bundles, if it can't: the store's layers carry
/// `trusted.overlay.*` xattrs, which only root of the initial user namespace may set.
pub fn unusable() -> Option<&'static str> {
    if !nix::unistd::geteuid().is_root() {
        return Some("overlay bundles need root");
    }
    let map = fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    let full = map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"];
    (!full).then_some("overlay bundles need root outside a user namespace")
}

/// Reads bundle `b`'s record; a directory without one is not an overlay bundle.
pub fn read_record(b: &Path) -> Result<Record> {
    let p = Paths::of(b).record;
    let bytes = match fs::read(&p) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "{} is not an overlay bundle of corten-image (no {DIR}/bundle.json)",
            b.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("read {}", p.display())),
    };
    serde_json::from_slice(&bytes).with_context(|| format!("parse {}", p.display()))
}

pub fn write_record(r: &Record) -> Result<()> {
    let p = Paths::of(&r.bundle).record;
    fs::write(&p, serde_json::to_string_pretty(r)? + "\n")
        .with_context(|| format!("write {}", p.display()))
}

/// Whether something is mounted on bundle `b`'s rootfs.
pub fn is_mounted(b: &Path) -> bool {
    match (fs::metadata(b), fs::metadata(b.join("rootfs"))) {
        (Ok(bm), Ok(rm)) => bm.dev() != rm.dev(),
        _ => false,
    }
}

/// Backslash before the characters overlayfs's option parser splits on.
fn escape(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for &b in path.as_os_str().as_bytes() {
        if matches!(b, b',' | b':' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// Mounts the overlay of `layers` (names in `layers_dir`, bottom first) on the rootfs of
/// bundle `b` (absolute), with its upper and work directories.
pub fn mount(layers_dir: &Path, layers: &[String], b: &Path) -> Result<()> {
    let p = Paths::of(b);
    if layers.is_empty() {
        bail!("an image without layers can't be an overlay");
    }
    let mut data = b"lowerdir=".to_vec();
    data.extend_from_slice(
        layers
            .iter()
            .rev()
            .cloned()
            .collect::<Vec<_>>()
            .join(":")
            .as_bytes(),
    );
    data.extend_from_slice(b",upperdir=");
    data.extend_from_slice(&escape(&p.upper));
    data.extend_from_slice(b",workdir=");
    data.extend_from_slice(&escape(&p.work));
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize;
    if data.len() < page {
        mount_relative(layers_dir, &p.rootfs, CString::new(data)?)
    } else {
        mount_fsconfig(layers_dir, layers, &p)
    }
    .with_context(|| format!("mount the overlay on {}", p.rootfs.display()))
}

/// mount(2) with the lower directories relative to `layers_dir`, the working directory
/// for the call (the process is single-threaded here).
fn mount_relative(layers_dir: &Path, rootfs: &Path, data: CString) -> Result<()> {
    let cwd = File::open(".").context("open the working directory")?;
    nix::unistd::chdir(layers_dir).with_context(|| format!("chdir {}", layers_dir.display()))?;
    let r = nix::mount::mount(
        Some("overlay"),
        rootfs,
        Some("overlay"),
        MsFlags::empty(),
        Some(data.as_c_str()),
    );
    nix::unistd::fchdir(&cwd).context("return to the working directory")?;
    r.context("mount(2) overlay")
}

/// fsopen(2) + fsconfig(2) `lowerdir+` per layer (no length limit; kernel 6.8+).
fn mount_fsconfig(layers_dir: &Path, layers: &[String], p: &Paths) -> Result<()> {
    let fs = sys::fsopen(c"overlay").context("fsopen overlay")?;
    let set = |key: &std::ffi::CStr, path: &Path| -> Result<()> {
        let v = CString::new(path.as_os_str().as_bytes())?;
        sys::fsconfig(fs.as_fd(), sys::FSCONFIG_SET_STRING, Some(key), Some(&v))
            .with_context(|| format!("fsconfig {} {}", key.to_string_lossy(), path.display()))
    };
    for l in layers.iter().rev() {
        set(c"lowerdir+", &layers_dir.join(l)).context(
            "too many layers for one mount(2) and no lowerdir+ (kernel 6.8+) to add them one by one",
        )?;
    }
    set(c"upperdir", &p.upper)?;
    set(c"workdir", &p.work)?;
    sys::fsconfig(fs.as_fd(), sys::FSCONFIG_CMD_CREATE, None, None).context("create overlay")?;
    let mnt = sys::fsmount(fs.as_fd(), 0).context("fsmount overlay")?;
    let onto = File::open(&p.rootfs).with_context(|| format!("open {}", p.rootfs.display()))?;
    sys::move_mount_onto(mnt.as_fd(), onto.as_fd()).context("move_mount the overlay")
}

/// Unmounts bundle `b`'s rootfs; false if nothing was mounted there.
pub fn umount(b: &Path) -> Result<bool> {
    if !is_mounted(b) {
        return Ok(false);
    }
    let rootfs = b.join("rootfs");
    nix::mount::umount2(&rootfs, MntFlags::empty())
        .with_context(|| format!("unmount {}", rootfs.display()))?;
    Ok(true)
}
