//! OCI hooks (config.md "POSIX-platform Hooks", runtime.md "Lifecycle").
//!
//! Where each kind runs:
//! - `prestart` (deprecated) and `createRuntime`: by `corten create`, in the runtime
//!   namespace, once the init has built its mounts (before pivot_root). The init asks for
//!   them with [`Msg::RunHooks`] and waits for [`Msg::HooksDone`], which carries its pid.
//! - `createContainer`: by the init, in the container's namespaces, right after that (the
//!   path resolves in the runtime namespace: the old root is still there).
//! - `startContainer`: by the init once `start` woke it, just before it execs (the path
//!   resolves in the container).
//! - `poststart`: by `corten start`, in the runtime namespace, after the exec; a failure
//!   is `start`'s error (spec 1.3), and `start` stops the container.
//! - `poststop`: by `corten delete` after everything is removed, and by a failed `create`
//!   after its roll-back (the lifecycle continues at delete, as runc does).
//!
//! A hook without an `env` of its own inherits one, as runc's do (Go's exec.Cmd with a nil
//! Env): the runtime's environment for the hooks the runtime runs, the container process's
//! for the two the init runs (see [`Inherit`]).
//!
//! A config without hooks costs nothing: no round trip with the init, nothing saved.

use std::cell::OnceCell;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill, killpg};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;
use oci_spec::runtime::{Hook, Hooks, Spec};

use crate::container::{State, Status};
use crate::sync::{Channel, Msg};

/// How much of a hook's output is kept, and how much of it an error message quotes.
const OUTPUT_KEEP: usize = 4096;
const MESSAGE_TAIL: usize = 512;

/// The kinds of hook, in the order the lifecycle runs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Prestart,
        Kind::CreateRuntime,
        Kind::CreateContainer,
        Kind::StartContainer,
        Kind::Poststart,
        Kind::Poststop,
    ];

    /// The name config.json (and the features document) use.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }

    /// The hooks of this kind in `hooks`.
    pub fn of(self, hooks: &Hooks) -> &[Hook] {
        #[allow(deprecated)] // prestart is deprecated, but still to be run
        let list = match self {
            Kind::Prestart => hooks.prestart(),
            Kind::CreateRuntime => hooks.create_runtime(),
            Kind::CreateContainer => hooks.create_container(),
            Kind::StartContainer => hooks.start_container(),
            Kind::Poststart => hooks.poststart(),
            Kind::Poststop => hooks.poststop(),
        };
        list.as_deref().unwrap_or(&[])
    }

    pub fn in_spec(self, spec: &Spec) -> &[Hook] {
        spec.hooks().as_ref().map_or(&[], |h| self.of(h))
    }
}

/// Checks the hooks before anything is created: absolute paths, positive timeouts.
pub fn validate(spec: &Spec) -> Result<()> {
    for kind in Kind::ALL {
        for (i, hook) in kind.in_spec(spec).iter().enumerate() {
            if !hook.path().is_absolute() {
                bail!(
                    "hooks.{}[{i}].path {:?} is not an absolute path",
                    kind.name(),
                    hook.path()
                );
            }
            if let Some(t) = hook.timeout().filter(|&t| t <= 0) {
                bail!(
                    "hooks.{}[{i}].timeout must be greater than zero, not {t}",
                    kind.name()
                );
            }
        }
    }
    Ok(())
}

/// The hooks `start` and `delete` still need, kept in state.json (None without any).
pub fn persisted(spec: &Spec) -> Option<Hooks> {
    let poststart = Kind::Poststart.in_spec(spec);
    let poststop = Kind::Poststop.in_spec(spec);
    if poststart.is_empty() && poststop.is_empty() {
        return None;
    }
    let mut kept = Hooks::default();
    kept.set_poststart(Some(poststart.to_vec()).filter(|v| !v.is_empty()));
    kept.set_poststop(Some(poststop.to_vec()).filter(|v| !v.is_empty()));
    Some(kept)
}

/// The state a hook reads on stdin: the spec's state, nothing more.
pub type HookState = crate::container::SpecState;

/// The environment of a hook whose config has no `env` (an empty list is an empty
/// environment). runc runs hooks as Go exec.Cmds, whose nil Env means the environment of
/// the process running them: runc's own, or that of its init, which has set it to the
/// container process's by then.
#[derive(Clone, Copy, Debug)]
pub enum Inherit<'a> {
    /// corten's own environment: prestart, createRuntime, poststart and poststop.
    Runtime,
    /// The container process's: createContainer and startContainer.
    Process(&'a [String]),
}

