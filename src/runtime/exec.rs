//! `exec`: run another process in a created or running container.
//!
//! No re-exec and no helper binary. `corten exec` (P) forks a joiner (A) that enters the
//! container's namespaces (through a pidfd of the container's init where the kernel can,
//! user namespace first) and clones the process (B) with CLONE_PARENT, so B is born inside
//! the pid namespace yet is P's child: P places it in the cgroup, lets it go, and waits
//! for its exit status. B goes through the init's own last step (`init::finalize`: session
//! keyring, LSM labels, identity, seccomp, ...) and execs; a failure before exec comes
//! back over the sync socket, which closes on exec.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::sched::CloneFlags;
use oci_spec::runtime::{Capability, Linux, LinuxCapabilities, Process, Spec, User};

use crate::cgroups::Cgroup;
use crate::config::Bundle;
use crate::container::{self, ContainerDir, State, Status};
use crate::error::Error;
use crate::init::{self, finalize, lsm, ns_flag, ns_name};
use crate::seccomp;
use crate::sync::{self, Channel, Msg};
use crate::sys;

/// runc's `exec` flags and arguments, as the CLI parses them (the doc comments are its
/// help).
#[derive(clap::Args)]
pub struct ExecOpts {
    // `--process FILE`: a runtime-spec process object; the other process flags are
    // ignored then, as in runc.
    /// Path to a process.json (a runtime-spec process); replaces the other process flags
    #[arg(short = 'p', long = "process", value_name = "PROCESS")]
    pub process_file: Option<PathBuf>,
    /// Working directory in the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE; repeatable)
    #[arg(short = 'e', long = "env")]
    pub env: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(short = 't', long)]
    pub tty: bool,
    /// UID[:GID] to run as
    #[arg(short = 'u', long, value_parser = crate::args::user)]
    pub user: Option<crate::args::UserIds>,
    /// Additional gids (repeatable)
    #[arg(short = 'g', long = "additional-gids", value_parser = crate::args::id_number)]
    pub additional_gids: Vec<u32>,
    /// Add a capability (repeatable)
    #[arg(short = 'c', long = "cap", value_name = "CAP")]
    pub caps: Vec<String>,
    /// Set no_new_privs
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// AppArmor profile for the process
    #[arg(long)]
    pub apparmor: Option<String>,
    /// SELinux label for the process
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// Do not wait for the process
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// Write the process's pid to this file
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// Unix socket to send the pty master to
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Pass N extra fds (3..3+N) to the process
    #[arg(long = "preserve-fds", default_value = "0", value_parser = crate::args::preserve_fds)]
    pub preserve_fds: u32,
    /// Existing sub-cgroup of the container's to run in: PATH, or CONTROLLER[,CONTROLLER]:PATH
    /// (cgroup v1; repeatable)
    #[arg(long, action = clap::ArgAction::Append)]
    pub cgroup: Vec<String>,
    /// Allow exec in a paused container
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Container id
    pub id: String,
    /// The command and its arguments
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub args: Vec<String>,
}

