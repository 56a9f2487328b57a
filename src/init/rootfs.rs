//! Building the container's filesystem view: private propagation, the rootfs bind, every
//! mount, devices, masked and read-only paths, then pivot_root (or chroot with --no-pivot).
//! Everything before the pivot works on fds resolved inside the rootfs.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::fcntl::OFlag;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknodat};
use nix::unistd::{Gid, Uid, fchownat, symlinkat};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use super::InitConfig;
use super::mounts::{self, bind_fd, propagation_option};
use crate::safepath::{self, fd_path, mkdir_all_in_root, open_in_root, split};
use crate::sys;

/// How the init builds the rootfs: what `create` handed it (`cfg`: the spec, bundle, rootfs
/// path, --no-pivot, the binds made by `create` and the cgroup) and what the init derived.
pub struct RootfsPlan<'a> {
    pub cfg: &'a InitConfig<'a>,
    /// No mount namespace of our own: the mounts are made in the runtime's (under a bind
    /// of the rootfs that `delete` detaches), the root entered by chroot, and nothing
    /// changes the propagation of the host's mounts.
    pub host_ns: bool,
    /// The container has a cgroup namespace (of its own or joined), for the `cgroup` mount.
    pub cgroupns: bool,
    /// process.cwd, created inside the rootfs when missing (as runc does).
    pub cwd: &'a Path,
    /// In a user namespace mknod is not allowed: devices are bind-mounted from the host.
    pub userns: bool,
    /// Called before a cgroup filesystem is mounted (the init must be in its cgroup).
    pub before_cgroup_mount: &'a dyn Fn() -> Result<()>,
    /// Called once the mounts and devices are made, before the paths are masked and the
    /// root pivoted (where runc runs the create hooks).
    pub before_pivot: &'a dyn Fn() -> Result<()>,
    /// Called once "/" is the container's root, before it may be made read-only (the
    /// terminal goes over /dev/console there).
    pub after_pivot: &'a dyn Fn() -> Result<()>,
}

/// Sets up the rootfs and pivots into it. Returns with "/" being the container's root.
pub fn setup(plan: &RootfsPlan) -> Result<()> {
    let spec = plan.cfg.spec;
    let linux = spec.linux().as_ref();
    let prop = initial_propagation(spec)?;
    if !plan.host_ns {
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            prop | MsFlags::MS_REC,
            None::<&str>,
        )
        .context("make / a slave mount")?;
        parent_mount_slave(plan.cfg.rootfs)?;
    }

    // The rootfs must be a mount point of its own for pivot_root (and, in the host's
    // namespace, to be detached with everything on it at delete).
    mount(
        Some(plan.cfg.rootfs),
        plan.cfg.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind mount rootfs {}", plan.cfg.rootfs.display()))?;
    let root = File::open(plan.cfg.rootfs)
        .with_context(|| format!("open rootfs {}", plan.cfg.rootfs.display()))?;
    let root = root.as_fd();

    let mount_list = spec.mounts().as_deref().unwrap_or(&[]);
    let label = super::lsm::mount_label(spec, super::lsm::Host::detect());
    for (i, m) in mount_list.iter().enumerate() {
        if matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2")) {
            (plan.before_cgroup_mount)()?;
        }
        if let Some(p) = plan.cfg.idmapped.iter().find(|p| p.index == i) {
            mounts::mount_detached(root, m, p)?;
            continue;
        }
        let m = super::lsm::label_mount(m, label);
        mount_entry(root, plan.cfg.bundle, &m, plan.cgroupns, plan.cfg.cgroup)?;
    }
    if !mounts::binds_dev(mount_list) {
        create_devices(
            root,
            linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]),
            plan.userns,
        )?;
        dev_symlinks(root)?;
    }
    (plan.before_pivot)()?;
    // Before readonlyPaths, which usually include /proc/sys (runc's order).
    for (key, value) in linux
        .and_then(|l| l.sysctl().as_ref())
        .into_iter()
        .flatten()
    {
        write_sysctl(root, key, value)?;
    }
    if let Some(paths) = linux.and_then(|l| l.masked_paths().as_ref()) {
        let null = host_dev_null()?;
        for p in paths {
            mask_path(root, Path::new(p), &null).with_context(|| format!("mask {p}"))?;
        }
    }
    for p in linux
        .and_then(|l| l.readonly_paths().as_ref())
        .into_iter()
        .flatten()
    {
        readonly_path(root, Path::new(p)).with_context(|| format!("make {p} read-only"))?;
    }
    mkdir_all_in_root(root, plan.cwd, 0o755)
        .with_context(|| format!("create cwd {} in the rootfs", plan.cwd.display()))?;
    if plan.host_ns {
        enter_by_chroot(root)?;
    } else if plan.cfg.no_pivot {
        hide_host_pseudo_fs(root)?;
        enter_by_move(root)?;
    } else {
        pivot(root)?;
    }
    (plan.after_pivot)()?;
    reopen_dev_null()?;
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let slash = File::open("/").context("open /")?;
        mounts::setattr(&OwnedFd::from(slash), sys::MOUNT_ATTR_RDONLY, 0, false)
            .context("make the root read-only")?;
    }
    // Shared or unbindable must also hold for the new root mount itself (slave and private
    // were set before the pivot and carried over). Only "/", never recursively: each
    // mount's own propagation option stays as the config gave it.
    if let Some(p) = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .filter(|_| !plan.host_ns)
    {
        let flag = propagation_option(p).unwrap_or(MsFlags::MS_SLAVE) & !MsFlags::MS_REC;
        if flag == MsFlags::MS_SHARED || flag == MsFlags::MS_UNBINDABLE {
            mount(None::<&str>, "/", None::<&str>, flag, None::<&str>)
                .context("set rootfs propagation")?;
        }
    }
    Ok(())
}

