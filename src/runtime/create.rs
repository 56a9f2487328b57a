//! `create`: validate the bundle, make the state dir, clone the init with its namespaces,
//! place it in its cgroup, and return once it is parked waiting for `start`.
//! Any failure undoes everything: no state dir, cgroup or process is left.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::cgroups::Cgroup;
use crate::config::Bundle;
use crate::container::{self, ContainerDir, Phase, State};
use crate::init::{self, InitConfig, ns_flag};
use crate::sync::{self, Msg};

/// runc's `create` flags and arguments, as the CLI parses them (the doc comments are its
/// help); `run` takes them too.
#[derive(clap::Args)]
pub struct CreateOpts {
    /// Path to the bundle directory
    #[arg(short = 'b', long, default_value = ".")]
    pub bundle: PathBuf,
    /// Write the init's pid to this file
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to (process.terminal)
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Use chroot (MS_MOVE) instead of pivot_root
    #[arg(long = "no-pivot")]
    pub no_pivot: bool,
    /// Do not create a new session keyring
    #[arg(long = "no-new-keyring")]
    pub no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the process
    #[arg(long = "preserve-fds", default_value = "0", value_parser = crate::args::preserve_fds)]
    pub preserve_fds: u32,
    /// Container id
    pub id: String,
    /// The global --systemd-cgroup: cgroupsPath is "slice:prefix:name" for systemd.
    #[arg(from_global)]
    pub systemd_cgroup: bool,
}

/// The result of a successful create: the init's pid (our child until we exit).
pub struct Created {
    pub pid: i32,
    pub dir: ContainerDir,
    /// With a terminal that corten relays (attached `run`): where its master arrives.
    pub relay: Option<OwnedFd>,
}

/// `create`: the container is left to the caller (detached).
pub fn create(root: &Path, opts: &CreateOpts) -> Result<Created> {
    create_with(root, opts, true)
}

/// `create` for `run`, which stays attached unless `detach` (-d): attached, a terminal goes
/// to corten itself rather than to --console-socket.
pub fn create_with(root: &Path, opts: &CreateOpts, detach: bool) -> Result<Created> {
    container::validate_id(&opts.id)?;
    // --preserve-fds is bounded by its parser; with LISTEN_FDS the sum must fit too.
    let passed =
        crate::args::check_preserve_fds(u64::from(opts.preserve_fds) + u64::from(listen_fds()))
            .map_err(|e| {
                anyhow::anyhow!("--preserve-fds {} plus LISTEN_FDS: {e}", opts.preserve_fds)
            })?;
    crate::sys::close_inherited_from(3 + passed as i32).context("close inherited fds")?;
    let bundle = Bundle::load_in(&opts.bundle, Some(root))?;
    if opts.systemd_cgroup {
        // Never a silent fallback to cgroupfs: the caller asked for systemd's bookkeeping.
        if !Path::new("/run/systemd/system").exists() {
            bail!("--systemd-cgroup: systemd is not running on this host (no /run/systemd/system)");
        }
    }
    let rootfs = bundle.rootfs();
    let rootfs =
        std::fs::canonicalize(&rootfs).with_context(|| format!("rootfs {}", rootfs.display()))?;
    if rootfs == Path::new("/") {
        bail!("root.path resolves to the host's /, refusing to use it as a rootfs");
    }
    let terminal = bundle
        .spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    // What the host must offer, checked before anything exists.
    crate::init::lsm::check_host(&bundle.spec, crate::init::lsm::Host::detect())?;
    crate::intelrdt::check_host(&bundle.spec)?;
    crate::netdev::check_host(&bundle.spec)?;
    // runc's flag rules first: they need nothing made.
    crate::console::check(terminal, opts.console_socket.is_some(), detach)?;
    let dir = ContainerDir::create(root, &opts.id)?;
    let mut undo = Undo {
        dir: Some(&dir),
        pid: None,
        cgroup: None,
        shared_pid_ns: false,
        poststop: None,
        rootfs_mount: None,
    };
    // Connected here, in the caller's mount namespace, before the init exists; only for an
    // id that is free, so a refused create never reaches the console socket.
    let console = crate::console::plan(terminal, opts.console_socket.as_deref(), detach)?;
    let (console_child, relay) = match console {
        Some(p) => (Some(p.child), p.relay),
        None => (None, None),
    };
    let pid = spawn(
        opts,
        &bundle,
        &rootfs,
        &dir,
        console_child,
        relay.as_ref(),
        &mut undo,
    )?;
    if let Some(f) = &opts.pid_file {
        let f = absolute(f)?;
        container::write_atomic(&f, pid.to_string().as_bytes(), 0o644)
            .with_context(|| format!("write pid file {}", f.display()))?;
    }
    undo.disarm();
    drop(undo);
    Ok(Created { pid, dir, relay })
}

