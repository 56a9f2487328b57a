//! Everything between clone() and execve() inside the container.
//!
//! The init is a fork of the `corten create` process (no re-exec): it joins or sets up its
//! namespaces, builds the rootfs, takes on the process identity (`finalize`, the step
//! `exec`'d processes go through too), reports `Ready` over the sync socket and parks in
//! accept() on the start socket. `start` connects; the init execs the user program, and
//! the close-on-exec connection tells `start` the exec happened (EOF) or carries the error.

pub mod cgroupfs;
pub mod copyup;
pub mod exec;
pub mod finalize;
pub mod identity;
pub mod lsm;
pub mod mounts;
pub mod personality;
pub mod rootfs;

use std::cell::Cell;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::seccomp;
use crate::sync::{Channel, Msg};

/// What the parent hands the init (it is a fork, so this is just shared memory).
pub struct InitConfig<'a> {
    pub spec: &'a Spec,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub no_pivot: bool,
    /// Extra fds (3..3+n) that reach the process: --preserve-fds plus LISTEN_FDS.
    pub preserve_fds: u32,
    pub listen_fds: u32,
    /// Namespaces to join with setns, user namespace first.
    pub join: Vec<(CloneFlags, OwnedFd)>,
    /// The parent's `Go` (cgroup placed, id maps written) has not been received yet. It is
    /// awaited only where needed, so the rootfs work overlaps the parent's cgroup writes
    /// (the first v1 cgroup.procs write waits out an RCU grace period).
    pub go_pending: Cell<bool>,
    /// Await `Go` before anything else (a new user namespace needs its id maps).
    pub go_first: bool,
    /// unshare(CLONE_NEWCGROUP) once placed in the cgroup.
    pub new_cgroupns: bool,
    pub has_mount_ns: bool,
    /// Binds made by `create` (crate::idmap): the id-mapped ones, and all in a user
    /// namespace.
    pub idmapped: &'a [crate::idmap::Prepared],
    /// The container's cgroup (planned by the parent; made and joined while we work).
    pub cgroup: &'a crate::cgroups::Cgroup,
    /// Join a new session keyring named `_ses.<id>` (unless --no-new-keyring), so the
    /// container can't reach the keys of the session it was started from.
    pub keyring: Option<String>,
    pub start_listener: OwnedFd,
    pub sync: Channel,
    /// process.terminal: where to send the pty's master (taken once it is sent).
    pub console: Cell<Option<crate::console::Target>>,
    /// The parent's fds the init inherits but must not keep: the state-dir lock and the
    /// parent's end of the sync socket (holding it, the init would never see EOF).
    pub parent_only_fds: Vec<std::os::fd::RawFd>,
    /// The seccomp filter, compiled by `create`.
    pub seccomp: Option<&'a seccomp::Program>,
    /// The container's state as `create` records it (pid not known yet): the seccomp
    /// agent gets it.
    pub state: &'a crate::container::State,
    /// createContainer and startContainer hooks (and the round trip for createRuntime).
    pub hooks: crate::hooks::InitHooks<'a>,
}

/// The init's entry point after clone(); never returns.
pub fn run(cfg: InitConfig) -> ! {
    let code = match prepare(&cfg) {
        Ok(ready) => {
            // Parked until `start`, then exec; only returns on failure.
            let err = wait_and_exec(&cfg, ready);
            eprintln!("corten: {err:#}");
            127
        }
        Err(e) => {
            let _ = cfg.sync.send(&Msg::Error {
                msg: format!("{e:#}"),
            });
            1
        }
    };
    // SAFETY: _exit skips atexit handlers and stdio flushing that belong to the parent.
    unsafe { libc::_exit(code) }
}