/// Stdio on the host's /dev/null (an engine's detached stdin) is pointed at the
/// container's own /dev/null, as runc's reOpenDevNull does: a file of the host's mounts
/// would otherwise stay open in the container, where CRIU cannot find it at checkpoint.
/// Without a /dev/null in the container nothing is changed.
fn reopen_dev_null() -> Result<()> {
    let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    else {
        return Ok(());
    };
    let null_st = nix::sys::stat::fstat(&null).context("fstat the container's /dev/null")?;
    if null_st.st_mode & libc::S_IFMT != libc::S_IFCHR {
        return Ok(());
    }
    // The null device, but not the container's file of it.
    let another_null = |fd: BorrowedFd| {
        nix::sys::stat::fstat(fd).is_ok_and(|st| {
            let same_dev =
                st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == null_st.st_rdev;
            let same_file = st.st_dev == null_st.st_dev && st.st_ino == null_st.st_ino;
            same_dev && !same_file
        })
    };
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    if another_null(stdin.as_fd()) {
        nix::unistd::dup2_stdin(&null).context("reopen stdin on the container's /dev/null")?;
    }
    if another_null(stdout.as_fd()) {
        nix::unistd::dup2_stdout(&null).context("reopen stdout on the container's /dev/null")?;
    }
    if another_null(stderr.as_fd()) {
        nix::unistd::dup2_stderr(&null).context("reopen stderr on the container's /dev/null")?;
    }
    Ok(())
}

/// Mounts one `mounts` entry inside the rootfs `root`. `bundle` anchors relative sources.
pub fn mount_entry(
    root: BorrowedFd,
    bundle: &Path,
    m: &Mount,
    cgroupns: bool,
    cgroup: &crate::cgroups::Cgroup,
) -> Result<()> {
    let dest = m.destination();
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = mounts::Options::parse(m.options().as_deref().unwrap_or(&[]))
        .with_context(|| format!("mount {}", dest.display()))?;
    if typ == "cgroup" || typ == "cgroup2" {
        return super::cgroupfs::mount_cgroup(root, m, &opts, cgroupns, cgroup)
            .with_context(|| format!("mount cgroup on {}", dest.display()));
    }
    let what = if typ.is_empty() || typ == "bind" {
        "bind"
    } else {
        typ
    };
    mounts::do_mount(root, bundle, m, &opts, typ)
        .with_context(|| format!("mount {what} on {}", dest.display()))
}

