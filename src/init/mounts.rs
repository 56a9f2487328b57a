//! `mounts` entries: option parsing (runc's table) and mounting onto fds resolved inside
//! the rootfs.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::fcntl::{OFlag, ResolveFlag};
use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;

use crate::safepath::{self, ensure_in_root, fd_path, open_in_root_with};
use crate::sys::{self, MountAttr};

/// A mount entry's options, sorted into what each syscall needs.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    /// mount(2) flags (MS_RDONLY, MS_NOSUID, MS_BIND, MS_REC, ...).
    pub flags: MsFlags,
    /// Flags the entry explicitly clears (`rw`, `suid`, ...) — matter for bind remounts.
    pub clear: MsFlags,
    /// Propagation (MS_SHARED / MS_SLAVE / MS_PRIVATE / MS_UNBINDABLE, maybe | MS_REC).
    pub propagation: MsFlags,
    /// Recursive attributes (`rro`, `rnosuid`, ...) for mount_setattr(AT_RECURSIVE).
    pub rec_set: u64,
    pub rec_clr: u64,
    /// Everything else, passed to the filesystem as its data string.
    pub data: Vec<String>,
    /// `tmpcopyup`: a tmpfs starts with a copy of the directory it covers.
    pub copyup: bool,
}

impl Options {
    pub fn parse(opts: &[String]) -> Result<Options> {
        let mut o = Options {
            flags: MsFlags::empty(),
            clear: MsFlags::empty(),
            propagation: MsFlags::empty(),
            rec_set: 0,
            rec_clr: 0,
            data: Vec::new(),
            copyup: false,
        };
        for opt in opts {
            let opt = opt.as_str();
            if let Some((set, flag)) = flag_option(opt) {
                if set {
                    o.flags |= flag;
                    o.clear &= !flag;
                } else {
                    o.flags &= !flag;
                    o.clear |= flag;
                }
            } else if let Some(p) = propagation_option(opt) {
                o.propagation = p;
            } else if let Some((set, attr)) = recursive_option(opt) {
                if set {
                    o.rec_set |= attr;
                    o.rec_clr &= !attr;
                } else {
                    o.rec_clr |= attr;
                    o.rec_set &= !attr;
                }
                if attr & sys::MOUNT_ATTR__ATIME != 0 || attr == sys::MOUNT_ATTR_RELATIME {
                    o.rec_clr |= sys::MOUNT_ATTR__ATIME;
                }
            } else if matches!(opt, "idmap" | "ridmap") {
                // `create` made the mount id-mapped (crate::idmap).
            } else if opt == "tmpcopyup" {
                o.copyup = true;
            } else {
                o.data.push(opt.to_string());
            }
        }
        Ok(o)
    }

    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    /// The non-recursive mount attributes, for mount_setattr on a bind mount.
    fn attrs(&self) -> (u64, u64) {
        let map = [
            (MsFlags::MS_RDONLY, sys::MOUNT_ATTR_RDONLY),
            (MsFlags::MS_NOSUID, sys::MOUNT_ATTR_NOSUID),
            (MsFlags::MS_NODEV, sys::MOUNT_ATTR_NODEV),
            (MsFlags::MS_NOEXEC, sys::MOUNT_ATTR_NOEXEC),
            (MsFlags::MS_NODIRATIME, sys::MOUNT_ATTR_NODIRATIME),
            (
                MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
                sys::MOUNT_ATTR_NOSYMFOLLOW,
            ),
        ];
        let (mut set, mut clr) = (0, 0);
        for (flag, attr) in map {
            if self.flags.contains(flag) {
                set |= attr;
            } else if self.clear.contains(flag) {
                clr |= attr;
            }
        }
        for (flag, attr) in [
            (MsFlags::MS_NOATIME, sys::MOUNT_ATTR_NOATIME),
            (MsFlags::MS_STRICTATIME, sys::MOUNT_ATTR_STRICTATIME),
            (MsFlags::MS_RELATIME, sys::MOUNT_ATTR_RELATIME),
        ] {
            if self.flags.contains(flag) {
                set = (set & !sys::MOUNT_ATTR__ATIME) | attr;
                clr |= sys::MOUNT_ATTR__ATIME;
            }
        }
        (set, clr)
    }
}

