//! Path resolution inside a container's rootfs that never leaves it.
//!
//! Every lookup goes through openat2(2) with RESOLVE_IN_ROOT (".." and absolute symlinks are
//! clamped to the rootfs) and RESOLVE_NO_MAGICLINKS (no /proc/<pid>/fd/N jumps). Callers get
//! O_PATH fds and act on them (mount onto /proc/self/fd/N, mknodat, ...), so a component
//! swapped for a symlink after the check cannot redirect the operation (CVE-2021-30465).

use std::ffi::{CString, OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
use nix::sys::stat::{Mode, mkdirat};

/// Opens `path` (absolute or relative, taken as relative to `root`) inside `root`.
pub fn open_in_root(root: BorrowedFd, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    open_in_root_with(root, path, flags, ResolveFlag::empty())
}

/// Like [`open_in_root`] with extra RESOLVE_* flags (e.g. RESOLVE_NO_SYMLINKS).
pub fn open_in_root_with(
    root: BorrowedFd,
    path: &Path,
    flags: OFlag,
    extra: ResolveFlag,
) -> io::Result<OwnedFd> {
    let rel = relative(path);
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS | extra);
    loop {
        match openat2(root, rel.as_path(), how) {
            // openat2 asks for a retry when a rename raced the lookup.
            Err(Errno::EAGAIN) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// `path` without its leading `/`, "." for the root itself.
fn relative(path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| !matches!(c, Component::RootDir | Component::CurDir))
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

/// `path` with each symlink of the rootfs it passes through, dangling or not, replaced by
/// its target as if the rootfs were "/" (absolute targets start at the root, ".." stops
/// there); what does not exist is kept as written. So a missing mount destination behind
/// a dangling symlink is made where the link points, inside the rootfs (runc's
/// SecureJoin). The result is still only ever opened with RESOLVE_IN_ROOT.
pub fn resolve_in_root(root: BorrowedFd, path: &Path) -> io::Result<PathBuf> {
    // The kernel's limit on links followed in one lookup.
    const MAX_LINKS: usize = 40;
    let mut todo: Vec<OsString> = relative(path)
        .components()
        .rev()
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let mut done = PathBuf::new();
    let mut links = 0;
    while let Some(name) = todo.pop() {
        if name == ".." {
            done.pop();
            continue;
        }
        if name == "." {
            continue;
        }
        let next = done.join(&name);
        let Some(target) = read_symlink(root, &next) else {
            done = next;
            continue;
        };
        links += 1;
        if links > MAX_LINKS {
            return Err(Errno::ELOOP.into());
        }
        if target.is_absolute() {
            done = PathBuf::new();
        }
        todo.extend(
            target
                .components()
                .rev()
                .filter(|c| !matches!(c, Component::RootDir))
                .map(|c| c.as_os_str().to_owned()),
        );
    }
    Ok(done)
}

/// The target of `path` inside `root` if it is a symlink (its parent resolved in the root).
fn read_symlink(root: BorrowedFd, path: &Path) -> Option<PathBuf> {
    let fd = open_in_root_with(
        root,
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
        ResolveFlag::empty(),
    )
    .ok()?;
    // An O_PATH fd of a symlink with an empty path reads that link.
    nix::fcntl::readlinkat(fd.as_fd(), "")
        .ok()
        .map(PathBuf::from)
}

/// Creates every missing directory of `path` inside `root` (mode `mode`) and returns an
/// O_PATH fd of the final directory. Each existing prefix is resolved in the root, so a
/// symlink in the path is followed only within the rootfs; a dangling one is followed to
/// where it points there, which is created.
pub fn mkdir_all_in_root(root: BorrowedFd, path: &Path, mode: u32) -> io::Result<OwnedFd> {
    let dir = OFlag::O_PATH | OFlag::O_DIRECTORY;
    match open_in_root(root, path, dir) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        r => return r,
    }
    let path = resolve_in_root(root, path)?;
    let mut cur = root.try_clone_to_owned()?;
    let mut prefix = PathBuf::new();
    for comp in relative(&path).components() {
        let name = comp.as_os_str();
        prefix.push(name);
        match open_in_root(root, &prefix, dir) {
            Ok(fd) => cur = fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                // `name` is a plain component here: ".." and "." resolve, so never ENOENT.
                match mkdirat(cur.as_fd(), name, Mode::from_bits_truncate(mode)) {
                    Ok(()) => {}
                    // Exists, yet did not resolve: a symlink made since it was resolved.
                    Err(Errno::EEXIST) => {
                        return Err(io::Error::new(
                            io::ErrorKind::NotFound,
                            format!("{} is a dangling symlink", prefix.display()),
                        ));
                    }
                    Err(e) => return Err(e.into()),
                }
                cur = open_in_root(root, &prefix, dir)?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(cur)
}

/// Opens `path` inside `root` as O_PATH, creating it first if missing: a directory when
/// `dir`, else an empty regular file (parents are created as directories). A dangling
/// symlink on the way is followed inside the rootfs and its target created.
pub fn ensure_in_root(root: BorrowedFd, path: &Path, dir: bool) -> io::Result<OwnedFd> {
    if dir {
        return mkdir_all_in_root(root, path, 0o755);
    }
    match open_in_root(root, path, OFlag::O_PATH) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
        r => return r,
    }
    let path = resolve_in_root(root, path)?;
    let (parent, name) = split(&path)?;
    let parent_fd = mkdir_all_in_root(root, parent, 0o755)?;
    let flags = OFlag::O_CREAT | OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match nix::fcntl::openat(
        parent_fd.as_fd(),
        name,
        flags,
        Mode::from_bits_truncate(0o644),
    ) {
        Ok(_) | Err(Errno::EEXIST) => {}
        Err(e) => return Err(e.into()),
    }
    open_in_root(root, &path, OFlag::O_PATH)
}

/// Splits `path` into its parent and a final plain name; "/" and ".." endings are refused.
pub fn split(path: &Path) -> io::Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no final component",
        )),
    }
}

