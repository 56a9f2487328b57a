//! `checkpoint`: dump a running container to an image directory with CRIU (runc's flags
//! and behaviour). The container's external mounts (binds, masked files, devices) are
//! declared so that `restore` can bind them again, external namespaces (joined by path)
//! are recorded by inode, and CRIU freezes the tasks through the container's cgroup.
//! Without --leave-running (or --pre-dump) the container is gone afterwards: CRIU kills
//! its tasks and, as runc does, the container is deleted, so `restore` can bring it back
//! under the same id.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::{Cgroup, Dir};
use crate::config::Bundle;
use crate::container::{ContainerDir, Status};
use crate::criu::{self, CgMode, ExtMountMap, Opts, ReqType};
use crate::error::Error;

/// The file in the image directory listing the init's fds 0-2 (runc's name and format):
/// `restore` reconnects the pipes among them to its own stdio.
pub const DESCRIPTORS: &str = "descriptors.json";

/// The devices every container has (runtime-spec "Default Devices"), besides linux.devices.
const DEFAULT_DEVICES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];

/// The options checkpoint and restore share (runc's names).
#[derive(clap::Args, Debug, Clone)]
pub struct CriuFlags {
    /// Path for saving criu image files (default: ./checkpoint)
    #[arg(long = "image-path")]
    pub image_path: Option<PathBuf>,
    /// Path for saving work files and logs (default: the image path)
    #[arg(long = "work-path")]
    pub work_path: Option<PathBuf>,
    /// Allow open tcp connections
    #[arg(long = "tcp-established")]
    pub tcp_established: bool,
    /// Allow external unix sockets
    #[arg(long = "ext-unix-sk")]
    pub ext_unix_sk: bool,
    /// Allow shell jobs
    #[arg(long = "shell-job")]
    pub shell_job: bool,
    /// Handle file locks, for safety
    #[arg(long = "file-locks")]
    pub file_locks: bool,
    /// cgroups mode: soft, full, strict or ignore (default: soft)
    #[arg(long = "manage-cgroups-mode", value_parser = cg_mode)]
    pub manage_cgroups_mode: Option<CgMode>,
    /// Create a namespace, but don't restore its properties (network)
    #[arg(long = "empty-ns", value_parser = empty_ns)]
    pub empty_ns: Vec<u32>,
    /// Enable auto deduplication of memory images
    #[arg(long = "auto-dedup")]
    pub auto_dedup: bool,
    /// Use userfaultfd to lazily restore memory pages
    #[arg(long = "lazy-pages")]
    pub lazy_pages: bool,
}

/// runc's `checkpoint` flags.
#[derive(clap::Args, Debug)]
pub struct CheckpointOpts {
    #[command(flatten)]
    pub criu: CriuFlags,
    /// Path for previous criu image files in pre-dump
    #[arg(long = "parent-path")]
    pub parent_path: Option<String>,
    /// Leave the process running after checkpointing
    #[arg(long = "leave-running")]
    pub leave_running: bool,
    /// Dump the container's memory information only, leave the container running after this
    #[arg(long = "pre-dump")]
    pub pre_dump: bool,
    /// Criu writes \0 to this FD once lazy-pages is ready
    #[arg(long = "status-fd")]
    pub status_fd: Option<i32>,
    /// ADDRESS:PORT of the page server
    #[arg(long = "page-server")]
    pub page_server: Option<String>,
    /// Container id
    pub id: String,
}

fn cg_mode(s: &str) -> Result<CgMode, String> {
    match s {
        "soft" => Ok(CgMode::Soft),
        "full" => Ok(CgMode::Full),
        "strict" => Ok(CgMode::Strict),
        "ignore" => Ok(CgMode::Ignore),
        _ => Err(format!(
            "invalid manage-cgroups-mode value {s:?} (soft, full, strict or ignore)"
        )),
    }
}

fn empty_ns(s: &str) -> Result<u32, String> {
    match s {
        "network" => Ok(libc::CLONE_NEWNET as u32),
        _ => Err(format!("namespace {s:?} is not supported (only network)")),
    }
}