/// Runs the process; returns its exit status (128+N for signal N), or 0 when detached.
pub fn exec(root: &Path, o: &ExecOpts) -> Result<i32> {
    // The state dir stays open until the process is done with, as it always was.
    let (_dir, state, status) = open_container(root, o)?;
    let bundle = Bundle::load_in(&state.bundle, Some(root))?;
    let process = build_process(&bundle.spec, o)?;
    // Labels the host can't apply are refused before anything is made, as `create` does.
    let lsm_host = lsm::Host::detect();
    lsm::check_process(&process, lsm_host)?;
    let cgroup = exec_cgroup(state.cgroup.as_ref(), o)?;
    let pidfd = pin_init(&state)?;
    let targets = namespaces(&bundle.spec, state.pid)?;
    // The host's procfs, for the process's LSM attribute files once it is in the
    // container's mount namespace.
    let attrs = lsm::ProcAttr::host()?;
    set_initial_affinity(&process)?;
    let seccomp = bundle.seccomp.as_ref();
    // Connected here, where listenerPath is the host's; the process sends the listener.
    let agent = match seccomp {
        Some(p) => p.connect_agent(&state, status)?,
        None => None,
    };
    let notifies = agent.is_some();
    // Connected here, in our mount namespace, before anything is cloned.
    let console = crate::console::plan(
        process.terminal().unwrap_or(false),
        o.console_socket.as_deref(),
        o.detach,
    )?;
    let (console_child, relay) = match console {
        Some(p) => (Some(p.child), p.relay),
        None => (None, None),
    };
    let (parent_ch, child_ch) = sync::pair()?;
    crate::log::debug(&format!(
        "nsexec container setup: exec in container {} (init pid {})",
        o.id, state.pid
    ));

    // SAFETY: corten is single-threaded, so the forked child may run arbitrary code.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Child => {
            drop(parent_ch);
            drop(relay);
            join_and_clone(
                &pidfd,
                &targets,
                &child_ch,
                &Child {
                    process: &process,
                    linux: bundle.spec.linux().as_ref(),
                    seccomp,
                    preserve_fds: o.preserve_fds,
                    console: std::cell::Cell::new(console_child),
                    userns: targets.flags.contains(CloneFlags::CLONE_NEWUSER),
                    agent: std::cell::RefCell::new(agent),
                    keyring: (!state.no_new_keyring).then(|| state.id.clone()),
                    lsm_host,
                    attrs,
                },
            )
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(child_ch);
            // Only the process may hold it: a failure before it sends closes the socket.
            drop(console_child);
            drop(agent);
            let pid = process_pid(&parent_ch, child)?;
            let master = Pending {
                ch: &parent_ch,
                pid,
                init_pid: state.pid,
                cgroup: cgroup.as_ref(),
                notifies,
                relay: relay.as_ref(),
                pid_file: o.pid_file.as_deref(),
            }
            .go()?;
            if o.detach {
                return Ok(0);
            }
            match master {
                Some(m) => crate::relay::relay(m, pid),
                None => crate::wait::wait_forwarding(pid),
            }
        }
    }
}

/// The container, its state and status, if a process may be exec'd in it.
fn open_container(root: &Path, o: &ExecOpts) -> Result<(ContainerDir, State, Status)> {
    let dir = ContainerDir::open(root, &o.id, false)?;
    let state = dir.load_existing()?;
    let status = dir.status(&state);
    match status {
        Status::Created | Status::Running => {}
        Status::Paused if o.ignore_paused => {}
        Status::Paused => {
            bail!("cannot exec in a paused container (use --ignore-paused to override)")
        }
        Status::Stopped => bail!("cannot exec in a stopped container"),
        Status::Creating => bail!("cannot exec in a container that is still being created"),
    }
    Ok((dir, state, status))
}

/// The cgroup the process goes in: the container's, or its `--cgroup` sub-cgroups.
fn exec_cgroup(container: Option<&Cgroup>, o: &ExecOpts) -> Result<Option<Cgroup>> {
    Ok(match container {
        Some(cg) if !o.cgroup.is_empty() => Some(sub_cgroup(cg, &o.cgroup)?),
        Some(cg) => Some(cg.clone()),
        None if !o.cgroup.is_empty() => bail!("--cgroup: container {} has no cgroup", o.id),
        None => None,
    })
}

/// execCPUAffinity.initial, set on ourselves: inherited by the joiner and the process,
/// until `final` once in the cgroup.
fn set_initial_affinity(process: &Process) -> Result<()> {
    let affinity = process.exec_cpu_affinity().clone().unwrap_or_default();
    if let Some(initial) = affinity.initial().as_deref().filter(|l| !l.is_empty()) {
        crate::sched::set_affinity(initial, "initial")?;
    }
    Ok(())
}

/// The init, pinned by a pidfd once we know it is still the same process.
fn pin_init(state: &State) -> Result<OwnedFd> {
    let pidfd = sys::pidfd_open(state.pid).map_err(|_| Error::NOT_RUNNING)?;
    if !crate::pid::process_alive(state.pid, state.pid_start) {
        return Err(Error::NOT_RUNNING.into());
    }
    Ok(pidfd)
}

/// The process's pid, as the joiner reports it before it exits (reaped here).
fn process_pid(ch: &Channel, joiner: nix::unistd::Pid) -> Result<i32> {
    let pid = match ch.recv("the exec joiner") {
        Ok(Msg::Pid { pid }) => pid,
        Ok(Msg::Error { msg }) => {
            let _ = nix::sys::wait::waitpid(joiner, None);
            bail!("{msg}");
        }
        Ok(other) => bail!("unexpected message {other:?} from the exec joiner"),
        Err(e) => {
            let _ = nix::sys::wait::waitpid(joiner, None);
            return Err(e);
        }
    };
    let _ = nix::sys::wait::waitpid(joiner, None);
    Ok(pid)
}