/// Everything up to the end of `finalize::prepare`; what is left is done once `start`
/// arrives.
fn prepare<'a>(cfg: &InitConfig<'a>) -> Result<finalize::Ready<'a>> {
    for &fd in &cfg.parent_only_fds {
        // SAFETY: these fds are copies the fork gave us; nothing in the init uses them.
        unsafe { libc::close(fd) };
    }
    // Die with the parent while it still waits for us (a killed `create` leaves no init).
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    // The parent may have died before the prctl: then its end of the socket is closed.
    if cfg.sync.peer_closed() {
        bail!("corten create exited");
    }
    // The SCMP_ACT_NOTIFY agent is reached while listenerPath and /proc are the host's.
    let agent = match cfg.seccomp {
        Some(p) => p.connect_agent(cfg.state, crate::container::Status::Creating)?,
        None => None,
    };
    for (flag, fd) in &cfg.join {
        nix::sched::setns(fd, *flag)
            .with_context(|| format!("join {} namespace", ns_name(*flag)))?;
    }
    if cfg.go_first {
        await_go(cfg)?;
    }
    let in_userns = cfg.go_first
        || cfg
            .join
            .iter()
            .any(|(f, _)| *f == CloneFlags::CLONE_NEWUSER);
    if in_userns {
        become_userns_root()?;
    }
    if crate::netdev::creates_netns(cfg.spec) {
        crate::netdev::loopback_up()?;
    }
    nix::unistd::setsid().context("setsid")?;
    let spec = cfg.spec;
    let process = spec.process().as_ref().context("process is required")?;
    // The attribute files of the host's procfs, opened while it is still our /proc.
    let lsm_host = lsm::Host::detect();
    let attrs = lsm::ProcAttr::host()?;
    let labels = lsm::ExecLabels::open(process, lsm_host, &attrs)?;
    if let Some(id) = &cfg.keyring {
        let searchers = finalize::keyring_searchers(in_userns);
        finalize::session_keyring(id, process, lsm_host, &attrs, Some(searchers))?;
    }
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).with_context(|| format!("sethostname {h:?}"))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: pointer and length describe `d`.
        if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("setdomainname {d:?}"));
        }
    }
    // mknod and mkdir below must get exactly the modes asked for.
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let hooks = || {
        cfg.hooks
            .before_pivot(&cfg.sync, cfg.state, || await_go(cfg))
    };
    if !cfg.has_mount_ns {
        // Mounts made in the host's namespace: only once `create` recorded how to undo them.
        await_go(cfg)?;
    }
    {
        rootfs::setup(&rootfs::RootfsPlan {
            cfg,
            host_ns: !cfg.has_mount_ns,
            cgroupns: cfg.new_cgroupns || has_ns(spec, LinuxNamespaceType::Cgroup),
            cwd: process.cwd(),
            // Also when the runtime itself runs in one (rootless podman's).
            userns: in_userns || crate::sys::in_user_ns(),
            before_cgroup_mount: &|| await_go(cfg),
            before_pivot: &hooks,
            // Without a mount namespace, /dev/console is not mounted over (the host's
            // namespace would show it).
            after_pivot: &|| setup_console(cfg, cfg.has_mount_ns),
        })?;
    }
    // Unsharing the cgroup namespace needs CAP_SYS_ADMIN, and a seccomp filter may deny
    // unshare: placed in the cgroup (where the unshare happens) before the process takes
    // on its identity.
    if cfg.new_cgroupns {
        await_go(cfg)?;
    }
    let step = finalize::Step {
        process,
        linux: spec.linux().as_ref(),
        seccomp: cfg.seccomp,
        agent,
        labels,
        listen_fds: cfg.listen_fds,
        preserve_fds: cfg.preserve_fds,
    };
    let mut ready = finalize::prepare(step, &|| await_go(cfg))?;
    crate::log::debug(&format!(
        "init: in the container's root, cwd {}",
        process.cwd().display()
    ));
    // The SCMP_ACT_NOTIFY agent gets its fd during `create`, as runc sends it, so it is
    // attached before the container starts: such a filter is loaded now, before Ready.
    ready.load_seccomp_if_notifying()?;
    Ok(ready)
}

/// Waits for the parent's `Go` once; then, in its cgroup, unshares the cgroup namespace so
/// its root is the container's cgroup.
fn await_go(cfg: &InitConfig) -> Result<()> {
    if !cfg.go_pending.replace(false) {
        return Ok(());
    }
    match cfg.sync.recv("corten create")? {
        Msg::Go => {}
        other => bail!("unexpected message {other:?}"),
    }
    if cfg.new_cgroupns {
        nix::sched::unshare(CloneFlags::CLONE_NEWCGROUP).context("unshare cgroup namespace")?;
    }
    Ok(())
}