impl CriuFlags {
    /// The image directory: --image-path, else ./checkpoint (runc's default).
    pub fn image_dir(&self) -> Result<PathBuf> {
        match &self.image_path {
            Some(p) => Ok(p.clone()),
            None => Ok(std::env::current_dir()
                .context("current directory")?
                .join("checkpoint")),
        }
    }

    /// The work directory (--work-path, made if missing); None: CRIU uses the images'.
    pub fn work_dir(&self) -> Result<Option<CriuDir>> {
        let Some(p) = &self.work_path else {
            return Ok(None);
        };
        std::fs::create_dir_all(p)
            .with_context(|| format!("create the work directory {}", p.display()))?;
        Ok(Some(CriuDir::open(p, "work")?))
    }

    /// The options every request carries.
    pub fn base_opts(&self, images_dir_fd: i32, log: &str) -> Opts {
        Opts {
            images_dir_fd,
            log_level: Some(4),
            log_file: Some(log.to_string()),
            manage_cgroups: Some(true),
            notify_scripts: Some(true),
            shell_job: Some(self.shell_job),
            ext_unix_sk: Some(self.ext_unix_sk),
            tcp_established: Some(self.tcp_established),
            file_locks: Some(self.file_locks),
            // runc always adds the network namespace: "runc doesn't manage network
            // devices" (a veth's peer is outside: CRIU could not restore it).
            empty_ns: Some(
                self.empty_ns
                    .iter()
                    .fold(libc::CLONE_NEWNET as u32, |a, b| a | b),
            ),
            orphan_pts_master: Some(true),
            auto_dedup: Some(self.auto_dedup),
            lazy_pages: Some(self.lazy_pages),
            manage_cgroups_mode: self.manage_cgroups_mode.map(|m| m as i32),
            ..Default::default()
        }
    }
}

/// An open directory for CRIU (images or work), and its path.
pub struct CriuDir {
    pub file: std::fs::File,
    pub path: PathBuf,
}

impl CriuDir {
    pub fn open(path: &Path, what: &str) -> Result<CriuDir> {
        let file = std::fs::File::open(path)
            .with_context(|| format!("open the {what} directory {}", path.display()))?;
        if !file.metadata()?.is_dir() {
            bail!("{what} path {} is not a directory", path.display());
        }
        Ok(CriuDir {
            file,
            path: path.to_path_buf(),
        })
    }

    pub fn fd(&self) -> i32 {
        self.file.as_raw_fd()
    }
}

/// The key CRIU records an external namespace of type `ns` under: runc's, "extRoot", the
/// namespace's name capitalized, "NS" ("extRootNetNS"), so that either runtime restores the
/// other's images.
pub fn ns_key(ns: LinuxNamespaceType) -> String {
    let name = ns_name(ns);
    format!("extRoot{}{}NS", name[..1].to_uppercase(), &name[1..])
}

fn ns_name(ns: LinuxNamespaceType) -> &'static str {
    match ns {
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
        _ => "other",
    }
}

/// The namespace of type `ns` the container joined by path, if any.
pub fn ns_path(spec: &Spec, ns: LinuxNamespaceType) -> Option<PathBuf> {
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == ns)?
        .path()
        .clone()
}

/// The mounts of the spec that come from outside the rootfs (binds): their destinations.
pub fn bind_mounts(spec: &Spec) -> Vec<(String, String)> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| {
            m.typ().as_deref() == Some("bind")
                || m.options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind")
        })
        .filter_map(|m| {
            let src = m.source().as_ref()?.to_str()?.to_string();
            Some((m.destination().to_str()?.to_string(), src))
        })
        .collect()
}

/// On a v1 or hybrid host, the per-hierarchy mounts under the config's `cgroup` mounts
/// (`/sys/fs/cgroup/memory`, ...) with the container's directory of that hierarchy:
/// external to CRIU, as runc declares them (its getCgroupMounts), so a dump records them
/// by destination and a restore binds the new cgroup's directories there. Empty on a
/// unified host (CRIU handles the one cgroup2 mount itself).
pub fn cgroup_mounts<'a>(spec: &Spec, cgroup: &'a Cgroup) -> Vec<(String, &'a Dir)> {
    spec.mounts()
        .iter()
        .flatten()
        .filter(|m| m.typ().as_deref() == Some("cgroup"))
        .flat_map(|m| cgroup.v1_mounts(m.destination()))
        .map(|(sub, dir)| (sub.to_string_lossy().into_owned(), dir))
        .collect()
}