/// Runs `hooks` in order; the first failure stops there and is the error.
pub fn run_all(kind: Kind, hooks: &[Hook], state: &HookState, inherit: Inherit) -> Result<()> {
    if hooks.is_empty() {
        return Ok(());
    }
    let input = serde_json::to_vec(state).context("serialize the hook state")?;
    for (i, hook) in hooks.iter().enumerate() {
        run_one(kind, i, hook, &input, inherit)?;
    }
    Ok(())
}

/// Runs every hook of `hooks`; a failure is logged as a warning and the others still run.
pub fn run_all_warn(kind: Kind, hooks: &[Hook], state: &HookState, inherit: Inherit) {
    if hooks.is_empty() {
        return;
    }
    let input = match serde_json::to_vec(state) {
        Ok(i) => i,
        Err(e) => return crate::log::warn(&format!("{} hooks: {e}", kind.name())),
    };
    for (i, hook) in hooks.iter().enumerate() {
        if let Err(e) = run_one(kind, i, hook, &input, inherit) {
            crate::log::warn(&format!("{e:#}"));
        }
    }
}

/// Runs the `i`th hook of `kind`; an error reads as runc's, "error running createRuntime
/// hook #0: ", then the path and what went wrong.
fn run_one(kind: Kind, i: usize, hook: &Hook, input: &[u8], inherit: Inherit) -> Result<()> {
    let path = hook.path().display();
    crate::log::debug(&format!("running {} hook #{i} {path}", kind.name()));
    run_hook(hook, input, inherit)
        .with_context(|| format!("error running {} hook #{i}: {path}", kind.name()))
}

/// `create`'s side of the round trip: the init has its namespaces and mounts; run
/// prestart and createRuntime here, then let it go on. The status these and createContainer
/// see is "created": the spec's lifecycle runs them after step 2, where the environment is
/// made (runc says "creating"; runtime-tools' conformance suite and crun say "created").
pub fn create_runtime(spec: &Spec, state: &State, ch: &Channel) -> Result<()> {
    let hs = HookState::new(state, Status::Created);
    let runtime = Inherit::Runtime;
    run_all(Kind::Prestart, Kind::Prestart.in_spec(spec), &hs, runtime)?;
    run_all(
        Kind::CreateRuntime,
        Kind::CreateRuntime.in_spec(spec),
        &hs,
        runtime,
    )?;
    ch.send(&Msg::HooksDone { pid: state.pid })
}

/// The init's hooks: createContainer before pivot_root, startContainer before exec.
pub struct InitHooks<'a> {
    /// Set only when the config has a hook the init takes part in.
    hooks: Option<&'a Hooks>,
    /// The state for our hooks, once `create` told us our pid as the host sees it.
    state: OnceCell<HookState>,
    /// What createContainer hooks inherit: process.env as the init has it before pivot_root.
    early_env: Vec<String>,
}