/// Every mount option corten understands (`features` reports this list; a unit test keeps
/// it in step with the parser).
pub const KNOWN_OPTIONS: &[&str] = &[
    "defaults",
    "ro",
    "rw",
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "sync",
    "async",
    "dirsync",
    "remount",
    "mand",
    "nomand",
    "noatime",
    "atime",
    "nodiratime",
    "diratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "bind",
    "rbind",
    "silent",
    "loud",
    "iversion",
    "noiversion",
    "lazytime",
    "nolazytime",
    "nosymfollow",
    "symfollow",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "unbindable",
    "runbindable",
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnodiratime",
    "rdiratime",
    "rrelatime",
    "rnorelatime",
    "rnoatime",
    "ratime",
    "rstrictatime",
    "rnostrictatime",
    "rnosymfollow",
    "rsymfollow",
    "tmpcopyup",
    "idmap",
    "ridmap",
];

/// `name` → (sets?, flag) for plain mount(2) flags.
fn flag_option(name: &str) -> Option<(bool, MsFlags)> {
    use MsFlags as F;
    Some(match name {
        "defaults" => (true, F::empty()),
        "ro" => (true, F::MS_RDONLY),
        "rw" => (false, F::MS_RDONLY),
        "nosuid" => (true, F::MS_NOSUID),
        "suid" => (false, F::MS_NOSUID),
        "nodev" => (true, F::MS_NODEV),
        "dev" => (false, F::MS_NODEV),
        "noexec" => (true, F::MS_NOEXEC),
        "exec" => (false, F::MS_NOEXEC),
        "sync" => (true, F::MS_SYNCHRONOUS),
        "async" => (false, F::MS_SYNCHRONOUS),
        "dirsync" => (true, F::MS_DIRSYNC),
        "remount" => (true, F::MS_REMOUNT),
        "mand" => (true, F::MS_MANDLOCK),
        "nomand" => (false, F::MS_MANDLOCK),
        "noatime" => (true, F::MS_NOATIME),
        "atime" => (false, F::MS_NOATIME),
        "nodiratime" => (true, F::MS_NODIRATIME),
        "diratime" => (false, F::MS_NODIRATIME),
        "relatime" => (true, F::MS_RELATIME),
        "norelatime" => (false, F::MS_RELATIME),
        "strictatime" => (true, F::MS_STRICTATIME),
        "nostrictatime" => (false, F::MS_STRICTATIME),
        "bind" => (true, F::MS_BIND),
        "rbind" => (true, F::MS_BIND | F::MS_REC),
        "silent" => (true, F::MS_SILENT),
        "loud" => (false, F::MS_SILENT),
        "iversion" => (true, F::MS_I_VERSION),
        "noiversion" => (false, F::MS_I_VERSION),
        "lazytime" => (true, F::MS_LAZYTIME),
        "nolazytime" => (false, F::MS_LAZYTIME),
        "nosymfollow" => (true, F::from_bits_retain(libc::MS_NOSYMFOLLOW)),
        "symfollow" => (false, F::from_bits_retain(libc::MS_NOSYMFOLLOW)),
        _ => return None,
    })
}

/// Propagation options, as one value for mount(2).
pub fn propagation_option(name: &str) -> Option<MsFlags> {
    use MsFlags as F;
    Some(match name {
        "private" => F::MS_PRIVATE,
        "rprivate" => F::MS_PRIVATE | F::MS_REC,
        "shared" => F::MS_SHARED,
        "rshared" => F::MS_SHARED | F::MS_REC,
        "slave" => F::MS_SLAVE,
        "rslave" => F::MS_SLAVE | F::MS_REC,
        "unbindable" => F::MS_UNBINDABLE,
        "runbindable" => F::MS_UNBINDABLE | F::MS_REC,
        _ => return None,
    })
}

/// The mount options corten accepts on this kernel: the recursive attribute options
/// (`rro`, ...) need mount_setattr(2), so they are offered only where it exists.
pub fn supported_options() -> Vec<&'static str> {
    let recursive = sys::has_mount_setattr();
    KNOWN_OPTIONS
        .iter()
        .copied()
        .filter(|o| recursive || (recursive_option(o).is_none() && !o.ends_with("idmap")))
        .collect()
}