/// Clones the init, places it, waits for Ready, and records the state. `console`: the
/// init's end of the console socket; `relay`: ours, which the init must not keep.
/// Nothing before the clone may start a thread: the init is cloned fork-style. A failed
/// step leaves the rest to `undo`, which each step tells what it made.
fn spawn(
    opts: &CreateOpts,
    bundle: &Bundle,
    rootfs: &Path,
    dir: &ContainerDir,
    console: Option<crate::console::Target>,
    relay: Option<&OwnedFd>,
    undo: &mut Undo,
) -> Result<i32> {
    let spec = &bundle.spec;
    let namespaces = Namespaces::enter(spec)?;
    let listener = bind_start_socket(dir)?;
    let (parent_ch, child_ch) = sync::pair()?;
    let mut cg = CgroupPlan::new(opts, spec, undo)?;
    let listen_fds = listen_fds();
    let mut state = initial_state(opts, bundle, rootfs, &cg.cgroup, &namespaces);
    if !namespaces.has_mount_ns {
        record_rootfs_mount(rootfs, &mut state, undo)?;
    }
    // Made here, with the host's privileges; the init moves them into place.
    let propagation = crate::init::rootfs::initial_propagation(spec)?;
    let idmapped = crate::idmap::prepare(spec, &bundle.dir, propagation)?;
    undo.shared_pid_ns = state.shared_pid_ns;
    let cgroup_fd = cg.make_before_clone(dir, &mut state, undo)?;
    let user_ns = namespaces.user_ns();
    let cfg = InitConfig {
        spec,
        bundle: &bundle.dir,
        rootfs,
        no_pivot: opts.no_pivot,
        preserve_fds: opts.preserve_fds + listen_fds,
        listen_fds,
        join: namespaces.join,
        go_pending: std::cell::Cell::new(true),
        go_first: user_ns,
        new_cgroupns: namespaces.new_cgroupns,
        has_mount_ns: namespaces.has_mount_ns,
        idmapped: &idmapped,
        cgroup: &cg.cgroup,
        keyring: (!opts.no_new_keyring).then(|| opts.id.clone()),
        start_listener: listener.into(),
        sync: child_ch,
        console: std::cell::Cell::new(console),
        parent_only_fds: dir
            .lock_fd()
            .into_iter()
            .chain([parent_ch.raw_fd()])
            .chain(relay.map(|fd| fd.as_raw_fd()))
            .collect(),
        seccomp: bundle.seccomp.as_ref(),
        state: &state,
        hooks: crate::hooks::InitHooks::new(spec, listen_fds),
    };
    let (pid, placed) = clone_init(namespaces.clone_flags, cgroup_fd.as_ref())?;
    if pid == 0 {
        init::run(cfg);
    }
    undo.pid = Some(pid);
    // A failed create continues the lifecycle at delete: its poststop hooks run.
    undo.poststop = state.hooks.is_some().then(|| state.clone());
    drop(cfg);
    state.pid = pid;
    state.pid_start = crate::pid::process_start_time(pid)?;
    dir.save(&state)?;
    cg.place(dir, &mut state, undo, &opts.id, pid, placed)?;
    if user_ns {
        write_id_maps(spec, pid)?;
    }
    wait_ready(&parent_ch, spec, &state)?;
    // The init is parked in its network namespace: move the devices in now, so only the
    // state write below can still fail after they left the host.
    crate::netdev::move_all(spec, pid)?;
    state.phase = Phase::Created;
    dir.save(&state)?;
    Ok(pid)
}