impl<'a> InitHooks<'a> {
    /// `listen_fds`: the socket-activation fds passed to the process (LISTEN_FDS).
    pub fn new(spec: &'a Spec, listen_fds: u32) -> InitHooks<'a> {
        let involved = [
            Kind::Prestart,
            Kind::CreateRuntime,
            Kind::CreateContainer,
            Kind::StartContainer,
        ];
        let hooks = spec
            .hooks()
            .as_ref()
            .filter(|h| involved.iter().any(|k| !k.of(h).is_empty()));
        let env = spec.process().as_ref().and_then(|p| p.env().as_deref());
        let early_env = match hooks {
            Some(h) if !Kind::CreateContainer.of(h).is_empty() => {
                crate::init::exec::early_env(env.unwrap_or(&[]), listen_fds)
            }
            _ => Vec::new(),
        };
        InitHooks {
            hooks,
            state: OnceCell::new(),
            early_env,
        }
    }

    /// Before pivot_root: once placed (`await_go`), has `create` run prestart and
    /// createRuntime, then runs createContainer here. `state` is create's (without our pid).
    pub fn before_pivot(
        &self,
        ch: &Channel,
        state: &State,
        await_go: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let Some(hooks) = self.hooks else {
            return Ok(());
        };
        await_go()?;
        ch.send(&Msg::RunHooks)?;
        let pid = match ch.recv("corten create")? {
            Msg::HooksDone { pid } => pid,
            other => bail!("unexpected message {other:?} while waiting for the hooks"),
        };
        let state = HookState {
            pid: Some(pid),
            ..HookState::new(state, Status::Created)
        };
        let kind = Kind::CreateContainer;
        run_all(
            kind,
            kind.of(hooks),
            &state,
            Inherit::Process(&self.early_env),
        )?;
        let _ = self.state.set(state);
        Ok(())
    }

    /// Does the config have startContainer hooks?
    pub fn has_start_container(&self) -> bool {
        self.hooks
            .is_some_and(|h| !Kind::StartContainer.of(h).is_empty())
    }

    /// Once `start` has woken the init: the startContainer hooks (status "created"). `env`
    /// is the environment the process will get, which they inherit.
    pub fn start_container(&self, env: &[String]) -> Result<()> {
        let (Some(hooks), Some(state)) = (self.hooks, self.state.get()) else {
            return Ok(());
        };
        let kind = Kind::StartContainer;
        let state = state.with_status(Status::Created);
        run_all(kind, kind.of(hooks), &state, Inherit::Process(env))
    }
}

/// `start`'s poststart hooks (status "running"), once the process has been exec'd.
pub fn poststart(state: &State) -> Result<()> {
    let hooks = state
        .hooks
        .as_ref()
        .map_or(&[][..], |h| Kind::Poststart.of(h));
    if hooks.is_empty() {
        return Ok(());
    }
    let hs = HookState::new(state, Status::Running);
    // Spec 1.3.0 (and runc): a failing poststart hook is an error, and `start` stops the
    // container; 1.2 made it a warning, which let a half-set-up container run on.
    run_all(Kind::Poststart, hooks, &hs, Inherit::Runtime)
}

/// The poststop hooks (status "stopped") of a container that is gone: failures are
/// warnings.
pub fn poststop(state: &State) {
    if let Some(hooks) = &state.hooks {
        let hs = HookState::new(state, Status::Stopped);
        run_all_warn(
            Kind::Poststop,
            Kind::Poststop.of(hooks),
            &hs,
            Inherit::Runtime,
        );
    }
}

/// Runs one hook: the state on stdin, stdout and stderr captured together, killed (its
/// whole process group) at its timeout.
fn run_hook(hook: &Hook, input: &[u8], inherit: Inherit) -> Result<()> {
    let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).context("pipe")?;
    set_nonblocking(&out_r)?;
    let (pid, stdin) = spawn(hook, out_w, inherit)?;
    let result = supervise(pid, stdin, &out_r, input, hook.timeout());
    if result.is_err() {
        kill_group(pid);
    }
    let status = reap(pid);
    let (outcome, mut output) = result?;
    let status = status?;
    drain(&out_r, &mut output);
    let tail = one_line_tail(&output, MESSAGE_TAIL);
    let tail = if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    };
    match (outcome, status) {
        (Outcome::TimedOut(secs), _) => bail!("timed out after {secs}s, killed{tail}"),
        (Outcome::Exited, WaitStatus::Exited(_, 0)) => {
            if !tail.is_empty() {
                crate::log::debug(&format!("hook {} said{tail}", hook.path().display()));
            }
            Ok(())
        }
        (Outcome::Exited, status) => bail!("{}{tail}", describe(status)),
    }
}

/// Starts the hook with exactly its argv (args[0] as argv[0]; the path when there are no
/// args) and env (or the inherited one), in a process group of its own, with a pipe on
/// stdin and `out` on stdout and stderr. Only fds 0-2 reach it. Returns its pid and the
/// stdin pipe.
///
/// std's Command forks, sets up stdio and the process group, resets SIGPIPE and the
/// signal mask (the Rust runtime ignores the one, `run` blocks signals: neither is the
/// hook's) and reports a failed exec. The exec itself is the last `pre_exec` step, not
/// Command's execvp: execve takes the env list as given (order and duplicates kept, where
/// Command keeps one value per name, sorted), and never retries a file the kernel can't
/// run with /bin/sh, as execvp does.
fn spawn(hook: &Hook, out: OwnedFd, inherit: Inherit) -> Result<(i32, OwnedFd)> {
    let exec = Exec::new(hook, inherit)?;
    let out2 = out.try_clone().context("dup the hook's output pipe")?;
    let mut cmd = Command::new(hook.path());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(out2))
        .process_group(0);
    // SAFETY: runs in the forked child of a single-threaded process, and only flags fds
    // and execs, on what `Exec::new` prepared: no allocation, no lock.
    unsafe {
        cmd.pre_exec(move || {
            crate::sys::cloexec_from(3)?;
            Err(exec.execve())
        })
    };
    let mut child = cmd.spawn().context("exec")?;
    let stdin = child.stdin.take().context("the hook's stdin pipe")?;
    // The pid is waited for by `reap`; dropping the handle neither waits nor kills.
    Ok((child.id() as i32, stdin.into()))
}