/// The device paths: the default devices and linux.devices.
pub fn device_paths(spec: &Spec) -> Vec<String> {
    let mut paths: Vec<String> = DEFAULT_DEVICES.iter().map(|s| s.to_string()).collect();
    for d in spec
        .linux()
        .as_ref()
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let p = d.path().to_string_lossy().into_owned();
        if !paths.contains(&p) {
            paths.push(p);
        }
    }
    paths
}

pub fn checkpoint(root: &Path, opts: &CheckpointOpts) -> Result<()> {
    let id = &opts.id;
    // --lazy-pages without --status-fd is allowed, as runc allows it: the caller then has
    // no signal that the page server is up, and this command returns once it is done.
    let dir = ContainerDir::open(root, id, true)?;
    let state = dir.load_existing()?;
    let status = dir.status(&state);
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(Error::NotRunning {
            id: Some(id.to_string()),
            status: Some(status.as_str()),
        }
        .into());
    }
    crate::criu::binary()?;
    let bundle = Bundle::load(&state.bundle)?;
    let spec = &bundle.spec;
    let image_path = opts.criu.image_dir()?;
    let made_images = !image_path.exists();
    std::fs::create_dir_all(&image_path)
        .with_context(|| format!("create the image directory {}", image_path.display()))?;
    let result = dump(opts, &state, spec, &image_path);
    if result.is_err() && made_images {
        let _ = std::fs::remove_dir_all(&image_path);
    }
    result?;
    if !(opts.leave_running || opts.pre_dump) {
        // runc destroys a checkpointed container: its id is free for `restore`.
        drop(dir);
        crate::runtime::delete::delete(root, id, true)?;
    }
    Ok(())
}