/// Recursive attribute options (`rro`, `rnosuid`, ...) → (sets?, MOUNT_ATTR_*).
fn recursive_option(name: &str) -> Option<(bool, u64)> {
    let rest = name.strip_prefix('r')?;
    let (set, flag) = flag_option(rest)?;
    let attr = match flag {
        f if f == MsFlags::MS_RDONLY => sys::MOUNT_ATTR_RDONLY,
        f if f == MsFlags::MS_NOSUID => sys::MOUNT_ATTR_NOSUID,
        f if f == MsFlags::MS_NODEV => sys::MOUNT_ATTR_NODEV,
        f if f == MsFlags::MS_NOEXEC => sys::MOUNT_ATTR_NOEXEC,
        f if f == MsFlags::MS_NODIRATIME => sys::MOUNT_ATTR_NODIRATIME,
        f if f == MsFlags::MS_NOATIME => sys::MOUNT_ATTR_NOATIME,
        f if f == MsFlags::MS_STRICTATIME => sys::MOUNT_ATTR_STRICTATIME,
        f if f == MsFlags::MS_RELATIME => sys::MOUNT_ATTR_RELATIME,
        f if f.bits() == libc::MS_NOSYMFOLLOW => sys::MOUNT_ATTR_NOSYMFOLLOW,
        _ => return None,
    };
    Some((set, attr))
}

/// Moves a bind made by `create` (crate::idmap: id-mapped, or any bind in a user
/// namespace) onto `m`'s destination, then applies its other options.
pub fn mount_detached(root: BorrowedFd, m: &Mount, bind: &crate::idmap::Prepared) -> Result<()> {
    let dest = m.destination();
    let mount = &bind.mount;
    let r = (|| -> Result<()> {
        let opts = Options::parse(m.options().as_deref().unwrap_or(&[]))?;
        let is_dir = nix::sys::stat::fstat(mount.as_fd())
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        let target = ensure_in_root(root, dest, is_dir)?;
        check_proc_mount(root, &target, "bind", Some(&bind.source))?;
        sys::move_mount_onto(mount.as_fd(), target.as_fd()).context("move_mount")?;
        let (set, clr) = opts.attrs();
        finish(root, dest, &target, set, clr, &opts)
    })();
    let what = if bind.idmapped {
        "id-mapped bind"
    } else {
        "bind"
    };
    r.with_context(|| format!("mount {what} on {}", dest.display()))
}

