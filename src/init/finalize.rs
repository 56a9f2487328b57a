//! The last steps before execve: ONE step for the container's init and for every `exec`'d
//! process, as runc's finalizeNamespace with what its standard and setns inits do around
//! it (youki runs one init function for both kinds). Whatever the init does to its process
//! an exec'd process gets too, so the two can't drift apart again.
//!
//! - `session_keyring` and `lsm::ExecLabels::open`: early, while the host's procfs is
//!   reachable and the process is still root.
//! - `prepare`: cwd, oomScoreAdj, ioPriority and scheduler, the seccomp filter when it must
//!   come before the capabilities go, the identity (rlimits, capabilities, uid/gid,
//!   no_new_privs), the program on the container's PATH and its environment,
//!   memoryPolicy and personality, umask. The init then parks until `start`.
//! - `Ready::exec`: the signal state, close-on-exec for every fd not passed on, the LSM
//!   exec labels, the seccomp filter (as late as possible), execve.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{Linux, Process};

use super::{exec, identity, lsm, personality};
use crate::{numa, sched, seccomp};

/// What the step is applied from.
pub struct Step<'a> {
    pub process: &'a Process,
    /// The container's linux section: its memoryPolicy and personality apply to every
    /// process, as runc's do.
    pub linux: Option<&'a Linux>,
    pub seccomp: Option<&'a seccomp::Program>,
    /// The SCMP_ACT_NOTIFY agent, connected; kept until execve.
    pub agent: Option<seccomp::Agent>,
    /// The LSM exec labels, their files already opened.
    pub labels: lsm::ExecLabels,
    /// Socket-activation fds passed through (LISTEN_FDS; the init's only).
    pub listen_fds: u32,
    /// Fds 3..3+n that reach the program.
    pub preserve_fds: u32,
}

/// Everything done but the last moves before execve.
pub struct Ready<'a> {
    path: PathBuf,
    args: Vec<String>,
    env: Vec<String>,
    labels: lsm::ExecLabels,
    /// The filter, when it is still to be loaded.
    seccomp: Option<&'a seccomp::Program>,
    agent: Option<seccomp::Agent>,
    preserve_fds: u32,
}

/// Takes on the process: see the module comment. `in_cgroup` is awaited before what
/// must happen in the container's cgroup (a scheduler, the memory policy): the init is
/// placed while it works; an exec'd process already is.
pub fn prepare<'a>(step: Step<'a>, in_cgroup: &dyn Fn() -> Result<()>) -> Result<Ready<'a>> {
    let process = step.process;
    enter_cwd(process.cwd())?;
    if let Some(adj) = process.oom_score_adj() {
        super::write_proc("/proc/self/oom_score_adj", &adj.to_string())
            .context("set oomScoreAdj")?;
    }
    // While the capabilities are still there (RT classes and policies need them); in the
    // cgroup first: a v1 cpu cgroup without RT runtime refuses an RT task.
    if process.scheduler().is_some() {
        in_cgroup()?;
    }
    sched::apply(process)?;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which the process may be
    // about to lose: then load it now. Otherwise as late as possible (`Ready::exec`).
    let at_exec = seccomp::load_before_exec(process);
    if let Some(p) = step.seccomp.filter(|_| !at_exec) {
        p.load(step.agent.as_ref())?;
    }
    identity::apply(process)?;
    let args = process.args().clone().unwrap_or_default();
    let Some(arg0) = args.first() else {
        bail!("process.args must not be empty");
    };
    let env = exec::complete_env(
        process.env().as_deref().unwrap_or(&[]),
        process.user().uid(),
        step.listen_fds,
    );
    let path = exec::resolve(arg0, &env)?;
    in_cgroup()?;
    apply_exec_domain(step.linux)?;
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
        process.user().umask().unwrap_or(0o022),
    ));
    Ok(Ready {
        path,
        args,
        env,
        labels: step.labels,
        seccomp: step.seccomp.filter(|_| at_exec),
        agent: step.agent,
        preserve_fds: step.preserve_fds,
    })
}

impl Ready<'_> {
    /// The program's environment (startContainer hooks without an `env` of their own get
    /// it, as runc gives it to them).
    pub fn env(&self) -> &[String] {
        &self.env
    }

    /// Loads the filter now if it is still to be loaded: the init's startContainer hooks
    /// run under it, as runc runs them.
    pub fn load_seccomp(&mut self) -> Result<()> {
        match self.seccomp.take() {
            Some(p) => p.load(self.agent.as_ref()),
            None => Ok(()),
        }
    }

    /// Loads a filter with SCMP_ACT_NOTIFY rules now (its agent gets the listener then);
    /// any other filter stays for later.
    pub fn load_seccomp_if_notifying(&mut self) -> Result<()> {
        if self.seccomp.is_some_and(|p| p.notifies()) {
            self.load_seccomp()
        } else {
            Ok(())
        }
    }

    /// The last moves and execve; returns only on failure.
    pub fn exec(mut self) -> anyhow::Error {
        let r = (|| -> Result<std::convert::Infallible> {
            reset_signals();
            // Only 0-2 and the preserved fds may survive exec (CVE-2024-21626).
            crate::sys::cloexec_from(3 + self.preserve_fds as i32)
                .context("mark fds close-on-exec")?;
            self.labels.apply()?;
            // The filter comes last, so that it filters nothing of ours but execve.
            self.load_seccomp()?;
            exec::exec(&self.path, &self.args, &self.env)
        })();
        match r {
            Err(e) => e,
            Ok(never) => match never {},
        }
    }
}

