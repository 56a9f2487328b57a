//! Thin wrappers for the Linux syscalls that neither libc nor nix wrap yet
//! (the new mount API, pidfd_open, close_range). Each returns an `io::Result`.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x200000;

pub const FSCONFIG_SET_STRING: u32 = 1;
pub const FSCONFIG_CMD_CREATE: u32 = 6;

/// `struct mount_attr` from <linux/mount.h>.
#[repr(C)]
#[derive(Default)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

fn cvt(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Takes ownership of a new fd returned by a syscall.
fn owned(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = cvt(ret)? as RawFd;
    // SAFETY: the kernel just returned this fd to us and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// mount_setattr(2) on `dirfd`+`path` (use `c""` with AT_EMPTY_PATH for the fd itself).
pub fn mount_setattr(dirfd: RawFd, path: &CStr, flags: u32, attr: &MountAttr) -> io::Result<()> {
    // SAFETY: path is NUL-terminated and attr points to a live struct of the size we pass.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    cvt(ret).map(drop)
}

/// Whether the kernel has mount_setattr(2) (5.12+): probed with an invalid fd, which
/// fails with EBADF where the syscall exists and ENOSYS where it doesn't.
pub fn has_mount_setattr() -> bool {
    let attr = MountAttr::default();
    let err = mount_setattr(-1, c"", libc::AT_EMPTY_PATH as u32, &attr).err();
    err.and_then(|e| e.raw_os_error()) != Some(libc::ENOSYS)
}

/// fsopen(2).
pub fn fsopen(fstype: &CStr) -> io::Result<OwnedFd> {
    // SAFETY: fstype is NUL-terminated.
    owned(unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), libc::FSOPEN_CLOEXEC) })
}

/// fsconfig(2) with a string value, or a command when `value` is None.
pub fn fsconfig(
    fd: BorrowedFd,
    cmd: u32,
    key: Option<&CStr>,
    value: Option<&CStr>,
) -> io::Result<()> {
    let key = key.map_or(std::ptr::null(), CStr::as_ptr);
    let value = value.map_or(std::ptr::null(), CStr::as_ptr);
    // SAFETY: key and value are NUL-terminated or NULL, as fsconfig expects for cmd.
    cvt(unsafe { libc::syscall(libc::SYS_fsconfig, fd.as_raw_fd(), cmd, key, value, 0) }).map(drop)
}

/// fsmount(2): turns a configured fs context into a detached mount fd.
pub fn fsmount(fd: BorrowedFd, attr_flags: u64) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    owned(unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fd.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            attr_flags,
        )
    })
}

/// open_tree(2) with OPEN_TREE_CLONE on `fd` itself: a detached bind mount of exactly the
/// file `fd` is (no path lookup, no /proc needed), with its submounts when `recursive`.
pub fn open_tree_clone(fd: BorrowedFd, recursive: bool) -> io::Result<OwnedFd> {
    const OPEN_TREE_CLONE: libc::c_uint = 1;
    let mut flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: an empty NUL-terminated path with AT_EMPTY_PATH names `fd` itself.
    owned(unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) })
}

/// move_mount(2) of the detached mount `from` onto the file or directory `onto` (both fds).
pub fn move_mount_onto(from: BorrowedFd, onto: BorrowedFd) -> io::Result<()> {
    const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
    const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
    // SAFETY: empty NUL-terminated paths with the *_EMPTY_PATH flags name the fds themselves.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            c"".as_ptr(),
            onto.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    cvt(ret).map(drop)
}

/// clone(2) fork-style (no new stack: the child continues on a copy of the caller's) with
/// `flags` (SIGCHLD is added). Returns the child's pid, 0 in the child.
///
/// # Safety
/// The caller must be single-threaded: the child may then run arbitrary code.
pub unsafe fn fork_clone(flags: libc::c_int) -> io::Result<i32> {
    // SAFETY: no stack or tid pointers are passed; the caller guarantees single-threading.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as i32)
    }
}

/// Closes every fd >= `first` that is not close-on-exec. corten opens all its own fds
/// close-on-exec, so these are fds the caller leaked to us; the container's init is a fork
/// and would otherwise hold them while parked in `created` (CVE-2024-21626's class).
pub fn close_inherited_from(first: RawFd) -> io::Result<()> {
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: fcntl/close on an fd number; a stale number (the read_dir's own fd, now
        // closed) gives EBADF, which is ignored.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::close(fd);
            }
        }
    }
    Ok(())
}

/// pidfd_open(2).
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain integer arguments.
    owned(unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) })
}

/// pidfd_send_signal(2).
pub fn pidfd_send_signal(pidfd: BorrowedFd, sig: i32) -> io::Result<()> {
    // SAFETY: a NULL siginfo is allowed and means "as kill(2)".
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig,
            std::ptr::null::<u8>(),
            0,
        )
    };
    cvt(ret).map(drop)
}

/// Marks every fd from `first` up close-on-exec (close_range(2) with CLOSE_RANGE_CLOEXEC),
/// falling back to walking /proc/self/fd on kernels older than 5.11.
pub fn cloexec_from(first: RawFd) -> io::Result<()> {
    // SAFETY: plain integer arguments; no fd is closed, only flagged.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    let fds: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD on an fd number; a stale number (the read_dir fd) just fails.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// The id of the mount `fd` is on (statx STATX_MNT_ID, Linux 5.8), as /proc/*/mountinfo
/// numbers mounts.
pub fn mount_id(fd: BorrowedFd) -> io::Result<u64> {
    const STATX_MNT_ID: u32 = 0x1000;
    // SAFETY: an all-zero statx is a valid value of this plain C struct.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is open, the path is a NUL-terminated empty string with AT_EMPTY_PATH,
    // and `st` is a writable statx for the call.
    let r = unsafe {
        libc::statx(
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            STATX_MNT_ID,
            &mut st,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if st.stx_mask & STATX_MNT_ID == 0 {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    Ok(st.stx_mnt_id)
}

/// "no such file or directory": strerror text without the "(os error 2)" suffix and in
/// lower case, the form engines match on (podman maps it to exit 127, "permission denied"
/// to 126).
/// Running in a user namespace other than the initial one (runc's RunningInUserNS): our
/// uid map is not the identity of all ids (no /proc: taken as the initial one).
pub fn in_user_ns() -> bool {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    !map.trim().is_empty() && map.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"]
}

pub fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = match s.find(" (os error") {
        Some(i) => &s[..i],
        None => &s,
    };
    s.to_lowercase()
}