fn dump(
    opts: &CheckpointOpts,
    state: &crate::container::State,
    spec: &Spec,
    image_path: &Path,
) -> Result<()> {
    let images = CriuDir::open(image_path, "image")?;
    let work = opts.criu.work_dir()?;
    let log_dir = work.as_ref().map_or(image_path, |w| w.path.as_path());
    let log_name = if opts.pre_dump {
        "pre-dump.log"
    } else {
        "dump.log"
    };
    let mut o = opts.criu.base_opts(images.fd(), log_name);
    o.work_dir_fd = work.as_ref().map(|w| w.fd());
    o.pid = Some(state.pid);
    o.root = Some(state.rootfs.to_string_lossy().into_owned());
    o.leave_running = Some(opts.leave_running);
    let mut pass_fds = vec![images.fd()];
    pass_fds.extend(work.as_ref().map(|w| w.fd()));
    // Namespaces joined by path stay outside the image; restore joins them again.
    for ns in [LinuxNamespaceType::Network, LinuxNamespaceType::Pid] {
        if let Some(p) = ns_path(spec, ns) {
            use std::os::unix::fs::MetadataExt;
            let ino = std::fs::metadata(&p)
                .with_context(|| format!("stat namespace {}", p.display()))?
                .ino();
            o.external
                .push(format!("{}[{ino}]:{}", ns_name(ns), ns_key(ns)));
        }
    }
    // CRIU freezes the tasks through the cgroup: v1's freezer where there is one (as runc
    // and `pause` do; a hybrid host has cgroup2 too), else cgroup2's.
    if let Some(cg) = &state.cgroup {
        let v1 = cg
            .dirs
            .iter()
            .find(|d| d.hierarchy.controllers.iter().any(|c| c == "freezer"));
        let freezer = v1.or_else(|| cg.dirs.iter().find(|d| d.hierarchy.v2));
        o.freeze_cgroup = freezer.map(|d| d.path.to_string_lossy().into_owned());
    }
    if let Some(ps) = &opts.page_server {
        let (addr, port) = ps
            .rsplit_once(':')
            .and_then(|(a, p)| Some((a, p.parse::<i32>().ok()?)))
            .with_context(|| format!("--page-server {ps:?}: want ADDRESS:PORT"))?;
        o.ps = Some(criu::rpc::PageServerInfo {
            address: Some(addr.to_string()),
            port: Some(port),
            ..Default::default()
        });
    }
    if let Some(parent) = &opts.parent_path {
        o.parent_img = Some(parent.clone());
        o.track_mem = Some(true);
    }
    // The status fd tells the caller the lazy-pages server is ready (runc: only with
    // --lazy-pages). CRIU 3.15+ says so in a notification and corten writes the \0 itself,
    // as runc does; an older CRIU writes it to the fd it inherits.
    let mut status = None;
    if let (true, Some(fd)) = (opts.criu.lazy_pages, opts.status_fd) {
        let owned = status_fd(fd)?;
        if criu::version()? >= 31500 {
            status = Some(owned);
        } else {
            o.status_fd = Some(fd);
            pass_fds.push(fd);
            // Stays open for CRIU; closed when corten exits.
            std::mem::forget(owned);
        }
    }
    if !opts.pre_dump {
        for (dest, _) in bind_mounts(spec) {
            o.ext_mnt.push(ExtMountMap {
                key: dest.clone(),
                val: dest,
            });
        }
        // Masked files are /dev/null binds; masked directories are tmpfs, dumped as such.
        for p in spec
            .linux()
            .as_ref()
            .and_then(|l| l.masked_paths().as_ref())
            .into_iter()
            .flatten()
        {
            let inside = format!("/proc/{}/root/{}", state.pid, p.trim_start_matches('/'));
            match std::fs::metadata(&inside) {
                Ok(m) if !m.is_dir() => o.ext_mnt.push(ExtMountMap {
                    key: p.clone(),
                    val: "/dev/null".to_string(),
                }),
                _ => {}
            }
        }
        for d in device_paths(spec) {
            o.ext_mnt.push(ExtMountMap {
                key: d.clone(),
                val: d,
            });
        }
        if let Some(cg) = &state.cgroup {
            for (dest, _) in cgroup_mounts(spec, cg) {
                o.ext_mnt.push(ExtMountMap {
                    key: dest.clone(),
                    val: dest,
                });
            }
        }
        write_descriptors(state.pid, image_path)?;
    }
    let kind = if opts.pre_dump {
        ReqType::PreDump
    } else {
        ReqType::Dump
    };
    let req = criu::Request {
        kind,
        opts: o,
        log: log_dir.join(log_name),
        inherit_stdio: false,
        pass_fds,
    };
    criu::swrk(req, &mut |_, _| Ok(()), &mut |notice| {
        let ready = notice.script == "status-ready";
        if let Some(fd) = status.take_if(|_| ready) {
            nix::unistd::write(&fd, &[0])
                .context("write \\0 to --status-fd (the lazy-pages server is ready)")?;
        }
        Ok(())
    })?;
    Ok(())
}

/// Takes `--status-fd`: an open fd that can be written (runc's check).
fn status_fd(fd: i32) -> Result<std::os::fd::OwnedFd> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    use std::os::fd::{BorrowedFd, FromRawFd};
    if fd < 3 {
        bail!("invalid --status-fd argument {fd}: not one of corten's stdio");
    }
    // SAFETY: only a flag query on the number the caller named; an fd that is not open
    // fails with EBADF.
    let flags = fcntl(unsafe { BorrowedFd::borrow_raw(fd) }, FcntlArg::F_GETFL)
        .with_context(|| format!("invalid --status-fd argument {fd}"))?;
    let mode = OFlag::from_bits_truncate(flags) & OFlag::O_ACCMODE;
    if mode == OFlag::O_RDONLY {
        bail!("invalid --status-fd argument {fd}: not writable");
    }
    // SAFETY: the fd is open (F_GETFL succeeded) and was handed to corten by its caller
    // for this use alone; nothing else in corten owns it.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

