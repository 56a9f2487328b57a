//! `restore`: bring a container back from a `checkpoint` image with CRIU (runc's flags and
//! behaviour). The bundle's config gives the container its cgroup (made and limited first,
//! with CRIU in it, so the restored tasks land there), the host paths of its external mounts
//! (binds, the /dev/null of masked files, devices) and the namespaces to join by path. The
//! rootfs is bound on `<state>/criu-root` for CRIU (it wants a mount point as root). The
//! restored init is corten's child: without -d, `restore` waits for it as `run` does and
//! deletes the container after. Prestart and createRuntime hooks run when CRIU has made the
//! namespaces (its `setup-namespaces` notification), as runc runs them. Any failure undoes
//! everything.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::checkpoint::{self, CriuDir, CriuFlags, DESCRIPTORS};
use crate::cgroups::Cgroup;
use crate::config::Bundle;
use crate::container::{self, ContainerDir, Phase, State, Status};
use crate::criu::{self, ExtMountMap, InheritFd, ReqType};
use crate::hooks::{HookState, Inherit, Kind};

/// runc's `restore` flags.
#[derive(clap::Args, Debug)]
pub struct RestoreOpts {
    #[command(flatten)]
    pub criu: CriuFlags,
    /// Path to the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Detach from the container's process
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Write the restored init's pid to this file
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the restored terminal's master to
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Do not use pivot root to jail process inside rootfs (CRIU makes the mounts)
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Disable the use of the subreaper used to reap reparented processes
    #[arg(long = "no-subreaper")]
    pub no_subreaper: bool,
    /// Specify an LSM profile to be used during restore (TYPE:NAME)
    #[arg(long = "lsm-profile")]
    pub lsm_profile: Option<String>,
    /// Specify an LSM mount context to be used during restore
    #[arg(long = "lsm-mount-context")]
    pub lsm_mount_context: Option<String>,
    /// Container id
    pub id: String,
    /// The global --systemd-cgroup.
    #[arg(from_global)]
    pub systemd_cgroup: bool,
}

/// Restores the container; returns its exit status when not detached (0 when detached).
pub fn restore(root: &Path, opts: &RestoreOpts) -> Result<i32> {
    container::validate_id(&opts.id)?;
    let image_path = opts.criu.image_dir()?;
    let images = CriuDir::open(&image_path, "image")?;
    let descriptors = read_descriptors(&image_path)?;
    let bundle = Bundle::load_in(&opts.bundle, Some(root))?;
    let rootfs = bundle.rootfs();
    let rootfs =
        std::fs::canonicalize(&rootfs).with_context(|| format!("rootfs {}", rootfs.display()))?;
    let dir = ContainerDir::create(root, &opts.id)?;
    let mut undo = Undo {
        dir: Some(&dir),
        pid: None,
        cgroup: None,
        criu_root: None,
    };
    // After the id is taken (runc's order: an existing id is the error first).
    criu::binary()?;
    // CRIU before 3.16 cannot set either (runc's check and words).
    if opts.lsm_profile.is_some() {
        criu::require_version(31600, "--lsm-profile")?;
    }
    if opts.lsm_mount_context.is_some() {
        criu::require_version(31600, "--lsm-mount-context")?;
    }
    let pid = restore_in(
        opts,
        &bundle,
        &rootfs,
        &dir,
        &images,
        &descriptors,
        &mut undo,
    )?;
    undo.disarm();
    drop(undo);
    if let Some(f) = &opts.pid_file {
        let f = if f.is_absolute() {
            f.clone()
        } else {
            std::env::current_dir()?.join(f)
        };
        container::write_atomic(&f, pid.to_string().as_bytes(), 0o644)
            .with_context(|| format!("write pid file {}", f.display()))?;
    }
    drop(dir);
    if opts.detach {
        return Ok(0);
    }
    let status = crate::wait::wait_forwarding(pid)?;
    super::delete::delete(root, &opts.id, true)?;
    Ok(status)
}

fn read_descriptors(image_path: &Path) -> Result<Vec<String>> {
    let path = image_path.join(DESCRIPTORS);
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "read {} (not a checkpoint image directory?)",
            path.display()
        )
    })?;
    serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))
}

