//! CPU and I/O scheduling of the container process: `process.scheduler` (sched_setattr),
//! `process.ioPriority` (ioprio_set) and the format of `process.execCPUAffinity`.
//!
//! Both are applied by the init while it still has its capabilities (an RT policy or a
//! lower nice needs CAP_SYS_NICE, the RT I/O class CAP_SYS_ADMIN) and, for the scheduler,
//! once it is in its cgroup (a v1 cpu cgroup without RT runtime refuses an RT task).
//! Both are inherited across execve.

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{
    ExecCPUAffinity, IOPriorityClass, LinuxIOPriority, LinuxSchedulerFlag, LinuxSchedulerPolicy,
    Process, Scheduler,
};

use crate::idlist;

/// CPU numbers accepted in CPU lists (the kernel's CONFIG_NR_CPUS maximum).
pub const MAX_CPUS: usize = 8192;

/// Scheduler flags the runtime-spec spells otherwise than the oci-spec crate: (spec, crate).
const SPEC_FLAG_NAMES: &[(&str, &str)] = &[
    ("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK"),
    ("SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_D_L_OVERRUN"),
];

/// Renames the spec's spelling of the scheduler flags in the list at `pointer` of a raw
/// config (or `--process` file) to the names oci-spec parses. Returns whether it renamed
/// any.
pub fn spec_flag_names(v: &mut serde_json::Value, pointer: &str) -> bool {
    let mut renamed = false;
    for flag in v
        .pointer_mut(pointer)
        .and_then(|f| f.as_array_mut())
        .into_iter()
        .flatten()
    {
        if let Some((_, ours)) = SPEC_FLAG_NAMES.iter().find(|(spec, _)| flag == spec) {
            *flag = serde_json::Value::from(*ours);
            renamed = true;
        }
    }
    renamed
}

/// Checks the scheduling fields of `process` before anything is created.
pub fn validate(process: &Process) -> Result<()> {
    if let Some(s) = process.scheduler() {
        validate_scheduler(s).context("process.scheduler")?;
    }
    if let Some(io) = process.io_priority() {
        validate_io_priority(io)?;
    }
    if let Some(aff) = process.exec_cpu_affinity() {
        validate_affinity(aff)?;
    }
    Ok(())
}

/// runc's rules (libcontainer/configs/validate), plus the priority range the kernel takes.
fn validate_scheduler(s: &Scheduler) -> Result<()> {
    use LinuxSchedulerPolicy::*;
    let policy = *s.policy();
    if policy == SchedIso {
        bail!("policy SCHED_ISO is not implemented by Linux");
    }
    if let Some(n) = s.nice()
        && !(-20..=19).contains(n)
    {
        bail!("nice {n} is out of range -20..19");
    }
    let realtime = matches!(policy, SchedFifo | SchedRr);
    match s.priority() {
        Some(p) if realtime && !(1..=99).contains(p) => {
            bail!("priority {p} is out of range 1..99 for {policy}")
        }
        None if realtime => bail!("{policy} needs a priority (1..99)"),
        Some(p) if !realtime && *p != 0 => {
            bail!("priority can only be set for SCHED_FIFO or SCHED_RR, not {policy}")
        }
        _ => {}
    }
    if policy != SchedDeadline
        && [s.runtime(), s.deadline(), s.period()]
            .iter()
            .any(|v| v.is_some_and(|v| v != 0))
    {
        bail!("runtime, deadline and period can only be set for SCHED_DEADLINE, not {policy}");
    }
    Ok(())
}

fn validate_io_priority(io: &LinuxIOPriority) -> Result<()> {
    let p = io.priority();
    if !(0..=7).contains(&p) {
        bail!("process.ioPriority.priority {p} is out of range 0..7");
    }
    Ok(())
}