/// What execve takes for a hook, made before the fork (the child must not allocate).
struct Exec {
    path: CString,
    /// The strings `argv` and `envp` point into: their heap buffers, which don't move
    /// when the vectors do.
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

// SAFETY: the pointers point into strings `Exec` owns and never changes; they are only
// read, by execve in the child.
unsafe impl Send for Exec {}
// SAFETY: as above.
unsafe impl Sync for Exec {}

impl Exec {
    fn new(hook: &Hook, inherit: Inherit) -> Result<Exec> {
        let cstr = |s: &[u8], what: &str| {
            CString::new(s).with_context(|| {
                format!(
                    "{what} {:?} contains a NUL byte",
                    String::from_utf8_lossy(s)
                )
            })
        };
        let path = cstr(hook.path().as_os_str().as_bytes(), "path")?;
        let args = match hook.args().as_deref() {
            Some(a) if !a.is_empty() => a
                .iter()
                .map(|a| cstr(a.as_bytes(), "argument"))
                .collect::<Result<Vec<_>>>()?,
            _ => vec![path.clone()],
        };
        let env = match (hook.env().as_deref(), inherit) {
            (Some(env), _) | (None, Inherit::Process(env)) => env
                .iter()
                .map(|e| cstr(e.as_bytes(), "env entry"))
                .collect::<Result<Vec<_>>>()?,
            (None, Inherit::Runtime) => std::env::vars_os()
                .map(|(k, v)| {
                    let mut e = k.into_vec();
                    e.push(b'=');
                    e.extend(v.into_vec());
                    cstr(&e, "env entry")
                })
                .collect::<Result<Vec<_>>>()?,
        };
        let argv = nul_terminated(&args);
        let envp = nul_terminated(&env);
        let mut strings = args;
        strings.extend(env);
        Ok(Exec {
            path,
            _strings: strings,
            argv,
            envp,
        })
    }

    /// execve(2); returns only with its error.
    fn execve(&self) -> std::io::Error {
        // SAFETY: path is NUL-terminated; argv and envp are NULL-terminated arrays of
        // pointers to NUL-terminated strings that `self` owns.
        unsafe { libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        std::io::Error::last_os_error()
    }
}

/// The NULL-terminated array of pointers execve takes (valid while `strings` lives).
fn nul_terminated(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain([std::ptr::null()])
        .collect()
}

/// waitpid for the hook, retried on EINTR.
fn reap(pid: i32) -> Result<WaitStatus> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Err(Errno::EINTR) => continue,
            r => return r.context("wait for the hook"),
        }
    }
}

enum Outcome {
    Exited,
    TimedOut(i64),
}

/// Feeds `input` to the hook's stdin and collects its output until it exits or its
/// timeout passes (then it is killed, not reaped).
fn supervise(
    pid: i32,
    stdin: OwnedFd,
    out: &OwnedFd,
    input: &[u8],
    timeout: Option<i64>,
) -> Result<(Outcome, Vec<u8>)> {
    let pidfd = crate::sys::pidfd_open(pid).context("pidfd_open")?;
    set_nonblocking(&stdin)?;
    let mut stdin = Some(stdin);
    // A timeout too large for the clock is no timeout.
    let deadline =
        timeout.and_then(|t| Instant::now().checked_add(Duration::from_secs(t.max(0) as u64)));
    let mut output = Vec::new();
    let mut out_open = true;
    let mut written = 0;
    loop {
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    kill_group(pid);
                    return Ok((Outcome::TimedOut(timeout.unwrap_or(0)), output));
                }
                // Rounded up, so that we never wake just before the deadline.
                PollTimeout::try_from(left + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = vec![PollFd::new(pidfd.as_fd(), PollFlags::POLLIN)];
        if out_open {
            fds.push(PollFd::new(out.as_fd(), PollFlags::POLLIN));
        }
        if let Some(s) = &stdin {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLOUT));
        }
        match poll(&mut fds, wait) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(e).context("poll"),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds
            .iter()
            .map(|f| f.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        drop(fds);
        if out_open && ready[1] {
            out_open = drain(out, &mut output);
        }
        if let Some(s) = stdin.as_ref().filter(|_| ready[ready.len() - 1]) {
            written += match nix::unistd::write(s, &input[written..]) {
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR) => 0,
                // EPIPE: the hook does not read its stdin (SIGPIPE is ignored by us).
                Err(_) => input.len() - written,
            };
            if written >= input.len() {
                // Closed: the hook sees end of file.
                stdin = None;
            }
        }
        if ready[0] {
            return Ok((Outcome::Exited, output));
        }
    }
}