/// linux.namespaces as `create` applies them: new ones are the clone's flags, existing
/// ones (by path) are opened for the init to join.
struct Namespaces {
    /// The new namespaces the init is cloned with.
    clone_flags: CloneFlags,
    /// Namespaces the init joins with setns, user namespace first.
    join: Vec<(CloneFlags, OwnedFd)>,
    /// A new cgroup namespace, which the init unshares once placed.
    new_cgroupns: bool,
    has_mount_ns: bool,
}

impl Namespaces {
    /// Opens the namespaces to join. The pid and time namespaces apply to children: those
    /// are joined (or, for time, made) here by the parent, so the init is born inside.
    fn enter(spec: &Spec) -> Result<Namespaces> {
        let namespaces = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        let mut clone_flags = CloneFlags::empty();
        let mut join = Vec::new();
        let mut new_cgroupns = false;
        let mut new_time = false;
        for ns in &namespaces {
            let flag = ns_flag(ns.typ());
            match ns.path() {
                Some(p) if !p.as_os_str().is_empty() => {
                    let fd: OwnedFd = std::fs::File::open(p)
                        .with_context(|| format!("open {} namespace {}", ns.typ(), p.display()))?
                        .into();
                    match ns.typ() {
                        // pid and time namespaces apply to children: the parent joins them so
                        // the init is born inside.
                        LinuxNamespaceType::Pid | LinuxNamespaceType::Time => {
                            nix::sched::setns(&fd, flag).with_context(|| {
                                format!("join {} namespace {}", ns.typ(), p.display())
                            })?;
                        }
                        LinuxNamespaceType::User => join.insert(0, (flag, fd)),
                        _ => join.push((flag, fd)),
                    }
                }
                _ => match ns.typ() {
                    // The cgroup namespace must be rooted at the container's cgroup, which the
                    // init only joins after clone: it unshares once placed.
                    LinuxNamespaceType::Cgroup => new_cgroupns = true,
                    LinuxNamespaceType::Time => new_time = true,
                    _ => clone_flags |= flag,
                },
            }
        }
        if new_time {
            setup_time_namespace(spec)?;
        }
        let has_mount_ns = namespaces
            .iter()
            .any(|n| n.typ() == LinuxNamespaceType::Mount);
        Ok(Namespaces {
            clone_flags,
            join,
            new_cgroupns,
            has_mount_ns,
        })
    }

    /// A new user namespace: the parent writes its id maps before the init goes on.
    fn user_ns(&self) -> bool {
        self.clone_flags.contains(CloneFlags::CLONE_NEWUSER)
    }

    /// No pid namespace of its own: the init shares one with other processes.
    fn shared_pid_ns(&self) -> bool {
        !self.clone_flags.contains(CloneFlags::CLONE_NEWPID)
    }
}

/// Binds the state dir's start socket, on which the parked init waits for `start`.
fn bind_start_socket(dir: &ContainerDir) -> Result<UnixListener> {
    let (dir_handle, addr) = dir.start_socket_addr()?;
    let listener = UnixListener::bind(&addr)
        .with_context(|| format!("bind {}", dir.start_socket().display()))?;
    drop(dir_handle);
    Ok(listener)
}

/// The container's cgroup as planned (nothing made yet), and how it is made.
struct CgroupPlan {
    cgroup: Cgroup,
    /// With systemd, the unit's properties from the annotations.
    sd_props: Vec<(String, crate::cgroups::dbus::Value)>,
    /// What can't be applied is a warning, not an error (runc's rootless cgroup manager).
    rootless: bool,
    resources: oci_spec::runtime::LinuxResources,
    /// On a cgroup2-only host the init is born in its cgroup (CLONE_INTO_CGROUP): no
    /// migration, and no moment outside it. With systemd the cgroup is the unit's, which
    /// holds the init from its start.
    into: bool,
}