/// Mounts `m` (options already parsed: `opts`) inside the rootfs `root`: a bind, or a
/// filesystem of type `typ`; cgroup mounts go through `init::cgroupfs` instead.
pub fn do_mount(
    root: BorrowedFd,
    bundle: &Path,
    m: &Mount,
    opts: &Options,
    typ: &str,
) -> Result<()> {
    let dest = m.destination();
    if opts.is_bind() || typ == "bind" {
        let src = m.source().as_ref().context("a bind mount needs a source")?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            bundle.join(src)
        };
        let meta = std::fs::metadata(&src).with_context(|| format!("source {}", src.display()))?;
        let target = ensure_in_root(root, dest, meta.is_dir())?;
        check_proc_mount(root, &target, typ, Some(&src))?;
        let rec = opts.flags.contains(MsFlags::MS_REC);
        let flags = MsFlags::MS_BIND
            | if rec {
                MsFlags::MS_REC
            } else {
                MsFlags::empty()
            };
        mount(
            Some(&src),
            fd_path(&target).as_c_str(),
            None::<&str>,
            flags,
            None::<&str>,
        )?;
        let (set, clr) = opts.attrs();
        finish(root, dest, &target, set, clr, opts)?;
        return Ok(());
    }
    // The mode of the directory a tmpfs without mode= covers, when the image has one.
    let existing_mode = (typ == "tmpfs" && !opts.data.iter().any(|d| d.starts_with("mode=")))
        .then(|| open_in_root_with(root, dest, OFlag::O_PATH, ResolveFlag::empty()).ok())
        .flatten()
        .and_then(|fd| nix::sys::stat::fstat(fd.as_fd()).ok())
        .filter(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR)
        .map(|st| st.st_mode & 0o7777);
    // proc and sysfs must land on a real directory, never through a symlink (CVE-2019-16884).
    let target = if matches!(typ, "proc" | "sysfs") {
        refuse_symlink_leaf(root, dest, typ)?;
        safepath::mkdir_all_in_root(root, dest, 0o755).and_then(|_| {
            open_in_root_with(
                root,
                dest,
                OFlag::O_PATH | OFlag::O_DIRECTORY,
                ResolveFlag::RESOLVE_NO_SYMLINKS,
            )
        })
    } else {
        ensure_in_root(root, dest, true)
    }
    .with_context(|| format!("resolve {} in the rootfs", dest.display()))?;
    check_proc_mount(root, &target, typ, None)?;
    let source = m
        .source()
        .as_ref()
        .map(|s| s.as_os_str())
        .unwrap_or(typ.as_ref());
    let mut data = opts.data.join(",");
    if let Some(mode) = existing_mode {
        // A tmpfs over an image directory keeps that directory's mode (runc's rule).
        data = [data, format!("mode={mode:o}")]
            .into_iter()
            .filter(|d| !d.is_empty())
            .collect::<Vec<_>>()
            .join(",");
    }
    let mut flags = opts.flags & !(MsFlags::MS_REMOUNT);
    // tmpcopyup: keep a readable fd of the covered directory; the copy is made writable
    // and made read-only (if asked) once filled.
    let copyup = opts.copyup && typ == "tmpfs";
    let covered = if copyup {
        let fd = nix::fcntl::open(
            fd_path(&target).as_c_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .context("open the directory to copy up")?;
        flags.remove(MsFlags::MS_RDONLY);
        Some(fd)
    } else {
        None
    };
    match mount(
        Some(source),
        fd_path(&target).as_c_str(),
        Some(typ),
        flags,
        (!data.is_empty()).then_some(data.as_str()),
    ) {
        // A user namespace that does not own a network namespace may not mount sysfs:
        // bind the host's /sys instead, with the options as attributes (as runc does).
        Err(nix::errno::Errno::EPERM) if typ == "sysfs" => {
            mount(
                Some("/sys"),
                fd_path(&target).as_c_str(),
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .context("bind the host's /sys (sysfs is not allowed here)")?;
            let (set, clr) = opts.attrs();
            setattr(&reopen(root, dest, &target)?, set, clr, true)?;
        }
        r => r?,
    }
    if let Some(covered) = covered {
        let fd = reopen(root, dest, &target)?;
        let copy = nix::fcntl::open(
            fd_path(&fd).as_c_str(),
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .context("open the new tmpfs")?;
        super::copyup::copy_dir(covered.as_fd(), copy.as_fd()).context("tmpcopyup")?;
        if opts.flags.contains(MsFlags::MS_RDONLY) {
            setattr(&fd, sys::MOUNT_ATTR_RDONLY, 0, false)?;
        }
    }
    finish(root, dest, &target, 0, 0, opts)
}

/// Applies what a plain mount(2) can't: attributes on a fresh bind (non-recursive and
/// recursive) and propagation. Reopens `dest` so the fd names the new mount (made on
/// `target`).
fn finish(
    root: BorrowedFd,
    dest: &Path,
    target: &OwnedFd,
    set: u64,
    clr: u64,
    opts: &Options,
) -> Result<()> {
    if set == 0 && clr == 0 && opts.rec_set == 0 && opts.rec_clr == 0 && opts.propagation.is_empty()
    {
        return Ok(());
    }
    let fd = reopen(root, dest, target)?;
    if set != 0 || clr != 0 {
        setattr(&fd, set, clr, false)?;
    }
    if opts.rec_set != 0 || opts.rec_clr != 0 {
        setattr(&fd, opts.rec_set, opts.rec_clr, true)?;
    }
    if !opts.propagation.is_empty() {
        mount(
            None::<&str>,
            fd_path(&fd).as_c_str(),
            None::<&str>,
            opts.propagation,
            None::<&str>,
        )
        .context("set propagation")?;
    }
    Ok(())
}

/// Opens the mount just made on `target` (an O_PATH fd of the spot it was mounted on) by
/// resolving `dest` again, and checks that it really is that mount. Between the mount and
/// this lookup a process sharing the rootfs (another container with the same volume) may
/// have swapped a component of `dest` for a symlink: the lookup, though confined to the
/// rootfs, would then reach some other mount, which would get the attributes (`ro`!) while
/// ours stayed writable. Any such swap is an error.
pub fn reopen(root: BorrowedFd, dest: &Path, target: &OwnedFd) -> Result<OwnedFd> {
    let fd = safepath::open_in_root(root, dest, OFlag::O_PATH)
        .with_context(|| format!("reopen {}", dest.display()))?;
    let (id, parent) = (mount_id(&fd)?, mount_id(target)?);
    let at = std::fs::read_link(fd_path_str(target)).context("readlink the mount point")?;
    let at = escape_mountinfo(at.as_os_str().as_bytes());
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("read mountinfo")?;
    // "ID PARENT MAJ:MIN ROOT MOUNTPOINT ...": ours is a child of `target`'s mount, on it.
    // Split by hand, not by procfs's MountInfo: this runs in the init once per such mount,
    // over every line of the host's mountinfo, and procfs would build two option maps per
    // line for the three fields wanted here.
    let ours = info.lines().any(|l| {
        let f: Vec<&str> = l.splitn(6, ' ').collect();
        f.len() == 6 && f[0] == id && f[1] == parent && f[4].as_bytes() == at.as_slice()
    });
    if !ours {
        bail!(
            "{} changed while it was being mounted (a path component was swapped)",
            dest.display()
        );
    }
    Ok(fd)
}

/// The id of the mount `fd` is on ("mnt_id:" of /proc/self/fdinfo/N).
fn mount_id(fd: &OwnedFd) -> Result<String> {
    let path = format!("/proc/self/fdinfo/{}", fd.as_raw_fd());
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix("mnt_id:"))
        .map(|v| v.trim().to_string())
        .with_context(|| format!("no mnt_id in {path}"))
}

fn fd_path_str(fd: &OwnedFd) -> String {
    format!("/proc/self/fd/{}", fd.as_raw_fd())
}

/// A path as mountinfo writes it: space, tab, newline and backslash as octal escapes.
fn escape_mountinfo(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => out.extend_from_slice(format!("\\{b:03o}").as_bytes()),
            _ => out.push(b),
        }
    }
    out
}

