//! `linux.seccomp`: the profile becomes a libseccomp filter, loaded as late as the process's
//! privileges allow, and the `SCMP_ACT_NOTIFY` listener fd goes to the seccomp agent.
//!
//! runc's rules are followed: `SCMP_ACT_ERRNO`/`SCMP_ACT_TRACE` without `errnoRet` return
//! EPERM, a syscall name libseccomp doesn't know is skipped, a rule whose action is the
//! default action is skipped, and the args of one rule that test the same argument more
//! than once each become a rule of their own (any of them matches) instead of one rule
//! whose conditions must all hold.
//!
//! `create` compiles the profile and has libseccomp generate the BPF program before
//! anything is made ([`Program::build`]), so errors come early and name the offending field
//! (`linux.seccomp.syscalls[3].action "SCMP_ACT_FOO" is unknown`), and `start` only has a
//! seccomp(2) call to make. corten loads the program itself, as runc does, so the filter
//! flags only need the kernel's support, not libseccomp's.
//!
//! Compiled programs are cached under the state root ([`cache`]): a hit costs a file read
//! and no libseccomp filter context at all.
//!
//! The `SCMP_ACT_NOTIFY` listener reaches the agent during `create`, as runc sends it (the
//! agent is attached before the container starts): the init loads such a filter before it
//! reports ready. A listenerPath without a NOTIFY rule is never contacted.

use std::io::{IoSlice, Read, Seek};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall,
};
use oci_spec::runtime::{Capability, LinuxSeccomp, Process};
use serde::Deserialize;

mod cache;

/// The actions corten knows (`features` lists them).
pub const ACTIONS: &[&str] = &[
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_TRAP",
];

/// The argument operators corten knows.
pub const OPERATORS: &[&str] = &[
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_LE",
    "SCMP_CMP_LT",
    "SCMP_CMP_MASKED_EQ",
    "SCMP_CMP_NE",
];

/// The architecture names of the runtime-spec; [`supported_archs`] tells which ones the
/// linked libseccomp can put in a filter.
pub const ARCHS: &[&str] = &[
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
];

/// The filter flags corten knows; [`supported_flags`] tells which this host can set.
/// TSYNC is accepted and ignored, as runc does: the init is single-threaded.
pub const FLAGS: &[&str] = &[
    "SECCOMP_FILTER_FLAG_TSYNC",
    "SECCOMP_FILTER_FLAG_LOG",
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
];

/// The `SCMP_ACT_NOTIFY` listener fd is sent in the agent message under this name.
const SECCOMP_FD_NAME: &str = "seccompFd";