/// The propagation the container's mounts start with: rootfsPropagation, rslave when
/// unset, so nothing we mount propagates back to the host. Unbindable mounts could not be
/// bound to make the rootfs: those start as slaves, the new root is made unbindable after
/// the pivot.
pub fn initial_propagation(spec: &Spec) -> Result<MsFlags> {
    let prop = match spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().as_deref())
    {
        Some(p) => {
            propagation_option(p).with_context(|| format!("unknown rootfsPropagation {p:?}"))?
        }
        None => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    };
    Ok(if prop.contains(MsFlags::MS_UNBINDABLE) {
        MsFlags::MS_SLAVE
    } else {
        prop
    })
}

/// Makes the mount holding `rootfs` a slave (runc makes it private when shared): with
/// rootfsPropagation "shared" the rootfs bind would otherwise join its peer group, which
/// pivot_root refuses (EINVAL) and which would leak the container's mounts to the host. A
/// slave still receives the host's mounts, as "rslave" promises; a private mount stays
/// private. mount(2) answers EINVAL for a path that is not a mount point: walk up to one.
fn parent_mount_slave(rootfs: &Path) -> Result<()> {
    let mut path = rootfs;
    loop {
        match mount(
            None::<&str>,
            path,
            None::<&str>,
            MsFlags::MS_SLAVE,
            None::<&str>,
        ) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EINVAL) if path.parent().is_some() => {
                path = path.parent().unwrap_or(path);
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("make the mount of {} a slave", rootfs.display()));
            }
        }
    }
}

/// Writes a sysctl through the container's own /proc, refusing anything that is not procfs
/// or that takes a symlink on the way.
fn write_sysctl(root: BorrowedFd, key: &str, value: &str) -> Result<()> {
    let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    let fd = safepath::open_in_root_with(
        root,
        &path,
        OFlag::O_WRONLY,
        nix::fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS,
    )
    .with_context(|| format!("set sysctl {key}: open {}", path.display()))?;
    super::write_proc_fd(fd, value).with_context(|| format!("set sysctl {key}={value:?}"))
}

/// pivot_root(".", ".") then detach the old root: no temporary directory is needed.
fn pivot(root: BorrowedFd) -> Result<()> {
    let oldroot = nix::fcntl::open(
        "/",
        OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("open the old root")?;
    nix::unistd::fchdir(root).context("chdir to rootfs")?;
    nix::unistd::pivot_root(".", ".").context("pivot_root")?;
    // Work on the old root explicitly: made a slave (so the detach can't propagate to the
    // host) and detached. Recursing from the new root instead would turn every container
    // mount into a slave, undoing "shared" propagation options.
    nix::unistd::fchdir(&oldroot).context("chdir to the old root")?;
    mount(
        None::<&str>,
        ".",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("make old root a slave")?;
    umount2(".", MntFlags::MNT_DETACH).context("detach old root")?;
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// --no-pivot: move the rootfs over / and chroot (the old root stays reachable to
/// CAP_SYS_CHROOT holders, which is why it is not the default).
fn enter_by_chroot(root: BorrowedFd) -> Result<()> {
    nix::unistd::fchdir(root).context("chdir to rootfs")?;
    nix::unistd::chroot(".").context("chroot")?;
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// --no-pivot, before the move (runc's msMoveRoot): the host's full proc and sysfs mounts
/// stay in our mount namespace, out of the chroot's sight yet counted by the kernel, which
/// lets a nested user namespace mount a fresh, unmasked proc or sysfs as long as a fully
/// visible one exists (mnt_already_visible). Each one outside the rootfs is detached (its
/// propagation made slave first, so the host keeps its own), or covered with a tmpfs where
/// it can't be (locked in a user namespace).
fn hide_host_pseudo_fs(root: BorrowedFd) -> Result<()> {
    use std::os::fd::AsRawFd;
    let rootfs = std::fs::read_link(format!("/proc/self/fd/{}", root.as_raw_fd()))
        .context("resolve the rootfs path")?;
    let info =
        std::fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    for p in full_pseudo_fs_mounts(&info)
        .into_iter()
        .filter(|p| !p.starts_with(&rootfs))
    {
        let slave = MsFlags::MS_SLAVE | MsFlags::MS_REC;
        match mount(None::<&str>, &p, None::<&str>, slave, None::<&str>) {
            Ok(()) => {}
            // Gone with a mount detached before it, or no longer a mount point.
            Err(nix::errno::Errno::ENOENT | nix::errno::Errno::EINVAL) => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("make the host's {} a slave", p.display()));
            }
        }
        match umount2(&p, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EPERM) => {
                mount(
                    Some("tmpfs"),
                    &p,
                    Some("tmpfs"),
                    MsFlags::empty(),
                    None::<&str>,
                )
                .with_context(|| format!("cover the host's {} with a tmpfs", p.display()))?;
            }
            Err(e) => {
                return Err(e).with_context(|| format!("unmount the host's {}", p.display()));
            }
        }
    }
    Ok(())
}

/// The mount points of the proc and sysfs mounts in `mountinfo` that show their file
/// system's root (the ones that make a new mount of it "already visible").
fn full_pseudo_fs_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| procfs::process::MountInfo::from_line(line).ok())
        .filter(|m| m.root == "/" && matches!(m.fs_type.as_str(), "proc" | "sysfs"))
        // procfs leaves the octal escapes of the path in place.
        .map(|m| PathBuf::from(crate::cgroups::unescape(&m.mount_point.to_string_lossy())))
        .collect()
}