impl CgroupPlan {
    /// Plans the cgroup with the driver asked for; unprivileged, only the delegated parts.
    fn new(opts: &CreateOpts, spec: &Spec, undo: &mut Undo) -> Result<CgroupPlan> {
        let cgroups_path = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().as_deref());
        // With systemd, the unit's properties from the annotations: refused before anything.
        let mut sd_props = Vec::new();
        let mut cgroup = if opts.systemd_cgroup {
            sd_props = crate::cgroups::systemd::annotation_props(spec.annotations().as_ref())?;
            let user = crate::cgroups::systemd::user_manager();
            crate::cgroups::systemd::plan(cgroups_path, &opts.id, user)?
        } else {
            Cgroup::plan(cgroups_path, &opts.id)?
        };
        // The user's systemd's unit is a rootless cgroup (runc's rootless cgroup manager):
        // what can't be applied in it is a warning, also as root in a user namespace.
        let user_unit = cgroup.systemd.as_ref().is_some_and(|u| u.user);
        let rootless = !nix::unistd::geteuid().is_root() || user_unit;
        if rootless && cgroup.systemd.is_none() {
            // Cgroups only where they are delegated to us, as runc's rootless mode does.
            let dropped = cgroup.keep_delegated();
            if !dropped.is_empty() {
                let names: Vec<String> = dropped.iter().map(|p| p.display().to_string()).collect();
                crate::log::warn(&format!(
                    "rootless: no cgroup in {} (not delegated to uid {}): limits there are not applied",
                    names.join(", "),
                    nix::unistd::geteuid()
                ));
            }
            undo.cgroup = Some(cgroup.clone());
        }
        let into =
            cgroup.systemd.is_none() && cgroup.dirs.len() == 1 && cgroup.dirs[0].hierarchy.v2;
        Ok(CgroupPlan {
            cgroup,
            sd_props,
            rootless,
            resources: crate::cgroups::resources::effective(spec),
            into,
        })
    }

    /// For CLONE_INTO_CGROUP, the cgroup is made and limited before the clone; the state
    /// (with the levels about to be made) is saved before, so `delete` can clean up after
    /// a create killed at any point. Returns the cgroup to clone into, if so.
    fn make_before_clone(
        &mut self,
        dir: &ContainerDir,
        state: &mut State,
        undo: &mut Undo,
    ) -> Result<Option<std::fs::File>> {
        if !self.into {
            return Ok(None);
        }
        dir.save(state)?;
        make_cgroup(&mut self.cgroup, state, undo)?;
        apply_resources(&self.cgroup, &self.resources, self.rootless)?;
        let path = &self.cgroup.dirs[0].path;
        Ok(Some(
            std::fs::File::open(path).context("open the container's cgroup")?,
        ))
    }

    /// Puts the cloned init in its cgroup: with systemd, a scope made with the init in it;
    /// otherwise the cgroup is made and limited unless that was done before the clone, and
    /// the init moved in unless it was born there (`placed`).
    fn place(
        &mut self,
        dir: &ContainerDir,
        state: &mut State,
        undo: &mut Undo,
        id: &str,
        pid: i32,
        placed: bool,
    ) -> Result<()> {
        let cgroup = &mut self.cgroup;
        if cgroup.systemd.is_some() {
            // The scope is made with the init in it (runc's order); saved at once, so a
            // create killed from here on still has its unit stopped by `delete`.
            let r =
                crate::cgroups::systemd::start(cgroup, pid, id, &self.resources, &self.sd_props);
            undo.cgroup = Some(cgroup.clone());
            state.cgroup = Some(cgroup.clone());
            r?;
            dir.save(state)?;
            apply_resources(cgroup, &self.resources, self.rootless)?;
        } else if !self.into {
            // Recorded in the state by its next save; until then it lists the levels planned.
            make_cgroup(cgroup, state, undo)?;
            apply_resources(cgroup, &self.resources, self.rootless)?;
        }
        if placed {
            crate::log::debug(&format!(
                "init {pid} started in its cgroup (CLONE_INTO_CGROUP)"
            ));
        } else {
            cgroup.add(pid)?;
        }
        Ok(())
    }
}

/// The state as first recorded: phase Creating, no pid yet.
fn initial_state(
    opts: &CreateOpts,
    bundle: &Bundle,
    rootfs: &Path,
    cgroup: &Cgroup,
    namespaces: &Namespaces,
) -> State {
    let spec = &bundle.spec;
    let owner = user_name(nix::unistd::geteuid().as_raw());
    State {
        id: opts.id.clone(),
        pid: 0,
        pid_start: 0,
        bundle: bundle.dir.clone(),
        rootfs: rootfs.to_path_buf(),
        created: crate::log::rfc3339_now(),
        owner,
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
        shared_pid_ns: namespaces.shared_pid_ns(),
        no_new_keyring: opts.no_new_keyring,
    }
}