/// The seccomp section as config.json has it, names kept as strings, so that every error
/// can say which field is wrong. Built from the raw JSON or from oci-spec's typed section.
#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct Profile {
    default_action: Option<String>,
    default_errno_ret: Option<u32>,
    architectures: Option<Vec<String>>,
    flags: Option<Vec<String>>,
    listener_path: Option<PathBuf>,
    listener_metadata: Option<String>,
    syscalls: Option<Vec<Syscall>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct Syscall {
    names: Option<Vec<String>>,
    action: Option<String>,
    errno_ret: Option<u32>,
    args: Option<Vec<Arg>>,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase")]
struct Arg {
    index: Option<u32>,
    value: Option<u64>,
    value_two: Option<u64>,
    op: Option<String>,
}

impl Profile {
    /// The profile of oci-spec's typed section (it serialises back to the spec's JSON).
    fn from_spec(s: &LinuxSeccomp) -> Result<Profile> {
        let v = serde_json::to_value(s).context("linux.seccomp")?;
        serde_json::from_value(v).context("linux.seccomp")
    }
}

/// A compiled filter: the BPF program and how to load it.
pub struct Program {
    bpf: Vec<libc::sock_filter>,
    /// SECCOMP_FILTER_FLAG_* of linux.seccomp.flags.
    flags: libc::c_ulong,
    /// Where the SCMP_ACT_NOTIFY listener fd goes, when a rule uses that action.
    listener: Option<Listener>,
    /// Syscall names libseccomp doesn't know (skipped).
    pub skipped: Vec<String>,
}

struct Listener {
    path: PathBuf,
    metadata: Option<String>,
}

/// The action `name` stands for; `errno` is errnoRet (EPERM when absent, as with runc).
fn action(name: &str, errno: Option<u32>) -> Option<ScmpAction> {
    let ret = errno.unwrap_or(libc::EPERM as u32);
    Some(match name {
        "SCMP_ACT_KILL" | "SCMP_ACT_KILL_THREAD" => ScmpAction::KillThread,
        "SCMP_ACT_KILL_PROCESS" => ScmpAction::KillProcess,
        "SCMP_ACT_TRAP" => ScmpAction::Trap,
        "SCMP_ACT_ERRNO" => ScmpAction::Errno(ret as i32),
        "SCMP_ACT_TRACE" => ScmpAction::Trace(ret as u16),
        "SCMP_ACT_ALLOW" => ScmpAction::Allow,
        "SCMP_ACT_LOG" => ScmpAction::Log,
        "SCMP_ACT_NOTIFY" => ScmpAction::Notify,
        _ => return None,
    })
}

/// Parses an action field; `field` is its path in config.json, for errors.
fn parse_action(field: &str, name: Option<&str>, errno: Option<u32>) -> Result<ScmpAction> {
    let Some(name) = name else {
        bail!("{field} is required")
    };
    if errno.is_some_and(|e| e > u16::MAX as u32) {
        bail!(
            "{field}: errnoRet {} is out of range (0-65535)",
            errno.unwrap_or(0)
        );
    }
    action(name, errno).with_context(|| format!("{field} {name:?} is unknown"))
}

/// The condition one arg describes. For SCMP_CMP_MASKED_EQ `value` is the mask and
/// `valueTwo` the value compared with (as runc and libseccomp read them).
fn condition(field: &str, arg: &Arg) -> Result<ScmpArgCompare> {
    let Some(index) = arg.index else {
        bail!("{field}.index is required")
    };
    if index > 5 {
        bail!("{field}.index {index} is out of range (0-5)");
    }
    let Some(op) = arg.op.as_deref() else {
        bail!("{field}.op is required")
    };
    let value = arg.value.unwrap_or(0);
    let two = arg.value_two.unwrap_or(0);
    let (op, datum) = match op {
        "SCMP_CMP_NE" => (ScmpCompareOp::NotEqual, value),
        "SCMP_CMP_LT" => (ScmpCompareOp::Less, value),
        "SCMP_CMP_LE" => (ScmpCompareOp::LessOrEqual, value),
        "SCMP_CMP_EQ" => (ScmpCompareOp::Equal, value),
        "SCMP_CMP_GE" => (ScmpCompareOp::GreaterEqual, value),
        "SCMP_CMP_GT" => (ScmpCompareOp::Greater, value),
        "SCMP_CMP_MASKED_EQ" => (ScmpCompareOp::MaskedEqual(value), two),
        _ => bail!("{field}.op {op:?} is unknown"),
    };
    Ok(ScmpArgCompare::new(index, op, datum))
}

/// The rules one syscall entry becomes: one rule with every condition, or, when two args
/// test the same argument, one rule per condition (runc's behaviour).
fn rule_sets(conds: Vec<(u32, ScmpArgCompare)>) -> Vec<Vec<ScmpArgCompare>> {
    let mut seen = [false; 6];
    let repeated = conds
        .iter()
        .any(|(i, _)| std::mem::replace(&mut seen[*i as usize], true));
    if repeated {
        conds.into_iter().map(|(_, c)| vec![c]).collect()
    } else {
        vec![conds.into_iter().map(|(_, c)| c).collect()]
    }
}

/// The kernel's bit for filter flag `name` (0 for TSYNC, accepted and ignored). The error
/// completes a sentence about the flag.
fn flag_bit(name: &str) -> Result<libc::c_ulong, String> {
    let bit = match name {
        "SECCOMP_FILTER_FLAG_TSYNC" => return Ok(0),
        "SECCOMP_FILTER_FLAG_LOG" => libc::SECCOMP_FILTER_FLAG_LOG,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW" => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" => libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        _ => return Err("is unknown".into()),
    };
    // The kernel takes WAIT_KILLABLE_RECV only with a listener.
    let probe = match bit {
        libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV => {
            bit | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
        }
        _ => bit,
    };
    if !kernel_has_flag(probe) {
        return Err("is not supported by this kernel".into());
    }
    Ok(bit)
}

/// Does the kernel know filter flag `bit`? With a NULL program, a known flag gets EFAULT
/// (the program can't be read) and an unknown one EINVAL: nothing is loaded either way.
fn kernel_has_flag(bit: libc::c_ulong) -> bool {
    // SAFETY: a NULL program pointer is never dereferenced: the call fails with EFAULT.
    let r = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            bit,
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    r < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// Adds architecture `name` (the native one is there already). The error completes a
/// sentence about the architecture.
fn add_arch(ctx: &mut ScmpFilterContext, name: &str) -> Result<(), String> {
    let arch: ScmpArch = name.parse().map_err(|_| "is unknown".to_string())?;
    if !ctx.is_arch_present(arch).unwrap_or(false) {
        ctx.add_arch(arch)
            .map_err(|e| format!("cannot be filtered on this host (libseccomp: {e})"))?;
    }
    Ok(())
}

fn new_ctx(default: ScmpAction) -> Result<ScmpFilterContext> {
    ScmpFilterContext::new(default).context("create a seccomp filter")
}

/// Compiles `p` into a filter program. Every error names the field it is about.
fn compile(p: &Profile) -> Result<Program> {
    let (rules, mut flags, listener) = compile_rules(p)?;
    if listener.is_none() {
        // Only notifications wait, and the kernel refuses the flag without a listener
        // (libseccomp drops it too).
        flags &= !libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;
    }
    let bpf = export_bpf(&rules.ctx).context("generate the seccomp filter program")?;
    if bpf.len() > BPF_MAXINSNS {
        bail!(
            "linux.seccomp: the filter program has {} instructions, more than the kernel's {BPF_MAXINSNS}",
            bpf.len()
        );
    }
    Ok(Program {
        bpf,
        flags,
        listener,
        skipped: rules.skipped,
    })
}

/// The rules of `p` in a libseccomp context, its filter flags and its agent.
fn compile_rules(p: &Profile) -> Result<(Rules, libc::c_ulong, Option<Listener>)> {
    const F: &str = "linux.seccomp";
    let default = parse_action(
        &format!("{F}.defaultAction"),
        p.default_action.as_deref(),
        p.default_errno_ret,
    )?;
    if default == ScmpAction::Notify {
        bail!(
            "{F}.defaultAction SCMP_ACT_NOTIFY is not allowed: the runtime's own syscalls would wait for the agent"
        );
    }
    let mut ctx = new_ctx(default)?;
    for (i, name) in p.architectures.iter().flatten().enumerate() {
        if let Err(e) = add_arch(&mut ctx, name) {
            bail!("{F}.architectures[{i}] {name:?} {e}");
        }
    }
    let mut flags = 0;
    for (i, name) in p.flags.iter().flatten().enumerate() {
        match flag_bit(name) {
            Ok(bit) => flags |= bit,
            Err(e) => bail!("{F}.flags[{i}] {name:?} {e}"),
        }
    }
    let syscalls = p.syscalls.as_deref().unwrap_or(&[]);
    // A binary tree makes long lists fast (runc's threshold; libseccomp <= 2.5.4 must not
    // get it for an empty filter).
    if syscalls.len() > 32 && ctx.set_ctl_optimize(2).is_err() {
        crate::log::debug("seccomp binary tree optimization not available");
    }
    let mut rules = Rules {
        ctx,
        notify: false,
        skipped: Vec::new(),
    };
    for (i, sc) in syscalls.iter().enumerate() {
        rules.add(&format!("{F}.syscalls[{i}]"), sc, default)?;
    }
    let listener = match (rules.notify, &p.listener_path) {
        (false, _) => None,
        (true, None) => bail!("{F}.listenerPath is required when a rule uses SCMP_ACT_NOTIFY"),
        (true, Some(path)) => Some(Listener {
            path: path.clone(),
            metadata: p.listener_metadata.clone(),
        }),
    };
    Ok((rules, flags, listener))
}

/// The kernel's limit on the length of a filter program.
const BPF_MAXINSNS: usize = 4096;

/// libseccomp's program for `ctx`, read back through a memfd.
fn export_bpf(ctx: &ScmpFilterContext) -> Result<Vec<libc::sock_filter>> {
    use nix::sys::memfd::{MFdFlags, memfd_create};
    let fd = memfd_create(c"corten-seccomp", MFdFlags::MFD_CLOEXEC).context("memfd_create")?;
    ctx.export_bpf(&fd).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut file = std::fs::File::from(fd);
    file.rewind()?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    // struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }, in the host's byte order.
    Ok(bytes
        .chunks_exact(8)
        .map(|b| libc::sock_filter {
            code: u16::from_ne_bytes([b[0], b[1]]),
            jt: b[2],
            jf: b[3],
            k: u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
        })
        .collect())
}

/// The filter being built from the syscall entries.
struct Rules {
    ctx: ScmpFilterContext,
    /// Some rule uses SCMP_ACT_NOTIFY.
    notify: bool,
    skipped: Vec<String>,
}

impl Rules {
    /// Adds the rules of the syscall entry at `field`.
    fn add(&mut self, field: &str, sc: &Syscall, default: ScmpAction) -> Result<()> {
        let names = match &sc.names {
            Some(n) if !n.is_empty() => n,
            _ => bail!("{field}.names is required"),
        };
        let act = parse_action(
            &format!("{field}.action"),
            sc.action.as_deref(),
            sc.errno_ret,
        )?;
        let conds = sc
            .args
            .iter()
            .flatten()
            .enumerate()
            .map(|(j, a)| {
                let c = condition(&format!("{field}.args[{j}]"), a)?;
                Ok((a.index.unwrap_or(0), c))
            })
            .collect::<Result<Vec<_>>>()?;
        if act == ScmpAction::Notify {
            // These carry the listener fd to the agent (and report errors) once the filter
            // is loaded: they can't wait for it.
            if let Some(n) = names
                .iter()
                .find(|n| ["write", "sendmsg"].contains(&n.as_str()))
            {
                bail!("{field}: SCMP_ACT_NOTIFY cannot be used for {n:?}");
            }
            let api = libseccomp::get_api();
            if api < 6 {
                bail!(
                    "{field}.action SCMP_ACT_NOTIFY is not supported on this host: it needs libseccomp API level 6 (libseccomp >= 2.5, Linux >= 5.7), not {api}"
                );
            }
            self.notify = true;
        }
        if act == default {
            // libseccomp refuses a rule that changes nothing.
            return Ok(());
        }
        let sets = rule_sets(conds);
        for name in names {
            let Ok(nr) = ScmpSyscall::from_name(name) else {
                self.skipped.push(name.clone());
                continue;
            };
            for set in &sets {
                self.ctx
                    .add_rule_conditional(act, nr, set)
                    .map_err(|e| anyhow::anyhow!("{e}"))
                    .with_context(|| format!("{field}: add the rule for {name:?}"))?;
            }
        }
        Ok(())
    }
}

impl Program {
    /// The program of a config's linux.seccomp, through the program cache of state root
    /// `root` if given; unknown syscall names are logged, as runc does.
    pub fn build(s: &LinuxSeccomp, root: Option<&Path>) -> Result<Program> {
        let p = match root {
            Some(root) => cached(s, &root.join(cache::DIR_NAME))?,
            None => compile(&Profile::from_spec(s)?)?,
        };
        for name in &p.skipped {
            crate::log::debug(&format!("unknown seccomp syscall {name:?} ignored"));
        }
        Ok(p)
    }

    /// Does a rule use SCMP_ACT_NOTIFY?
    pub fn notifies(&self) -> bool {
        self.listener.is_some()
    }

    /// Connects to the SCMP_ACT_NOTIFY agent at listenerPath, if the filter has one; call
    /// it while listenerPath is still reachable (the host's mount namespace). The agent
    /// will get `state` (the container's) with `status` and the filtered process's host
    /// pid: this process's own unless `set_pid` names another.
    pub fn connect_agent(
        &self,
        state: &crate::container::State,
        status: crate::container::Status,
    ) -> Result<Option<Agent>> {
        let Some(l) = &self.listener else {
            return Ok(None);
        };
        let sock = UnixStream::connect(&l.path)
            .with_context(|| format!("connect to the seccomp agent at {}", l.path.display()))?;
        // /proc/self names our pid in the host's pid namespace.
        let pid: i32 = std::fs::read_link("/proc/self")
            .ok()
            .and_then(|p| p.to_str()?.parse().ok())
            .context("read our pid from /proc/self")?;
        Ok(Some(Agent {
            sock,
            state: state.clone(),
            status,
            metadata: l.metadata.clone(),
            pid,
        }))
    }

    /// Loads the program into this process (seccomp(2)); the SCMP_ACT_NOTIFY listener fd
    /// goes to `agent`.
    pub fn load(&self, agent: Option<&Agent>) -> Result<()> {
        let mut flags = self.flags;
        // The message is made before the filter exists: once it does, a syscall that waits
        // for the agent (an allocation's mmap, say) would wait for an agent without its fd.
        let handoff = match (&self.listener, agent) {
            (None, _) => None,
            (Some(_), Some(agent)) => Some((agent, agent.message())),
            (Some(_), None) => bail!("no seccomp agent to send the listener fd to"),
        };
        if handoff.is_some() {
            flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
        }
        let prog = libc::sock_fprog {
            len: self.bpf.len() as u16,
            filter: self.bpf.as_ptr().cast_mut(),
        };
        // SAFETY: `prog` describes `self.bpf`, alive for the call; the kernel copies it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const libc::sock_fprog,
            )
        };
        if r < 0 {
            return Err(std::io::Error::last_os_error()).context("load the seccomp filter");
        }
        if let Some((agent, message)) = handoff {
            // SAFETY: with NEW_LISTENER, seccomp returned a new fd (close-on-exec) we own.
            let fd = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
            send_fd(&agent.sock, &message, fd.as_raw_fd())
                .context("send the seccomp listener fd to the agent")?;
        }
        Ok(())
    }
}