/// Files under /proc that may be mount destinations: the ones lxcfs emulates (runc's list).
const PROC_MOUNTABLE: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
    "/proc/pressure/cpu",
    "/proc/pressure/io",
    "/proc/pressure/memory",
];

/// An image's symlink (dangling or not) where proc or sysfs goes is refused with runc's
/// words; a symlink higher up fails the RESOLVE_NO_SYMLINKS lookup after.
fn refuse_symlink_leaf(root: BorrowedFd, dest: &Path, typ: &str) -> Result<()> {
    let leaf = open_in_root_with(
        root,
        dest,
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
        ResolveFlag::empty(),
    );
    if let Ok(fd) = leaf
        && nix::sys::stat::fstat(fd.as_fd())
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFLNK)
    {
        bail!(
            "{} is a symlink in the rootfs: {typ} must be mounted on ordinary directory",
            dest.display()
        );
    }
    Ok(())
}

/// CVE-2019-19921 / CVE-2023-27561: the runtime later writes to the container's /proc
/// (oom_score_adj, sysctls, LSM attributes), so nothing may be mounted over it or inside it
/// where it could stand in for a procfs file. `target` is where the destination resolved
/// in the rootfs (through any symlink of the image), so this is checked on the real spot,
/// as runc's checkProcMount does: at /proc only a procfs (a new one, or a bind of a procfs
/// root); under /proc only the lxcfs files.
fn check_proc_mount(
    root: BorrowedFd,
    target: &OwnedFd,
    typ: &str,
    bind_src: Option<&Path>,
) -> Result<()> {
    let rootfs = std::fs::read_link(format!("/proc/self/fd/{}", root.as_raw_fd()))
        .context("readlink the rootfs")?;
    let at = std::fs::read_link(fd_path_str(target)).context("readlink the mount point")?;
    let Ok(rel) = at.strip_prefix(&rootfs) else {
        bail!("{} is outside the rootfs", at.display());
    };
    let in_root = Path::new("/").join(rel);
    let Ok(under) = in_root.strip_prefix("/proc") else {
        return Ok(());
    };
    if under.as_os_str().is_empty() {
        let procfs_root = |src: &Path| {
            nix::sys::statfs::statfs(src)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
                && std::fs::metadata(src).is_ok_and(|m| m.ino() == 1)
        };
        return match bind_src {
            None if typ == "proc" => Ok(()),
            Some(src) if procfs_root(src) => Ok(()),
            _ => bail!(
                "{} cannot be mounted on /proc: it is not a procfs",
                describe(typ, bind_src)
            ),
        };
    }
    if PROC_MOUNTABLE.iter().any(|p| Path::new(p) == in_root) {
        return Ok(());
    }
    bail!(
        "{} cannot be mounted on {}: it is inside /proc",
        describe(typ, bind_src),
        in_root.display()
    )
}