/// The cloned process (B), our child, waiting for `Go`.
struct Pending<'a> {
    ch: &'a Channel,
    pid: i32,
    init_pid: i32,
    cgroup: Option<&'a Cgroup>,
    notifies: bool,
    /// With a terminal that corten relays: where its master arrives.
    relay: Option<&'a OwnedFd>,
    pid_file: Option<&'a Path>,
}

impl Pending<'_> {
    /// Places the process and lets it exec; returns its terminal's master when corten
    /// relays it. The process sent its terminal before it exec'd. A pid file that can't be
    /// written is a failed exec too: the process must not run on unaccounted for. On
    /// failure the process is killed and reaped.
    fn go(&self) -> Result<Option<OwnedFd>> {
        let pid = self.pid;
        let started = place_and_go(self.ch, pid, self.init_pid, self.cgroup, self.notifies)
            .and_then(|()| self.relay.map(crate::console::recv_master).transpose())
            .and_then(|m| write_pid_file(self.pid_file, pid).map(|()| m));
        if started.is_err() {
            // Our own child; reaped right after.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
        }
        started
    }
}

/// `--pid-file`: the process's host pid.
fn write_pid_file(file: Option<&Path>, pid: i32) -> Result<()> {
    let Some(f) = file else { return Ok(()) };
    let f = std::path::absolute(f).context("--pid-file")?;
    container::write_atomic(&f, pid.to_string().as_bytes(), 0o644)
        .with_context(|| format!("write pid file {}", f.display()))
}

/// Puts the new process in the container's cgroup, lets it exec, and waits for the exec
/// (EOF on the sync socket) or its error. A process with a seccomp agent first learns its
/// host pid, which the agent is told.
fn place_and_go(
    ch: &Channel,
    pid: i32,
    init_pid: i32,
    cgroup: Option<&Cgroup>,
    notifies: bool,
) -> Result<()> {
    if let Some(cg) = cgroup {
        cg.add_exec(pid, init_pid)?;
    }
    if notifies {
        ch.send(&Msg::Pid { pid })?;
    }
    ch.send(&Msg::Go)?;
    match ch.recv_or_eof()? {
        None => Ok(()),
        Some(Msg::Error { msg }) => bail!("{msg}"),
        Some(other) => bail!("unexpected message {other:?} from the exec'd process"),
    }
}

/// The container's process with the exec flags applied, or the `--process` file.
fn build_process(spec: &Spec, o: &ExecOpts) -> Result<Process> {
    if let Some(f) = o.process_file.as_deref() {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("read --process {}", f.display()))?;
        let parse = || format!("parse --process {}", f.display());
        let mut v: serde_json::Value = serde_json::from_str(&text).with_context(parse)?;
        // runc's default: no user is root (uid 0, gid 0).
        if let Some(obj) = v.as_object_mut() {
            obj.entry("user")
                .or_insert_with(|| serde_json::json!({"uid": 0, "gid": 0}));
        }
        let unknown = crate::config::unknown_capabilities(&v, "/capabilities");
        if !unknown.is_empty() {
            bail!(
                "--process {}: unknown capabilities {unknown:?}",
                f.display()
            );
        }
        crate::sched::spec_flag_names(&mut v, "/scheduler/flags");
        let mut p: Process = serde_json::from_value(v).with_context(parse)?;
        if p.args().as_ref().is_none_or(|a| a.is_empty()) {
            bail!("--process {}: args must not be empty", f.display());
        }
        inherit_from_container(&mut p, spec.process().as_ref());
        crate::sched::validate(&p).with_context(|| format!("--process {}", f.display()))?;
        return Ok(p);
    }
    if o.args.is_empty() {
        bail!("exec needs a command: corten exec [flags] ID COMMAND [ARGS...]");
    }
    let mut p = spec.process().clone().unwrap_or_default();
    p.set_args(Some(o.args.to_vec()));
    p.set_terminal(Some(o.tty));
    if let Some(cwd) = &o.cwd {
        p.set_cwd(cwd.to_path_buf());
    }
    p.set_env(Some(merge_env(p.env().as_deref().unwrap_or(&[]), &o.env)));
    if let Some(u) = o.user {
        let mut user = User::default();
        user.set_uid(u.uid);
        user.set_gid(u.gid);
        user.set_umask(p.user().umask());
        p.set_user(user);
    }
    if !o.additional_gids.is_empty() {
        let mut user = p.user().clone();
        user.set_additional_gids(Some(o.additional_gids.to_vec()));
        p.set_user(user);
    }
    if !o.caps.is_empty() {
        p.set_capabilities(Some(add_caps(p.capabilities().clone(), &o.caps)?));
    }
    if o.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &o.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &o.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    Ok(p)
}