/// The program of `s` from the cache in `dir`, or compiled and then cached. The cache never
/// fails a build: an entry that isn't sound is rebuilt, one that can't be written is not kept.
fn cached(s: &LinuxSeccomp, dir: &Path) -> Result<Program> {
    let json = serde_json::to_vec(s).context("linux.seccomp")?;
    let p: Profile = serde_json::from_slice(&json).context("linux.seccomp")?;
    let key = cache::key(&json, kernel_flag_support());
    if let Some(e) = cache::read(dir, &key) {
        let listener = match (e.notify, &p.listener_path) {
            (false, _) => Some(None),
            (true, Some(path)) => Some(Some(Listener {
                path: path.clone(),
                metadata: p.listener_metadata.clone(),
            })),
            (true, None) => None,
        };
        if let Some(listener) = listener {
            return Ok(Program {
                bpf: e.bpf,
                flags: e.flags as libc::c_ulong,
                listener,
                skipped: e.skipped,
            });
        }
    }
    let prog = compile(&p)?;
    let entry = cache::Entry {
        flags: prog.flags as u64,
        notify: prog.listener.is_some(),
        skipped: prog.skipped.clone(),
        bpf: prog.bpf.clone(),
    };
    if let Err(e) = cache::write(dir, &key, &entry) {
        crate::log::debug(&format!("seccomp cache: {e:#}; program not cached"));
    }
    Ok(prog)
}