/// The lists must parse. The init does not apply them: per the runtime-spec,
/// execCPUAffinity "is not applicable to the container's init process"; `exec` does.
fn validate_affinity(aff: &ExecCPUAffinity) -> Result<()> {
    for (field, list) in [
        ("initial", aff.initial()),
        ("final", aff.cpu_affinity_final()),
    ] {
        if let Some(l) = list.as_deref().filter(|l| !l.is_empty()) {
            idlist::parse(l, MAX_CPUS)
                .with_context(|| format!("process.execCPUAffinity.{field}"))?;
        }
    }
    Ok(())
}

/// process.ioPriority and process.scheduler, applied to the calling process (the init, or
/// an `exec`'d process) while it has its capabilities and is in the container's cgroup.
pub fn apply(process: &Process) -> Result<()> {
    if let Some(io) = process.io_priority() {
        set_io_priority(io)?;
    }
    if let Some(s) = process.scheduler() {
        set_scheduler(s)?;
    }
    Ok(())
}

/// sched_setaffinity of the calling process to a cpu list ("0-1,3"): `exec` applies
/// execCPUAffinity.initial before the process joins the container's cgroup and `final`
/// after.
pub fn set_affinity(list: &str, field: &str) -> Result<()> {
    let mask = idlist::parse(list, MAX_CPUS)
        .with_context(|| format!("process.execCPUAffinity.{field}"))?;
    let mut set = nix::sched::CpuSet::new();
    for cpu in idlist::ids(&mask) {
        set.set(cpu)
            .with_context(|| format!("process.execCPUAffinity.{field}: cpu {cpu}"))?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
        .with_context(|| format!("process.execCPUAffinity.{field} {list:?}: sched_setaffinity"))
}

/// ioprio_set for the caller's process group (after setsid: just the init or the exec'd
/// process), as runc does; the class and priority are inherited by what it starts.
pub fn set_io_priority(io: &LinuxIOPriority) -> Result<()> {
    const IOPRIO_WHO_PGRP: libc::c_long = 2;
    const IOPRIO_CLASS_SHIFT: i64 = 13;
    let class: i64 = match io.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    let prio = (class << IOPRIO_CLASS_SHIFT) | io.priority();
    // SAFETY: integer arguments only.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PGRP, 0, prio) };
    if r != 0 {
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!(
                "process.ioPriority: ioprio_set {} {}",
                io.class(),
                io.priority()
            )
        });
    }
    Ok(())
}

/// struct sched_attr as of Linux 3.14 (SCHED_ATTR_SIZE_VER0, 48 bytes).
#[repr(C)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

fn policy_number(p: LinuxSchedulerPolicy) -> u32 {
    use LinuxSchedulerPolicy::*;
    match p {
        SchedOther => 0,
        SchedFifo => 1,
        SchedRr => 2,
        SchedBatch => 3,
        SchedIso => 4,
        SchedIdle => 5,
        SchedDeadline => 6,
    }
}

fn flag_bits(flags: &[LinuxSchedulerFlag]) -> u64 {
    use LinuxSchedulerFlag::*;
    flags
        .iter()
        .map(|f| match f {
            SchedResetOnFork => 0x01,
            SchedFlagReclaim => 0x02,
            SchedFlagDLOverrun => 0x04,
            SchedFlagKeepPolicy => 0x08,
            SchedFlagKeepParams => 0x10,
            SchedFlagUtilClampMin => 0x20,
            SchedFlagUtilClampMax => 0x40,
        })
        .fold(0, |a, b| a | b)
}