/// runc's rule for a `--process` file: the container's ioPriority, scheduler, oomScoreAdj
/// and LSM labels (apparmorProfile, selinuxLabel) unless the file has its own.
fn inherit_from_container(p: &mut Process, base: Option<&Process>) {
    let Some(base) = base else { return };
    if p.io_priority().is_none() {
        p.set_io_priority(*base.io_priority());
    }
    if p.scheduler().is_none() {
        p.set_scheduler(base.scheduler().clone());
    }
    if p.oom_score_adj().is_none() {
        p.set_oom_score_adj(base.oom_score_adj());
    }
    if p.apparmor_profile().as_deref().is_none_or(str::is_empty) {
        p.set_apparmor_profile(base.apparmor_profile().clone());
    }
    if p.selinux_label().as_deref().is_none_or(str::is_empty) {
        p.set_selinux_label(base.selinux_label().clone());
    }
}

/// The container's env with `-e KEY=VALUE` entries replacing or adding keys.
fn merge_env(base: &[String], extra: &[String]) -> Vec<String> {
    let key = |e: &str| e.split('=').next().unwrap_or_default().to_string();
    let mut out: Vec<String> = base
        .iter()
        .filter(|b| !extra.iter().any(|e| key(e) == key(b)))
        .cloned()
        .collect();
    out.extend(extra.iter().cloned());
    out
}

/// `--cap CAP_X`: added to the bounding, effective and permitted sets (runc's rule).
fn add_caps(caps: Option<LinuxCapabilities>, add: &[String]) -> Result<LinuxCapabilities> {
    let mut caps = caps.unwrap_or_else(|| {
        // oci-spec's Default is runc's default set; no capabilities means none.
        let mut c = LinuxCapabilities::default();
        c.set_bounding(None);
        c.set_effective(None);
        c.set_permitted(None);
        c.set_inheritable(None);
        c.set_ambient(None);
        c
    });
    let mut parsed = Vec::new();
    for name in add {
        let full = if name.to_ascii_uppercase().starts_with("CAP_") {
            name.to_ascii_uppercase()
        } else {
            format!("CAP_{}", name.to_ascii_uppercase())
        };
        let cap: Capability = serde_json::from_value(serde_json::Value::String(full.clone()))
            .map_err(|_| anyhow::anyhow!("--cap {name:?}: unknown capability"))?;
        parsed.push(cap);
    }
    let with = |set: Option<&std::collections::HashSet<Capability>>| {
        let mut s = set.cloned().unwrap_or_default();
        s.extend(parsed.iter().copied());
        Some(s)
    };
    caps.set_bounding(with(caps.bounding().as_ref()));
    caps.set_effective(with(caps.effective().as_ref()));
    caps.set_permitted(with(caps.permitted().as_ref()));
    Ok(caps)
}

/// `--cgroup` arguments, as runc's getSubCgroupPaths: a single `PATH` for every hierarchy
/// (keyed ""), or any number of `CONTROLLER[,CONTROLLER]:PATH` (cgroup v1).
fn parse_sub_cgroups(args: &[String]) -> Result<Vec<(&str, &str)>> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for arg in args {
        let Some((ctrls, path)) = arg.split_once(':') else {
            if args.len() != 1 {
                bail!("invalid --cgroup argument: {arg} (missing <controller>: prefix)");
            }
            out.push(("", arg));
            continue;
        };
        for ctrl in ctrls.split(',') {
            if ctrl.is_empty() {
                bail!("invalid --cgroup argument: {arg} (empty <controller> prefix)");
            }
            if out.iter().any(|(c, _)| *c == ctrl) {
                bail!("invalid --cgroup argument(s): controller {ctrl} specified multiple times");
            }
            out.push((ctrl, path));
        }
    }
    Ok(out)
}