fn describe(typ: &str, bind_src: Option<&Path>) -> String {
    match bind_src {
        Some(src) => format!("bind of {}", src.display()),
        None => format!("{typ:?}"),
    }
}

/// mount_setattr on the mount `fd` is the root of.
pub fn setattr(fd: &OwnedFd, set: u64, clr: u64, recursive: bool) -> Result<()> {
    let attr = MountAttr {
        attr_set: set,
        attr_clr: clr,
        ..Default::default()
    };
    let mut flags = libc::AT_EMPTY_PATH as u32;
    if recursive {
        flags |= libc::AT_RECURSIVE as u32;
    }
    sys::mount_setattr(fd.as_raw_fd(), c"", flags, &attr).context("mount_setattr")
}

/// Bind-mounts the O_PATH `src` onto the O_PATH `dst` (both exact files, no lookup).
pub fn bind_fd(src: &OwnedFd, dst: &OwnedFd, recursive: bool) -> Result<()> {
    let flags = MsFlags::MS_BIND
        | if recursive {
            MsFlags::MS_REC
        } else {
            MsFlags::empty()
        };
    mount(
        Some(fd_path(src).as_c_str()),
        fd_path(dst).as_c_str(),
        None::<&str>,
        flags,
        None::<&str>,
    )
    .context("bind mount")?;
    Ok(())
}

/// Is /dev bind-mounted from the host? Then no device nodes are created in it.
pub fn binds_dev(mounts: &[Mount]) -> bool {
    mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && (m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Options {
        Options::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn sorts_options() {
        let o = parse(&["rbind", "ro", "nosuid", "rslave", "size=10k", "mode=755"]);
        assert!(o.flags.contains(
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        ));
        assert_eq!(o.propagation, MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(o.data, vec!["size=10k", "mode=755"]);
        let (set, clr) = o.attrs();
        assert_eq!(set, sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOSUID);
        assert_eq!(clr, 0);
    }

    #[test]
    fn later_options_win_and_rw_clears() {
        let o = parse(&["ro", "rw", "exec"]);
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        let (set, clr) = o.attrs();
        assert_eq!(set, 0);
        assert_eq!(clr, sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOEXEC);
    }

    #[test]
    fn recursive_attributes() {
        let o = parse(&["rbind", "rro", "rnoexec", "rnoatime"]);
        assert_eq!(
            o.rec_set,
            sys::MOUNT_ATTR_RDONLY | sys::MOUNT_ATTR_NOEXEC | sys::MOUNT_ATTR_NOATIME
        );
        assert_eq!(o.rec_clr, sys::MOUNT_ATTR__ATIME);
        assert!(o.data.is_empty());
    }

    #[test]
    fn known_options_are_all_understood() {
        for opt in KNOWN_OPTIONS {
            let o = Options::parse(&[opt.to_string()]).unwrap();
            assert!(
                o.data.is_empty(),
                "{opt} would be passed to the filesystem as data"
            );
        }
    }

    #[test]
    fn supported_options_keep_every_plain_option() {
        let supported = supported_options();
        for opt in KNOWN_OPTIONS {
            if recursive_option(opt).is_none() {
                assert!(supported.contains(opt), "{opt} dropped");
            }
        }
        // Every kernel corten is tested on has mount_setattr.
        assert!(supported.contains(&"rro"));
    }

    #[test]
    fn idmap_options_are_not_filesystem_data() {
        // create makes the mount id-mapped (crate::idmap); nothing reaches mount(2).
        let o = parse(&["rbind", "idmap", "ridmap"]);
        assert!(o.data.is_empty());
    }

    #[test]
    fn tmpcopyup_is_a_flag_not_data() {
        let o = parse(&["nosuid", "tmpcopyup", "mode=1777"]);
        assert!(o.copyup);
        assert_eq!(o.data, vec!["mode=1777"]);
    }
}
