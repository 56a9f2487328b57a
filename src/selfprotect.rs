//! CVE-2019-5736: a process in the container must never be able to open the corten binary
//! for writing through /proc/<pid>/exe.
//!
//! The init (and, later, `exec`'s child) is a fork of the CLI, so its exe is whatever file
//! the CLI runs from. Commands that put a process into a container (create, run, exec)
//! first make sure that file is unwritable: if the binary already lives on a read-only
//! mount (or is a sealed memfd) nothing is done; otherwise the command re-execs itself once
//! from a private read-only overlayfs view of the binary's directory (a detached mount, in
//! no namespace, like runc 1.2), falling back to a sealed memfd copy. Writes through the
//! exe link then fail with EROFS / EPERM. Other commands never pay for this.
//!
//! A lower-only overlay needs two lower layers. The second one is the state root (a
//! directory of our mount namespace, as runc uses its own): kernels before 6.15 refuse a
//! detached mount as a layer ("overlayfs: failed to clone lowerpath", since
//! clone_private_mount() wants a mount of the caller's namespace), which is what Debian 12's
//! 6.1 did on every create. A detached empty tmpfs is the second choice (a state root that
//! overlaps the binary's directory), the memfd the last.

use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::sys;

/// Re-execs the current command from a protected copy unless already protected.
/// Returns only when no re-exec is needed (or possible: then it fails). `state_root` (made
/// if missing) serves as the overlay's empty-enough second layer.
pub fn ensure(state_root: &Path) -> Result<()> {
    let exe = nix::fcntl::open(
        "/proc/self/exe",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("open /proc/self/exe")?;
    if is_protected(exe.as_fd()) {
        return Ok(());
    }
    let target = match overlay_copy(Some(state_root)).or_else(|e| {
        crate::log::debug(&format!(
            "overlayfs over the state root unavailable ({e:#}), trying a detached tmpfs"
        ));
        overlay_copy(None)
    }) {
        Ok(fd) => fd,
        Err(e) => {
            crate::log::debug(&format!(
                "overlayfs protection unavailable ({e:#}), using a memfd copy"
            ));
            memfd_copy(exe.as_fd())?
        }
    };
    if !is_protected(target.as_fd()) {
        bail!("could not make a read-only copy of the corten binary");
    }
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .context("argument with a NUL byte")?;
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            CString::new(kv)
        })
        .collect::<Result<_, _>>()
        .context("environment with a NUL byte")?;
    let err = nix::unistd::execveat(
        target.as_fd(),
        c"",
        &args,
        &env,
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .unwrap_err();
    Err(err).context("re-exec the protected corten binary")
}

/// True when `fd` cannot be opened for writing by anyone: on a read-only mount, or a memfd
/// sealed against writes.
fn is_protected(fd: BorrowedFd) -> bool {
    if nix::sys::statvfs::fstatvfs(fd)
        .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
    {
        return true;
    }
    // SAFETY: F_GET_SEALS takes no pointer argument.
    let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
    seals >= 0 && seals & libc::F_SEAL_WRITE != 0 && seals & libc::F_SEAL_SEAL != 0
}

/// Opens our binary through a new read-only overlayfs whose top layer is the binary's
/// directory (so nothing in the second layer can shadow the binary). The mount is detached
/// (never attached anywhere), so nothing else sees it. The second layer is `second` or, if
/// None, an empty detached tmpfs (Linux 6.15 and later only).
fn overlay_copy(second: Option<&Path>) -> Result<OwnedFd> {
    let exe = std::fs::read_link("/proc/self/exe").context("readlink /proc/self/exe")?;
    let (Some(dir), Some(name)) = (exe.parent(), exe.file_name()) else {
        bail!("odd exe path {}", exe.display());
    };
    if exe.to_string_lossy().ends_with(" (deleted)") {
        bail!("the corten binary was deleted");
    }
    let mut lower = escape_lowerdir(dir.as_os_str().as_bytes());
    lower.push(b':');
    // Kept open until the overlay is made: its fd names the tmpfs layer.
    let _empty = match second {
        Some(path) => {
            std::fs::create_dir_all(path).with_context(|| format!("create {}", path.display()))?;
            lower.extend_from_slice(&escape_lowerdir(path.as_os_str().as_bytes()));
            None
        }
        None => {
            let empty = sys::fsopen(c"tmpfs").context("fsopen tmpfs")?;
            sys::fsconfig(empty.as_fd(), sys::FSCONFIG_CMD_CREATE, None, None)
                .context("create tmpfs")?;
            let empty =
                sys::fsmount(empty.as_fd(), sys::MOUNT_ATTR_RDONLY).context("fsmount tmpfs")?;
            lower.extend_from_slice(format!("/proc/self/fd/{}", empty.as_raw_fd()).as_bytes());
            Some(empty)
        }
    };
    let fs = sys::fsopen(c"overlay").context("fsopen overlay")?;
    let lower = CString::new(lower)?;
    sys::fsconfig(
        fs.as_fd(),
        sys::FSCONFIG_SET_STRING,
        Some(c"lowerdir"),
        Some(&lower),
    )
    .context("fsconfig lowerdir")?;
    // Layers on different file systems make the kernel log that it falls back to xino=off;
    // inode numbers don't matter here. Older kernels may not know the option: ignored.
    let _ = sys::fsconfig(
        fs.as_fd(),
        sys::FSCONFIG_SET_STRING,
        Some(c"xino"),
        Some(c"off"),
    );
    sys::fsconfig(fs.as_fd(), sys::FSCONFIG_CMD_CREATE, None, None).context("create overlay")?;
    let mnt = sys::fsmount(
        fs.as_fd(),
        sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NODEV | sys::MOUNT_ATTR_NOSUID,
    )
    .context("fsmount overlay")?;
    let name = CString::new(name.as_bytes())?;
    nix::fcntl::openat(
        mnt.as_fd(),
        name.as_c_str(),
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("open the binary in the overlay")
}

/// overlayfs option values escape ',' ':' and '\' with a backslash.
fn escape_lowerdir(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if matches!(b, b',' | b':' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// A sealed in-memory copy of the binary (costs a copy per command; the fallback).
fn memfd_copy(exe: BorrowedFd) -> Result<OwnedFd> {
    let name: &CStr = c"corten";
    let memfd = nix::sys::memfd::memfd_create(
        name,
        nix::sys::memfd::MFdFlags::MFD_CLOEXEC | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING,
    )
    .context("memfd_create")?;
    let len = nix::sys::stat::fstat(exe)
        .context("stat /proc/self/exe")?
        .st_size as usize;
    let mut copied = 0;
    while copied < len {
        let n = nix::sys::sendfile::sendfile(memfd.as_fd(), exe, None, len - copied)
            .context("copy the binary")?;
        if n == 0 {
            break;
        }
        copied += n;
    }
    let seals = libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
    // SAFETY: F_ADD_SEALS takes an integer argument.
    if unsafe { libc::fcntl(memfd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
        return Err(std::io::Error::last_os_error()).context("seal the memfd");
    }
    Ok(memfd)
}

#[cfg(test)]
mod tests {
    #[test]
    fn lowerdir_escapes() {
        assert_eq!(super::escape_lowerdir(b"/a,b:c\\d"), b"/a\\,b\\:c\\\\d");
    }
}