/// `sub` below a cgroup directory, resolved lexically ("/" is the directory itself); it
/// must not climb out of it.
fn sub_cgroup_path(sub: &str) -> Result<PathBuf> {
    use std::path::Component;
    let mut parts = Vec::new();
    for c in Path::new(sub).components() {
        match c {
            Component::Normal(p) => parts.push(p),
            Component::ParentDir if parts.pop().is_some() => {}
            Component::ParentDir | Component::Prefix(_) => {
                bail!("{sub} is not a sub cgroup path")
            }
            Component::RootDir | Component::CurDir => {}
        }
    }
    Ok(parts.iter().collect())
}

/// The container's cgroup with the `--cgroup` sub-cgroups: in every hierarchy, or in the
/// ones of the controllers named. Whether they exist shows when the process is added.
fn sub_cgroup(cg: &Cgroup, args: &[String]) -> Result<Cgroup> {
    let mut out = cg.clone();
    for (ctrl, sub) in parse_sub_cgroups(args)? {
        let rel = sub_cgroup_path(sub)?;
        let mut known = false;
        for (d, base) in out.dirs.iter_mut().zip(&cg.dirs) {
            if ctrl.is_empty() || d.hierarchy.controllers.iter().any(|c| c == ctrl) {
                d.path = base.path.join(&rel);
                known = true;
            }
        }
        if !known {
            bail!("--cgroup {ctrl}:{sub}: unknown controller {ctrl}");
        }
    }
    Ok(out)
}

/// The namespaces to enter: the config's types, as the init has them. The /proc files
/// are opened now as a fallback for kernels without setns(pidfd) (before 5.8).
struct Targets {
    flags: CloneFlags,
    files: Vec<(CloneFlags, OwnedFd)>,
}

fn namespaces(spec: &Spec, pid: i32) -> Result<Targets> {
    let mut flags = CloneFlags::empty();
    let mut files = Vec::new();
    for ns in spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .into_iter()
        .flatten()
    {
        let flag = ns_flag(ns.typ());
        flags |= flag;
        let name = match flag {
            CloneFlags::CLONE_NEWNS => "mnt",
            CloneFlags::CLONE_NEWNET => "net",
            f => ns_name(f),
        };
        let path = format!("/proc/{pid}/ns/{name}");
        let fd: OwnedFd = std::fs::File::open(&path)
            .with_context(|| format!("open {path}"))?
            .into();
        // User first (it grants the rights for the rest), mount last.
        match flag {
            CloneFlags::CLONE_NEWUSER => files.insert(0, (flag, fd)),
            _ => files.push((flag, fd)),
        }
    }
    if let Some(i) = files
        .iter()
        .position(|(f, _)| *f == CloneFlags::CLONE_NEWNS)
    {
        let m = files.remove(i);
        files.push(m);
    }
    Ok(Targets { flags, files })
}

/// What the process (B) is made of.
struct Child<'a> {
    process: &'a Process,
    /// The container's linux section: its memoryPolicy and personality apply to every
    /// process, as runc's do.
    linux: Option<&'a Linux>,
    seccomp: Option<&'a seccomp::Program>,
    preserve_fds: u32,
    /// process.terminal: where to send the pty's master (taken once it is sent).
    console: std::cell::Cell<Option<crate::console::Target>>,
    /// The container has a user namespace of its own (joined).
    userns: bool,
    /// The SCMP_ACT_NOTIFY agent, connected by `corten exec`.
    agent: std::cell::RefCell<Option<seccomp::Agent>>,
    /// Join the container's session keyring `_ses.<id>` (unless it was created with
    /// --no-new-keyring), as runc's setns init does.
    keyring: Option<String>,
    lsm_host: lsm::Host,
    /// The host's procfs, opened by `corten exec`.
    attrs: lsm::ProcAttr,
}

