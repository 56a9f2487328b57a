//! The `tmpcopyup` mount option (a runc/crun extension podman uses for `--read-only` and
//! `--tmpfs`): a new tmpfs starts with a copy of what the directory it covers held.
//!
//! Everything goes through directory fds: the source is an fd of the covered directory
//! opened before the mount (lookups from it stay below the new mount), so no path is
//! resolved twice and no symlink of the image is followed.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use anyhow::{Context, Result};
use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{
    FchmodatFlags, FileStat, Mode, SFlag, fchmod, fchmodat, fstatat, mkdirat, mknodat,
};
use nix::unistd::{Gid, Uid, fchown, fchownat, symlinkat};

/// Copies the contents of directory `from` into directory `to` (both readable fds):
/// directories, regular files, symlinks and special files, with their modes and owners.
pub fn copy_dir(from: BorrowedFd, to: BorrowedFd) -> Result<()> {
    let dup = from
        .try_clone_to_owned()
        .context("dup the source directory")?;
    let mut dir = Dir::from_fd(dup).context("read the source directory")?;
    for entry in dir.iter() {
        let entry = entry.context("read the source directory")?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        copy_entry(from, to, name).with_context(|| format!("copy {}", name.to_string_lossy()))?;
    }
    Ok(())
}

fn copy_entry(from: BorrowedFd, to: BorrowedFd, name: &CStr) -> Result<()> {
    let st = fstatat(from, name, AtFlags::AT_SYMLINK_NOFOLLOW).context("stat")?;
    let kind = SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits());
    let perm = Mode::from_bits_truncate(st.st_mode & 0o7777);
    let nofollow = OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match kind {
        SFlag::S_IFDIR => {
            mkdirat(to, name, Mode::S_IRWXU).context("mkdir")?;
            let open_dir = |at: BorrowedFd| {
                openat(
                    at,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | nofollow,
                    Mode::empty(),
                )
            };
            let src = open_dir(from).context("open")?;
            let dst = open_dir(to).context("open the copy")?;
            copy_dir(src.as_fd(), dst.as_fd())?;
            set_owner_mode(&dst, &st, perm)
        }
        SFlag::S_IFREG => {
            let src =
                openat(from, name, OFlag::O_RDONLY | nofollow, Mode::empty()).context("open")?;
            let dst = openat(
                to,
                name,
                OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | nofollow,
                Mode::S_IRUSR | Mode::S_IWUSR,
            )
            .context("create the copy")?;
            let (mut src, mut dst) = (File::from(src), File::from(dst));
            std::io::copy(&mut src, &mut dst).context("copy the data")?;
            set_owner_mode(&OwnedFd::from(dst), &st, perm)
        }
        SFlag::S_IFLNK => {
            let target = readlinkat(from, name).context("readlink")?;
            symlinkat(target.as_os_str(), to, name).context("symlink")?;
            chown_at(to, name, &st)
        }
        // Devices, fifos and sockets: a node of the same kind (mknod does not follow).
        _ => {
            mknodat(to, name, kind, perm, st.st_rdev).context("mknod")?;
            chown_at(to, name, &st)?;
            fchmodat(to, name, perm, FchmodatFlags::FollowSymlink).context("chmod")
        }
    }
}

/// Owner first: chown clears the set-id bits that the mode then restores.
fn set_owner_mode(fd: &OwnedFd, st: &FileStat, perm: Mode) -> Result<()> {
    fchown(
        fd,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
    )
    .context("chown")?;
    fchmod(fd, perm).context("chmod")
}

/// The owner of `st` on `name` in `dir`, not following a symlink.
fn chown_at(dir: BorrowedFd, name: &CStr, st: &FileStat) -> Result<()> {
    fchownat(
        dir,
        name,
        Some(Uid::from_raw(st.st_uid)),
        Some(Gid::from_raw(st.st_gid)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .context("chown")
}