fn restore_in(
    opts: &RestoreOpts,
    bundle: &Bundle,
    rootfs: &Path,
    dir: &ContainerDir,
    images: &CriuDir,
    descriptors: &[String],
    undo: &mut Undo,
) -> Result<i32> {
    let spec = &bundle.spec;
    let work = opts.criu.work_dir()?;
    let log_dir = work.as_ref().map_or(images.path.as_path(), |w| &w.path);
    let log_name = "restore.log";

    make_mountpoints(spec, &bundle.dir, rootfs)?;
    // CRIU wants its root to be a mount point whose parent is not over-mounted.
    let criu_root = dir.path.join("criu-root");
    std::fs::create_dir(&criu_root).with_context(|| format!("create {}", criu_root.display()))?;
    undo.criu_root = Some(criu_root.clone());
    nix::mount::mount(
        Some(rootfs),
        &criu_root,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind {} on {}", rootfs.display(), criu_root.display()))?;

    let mut o = opts.criu.base_opts(images.fd(), log_name);
    o.work_dir_fd = work.as_ref().map(|w| w.fd());
    o.evasive_devices = Some(true);
    o.rst_sibling = Some(true);
    o.root = Some(criu_root.to_string_lossy().into_owned());
    o.lsm_profile = opts.lsm_profile.clone();
    o.lsm_mount_context = opts.lsm_mount_context.clone();
    let mut pass_fds = vec![images.fd()];
    pass_fds.extend(work.as_ref().map(|w| w.fd()));

    // Namespaces joined by path: CRIU inherits them under the key the dump recorded.
    let mut ns_files = Vec::new();
    for ns in [LinuxNamespaceType::Network, LinuxNamespaceType::Pid] {
        if let Some(p) = checkpoint::ns_path(spec, ns) {
            let f = std::fs::File::open(&p)
                .with_context(|| format!("open namespace {}", p.display()))?;
            let fd = std::os::fd::AsRawFd::as_raw_fd(&f);
            o.inherit_fd.push(InheritFd {
                key: checkpoint::ns_key(ns),
                fd,
            });
            pass_fds.push(fd);
            ns_files.push(f);
        }
    }
    // External mounts: from the host paths of this bundle.
    for (dest, src) in checkpoint::bind_mounts(spec) {
        let src = if Path::new(&src).is_absolute() {
            src
        } else {
            bundle.dir.join(&src).to_string_lossy().into_owned()
        };
        o.ext_mnt.push(ExtMountMap {
            key: dest,
            val: src,
        });
    }
    let masked = spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().as_ref())
        .is_some_and(|m| !m.is_empty());
    if masked {
        o.ext_mnt.push(ExtMountMap {
            key: "/dev/null".into(),
            val: "/dev/null".into(),
        });
    }
    for d in checkpoint::device_paths(spec) {
        o.ext_mnt.push(ExtMountMap {
            key: d.clone(),
            val: d,
        });
    }
    // The init's pipes (fds 0-2 at dump) become ours (runc's rule).
    for (i, s) in descriptors.iter().enumerate() {
        if s.contains("pipe:") {
            o.inherit_fd.push(InheritFd {
                key: s.clone(),
                fd: i as i32,
            });
        }
    }

    let mut cgroup = plan_cgroup(opts, spec)?;
    // v1: the per-hierarchy cgroup mounts, bound from the new cgroup's directories (made
    // before CRIU mounts anything, in `started`).
    for (dest, dir) in checkpoint::cgroup_mounts(spec, &cgroup) {
        o.ext_mnt.push(ExtMountMap {
            key: dest,
            val: dir.path.to_string_lossy().into_owned(),
        });
    }
    let resources = crate::cgroups::resources::effective(spec);
    let state_base = State {
        id: opts.id.clone(),
        pid: 0,
        pid_start: 0,
        bundle: bundle.dir.clone(),
        rootfs: rootfs.to_path_buf(),
        created: crate::log::rfc3339_now(),
        owner: super::create::user_name(nix::unistd::geteuid().as_raw()),
        annotations: spec
            .annotations()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        phase: Phase::Creating,
        cgroup: Some(cgroup.clone()),
        hooks: crate::hooks::persisted(spec),
        rootfs_mount_before: None,
        shared_pid_ns: checkpoint::ns_path(spec, LinuxNamespaceType::Pid).is_some(),
        no_new_keyring: false,
    };
    dir.save(&state_base)?;

    let mut restored_pid = 0;
    let req = criu::Request {
        kind: ReqType::Restore,
        opts: o,
        log: log_dir.join(log_name),
        inherit_stdio: true,
        pass_fds,
    };
    let mut started = |criu_pid: i32, o: &mut criu::Opts| -> Result<()> {
        // CRIU itself joins the container's cgroup; its tasks are restored there.
        if cgroup.systemd.is_some() {
            let props = crate::cgroups::systemd::annotation_props(spec.annotations().as_ref())?;
            let r =
                crate::cgroups::systemd::start(&mut cgroup, criu_pid, &opts.id, &resources, &props);
            undo.cgroup = Some(cgroup.clone());
            r?;
        } else {
            let r = cgroup.make();
            undo.cgroup = Some(cgroup.clone());
            r?;
            cgroup.add(criu_pid)?;
        }
        cgroup.apply(&resources)?;
        let own = std::fs::read_to_string(format!("/proc/{criu_pid}/cgroup"))
            .with_context(|| format!("read /proc/{criu_pid}/cgroup"))?;
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (_, ctrls, path) = (parts.next(), parts.next(), parts.next());
            let (Some(ctrls), Some(path)) = (ctrls, path) else {
                continue;
            };
            o.cg_root.push(criu::rpc::CgroupRoot {
                ctrl: Some(ctrls.to_string()),
                path: path.to_string(),
            });
        }
        Ok(())
    };
    let mut notify = |n: criu::Notice| -> Result<()> {
        match n.script.as_str() {
            "setup-namespaces" => {
                // The network namespace CRIU made is empty (runc's rule, see base_opts):
                // its loopback device is brought up, as create brings it up.
                if crate::netdev::creates_netns(spec) {
                    crate::netdev::loopback_up_in(n.pid)?;
                }
                let mut s = state_base.clone();
                s.pid = n.pid;
                let hs = HookState::new(&s, Status::Created);
                crate::hooks::run_all(
                    Kind::Prestart,
                    Kind::Prestart.in_spec(spec),
                    &hs,
                    Inherit::Runtime,
                )?;
                crate::hooks::run_all(
                    Kind::CreateRuntime,
                    Kind::CreateRuntime.in_spec(spec),
                    &hs,
                    Inherit::Runtime,
                )?;
            }
            "post-restore" => restored_pid = n.pid,
            "orphan-pts-master" => {
                if let (Some(sock), Some(master)) = (&opts.console_socket, n.fd) {
                    let s = std::os::unix::net::UnixStream::connect(sock)
                        .with_context(|| format!("connect to {}", sock.display()))?;
                    crate::console::send_master(&s.into(), &master)?;
                }
            }
            _ => {}
        }
        Ok(())
    };
    let result = criu::swrk(req, &mut started, &mut notify);
    drop(ns_files);
    let resp = result?;
    let pid = resp
        .restore
        .map(|r| r.pid)
        .filter(|p| *p > 0)
        .unwrap_or(restored_pid);
    if pid <= 0 {
        bail!("criu restore reported no pid");
    }
    undo.pid = Some(pid);
    undo.cgroup = Some(cgroup.clone());
    let mut state = state_base;
    state.pid = pid;
    state.pid_start = crate::pid::process_start_time(pid)?;
    state.phase = Phase::Created;
    state.cgroup = Some(cgroup);
    dir.save(&state)?;
    Ok(pid)
}