fn enter_by_move(root: BorrowedFd) -> Result<()> {
    nix::unistd::fchdir(root).context("chdir to rootfs")?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
        .context("move rootfs to /")?;
    nix::unistd::chroot(".").context("chroot")?;
    nix::unistd::chdir("/").context("chdir /")?;
    Ok(())
}

/// The devices every container gets, as runc gives them.
fn default_devices() -> Vec<(PathBuf, LinuxDeviceType, i64, i64)> {
    use LinuxDeviceType::C;
    [
        ("null", 1, 3),
        ("zero", 1, 5),
        ("full", 1, 7),
        ("random", 1, 8),
        ("urandom", 1, 9),
        ("tty", 5, 0),
    ]
    .into_iter()
    .map(|(n, maj, min)| (PathBuf::from("/dev").join(n), C, maj, min))
    .collect()
}

fn create_devices(root: BorrowedFd, extra: &[LinuxDevice], bind: bool) -> Result<()> {
    for (path, typ, major, minor) in default_devices() {
        if extra.iter().any(|d| d.path() == &path) {
            continue;
        }
        if bind {
            bind_host_device(root, &path)
        } else {
            mknod_in_root(root, &path, typ, major, minor, 0o666, 0, 0)
        }
        .with_context(|| format!("create device {}", path.display()))?;
    }
    // Anywhere in the rootfs, as runc allows (config validation wants absolute paths).
    for d in extra {
        if bind {
            bind_host_device(root, d.path())
                .with_context(|| format!("create device {}", d.path().display()))?;
            continue;
        }
        let mode = d.file_mode().unwrap_or(0o666);
        mknod_in_root(
            root,
            d.path(),
            d.typ(),
            d.major(),
            d.minor(),
            mode,
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
        )
        .with_context(|| format!("create device {}", d.path().display()))?;
    }
    Ok(())
}

/// Bind-mounts the host's device node at `path` onto an empty file at the same path in the
/// rootfs (a user namespace may not mknod), as runc does. The host node is opened without
/// following a symlink and must be a device.
fn bind_host_device(root: BorrowedFd, path: &Path) -> Result<()> {
    let host = nix::fcntl::open(
        path,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("open the host's {}", path.display()))?;
    let st = nix::sys::stat::fstat(host.as_fd()).context("fstat")?;
    if !matches!(st.st_mode & libc::S_IFMT, libc::S_IFCHR | libc::S_IFBLK) {
        bail!("the host's {} is not a device", path.display());
    }
    let target = safepath::ensure_in_root(root, path, false)
        .with_context(|| format!("create {} in the rootfs", path.display()))?;
    bind_fd(&host, &target, false)
}