/// The joiner (A): enter the namespaces, clone the process with CLONE_PARENT, report its
/// pid, exit. Never returns.
fn join_and_clone(pidfd: &OwnedFd, t: &Targets, ch: &Channel, child: &Child) -> ! {
    let result = (|| -> Result<i32> {
        // Die if `corten exec` dies.
        let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
        if nix::sched::setns(pidfd.as_fd(), t.flags).is_err() {
            for (flag, fd) in &t.files {
                nix::sched::setns(fd, *flag).with_context(|| {
                    format!("join the container's {} namespace", ns_name(*flag))
                })?;
            }
        }
        // SAFETY: the joiner is single-threaded (a fork of single-threaded corten).
        let pid =
            unsafe { sys::fork_clone(libc::CLONE_PARENT) }.context("clone the exec process")?;
        if pid == 0 {
            let err = become_process(ch, child);
            let _ = ch.send(&Msg::Error {
                msg: format!("{err:#}"),
            });
            // SAFETY: _exit skips the parent's atexit handlers and buffers.
            unsafe { libc::_exit(127) };
        }
        Ok(pid)
    })();
    let msg = match result {
        Ok(pid) => Msg::Pid { pid },
        Err(e) => Msg::Error {
            msg: format!("{e:#}"),
        },
    };
    let code = i32::from(ch.send(&msg).is_err());
    // SAFETY: as above.
    unsafe { libc::_exit(code) }
}