/// The filter flags this kernel supports, a bit per entry of [`FLAGS`].
fn kernel_flag_support() -> u64 {
    FLAGS
        .iter()
        .enumerate()
        .filter(|(_, f)| flag_bit(f).is_ok())
        .fold(0, |bits, (i, _)| bits | 1 << i)
}

/// The connection to the seccomp agent and what its message says. Keep it until execve:
/// dropping it closes the socket, a syscall the filter would see.
pub struct Agent {
    sock: UnixStream,
    state: crate::container::State,
    status: crate::container::Status,
    metadata: Option<String>,
    /// The filtered process, as the host sees it.
    pid: i32,
}

impl Agent {
    /// The filtered process is `pid` (host pid namespace), not the one that connected.
    pub fn set_pid(&mut self, pid: i32) {
        self.pid = pid;
    }

    fn message(&self) -> Vec<u8> {
        agent_message(&self.state, self.status, self.pid, self.metadata.as_deref())
    }
}

/// For a config.json oci-spec could not parse: a precise error when the cause is in
/// `linux.seccomp` (oci-spec names a bad value but not where it is); Ok otherwise.
pub fn explain_parse_error(config: &[u8]) -> Result<()> {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(config) else {
        return Ok(());
    };
    let Some(s) = v.pointer("/linux/seccomp").filter(|s| !s.is_null()) else {
        return Ok(());
    };
    match serde_json::from_value::<Profile>(s.clone()) {
        Ok(p) => compile(&p).map(drop),
        Err(_) => Ok(()),
    }
}