/// Records where the init's fds 0-2 point (runc's descriptors.json).
fn write_descriptors(pid: i32, image_path: &Path) -> Result<()> {
    let fds: Vec<String> = (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "/dev/null".to_string())
        })
        .collect();
    let path = image_path.join(DESCRIPTORS);
    crate::container::write_atomic(&path, &serde_json::to_vec(&fds)?, 0o600)
        .with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_keys_are_runcs() {
        assert_eq!(ns_key(LinuxNamespaceType::Network), "extRootNetNS");
        assert_eq!(ns_key(LinuxNamespaceType::Pid), "extRootPidNS");
    }

    #[test]
    fn status_fd_must_be_open_and_writable() {
        use std::os::fd::{AsRawFd, IntoRawFd};
        let r = std::fs::File::open("/dev/null").unwrap();
        let err = status_fd(r.as_raw_fd()).unwrap_err().to_string();
        assert!(err.contains("not writable"), "{err}");
        let w = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .unwrap();
        // status_fd owns it from here.
        drop(status_fd(w.into_raw_fd()).unwrap());
        let err = format!("{:#}", status_fd(1 << 20).unwrap_err());
        assert!(err.contains("invalid --status-fd argument"), "{err}");
        assert!(status_fd(1).is_err());
    }

    #[test]
    fn flag_values() {
        assert_eq!(cg_mode("full"), Ok(CgMode::Full));
        assert!(cg_mode("loose").unwrap_err().contains("loose"));
        assert_eq!(empty_ns("network"), Ok(libc::CLONE_NEWNET as u32));
        assert!(empty_ns("pid").is_err());
    }

    #[test]
    fn cgroup_mounts_are_external_on_v1_only() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [{"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup"}]
        }))
        .unwrap();
        let dir = |mount: &str, controllers: &[&str], path: &str| Dir {
            path: PathBuf::from(path),
            hierarchy: crate::cgroups::Hierarchy {
                mount: PathBuf::from(mount),
                controllers: controllers.iter().map(|c| c.to_string()).collect(),
                v2: controllers.is_empty(),
            },
            created: Vec::new(),
        };
        let v1 = Cgroup {
            dirs: vec![
                dir(
                    "/sys/fs/cgroup/memory",
                    &["memory"],
                    "/sys/fs/cgroup/memory/c1",
                ),
                dir(
                    "/sys/fs/cgroup/cpu,cpuacct",
                    &["cpu", "cpuacct"],
                    "/sys/fs/cgroup/cpu,cpuacct/c1",
                ),
                dir("/sys/fs/cgroup/unified", &[], "/sys/fs/cgroup/unified/c1"),
            ],
            ..Default::default()
        };
        let got: Vec<(String, PathBuf)> = cgroup_mounts(&spec, &v1)
            .into_iter()
            .map(|(d, dir)| (d, dir.path.clone()))
            .collect();
        let want = |d: &str, p: &str| (d.to_string(), PathBuf::from(p));
        assert_eq!(
            got,
            [
                want("/sys/fs/cgroup/memory", "/sys/fs/cgroup/memory/c1"),
                want(
                    "/sys/fs/cgroup/cpu,cpuacct",
                    "/sys/fs/cgroup/cpu,cpuacct/c1"
                ),
                want("/sys/fs/cgroup/unified", "/sys/fs/cgroup/unified/c1"),
            ]
        );
        let v2 = Cgroup {
            dirs: vec![dir("/sys/fs/cgroup", &[], "/sys/fs/cgroup/c1")],
            ..Default::default()
        };
        assert!(cgroup_mounts(&spec, &v2).is_empty());
    }

    #[test]
    fn binds_and_devices_of_a_spec() {
        let spec: Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": "/srv/data", "options": ["rbind"]},
                {"destination": "/etc/x", "source": "/x", "options": ["bind", "ro"]}
            ],
            "linux": {"devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]}
        }))
        .unwrap();
        assert_eq!(
            bind_mounts(&spec),
            [
                ("/data".to_string(), "/srv/data".to_string()),
                ("/etc/x".to_string(), "/x".to_string())
            ]
        );
        let devs = device_paths(&spec);
        assert!(devs.contains(&"/dev/fuse".to_string()) && devs.contains(&"/dev/null".to_string()));
    }
}