/// The process (B), inside the namespaces: wait for `Go` (placed in the cgroup), take on
/// the process as the init does, exec. Returns only on failure.
fn become_process(ch: &Channel, child: &Child) -> anyhow::Error {
    let process = child.process;
    let r = (|| -> Result<finalize::Ready> {
        let mut agent = child.agent.borrow_mut().take();
        if let Some(a) = agent.as_mut() {
            match ch.recv("corten exec")? {
                Msg::Pid { pid } => a.set_pid(pid),
                other => bail!("unexpected message {other:?}"),
            }
        }
        match ch.recv("corten exec")? {
            Msg::Go => {}
            other => bail!("unexpected message {other:?}"),
        }
        crate::log::debug("child process in init(): in the container's cgroup");
        if let Some(list) = process
            .exec_cpu_affinity()
            .as_ref()
            .and_then(|a| a.cpu_affinity_final().as_deref())
            .filter(|l| !l.is_empty())
        {
            crate::sched::set_affinity(list, "final")?;
        }
        // The joiner's death must not take us along, nor must a later `corten exec` exit.
        let _ = nix::sys::prctl::set_pdeathsig(None);
        nix::unistd::setsid().ok();
        if child.userns {
            // As the init is: its root, so the keyring and the pty get a mapped owner.
            init::become_userns_root()?;
        }
        if let Some(id) = &child.keyring {
            finalize::session_keyring(id, process, child.lsm_host, &child.attrs, None)?;
        }
        let labels = lsm::ExecLabels::open(process, child.lsm_host, &child.attrs)?;
        if let Some(socket) = child.console.take() {
            // From the container's devpts (we are in its mount namespace); its /dev/console
            // stays the init's.
            crate::console::setup(socket, process, false)?;
        }
        let step = finalize::Step {
            process,
            linux: child.linux,
            seccomp: child.seccomp,
            agent,
            labels,
            listen_fds: 0,
            preserve_fds: child.preserve_fds,
        };
        let ready = finalize::prepare(step, &|| Ok(()))?;
        // In the container's namespaces, root and cwd: the log file is the one opened at
        // start-up.
        crate::log::debug(&format!(
            "setns_init: about to exec {:?} in {}",
            process.args().as_deref().unwrap_or_default().first(),
            process.cwd().display()
        ));
        Ok(ready)
    })();
    // Our end of the sync socket is close-on-exec: EOF tells `corten exec` we made it.
    match r {
        Ok(ready) => ready.exec(),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_merge_replaces_keys() {
        let base = vec!["PATH=/bin".to_string(), "A=1".to_string()];
        let out = merge_env(&base, &["A=2".to_string(), "B=3".to_string()]);
        assert_eq!(out, ["PATH=/bin", "A=2", "B=3"]);
    }

    #[test]
    fn sub_cgroup_arguments() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let a = args(&["memory:m", "cpu,cpuacct:c"]);
        assert_eq!(
            parse_sub_cgroups(&a).unwrap(),
            [("memory", "m"), ("cpu", "c"), ("cpuacct", "c")]
        );
        let a = args(&["/x/y"]);
        assert_eq!(parse_sub_cgroups(&a).unwrap(), [("", "/x/y")]);
        for (bad, want) in [
            (&["a:x", "plain"][..], "missing <controller>: prefix"),
            (&[",cpu:x"][..], "empty <controller> prefix"),
            (
                &["cpu:x", "cpu,memory:y"][..],
                "controller cpu specified multiple times",
            ),
        ] {
            let e = parse_sub_cgroups(&args(bad)).unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
        assert_eq!(sub_cgroup_path("/").unwrap(), PathBuf::new());
        assert_eq!(sub_cgroup_path("a/../b/./c").unwrap(), PathBuf::from("b/c"));
        for bad in ["..", "a/../..", "/../x"] {
            let e = sub_cgroup_path(bad).unwrap_err().to_string();
            assert_eq!(e, format!("{bad} is not a sub cgroup path"));
        }
    }

    fn opts(args: &[String]) -> ExecOpts {
        ExecOpts {
            id: "x".into(),
            process_file: None,
            args: args.to_vec(),
            cwd: None,
            env: Vec::new(),
            tty: false,
            user: None,
            additional_gids: Vec::new(),
            caps: Vec::new(),
            no_new_privs: false,
            apparmor: None,
            process_label: None,
            detach: false,
            pid_file: None,
            console_socket: None,
            preserve_fds: 0,
            cgroup: Vec::new(),
            ignore_paused: false,
        }
    }

    fn spec(process: serde_json::Value) -> Spec {
        let mut s = Spec::default();
        s.set_process(Some(serde_json::from_value(process).unwrap()));
        s
    }

    /// What an exec'd process's labels are (the flags', else the container's) and that
    /// they reach the attribute files, as the init's do.
    #[test]
    fn exec_labels_are_the_flags_else_the_containers_and_are_written() {
        let base = std::env::temp_dir().join(format!("corten-exec-lsm-{}", std::process::id()));
        let attr = base.join("thread-self/attr");
        std::fs::create_dir_all(attr.join("apparmor")).unwrap();
        let both = lsm::Host {
            apparmor: true,
            selinux: true,
        };
        let attrs = lsm::ProcAttr::scratch(&base, |_| Ok(()));
        let written = |p: &Process| {
            std::fs::write(attr.join("apparmor/exec"), "").unwrap();
            std::fs::write(attr.join("exec"), "").unwrap();
            lsm::ExecLabels::open(p, both, &attrs)
                .unwrap()
                .apply()
                .unwrap();
            let read = |f: &str| std::fs::read_to_string(attr.join(f)).unwrap();
            (read("apparmor/exec"), read("exec"))
        };
        let spec = spec(serde_json::json!({"user": {"uid": 0, "gid": 0}, "cwd": "/",
            "args": ["sleep"], "apparmorProfile": "from-config", "selinuxLabel": "l:config"}));
        let args = ["true".to_string()];
        let p = build_process(&spec, &opts(&args)).unwrap();
        let config = ("exec from-config".to_string(), "l:config".to_string());
        assert_eq!(written(&p), config);
        let mut o = opts(&args);
        o.apparmor = Some("from-flag".into());
        o.process_label = Some("l:flag".into());
        let p = build_process(&spec, &o).unwrap();
        assert_eq!(
            written(&p),
            ("exec from-flag".to_string(), "l:flag".to_string())
        );
        // A --process file without labels gets the container's, as in runc.
        let file = base.join("process.json");
        std::fs::write(&file, r#"{"args": ["true"], "cwd": "/"}"#).unwrap();
        let mut o = opts(&[]);
        o.process_file = Some(file.clone());
        let p = build_process(&spec, &o).unwrap();
        assert_eq!(written(&p), config);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn process_file_keeps_its_own_values() {
        let mut p: Process = serde_json::from_value(serde_json::json!({
            "user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["x"],
            "apparmorProfile": "own", "oomScoreAdj": 7}))
        .unwrap();
        let base: Process = serde_json::from_value(serde_json::json!({
            "user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["y"],
            "apparmorProfile": "container", "selinuxLabel": "l", "oomScoreAdj": 3}))
        .unwrap();
        inherit_from_container(&mut p, Some(&base));
        assert_eq!(p.apparmor_profile().as_deref(), Some("own"));
        assert_eq!(p.selinux_label().as_deref(), Some("l"));
        assert_eq!(p.oom_score_adj(), Some(7));
    }

    #[test]
    fn caps_are_added_to_three_sets() {
        let c = add_caps(None, &["NET_ADMIN".into(), "CAP_SYS_TIME".into()]).unwrap();
        for set in [c.bounding(), c.effective(), c.permitted()] {
            let set = set.as_ref().unwrap();
            assert!(set.contains(&Capability::NetAdmin) && set.contains(&Capability::SysTime));
        }
        assert!(c.ambient().is_none());
        assert!(add_caps(None, &["CAP_NOPE".into()]).is_err());
    }
}