/// chdir into process.cwd and make sure it really is inside the new root: a cwd reached
/// through a leaked host fd (/proc/self/fd/N) would be outside it (CVE-2024-21626).
fn enter_cwd(cwd: &Path) -> Result<()> {
    nix::unistd::chdir(cwd).with_context(|| format!("chdir to cwd {}", cwd.display()))?;
    match std::env::current_dir() {
        Ok(p) if p.is_absolute() => Ok(()),
        _ => bail!("cwd {} is outside the container's root", cwd.display()),
    }
}

/// linux.memoryPolicy and linux.personality, which survive execve: set last, once the
/// process has its identity.
fn apply_exec_domain(linux: Option<&Linux>) -> Result<()> {
    if let Some(mp) = linux.and_then(|l| l.memory_policy().as_ref()) {
        numa::apply(mp)?;
    }
    if let Some(p) = linux.and_then(|l| l.personality().as_ref()) {
        personality::apply(p)?;
    }
    Ok(())
}

/// Undoes what the Rust runtime did to the signal state: SIGPIPE is ignored, and ignored
/// signals survive execve. The mask is cleared too.
fn reset_signals() {
    use nix::sys::signal::{SigHandler, SigSet, SigmaskHow, Signal, signal, sigprocmask};
    // SAFETY: SIG_DFL installs no handler.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Who may search the session keyring the init makes, so that `exec`'d processes join
/// that one (runc's permissions): the owner's uid, or, in a user namespace, others.
pub fn keyring_searchers(userns: bool) -> u32 {
    const KEY_USR_SEARCH: u32 = 0x0008_0000;
    const KEY_OTH_SEARCH: u32 = 0x0000_0008;
    if userns {
        KEY_OTH_SEARCH
    } else {
        KEY_USR_SEARCH
    }
}

/// Joins the session keyring `_ses.<id>` (made if no searchable one exists), labelled with
/// the process's SELinux label, so the process can't reach the keys of the session corten
/// was started from; the init passes `searchers` (`keyring_searchers`) to add to its
/// permissions. Kernels without keyrings (ENOSYS) are not an error, as with runc.
pub fn session_keyring(
    id: &str,
    process: &Process,
    lsm_host: lsm::Host,
    attrs: &lsm::ProcAttr,
    searchers: Option<u32>,
) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    lsm::set_key_label(process, lsm_host, attrs)?;
    let name = std::ffi::CString::new(format!("_ses.{id}"))?;
    // SAFETY: `name` is a NUL-terminated string alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if r < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOSYS) {
            return Ok(());
        }
        return Err(e).context("join a new session keyring");
    }
    match searchers {
        Some(bits) => add_key_permissions(r as i32, bits),
        None => Ok(()),
    }
}

/// Adds `bits` to a key's permissions (KEYCTL_DESCRIBE, then KEYCTL_SETPERM).
fn add_key_permissions(key: i32, bits: u32) -> Result<()> {
    const KEYCTL_SETPERM: libc::c_long = 5;
    const KEYCTL_DESCRIBE: libc::c_long = 6;
    let mut buf = vec![0u8; 512];
    // SAFETY: the pointer and length describe `buf`, which outlives the call.
    let n = unsafe {
        libc::syscall(
            libc::SYS_keyctl,
            KEYCTL_DESCRIBE,
            key,
            buf.as_mut_ptr(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error()).context("describe the session keyring");
    }
    let perm = key_permissions(&buf[..(n as usize).min(buf.len())])?;
    // SAFETY: integer arguments.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_SETPERM, key, perm | bits) };
    if r < 0 {
        return Err(std::io::Error::last_os_error()).context("make the session keyring searchable");
    }
    Ok(())
}

/// The permissions in a KEYCTL_DESCRIBE answer: `type;uid;gid;perm;description`, perm in
/// hex.
fn key_permissions(described: &[u8]) -> Result<u32> {
    let text = String::from_utf8_lossy(described);
    text.split(';')
        .nth(3)
        .and_then(|p| u32::from_str_radix(p, 16).ok())
        .with_context(|| format!("unexpected session keyring description {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_key_permissions() {
        assert_eq!(
            key_permissions(b"keyring;0;0;3f130000;_ses.x\0").unwrap(),
            0x3f13_0000
        );
        assert!(key_permissions(b"keyring;0;0").is_err());
        assert_eq!(keyring_searchers(false) | 0x3f13_0000, 0x3f1b_0000);
    }
}