/// Loading a filter needs no_new_privs or CAP_SYS_ADMIN. With either, the filter is loaded
/// right before execve, so that the runtime's own syscalls are not filtered (the init's
/// notifying one once it is set up, before it reports ready); without, it must be loaded
/// before the capabilities are dropped.
pub fn load_before_exec(process: &Process) -> bool {
    process.no_new_privileges().unwrap_or(false)
        || process
            .capabilities()
            .as_ref()
            .and_then(|c| c.effective().as_ref())
            .is_some_and(|e| e.contains(&Capability::SysAdmin))
}

/// The runtime-spec's container process state for the agent (runc's format).
fn agent_message(
    state: &crate::container::State,
    status: crate::container::Status,
    pid: i32,
    metadata: Option<&str>,
) -> Vec<u8> {
    let mut st = state.clone();
    st.pid = pid;
    let mut msg = serde_json::json!({
        "ociVersion": crate::spec_version::OCI_VERSION,
        "fds": [SECCOMP_FD_NAME],
        "pid": pid,
        "state": crate::container::spec_state(&st, status),
    });
    if let Some(m) = metadata.filter(|m| !m.is_empty()) {
        msg["metadata"] = m.into();
    }
    msg.to_string().into_bytes()
}

/// One sendmsg: `msg` with `fd` attached (SCM_RIGHTS).
fn send_fd(sock: &UnixStream, msg: &[u8], fd: RawFd) -> Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let fds = [fd];
    let n = sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(msg)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    if n != msg.len() {
        bail!("short write ({n} of {} bytes)", msg.len());
    }
    Ok(())
}