/// sched_setattr(2) on the calling process (the init or an exec'd process).
pub fn set_scheduler(s: &Scheduler) -> Result<()> {
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy: policy_number(*s.policy()),
        flags: flag_bits(s.flags().as_deref().unwrap_or(&[])),
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: `attr` is a valid sched_attr whose size field matches its layout.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if r != 0 {
        let e = std::io::Error::last_os_error();
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) if attr.policy == 1 || attr.policy == 2 || attr.policy == 6 => {
                " (a realtime policy needs CAP_SYS_NICE and, with cgroup v1 RT group \
                 scheduling, cpu.rt_runtime_us in the container's cgroup)"
            }
            _ => "",
        };
        return Err(e).with_context(|| {
            format!(
                "process.scheduler: sched_setattr {} (nice {}, priority {}){hint}",
                s.policy(),
                attr.nice,
                attr.priority
            )
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(v: serde_json::Value) -> Scheduler {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn scheduler_rules() {
        let ok = [
            serde_json::json!({"policy": "SCHED_OTHER", "nice": 5}),
            serde_json::json!({"policy": "SCHED_FIFO", "priority": 10}),
            serde_json::json!({"policy": "SCHED_DEADLINE", "runtime": 1, "deadline": 2, "period": 3}),
        ];
        for v in ok {
            validate_scheduler(&sched(v.clone())).unwrap_or_else(|e| panic!("{v}: {e}"));
        }
        let bad = [
            (
                serde_json::json!({"policy": "SCHED_OTHER", "nice": 20}),
                "nice 20",
            ),
            (
                serde_json::json!({"policy": "SCHED_RR", "priority": 100}),
                "out of range 1..99",
            ),
            (
                serde_json::json!({"policy": "SCHED_FIFO"}),
                "needs a priority",
            ),
            (
                serde_json::json!({"policy": "SCHED_BATCH", "priority": 1}),
                "only be set for",
            ),
            (
                serde_json::json!({"policy": "SCHED_OTHER", "runtime": 5}),
                "SCHED_DEADLINE",
            ),
            (serde_json::json!({"policy": "SCHED_ISO"}), "SCHED_ISO"),
        ];
        for (v, want) in bad {
            let e = validate_scheduler(&sched(v.clone()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{v}: {e}");
        }
    }

    #[test]
    fn flags_in_the_specs_spelling() {
        let mut v = serde_json::json!({"user": {"uid": 0, "gid": 0}, "cwd": "/",
            "scheduler": {"policy": "SCHED_OTHER", "flags": [
            "SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_RECLAIM", "SCHED_FLAG_DL_OVERRUN",
            "SCHED_FLAG_KEEP_POLICY", "SCHED_FLAG_KEEP_PARAMS", "SCHED_FLAG_UTIL_CLAMP_MIN",
            "SCHED_FLAG_UTIL_CLAMP_MAX"
        ]}});
        assert!(serde_json::from_value::<Process>(v.clone()).is_err());
        assert!(spec_flag_names(&mut v, "/scheduler/flags"));
        let p: Process = serde_json::from_value(v).unwrap();
        let flags = p.scheduler().as_ref().unwrap().flags().clone().unwrap();
        assert_eq!(flag_bits(&flags), 0x7f);
        // The crate's own spelling is still taken, and nothing else is touched.
        let mut v = serde_json::json!({"scheduler": {"flags": ["SCHED_RESET_ON_FORK"]}});
        assert!(!spec_flag_names(&mut v, "/scheduler/flags"));
        assert!(!spec_flag_names(
            &mut serde_json::json!({}),
            "/scheduler/flags"
        ));
    }

    #[test]
    fn io_priority_range() {
        let io = |p: i64| -> LinuxIOPriority {
            serde_json::from_value(serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": p}))
                .unwrap()
        };
        validate_io_priority(&io(0)).unwrap();
        validate_io_priority(&io(7)).unwrap();
        assert!(validate_io_priority(&io(8)).is_err());
        assert!(validate_io_priority(&io(-1)).is_err());
    }

    #[test]
    fn sched_attr_is_ver0_sized() {
        assert_eq!(std::mem::size_of::<SchedAttr>(), 48);
        assert_eq!(
            flag_bits(&[
                LinuxSchedulerFlag::SchedResetOnFork,
                LinuxSchedulerFlag::SchedFlagKeepParams
            ]),
            0x11
        );
    }
}