/// Reads what the pipe holds now (bounded, so a writer that never stops can't hold us),
/// keeping the last OUTPUT_KEEP bytes. Returns false at end of file.
fn drain(fd: &OwnedFd, keep: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    for _ in 0..64 {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return false,
            Ok(n) => {
                keep.extend_from_slice(&buf[..n]);
                if keep.len() > OUTPUT_KEEP {
                    keep.drain(..keep.len() - OUTPUT_KEEP);
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
    true
}

/// SIGKILL to the hook's process group (it leads one) and so to what it started there.
fn kill_group(pid: i32) {
    // The hook is not reaped yet, so its pid still names its own group and no other.
    let pid = Pid::from_raw(pid);
    let _ = killpg(pid, Signal::SIGKILL);
    // In case it left its group.
    let _ = kill(pid, Signal::SIGKILL);
}

fn set_nonblocking(fd: &impl AsFd) -> Result<()> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL).context("fcntl F_GETFL")?;
    fcntl(
        fd.as_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_retain(flags) | OFlag::O_NONBLOCK),
    )
    .with_context(|| format!("fcntl F_SETFL O_NONBLOCK on fd {}", fd.as_fd().as_raw_fd()))?;
    Ok(())
}

/// "exit status 1", "killed by signal SIGKILL".
fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, sig, _) => format!("killed by signal {}", sig.as_str()),
        other => format!("{other:?}"),
    }
}