#[allow(clippy::too_many_arguments)]
fn mknod_in_root(
    root: BorrowedFd,
    path: &Path,
    typ: LinuxDeviceType,
    major: i64,
    minor: i64,
    mode: u32,
    uid: u32,
    gid: u32,
) -> Result<()> {
    let kind = match typ {
        LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        LinuxDeviceType::A => bail!("device type \"a\" is only valid in cgroup rules"),
    };
    let (parent, name) = split(path)?;
    let dir = mkdir_all_in_root(root, parent, 0o755)?;
    let dev = makedev(major as u64, minor as u64);
    match mknodat(
        dir.as_fd(),
        name,
        kind,
        Mode::from_bits_truncate(mode & 0o7777),
        dev,
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) => {
            // Something is there already: replace it only if it is not the same device.
            let fd = safepath::open_in_root_with(
                root,
                path,
                OFlag::O_PATH | OFlag::O_NOFOLLOW,
                nix::fcntl::ResolveFlag::empty(),
            )?;
            let st = nix::sys::stat::fstat(fd.as_fd())?;
            if st.st_rdev == dev && (st.st_mode & libc::S_IFMT) == kind.bits() {
                return Ok(());
            }
            nix::unistd::unlinkat(dir.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir)?;
            mknodat(
                dir.as_fd(),
                name,
                kind,
                Mode::from_bits_truncate(mode & 0o7777),
                dev,
            )?;
        }
        Err(e) => return Err(e).context("mknod"),
    }
    // mknod is subject to the umask; set the exact mode and owner.
    nix::sys::stat::fchmodat(
        dir.as_fd(),
        name,
        Mode::from_bits_truncate(mode & 0o7777),
        nix::sys::stat::FchmodatFlags::NoFollowSymlink,
    )
    .or_else(|e| {
        if e == nix::errno::Errno::EOPNOTSUPP {
            Ok(())
        } else {
            Err(e)
        }
    })
    .context("chmod")?;
    fchownat(
        dir.as_fd(),
        name,
        Some(Uid::from_raw(uid)),
        Some(Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .context("chown")?;
    Ok(())
}

fn dev_symlinks(root: BorrowedFd) -> Result<()> {
    let dev = mkdir_all_in_root(root, Path::new("/dev"), 0o755)?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    for (target, name) in links {
        if name == "ptmx" {
            // A ptmx node from the image would bypass the container's devpts instance.
            let _ =
                nix::unistd::unlinkat(dev.as_fd(), name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        }
        match symlinkat(target, dev.as_fd(), name) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(e).with_context(|| format!("symlink /dev/{name}")),
        }
    }
    Ok(())
}

/// The host's /dev/null, checked to be the real device (never a file or link an attacker
/// planted), used as the source of every file mask.
fn host_dev_null() -> Result<OwnedFd> {
    let fd = nix::fcntl::open(
        "/dev/null",
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .context("open /dev/null")?;
    let st = nix::sys::stat::fstat(fd.as_fd()).context("stat /dev/null")?;
    if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != makedev(1, 3) {
        bail!("/dev/null is not the null device");
    }
    Ok(fd)
}

/// Masks `path`: a read-only empty tmpfs over a directory, /dev/null over anything else.
/// A path that does not exist needs no mask.
fn mask_path(root: BorrowedFd, path: &Path, null: &OwnedFd) -> Result<()> {
    let target = match open_in_root(root, path, OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e).context("resolve"),
    };
    let meta = File::from(target.try_clone()?).metadata().context("stat")?;
    if meta.is_dir() {
        mount(
            Some("tmpfs"),
            fd_path(&target).as_c_str(),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0k"),
        )
        .context("mount read-only tmpfs")?;
    } else {
        bind_fd(null, &target, false)?;
    }
    Ok(())
}

/// Makes `path` read-only (recursively) by binding it onto itself.
fn readonly_path(root: BorrowedFd, path: &Path) -> Result<()> {
    let target = match open_in_root(root, path, OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e).context("resolve"),
    };
    bind_fd(&target, &target, true)?;
    let fresh = mounts::reopen(root, path, &target)?;
    mounts::setattr(&fresh, sys::MOUNT_ATTR_RDONLY, 0, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_proc_and_sysfs_mounts() {
        let info = "\
22 1 0:21 / /proc rw,relatime shared:12 - proc proc rw
23 1 0:22 / /sys rw,relatime shared:2 - sysfs sysfs rw
30 23 0:26 / /sys/fs/cgroup ro shared:4 - tmpfs tmpfs ro
40 1 0:21 /sys /mnt/proc\\040sys rw - proc proc rw
41 1 0:22 / /srv/my\\040sys rw - sysfs sysfs rw
50 1 8:1 / / rw - ext4 /dev/sda1 rw
";
        assert_eq!(
            full_pseudo_fs_mounts(info),
            [
                PathBuf::from("/proc"),
                PathBuf::from("/sys"),
                PathBuf::from("/srv/my sys")
            ]
        );
    }
}