/// process.terminal: the pty, from the container's devpts once the rootfs is in place (as
/// runc does it), becomes our stdio and controlling terminal; its master goes out.
fn setup_console(cfg: &InitConfig, mount_console: bool) -> Result<()> {
    match (cfg.console.take(), cfg.spec.process()) {
        (Some(socket), Some(process)) => crate::console::setup(socket, process, mount_console),
        _ => Ok(()),
    }
}

/// In a user namespace our credentials are still the host's (unmapped there, so files we
/// create would fail with EOVERFLOW): become its root, which the id maps make someone.
pub fn become_userns_root() -> Result<()> {
    let root_gid = nix::unistd::Gid::from_raw(0);
    let root_uid = nix::unistd::Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid)
        .context("setresgid(0) in the user namespace: is gid 0 mapped?")?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid)
        .context("setresuid(0) in the user namespace: is uid 0 mapped?")?;
    Ok(())
}

/// Reports Ready, parks in accept() until `start`, then execs.
fn wait_and_exec(cfg: &InitConfig, mut ready: finalize::Ready) -> anyhow::Error {
    // From here on the parent exits normally; it must not take us with it.
    let _ = nix::sys::prctl::set_pdeathsig(None);
    if let Err(e) = cfg.sync.send(&Msg::Ready) {
        return e;
    }
    let conn = loop {
        match nix::sys::socket::accept4(
            cfg.start_listener.as_raw_fd(),
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
        ) {
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return anyhow::Error::from(e).context("wait for start"),
            // SAFETY: accept4 returned a new fd that nothing else owns.
            Ok(fd) => break UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) }),
        }
    };
    // startContainer hooks run in the container as its process will, under its seccomp
    // filter (runc): then the filter comes before them, else as late as possible.
    let mut hooks = || -> Result<()> {
        if cfg.hooks.has_start_container() {
            ready.load_seccomp()?;
        }
        // While SIGPIPE is still ignored (the hooks' stdin is a pipe).
        cfg.hooks.start_container(ready.env())
    };
    let err = match hooks() {
        Ok(()) => ready.exec(),
        Err(e) => e,
    };
    let _ = (&conn).write_all(format!("{err:#}").as_bytes());
    err
}

fn has_ns(spec: &Spec, t: LinuxNamespaceType) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|v| v.iter().any(|n| n.typ() == t))
}

/// Opens `path` without following a final symlink, checks it lives on procfs and writes.
pub fn write_proc(path: &str, value: &str) -> Result<()> {
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::open(
        path,
        OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("open {path}"))?;
    write_proc_fd(fd, value).with_context(|| format!("write {path}"))
}

/// Writes `value` to an open file after checking it is on procfs (never a look-alike file
/// or mount the image planted).
pub fn write_proc_fd(fd: OwnedFd, value: &str) -> Result<()> {
    check_procfs(&fd)?;
    nix::unistd::write(&fd, value.as_bytes()).context("write")?;
    Ok(())
}

/// Fails unless `fd` is a file on procfs (PROC_SUPER_MAGIC).
pub fn check_procfs(fd: &OwnedFd) -> Result<()> {
    let fs = nix::sys::statfs::fstatfs(fd).context("statfs")?;
    if fs.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        bail!("not on procfs");
    }
    Ok(())
}

pub fn ns_name(flag: CloneFlags) -> &'static str {
    match flag {
        CloneFlags::CLONE_NEWNS => "mount",
        CloneFlags::CLONE_NEWUTS => "uts",
        CloneFlags::CLONE_NEWIPC => "ipc",
        CloneFlags::CLONE_NEWNET => "network",
        CloneFlags::CLONE_NEWPID => "pid",
        CloneFlags::CLONE_NEWUSER => "user",
        CloneFlags::CLONE_NEWCGROUP => "cgroup",
        _ => "time",
    }
}

/// The clone flag of a namespace type.
pub fn ns_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}