/// "/proc/self/fd/N": lets path-based syscalls (mount(2)) act on exactly the file `fd` holds.
pub fn fd_path(fd: &impl AsRawFd) -> CString {
    CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("no NUL in a number")
}

/// A `Path` as a C string (paths from JSON can't hold NUL, but say so if one does).
pub fn cstring(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("corten-safepath-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_are_clamped_to_the_root() {
        let base = tmpdir("clamp");
        let root = base.join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::create_dir_all(base.join("outside")).unwrap();
        std::os::unix::fs::symlink("/", root.join("escape")).unwrap();
        std::os::unix::fs::symlink("../../../outside", root.join("up")).unwrap();
        let rootfd = fs::File::open(&root).unwrap();
        let fd = mkdir_all_in_root(rootfd.as_fd(), Path::new("/escape/newdir"), 0o755).unwrap();
        drop(fd);
        assert!(root.join("newdir").is_dir(), "created inside the root");
        fs::create_dir(root.join("outside")).unwrap();
        ensure_in_root(rootfd.as_fd(), Path::new("up/file"), false).unwrap();
        assert!(
            root.join("outside/file").is_file(),
            "../ clamped at the root"
        );
        assert!(
            !base.join("outside/file").exists(),
            "nothing written outside the root"
        );
        fs::remove_dir_all(root.join("outside")).unwrap();
        // Dangling now: followed to where it points, inside the root, and made there.
        ensure_in_root(rootfd.as_fd(), Path::new("up/file"), false).unwrap();
        assert!(root.join("outside/file").is_file());
        assert!(!base.join("outside/file").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn dangling_symlinks_resolve_inside_the_root() {
        let base = tmpdir("dangling");
        let root = base.join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        let link = |target: &str, at: &str| std::os::unix::fs::symlink(target, root.join(at));
        link("/missing/deep", "abs").unwrap();
        link("../conf/app.conf", "etc/rel").unwrap();
        link("../../../../climb", "up").unwrap();
        link("abs/../other", "chain").unwrap();
        link("loop2", "loop1").unwrap();
        link("loop1", "loop2").unwrap();
        let rootfd = fs::File::open(&root).unwrap();
        let r = |p: &str| resolve_in_root(rootfd.as_fd(), Path::new(p));
        assert_eq!(r("/abs").unwrap(), PathBuf::from("missing/deep"));
        assert_eq!(r("/abs/x/../y").unwrap(), PathBuf::from("missing/deep/y"));
        assert_eq!(r("/etc/rel").unwrap(), PathBuf::from("conf/app.conf"));
        assert_eq!(r("/up/x").unwrap(), PathBuf::from("climb/x"));
        assert_eq!(r("/chain").unwrap(), PathBuf::from("missing/other"));
        assert_eq!(r("/etc/plain").unwrap(), PathBuf::from("etc/plain"));
        assert_eq!(r("/loop1").unwrap_err().raw_os_error(), Some(libc::ELOOP));
        ensure_in_root(rootfd.as_fd(), Path::new("/etc/rel"), false).unwrap();
        assert!(root.join("conf/app.conf").is_file());
        mkdir_all_in_root(rootfd.as_fd(), Path::new("/abs"), 0o755).unwrap();
        assert!(root.join("missing/deep").is_dir());
        mkdir_all_in_root(rootfd.as_fd(), Path::new("/up"), 0o755).unwrap();
        assert!(root.join("climb").is_dir());
        assert!(!base.join("climb").exists() && !Path::new("/climb").exists());
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn relative_strips_root() {
        assert_eq!(relative(Path::new("/")), PathBuf::from("."));
        assert_eq!(relative(Path::new("/a/./b")), PathBuf::from("a/b"));
    }
}