/// The end of a hook's output as one line: lines trimmed and joined with "; ", control
/// characters blanked, at most `max` characters (then starting with "…").
fn one_line_tail(output: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(output);
    let joined = text
        .lines()
        .map(|l| {
            l.chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect::<String>()
        })
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    let count = joined.chars().count();
    if count <= max {
        return joined;
    }
    let start = joined
        .char_indices()
        .nth(count - (max - 1))
        .map_or(0, |(i, _)| i);
    format!("…{}", &joined[start..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec_version::OCI_VERSION;
    use std::path::Path;

    fn hook(v: serde_json::Value) -> Hook {
        serde_json::from_value(v).unwrap()
    }

    fn spec_with_hooks(hooks: serde_json::Value) -> Spec {
        let mut spec = Spec::default();
        spec.set_hooks(Some(serde_json::from_value(hooks).unwrap()));
        spec
    }

    fn state(status: &str) -> HookState {
        HookState {
            oci_version: OCI_VERSION.into(),
            id: "c1".into(),
            status: status.into(),
            pid: Some(42),
            bundle: "/b".into(),
            annotations: Default::default(),
        }
    }

    fn sh(script: &str, timeout: Option<i64>) -> Hook {
        hook(serde_json::json!({
            "path": "/bin/sh", "args": ["sh", "-c", script],
            "env": ["B=2", "A=1", "PATH=/usr/bin:/bin"], "timeout": timeout
        }))
    }

    fn run_err(h: &Hook) -> String {
        let e = run_all(
            Kind::CreateRuntime,
            std::slice::from_ref(h),
            &state("creating"),
            Inherit::Runtime,
        );
        format!("{:#}", e.unwrap_err())
    }

    #[test]
    fn kind_names_are_the_config_keys() {
        for kind in Kind::ALL {
            let spec = spec_with_hooks(serde_json::json!({ kind.name(): [{"path": "/x"}] }));
            for other in Kind::ALL {
                assert_eq!(other.in_spec(&spec).len(), usize::from(other == kind));
            }
        }
    }

    #[test]
    fn validation() {
        let ok = spec_with_hooks(serde_json::json!({"poststop": [{"path": "/x", "timeout": 3}]}));
        validate(&ok).unwrap();
        let rel = spec_with_hooks(serde_json::json!({"prestart": [{"path": "/x"}, {"path": "x"}]}));
        let e = validate(&rel).unwrap_err().to_string();
        assert!(
            e.contains("hooks.prestart[1].path") && e.contains("absolute"),
            "{e}"
        );
        for t in [0, -1] {
            let bad = spec_with_hooks(
                serde_json::json!({"startContainer": [{"path": "/x", "timeout": t}]}),
            );
            let e = validate(&bad).unwrap_err().to_string();
            assert!(e.contains("hooks.startContainer[0].timeout"), "{e}");
        }
    }

    #[test]
    fn only_poststart_and_poststop_are_persisted() {
        let none = spec_with_hooks(serde_json::json!({"createRuntime": [{"path": "/x"}]}));
        assert!(persisted(&none).is_none());
        assert!(persisted(&Spec::default()).is_none());
        let some = spec_with_hooks(
            serde_json::json!({"createRuntime": [{"path": "/x"}], "poststop": [{"path": "/y"}]}),
        );
        let kept = persisted(&some).unwrap();
        assert!(Kind::CreateRuntime.of(&kept).is_empty());
        assert!(Kind::Poststart.of(&kept).is_empty());
        assert_eq!(Kind::Poststop.of(&kept)[0].path(), Path::new("/y"));
        // Nothing of the other kinds reaches state.json.
        let json = serde_json::to_value(&kept).unwrap();
        assert_eq!(json, serde_json::json!({"poststop": [{"path": "/y"}]}));
    }

    #[test]
    fn the_state_is_the_specs() {
        let v = serde_json::to_value(state("created")).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ociVersion": OCI_VERSION, "id": "c1", "status": "created",
                "pid": 42, "bundle": "/b", "annotations": {}})
        );
        let stopped = HookState {
            pid: None,
            ..state("stopped")
        };
        let v = serde_json::to_value(stopped).unwrap();
        assert!(v.get("pid").is_none(), "{v}");
        assert_eq!(
            state("creating").with_status(Status::Created).status,
            "created"
        );
    }

    #[test]
    fn output_tail_is_one_bounded_line() {
        assert_eq!(one_line_tail(b"", 10), "");
        assert_eq!(
            one_line_tail(b"  a \n\n b\r\n\tc\x1b[0m\n", 100),
            "a; b; c [0m"
        );
        let long = "x".repeat(20) + "\nend";
        let t = one_line_tail(long.as_bytes(), 10);
        assert_eq!(t, "…xxxx; end");
        assert_eq!(t.chars().count(), 10);
        // A cut through a multi-byte character is no panic.
        assert_eq!(one_line_tail("ééé".as_bytes(), 2), "…é");
        assert_eq!(one_line_tail(&[0xff, b'a'], 10), "\u{fffd}a");
    }

    #[test]
    fn a_hook_gets_the_state_argv_and_exactly_its_env() {
        let dir = std::env::temp_dir().join(format!("corten-hook-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("seen");
        let script = format!(
            "cat > {o}.stdin; tr '\\0' ' ' < /proc/$$/environ > {o}.env; \
             tr '\\0' ' ' < /proc/$$/cmdline > {o}.cmdline; echo \"$0 $1\" > {o}.argv",
            o = out.display()
        );
        let h = hook(serde_json::json!({
            "path": "/bin/sh", "args": ["my-argv0", "-c", script, "zero", "one"],
            "env": ["B=2", "A=1", "B=3"]
        }));
        run_all(Kind::Poststart, &[h], &state("running"), Inherit::Runtime).unwrap();
        let read = |ext: &str| std::fs::read_to_string(format!("{}.{ext}", out.display())).unwrap();
        let seen: HookState = serde_json::from_str(&read("stdin")).unwrap();
        assert_eq!(seen, state("running"));
        // In the order given, duplicates kept: execve gets the list as it is.
        assert_eq!(read("env"), "B=2 A=1 B=3 ");
        assert_eq!(read("argv").trim(), "zero one");
        assert!(
            read("cmdline").starts_with("my-argv0 -c cat"),
            "{}",
            read("cmdline")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The environment of a hook without `env`: inherited (runc's Go exec.Cmd with a nil
    /// Env); with `env`, even an empty one, exactly that.
    #[test]
    fn a_hook_without_env_inherits_one() {
        let dir = std::env::temp_dir().join(format!("corten-hook-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let seen = dir.join("environ");
        let record = |env: serde_json::Value| {
            let script = format!("cat /proc/$$/environ > {}", seen.display());
            let mut h = serde_json::json!({"path": "/bin/sh", "args": ["sh", "-c", script]});
            if !env.is_null() {
                h["env"] = env;
            }
            hook(h)
        };
        let run = |h: Hook, inherit: Inherit| {
            run_all(Kind::Poststart, &[h], &state("running"), inherit).unwrap();
            let raw = std::fs::read(&seen).unwrap();
            raw.split(|&b| b == 0)
                .filter(|e| !e.is_empty())
                .map(|e| String::from_utf8_lossy(e).into_owned())
                .collect::<Vec<_>>()
        };
        let ours: Vec<String> = std::env::vars_os()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        // /proc/PID/environ is what execve passed: exactly the inherited environment.
        assert_eq!(run(record(serde_json::Value::Null), Inherit::Runtime), ours);
        let process = ["PATH=/bin".to_string(), "ONE=1".to_string()];
        let got = run(record(serde_json::Value::Null), Inherit::Process(&process));
        assert_eq!(got, process);
        let got = run(
            record(serde_json::json!(["A=1"])),
            Inherit::Process(&process),
        );
        assert_eq!(got, ["A=1"]);
        assert!(run(record(serde_json::json!([])), Inherit::Runtime).is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_name_the_cause_and_quote_the_output() {
        let e = run_err(&sh("echo to-stdout; echo to-stderr >&2; exit 3", None));
        assert_eq!(
            e,
            "error running createRuntime hook #0: /bin/sh: exit status 3: to-stdout; to-stderr"
        );
        let e = run_err(&sh("kill -9 $$", None));
        assert_eq!(
            e,
            "error running createRuntime hook #0: /bin/sh: killed by signal SIGKILL"
        );
        let e = run_err(&hook(serde_json::json!({"path": "/nonexistent/hook"})));
        assert!(
            e.starts_with(
                "error running createRuntime hook #0: /nonexistent/hook: exec: No such file"
            ),
            "{e}"
        );
        // The index is the hook's place in its list.
        let e = run_all(
            Kind::Poststart,
            &[sh("exit 0", None), sh("exit 4", None)],
            &state("running"),
            Inherit::Runtime,
        )
        .unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "error running poststart hook #1: /bin/sh: exit status 4"
        );
    }

    #[test]
    fn a_hook_that_does_not_read_stdin_is_fine() {
        // More state than a pipe holds: the hook exits without reading it.
        let mut big = state("creating");
        big.annotations.insert("k".into(), "v".repeat(256 * 1024));
        run_all(
            Kind::CreateRuntime,
            &[sh("exit 0", None)],
            &big,
            Inherit::Runtime,
        )
        .unwrap();
    }

    #[test]
    fn a_hook_is_killed_at_its_timeout_with_its_children() {
        let started = Instant::now();
        let e = run_err(&sh("echo waiting; sleep 100 & wait", Some(1)));
        assert_eq!(
            e,
            "error running createRuntime hook #0: /bin/sh: timed out after 1s, killed: waiting"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_hook_leaving_a_child_behind_does_not_hold_us() {
        // The background child keeps the output pipe open; the hook itself has exited.
        let started = Instant::now();
        run_all(
            Kind::Poststop,
            &[sh(
                "sleep 3 >/dev/null 2>&1 </dev/null & sleep 3 & exit 0",
                None,
            )],
            &state("stopped"),
            Inherit::Runtime,
        )
        .unwrap();
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn hooks_see_only_stdio() {
        // An fd of ours that is not close-on-exec (as a caller's leaked fd would be).
        let null = std::fs::File::open("/dev/null").unwrap();
        let leaked = nix::unistd::dup(&null).unwrap();
        // The glob lists the shell's fds while it reads the directory (one more fd).
        let e = run_err(&sh("cd /proc/$$/fd && echo *; exit 1", None));
        assert_eq!(
            e,
            "error running createRuntime hook #0: /bin/sh: exit status 1: 0 1 2 3"
        );
        drop(leaked);
    }
}