/// Creates the mount points of the config's mounts in the rootfs, as `create` would have
/// (a fresh rootfs, podman's, lacks e.g. the file /etc/hosts is bound on): CRIU mounts on
/// them but does not make them. Not under a tmpfs mount, whose content CRIU restores.
/// runc's prepareCriuRestoreMounts.
fn make_mountpoints(spec: &Spec, bundle: &Path, rootfs: &Path) -> Result<()> {
    let mounts = spec.mounts().as_deref().unwrap_or_default();
    let tmpfs: Vec<&Path> = mounts
        .iter()
        .filter(|m| m.typ().as_deref() == Some("tmpfs"))
        .map(|m| m.destination().as_path())
        .collect();
    let binds: Vec<(String, String)> = checkpoint::bind_mounts(spec);
    let root =
        std::fs::File::open(rootfs).with_context(|| format!("open rootfs {}", rootfs.display()))?;
    for m in mounts {
        let dest = m.destination().as_path();
        if tmpfs.iter().any(|t| dest != *t && dest.starts_with(t)) {
            continue;
        }
        let bind_src = binds
            .iter()
            .find(|(d, _)| Path::new(d) == dest)
            .map(|(_, s)| bundle.join(s));
        // A bind of anything but a directory is mounted on a file.
        let dir = bind_src.is_none_or(|s| s.is_dir());
        crate::safepath::ensure_in_root(std::os::fd::AsFd::as_fd(&root), dest, dir)
            .with_context(|| format!("create the mount point {} in the rootfs", dest.display()))?;
    }
    Ok(())
}

/// The cgroup as the bundle asks, with the driver given (runc's restore applies the same
/// manager as create).
fn plan_cgroup(opts: &RestoreOpts, spec: &Spec) -> Result<Cgroup> {
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().as_deref());
    if opts.systemd_cgroup {
        if !Path::new("/run/systemd/system").exists() {
            bail!("--systemd-cgroup: systemd is not running on this host (no /run/systemd/system)");
        }
        let user = crate::cgroups::systemd::user_manager();
        crate::cgroups::systemd::plan(cgroups_path, &opts.id, user)
    } else {
        Cgroup::plan(cgroups_path, &opts.id)
    }
}

/// Rolls a failed restore back: the restored init, the cgroup, the rootfs bind, the state
/// directory.
struct Undo<'a> {
    dir: Option<&'a ContainerDir>,
    pid: Option<i32>,
    cgroup: Option<Cgroup>,
    criu_root: Option<PathBuf>,
}

impl Undo<'_> {
    fn disarm(&mut self) {
        self.dir = None;
        self.pid = None;
        self.cgroup = None;
        // The rootfs bind is CRIU's alone: it goes in any case (the container has its copy).
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let p = nix::unistd::Pid::from_raw(pid);
            let _ = nix::sys::signal::kill(p, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(p, None);
        }
        if let Some(cg) = &self.cgroup {
            cg.signal_own(libc::SIGKILL, 0);
            cg.destroy();
        }
        if let Some(r) = &self.criu_root {
            let _ = nix::mount::umount2(r, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(r);
        }
        if let Some(dir) = self.dir {
            let _ = dir.remove();
        }
    }
}