/// The architectures a filter can have on this host: those the linked libseccomp knows,
/// of the native byte order.
pub fn supported_archs() -> Vec<&'static str> {
    ARCHS
        .iter()
        .copied()
        .filter(|a| new_ctx(ScmpAction::Allow).is_ok_and(|mut ctx| add_arch(&mut ctx, a).is_ok()))
        .collect()
}

/// The filter flags this kernel supports.
pub fn supported_flags() -> Vec<&'static str> {
    FLAGS
        .iter()
        .copied()
        .filter(|f| flag_bit(f).is_ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn profile(v: serde_json::Value) -> Profile {
        serde_json::from_value(v).unwrap()
    }

    fn err(v: serde_json::Value) -> String {
        match compile(&profile(v)) {
            Ok(_) => panic!("profile accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    /// The rules of `v` in libseccomp's pseudo filter code, and the skipped names.
    fn pfc(v: serde_json::Value) -> (String, Vec<String>) {
        let (rules, _, _) = compile_rules(&profile(v)).unwrap();
        let path = std::env::temp_dir().join(format!("corten-pfc-{}", std::process::id()));
        let file = std::fs::File::create(&path).unwrap();
        rules.ctx.export_pfc(&file).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        (text, rules.skipped)
    }

    #[test]
    fn every_listed_name_is_understood() {
        for a in ACTIONS {
            assert!(action(a, None).is_some(), "{a}");
        }
        for op in OPERATORS {
            let arg = Arg {
                index: Some(0),
                op: Some(op.to_string()),
                ..Default::default()
            };
            condition("x", &arg).unwrap();
        }
        for a in ARCHS {
            a.parse::<ScmpArch>().unwrap();
        }
        assert!(!kernel_has_flag(1 << 31));
        for f in FLAGS {
            let e = flag_bit(f).err();
            assert!(
                e.as_ref().is_none_or(|e| e.contains("not supported")),
                "{f}: {e:?}"
            );
        }
        assert!(
            supported_archs().contains(&"SCMP_ARCH_X86_64") || cfg!(not(target_arch = "x86_64"))
        );
    }

    #[test]
    fn errno_and_trace_default_to_eperm() {
        assert_eq!(
            action("SCMP_ACT_ERRNO", None),
            Some(ScmpAction::Errno(libc::EPERM))
        );
        assert_eq!(
            action("SCMP_ACT_ERRNO", Some(38)),
            Some(ScmpAction::Errno(38))
        );
        assert_eq!(action("SCMP_ACT_TRACE", None), Some(ScmpAction::Trace(1)));
        assert_eq!(
            action("SCMP_ACT_KILL", None),
            action("SCMP_ACT_KILL_THREAD", None)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["mkdir"], "action": "SCMP_ACT_FOO"}]}));
        assert_eq!(
            e,
            r#"linux.seccomp.syscalls[1].action "SCMP_ACT_FOO" is unknown"#
        );
        let e = err(json!({"defaultAction": "SCMP_ACT_NOPE"}));
        assert_eq!(
            e,
            r#"linux.seccomp.defaultAction "SCMP_ACT_NOPE" is unknown"#
        );
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 1, "value": 1, "op": "SCMP_CMP_SOMETIMES"}]}]}));
        assert_eq!(
            e,
            r#"linux.seccomp.syscalls[0].args[0].op "SCMP_CMP_SOMETIMES" is unknown"#
        );
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
        assert!(
            e.contains("syscalls[0].args[0].index 6 is out of range"),
            "{e}"
        );
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_VAX"]}));
        assert_eq!(
            e,
            r#"linux.seccomp.architectures[0] "SCMP_ARCH_VAX" is unknown"#
        );
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_X"]}));
        assert_eq!(
            e,
            r#"linux.seccomp.flags[0] "SECCOMP_FILTER_FLAG_X" is unknown"#
        );
        let e = err(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}),
        );
        assert_eq!(e, "linux.seccomp.syscalls[0].names is required");
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}));
        assert!(e.contains("errnoRet 70000 is out of range"), "{e}");
    }

    #[test]
    fn notify_needs_a_listener_and_spares_write() {
        let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}));
        assert_eq!(
            e,
            "linux.seccomp.listenerPath is required when a rule uses SCMP_ACT_NOTIFY"
        );
        let e = err(
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x", "syscalls": [
            {"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]}),
        );
        assert!(e.contains("cannot be used for \"write\""), "{e}");
        let e = err(json!({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}));
        assert!(
            e.starts_with("linux.seccomp.defaultAction SCMP_ACT_NOTIFY is not allowed"),
            "{e}"
        );
    }

    #[test]
    fn unknown_names_and_default_action_rules_are_skipped() {
        let (text, skipped) = pfc(json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [
            {"names": ["no_such_syscall", "getpid"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}));
        assert_eq!(skipped, ["no_such_syscall"]);
        assert!(text.contains("getpid"), "{text}");
        assert!(!text.contains("mkdir"), "{text}");
    }

    #[test]
    fn args_on_the_same_index_become_separate_rules() {
        let (text, _) = pfc(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 8, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 16, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "args": [
                {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 15, "valueTwo": 1, "op": "SCMP_CMP_MASKED_EQ"}]}]}));
        // personality: two independent tests of $a0 (one rule could not test it twice).
        assert!(text.contains("if ($a0.lo32 == 8)"), "{text}");
        assert!(text.contains("if ($a0.lo32 == 16)"), "{text}");
        // socket: both conditions nested in one rule, the mask from `value`.
        let a0 = text.find("if ($a0.lo32 == 2)").unwrap_or(usize::MAX);
        let a1 = text.find("if ($a1.lo32 & 0x0000000f == 1)").unwrap_or(0);
        assert!(a0 < a1, "{text}");
    }

    #[test]
    fn load_point_follows_privileges() {
        let p: Process = serde_json::from_value(json!({
            "cwd": "/", "user": {"uid": 0, "gid": 0}, "noNewPrivileges": false,
            "capabilities": {"effective": ["CAP_CHOWN"]}}))
        .unwrap();
        assert!(!load_before_exec(&p));
        let p: Process = serde_json::from_value(json!({
            "cwd": "/", "user": {"uid": 0, "gid": 0},
            "capabilities": {"effective": ["CAP_SYS_ADMIN"]}}))
        .unwrap();
        assert!(load_before_exec(&p));
        let p: Process = serde_json::from_value(json!({
            "cwd": "/", "user": {"uid": 0, "gid": 0}, "noNewPrivileges": true}))
        .unwrap();
        assert!(load_before_exec(&p));
    }

    /// The raw fields of a program, to compare two.
    fn raw(p: &Program) -> String {
        let bpf: Vec<_> = p.bpf.iter().map(|i| (i.code, i.jt, i.jf, i.k)).collect();
        format!("{bpf:?} {:x} {} {:?}", p.flags, p.notifies(), p.skipped)
    }

    #[test]
    fn a_cached_program_is_the_compiled_one() {
        let root = std::env::temp_dir().join(format!("corten-sc-build-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir(&root).unwrap();
        for v in [
            json!({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86"],
                "flags": ["SECCOMP_FILTER_FLAG_TSYNC"], "syscalls": [
                {"names": ["no_such_syscall", "getpid"], "action": "SCMP_ACT_ALLOW"}]}),
            json!({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
                "listenerMetadata": "m", "syscalls": [
                {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}),
        ] {
            let spec: LinuxSeccomp = serde_json::from_value(v.clone()).unwrap();
            let compiled = compile(&profile(v)).unwrap();
            let missed = Program::build(&spec, Some(&root)).unwrap();
            let hit = Program::build(&spec, Some(&root)).unwrap();
            assert_eq!(raw(&missed), raw(&compiled));
            assert_eq!(raw(&hit), raw(&compiled));
            let (a, b) = (hit.listener.as_ref(), compiled.listener.as_ref());
            assert_eq!(a.map(|l| &l.path), b.map(|l| &l.path));
            assert_eq!(a.map(|l| &l.metadata), b.map(|l| &l.metadata));
        }
        let entries = std::fs::read_dir(root.join(cache::DIR_NAME))
            .unwrap()
            .count();
        assert_eq!(entries, 2);
        // A bad profile is still refused, with the cache there.
        let bad: LinuxSeccomp =
            serde_json::from_value(json!({"defaultAction": "SCMP_ACT_NOTIFY"})).unwrap();
        assert!(Program::build(&bad, Some(&root)).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn parse_errors_in_the_profile_are_explained() {
        let cfg = json!({"linux": {"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_FOO"}]}}});
        let e = explain_parse_error(cfg.to_string().as_bytes()).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            r#"linux.seccomp.syscalls[0].action "SCMP_ACT_FOO" is unknown"#
        );
        explain_parse_error(b"{\"linux\": {}}").unwrap();
        explain_parse_error(b"not json").unwrap();
    }
}