/// Without a mount namespace the init's mounts land on the host: the mount the rootfs is
/// on now is recorded, so what lands above it is detached again (by `delete`, or `undo`).
fn record_rootfs_mount(rootfs: &Path, state: &mut State, undo: &mut Undo) -> Result<()> {
    let f =
        std::fs::File::open(rootfs).with_context(|| format!("open rootfs {}", rootfs.display()))?;
    let id = crate::sys::mount_id(f.as_fd())
        .with_context(|| format!("statx the mount of {}", rootfs.display()))?;
    state.rootfs_mount_before = Some(id);
    undo.rootfs_mount = Some((rootfs.to_path_buf(), id));
    Ok(())
}

/// Lets the init go and serves it until it is parked: createRuntime hooks on its request,
/// its error if it fails.
fn wait_ready(ch: &sync::Channel, spec: &Spec, state: &State) -> Result<()> {
    if ch.send(&Msg::Go).is_err() {
        // The init died before reading it; its own error message is waiting for us.
    }
    loop {
        match ch.recv("the container init")? {
            Msg::Ready => return Ok(()),
            Msg::Error { msg } => bail!("{msg}"),
            Msg::RunHooks => crate::hooks::create_runtime(spec, state, ch)?,
            other => bail!("unexpected message {other:?} from the container init"),
        }
    }
}

/// Makes the cgroup; the undo's and the state's copies then list what was made (also
/// when making fails midway).
fn make_cgroup(cgroup: &mut Cgroup, state: &mut State, undo: &mut Undo) -> Result<()> {
    let r = cgroup.make();
    undo.cgroup = Some(cgroup.clone());
    state.cgroup = Some(cgroup.clone());
    r
}

/// Writes linux.resources; unprivileged, what can't be applied is a warning (runc's
/// rootless mode), not an error.
fn apply_resources(
    cgroup: &Cgroup,
    resources: &oci_spec::runtime::LinuxResources,
    rootless: bool,
) -> Result<()> {
    match cgroup.apply(resources) {
        Err(e) if rootless => {
            crate::log::warn(&format!("rootless: resources not applied: {e:#}"));
            Ok(())
        }
        r => r,
    }
}

/// Forks the init with `flags` (fork-style: the child continues on a copy of our stack).
/// With `cgroup`, clone3(CLONE_INTO_CGROUP) starts it there; kernels without it (before
/// 5.7) fall back to clone, and the caller places it. Returns (pid, placed), pid 0 in the
/// child.
fn clone_init(flags: CloneFlags, cgroup: Option<&std::fs::File>) -> Result<(i32, bool)> {
    const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
    if let Some(cg) = cgroup {
        // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack,
        // stack_size, tls, set_tid, set_tid_size, cgroup.
        let mut args = [0u64; 11];
        args[0] = flags.bits() as u64 | CLONE_INTO_CGROUP;
        args[4] = libc::SIGCHLD as u64;
        args[10] = cg.as_raw_fd() as u64;
        // SAFETY: corten is single-threaded here, so the child may run arbitrary code
        // after a fork-style clone; `args` is a valid clone_args of the size given.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_clone3,
                args.as_ptr(),
                std::mem::size_of_val(&args),
            )
        };
        if ret >= 0 {
            return Ok((ret as i32, true));
        }
        let err = std::io::Error::last_os_error();
        if !matches!(
            err.raw_os_error(),
            Some(libc::ENOSYS | libc::E2BIG | libc::EINVAL)
        ) {
            return Err(err).context("clone3 the container init into its cgroup");
        }
    }
    // SAFETY: as above.
    let ret =
        unsafe { crate::sys::fork_clone(flags.bits()) }.context("clone the container init")?;
    Ok((ret, false))
}

/// LISTEN_FDS from our environment (socket activation), passed through like runc does.
fn listen_fds() -> u32 {
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// A new time namespace for our children with the configured offsets.
fn setup_time_namespace(spec: &Spec) -> Result<()> {
    nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
        .context("unshare time namespace")?;
    let offsets = spec
        .linux()
        .as_ref()
        .and_then(|l| l.time_offsets().clone())
        .unwrap_or_default();
    let mut text = String::new();
    for (clock, off) in &offsets {
        text.push_str(&format!(
            "{clock} {} {}\n",
            off.secs().unwrap_or(0),
            off.nanosecs().unwrap_or(0)
        ));
    }
    if !text.is_empty() {
        std::fs::write("/proc/self/timens_offsets", text)
            .context("write /proc/self/timens_offsets")?;
    }
    Ok(())
}

/// uid_map / gid_map of a new user namespace, written by the parent as the kernel requires.
/// Root writes them directly. Anyone else may map only their own id that way, and only
/// after setgroups is denied; other mappings go through newuidmap/newgidmap (shadow's
/// setuid helpers, which check /etc/subuid and /etc/subgid).
fn write_id_maps(spec: &Spec, pid: i32) -> Result<()> {
    let linux = spec.linux().as_ref();
    let uid = linux
        .and_then(|l| l.uid_mappings().clone())
        .unwrap_or_default();
    let gid = linux
        .and_then(|l| l.gid_mappings().clone())
        .unwrap_or_default();
    if uid.is_empty() || gid.is_empty() {
        bail!("a new user namespace needs linux.uidMappings and linux.gidMappings");
    }
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let only_own = |maps: &[oci_spec::runtime::LinuxIdMapping], own: u32| matches!(maps, [m] if m.size() == 1 && m.host_id() == own);
    let rootless = euid != 0;
    if rootless && only_own(&gid, egid) {
        let path = format!("/proc/{pid}/setgroups");
        std::fs::write(&path, "deny").with_context(|| format!("write {path}"))?;
    }
    for (file, maps, own, helper) in [
        ("uid_map", &uid, euid, "newuidmap"),
        ("gid_map", &gid, egid, "newgidmap"),
    ] {
        if rootless && !only_own(maps, own) {
            let mut cmd = std::process::Command::new(helper);
            cmd.arg(pid.to_string());
            for m in maps.iter() {
                cmd.args([m.container_id(), m.host_id(), m.size()].map(|v| v.to_string()));
            }
            let out = cmd.output().with_context(|| {
                format!("run {helper} (needed to map ids other than your own in {file})")
            })?;
            if !out.status.success() {
                bail!(
                    "{helper} failed: {}",
                    String::from_utf8_lossy(&out.stderr).trim()
                );
            }
            continue;
        }
        let text: String = maps
            .iter()
            .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
            .collect();
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, &text).with_context(|| format!("write {path}"))?;
    }
    Ok(())
}

/// The name of `uid` from the host's /etc/passwd (corten is linked statically: no NSS).
pub fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    crate::passwd::by_uid(&passwd, uid).map_or_else(|| uid.to_string(), |u| u.name.to_string())
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

/// Rolls a failed create back: kills and reaps the init (and, without a pid namespace of
/// its own, the other members of a cgroup corten made), removes what corten made of the
/// cgroup and the state dir, then runs the poststop hooks.
struct Undo<'a> {
    dir: Option<&'a ContainerDir>,
    pid: Option<i32>,
    cgroup: Option<Cgroup>,
    shared_pid_ns: bool,
    poststop: Option<State>,
    /// The rootfs and the mount it was on before (no mount namespace).
    rootfs_mount: Option<(PathBuf, u64)>,
}

impl Undo<'_> {
    fn disarm(&mut self) {
        self.dir = None;
        self.pid = None;
        self.cgroup = None;
        self.poststop = None;
        self.rootfs_mount = None;
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(pid), None);
        }
        if let Some(cg) = &self.cgroup {
            if self.shared_pid_ns {
                cg.signal_own(libc::SIGKILL, 0);
            }
            cg.destroy();
        }
        if let Some((rootfs, before)) = &self.rootfs_mount {
            container::detach_rootfs_mounts(rootfs, *before);
        }
        if let Some(dir) = self.dir {
            let _ = dir.remove();
        }
        if let Some(state) = &self.poststop {
            crate::hooks::poststop(state);
        }
    }
}
