//! The systemd cgroup driver (`--systemd-cgroup`), as runc's: linux.cgroupsPath is
//! `slice:prefix:name`, the container's cgroup is the transient scope `prefix-name.scope`
//! that systemd makes in `slice` (StartTransientUnit with PIDs = [init], Delegate=true and
//! the resource properties systemd understands). Its directory then is the container's
//! cgroup for the rest of corten (`Cgroup` with `systemd` set): the cgroupfs code writes
//! every linux.resources field on it, and `destroy` stops the unit (StopUnit) before
//! removing what is left. cgroup v2 only for now.
//!
//! systemd is reached over D-Bus with the thread-free client in `dbus`, after the init
//! was cloned; the connection is closed before `create` returns.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use super::dbus::{Conn, TimedOut, Value};
use super::{Cgroup, Dir, hierarchies};

/// How long a unit's start or stop job may take.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// The container's unit, recorded in its state.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Unit {
    pub slice: String,
    pub name: String,
    /// systemd made it (it holds the init): only then is it corten's to stop.
    #[serde(default)]
    pub started: bool,
}

/// The slice and unit name for linux.cgroupsPath (runc's rules): empty gives the unit
/// `corten-<id>.scope` in system.slice; otherwise exactly `slice:prefix:name`.
pub fn unit_of(cgroups_path: Option<&Path>, id: &str) -> Result<(String, String)> {
    let p = cgroups_path
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (slice, prefix, name) = if p.is_empty() {
        (String::new(), "corten".to_string(), id.to_string())
    } else {
        let parts: Vec<&str> = p.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            bail!(
                "expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got {p:?} instead"
            );
        };
        (slice.to_string(), prefix.to_string(), name.to_string())
    };
    let slice = if slice.is_empty() {
        "system.slice".to_string()
    } else {
        slice
    };
    if name.ends_with(".slice") {
        bail!(
            "linux.cgroupsPath {p:?}: a slice as the container's unit is not supported yet (name it <name>, not <name>.slice)"
        );
    }
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    // systemd's unit name characters; also keeps the cgroup path below the slice.
    let valid = |c: char| c.is_ascii_alphanumeric() || ":-_.\\@".contains(c);
    if name.is_empty() || !unit.chars().all(valid) || unit.len() > 255 {
        bail!("linux.cgroupsPath {p:?}: {unit:?} is not a valid systemd unit name");
    }
    Ok((slice, unit))
}

/// A slice's cgroup path (runc's ExpandSlice): `a-b.slice` lives in `/a.slice/a-b.slice`,
/// `-.slice` is the root.
pub fn expand_slice(slice: &str) -> Result<String> {
    let bad = || anyhow::anyhow!("invalid slice name: {slice}");
    let name = slice.strip_suffix(".slice").ok_or_else(bad)?;
    if slice.contains('/') {
        return Err(bad());
    }
    if name == "-" {
        return Ok("/".into());
    }
    let (mut path, mut prefix) = (String::new(), String::new());
    for part in name.split('-') {
        if part.is_empty() {
            return Err(bad());
        }
        path.push_str(&format!("/{prefix}{part}.slice"));
        prefix.push_str(&format!("{part}-"));
    }
    Ok(path)
}

/// Where the unit's cgroup will be: nothing is made (the unit is started by `start`,
/// once the init exists). Only `start` records the unit, so a failed create never stops
/// a unit of the same name that was not corten's.
pub fn plan(cgroups_path: Option<&Path>, id: &str) -> Result<Cgroup> {
    let (slice, unit) = unit_of(cgroups_path, id)?;
    let slice_path = expand_slice(&slice)?;
    let hs = hierarchies()?;
    let [h] = &hs[..] else {
        bail!(
            "--systemd-cgroup: the systemd driver supports only cgroup v2 hosts for now; use cgroupfs"
        );
    };
    if !h.v2 {
        bail!(
            "--systemd-cgroup: the systemd driver supports only cgroup v2 hosts for now; use cgroupfs"
        );
    }
    let path = h.mount.join(slice_path.trim_start_matches('/')).join(&unit);
    Ok(Cgroup {
        dirs: vec![Dir {
            path,
            hierarchy: h.clone(),
            created: Vec::new(),
        }],
        made: false,
        systemd: Some(Unit {
            slice,
            name: unit,
            started: false,
        }),
    })
}

/// Starts the scope with `pid` in it and the resource properties; on success `cg` records
/// the unit (for `destroy`) and its directory as the container's own cgroup.
pub fn start(cg: &mut Cgroup, pid: i32, id: &str, r: &LinuxResources) -> Result<()> {
    let Some(Unit {
        slice, name: unit, ..
    }) = cg.systemd.clone()
    else {
        bail!("internal: no systemd unit planned");
    };
    let mut props = vec![
        prop("Description", Value::Str(format!("corten container {id}"))),
        prop("Slice", Value::Str(slice)),
        prop("Delegate", Value::Bool(true)),
        prop("PIDs", Value::U32s(vec![pid as u32])),
        prop("DefaultDependencies", Value::Bool(false)),
        prop("MemoryAccounting", Value::Bool(true)),
        prop("CPUAccounting", Value::Bool(true)),
        prop("IOAccounting", Value::Bool(true)),
        prop("TasksAccounting", Value::Bool(true)),
    ];
    props.extend(resource_props(r)?);
    let mut conn = Conn::system().context("--systemd-cgroup: connect to systemd")?;
    let reply = conn
        .manager(
            "StartTransientUnit",
            &[
                Value::Str(unit.clone()),
                Value::Str("replace".into()),
                Value::Props(props),
                Value::AuxUnits,
            ],
        )
        .with_context(|| format!("--systemd-cgroup: start unit {unit}"))?;
    // From here the unit is ours (it holds our init): recorded for every later cleanup.
    if let Some(u) = &mut cg.systemd {
        u.started = true;
    }
    let dir = &mut cg.dirs[0];
    dir.created = vec![dir.path.clone()];
    cg.made = true;
    let job = reply.body.first().cloned().unwrap_or_default();
    wait_job(&mut conn, &job, &unit, "start")
}

/// For `delete` after a create killed while it started the unit: the state then names the
/// unit without marking it started, though systemd may have made it with the init in it.
/// It is corten's exactly when the init (`pid`, still the process `create` recorded with
/// `start`) is in the unit's cgroup: then `cg` records it as started, so `destroy` stops it.
/// So is an empty scope of that name (see below).
pub fn adopt(cg: &mut Cgroup, pid: i32, start: u64) {
    let Some(unit) = cg.systemd.as_mut().filter(|u| !u.started) else {
        return;
    };
    let Some(dir) = cg.dirs.first_mut() else {
        return;
    };
    let Ok(rel) = dir.path.strip_prefix(&dir.hierarchy.mount) else {
        return;
    };
    let want = format!("0::/{}", rel.display());
    let inside = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .is_ok_and(|s| s.lines().any(|l| l == want));
    // Checked after the read: the pid was not reused meanwhile.
    let holds_init = inside && crate::container::process_alive(pid, start);
    // An init already gone leaves the scope empty, which systemd stops and collects by
    // itself, a moment later: stopping an empty scope only spares that wait (and kills
    // nothing, whoever made it).
    // A scope that failed to start (its init died meanwhile) has no cgroup left and stays
    // listed as failed until reset: it holds nothing either.
    let empty_scope = unit.name.ends_with(".scope")
        && (!dir.path.exists()
            || std::fs::read_to_string(dir.path.join("cgroup.events"))
                .is_ok_and(|s| s.lines().any(|l| l == "populated 0")));
    if holds_init || empty_scope {
        unit.started = true;
        dir.created = vec![dir.path.clone()];
        cg.made = true;
    }
}

/// Waits for JobRemoved of `job`; a result other than "done" is an error.
fn wait_job(conn: &mut Conn, job: &str, unit: &str, what: &str) -> Result<()> {
    let m = conn
        .wait_signal("JobRemoved", Instant::now() + JOB_TIMEOUT, |b| {
            b.get(1).map(String::as_str) == Some(job)
        })
        .with_context(|| format!("--systemd-cgroup: wait for the {what} job of {unit}"))?;
    match m.body.get(3).map(String::as_str) {
        Some("done") => Ok(()),
        r => bail!(
            "--systemd-cgroup: the {what} job of unit {unit} ended with {:?}",
            r.unwrap_or("")
        ),
    }
}

/// Stops `unit` and waits until it is stopped: its stop job's JobRemoved, or its cgroup
/// `dir` gone (systemd removes it as the unit stops), whichever is seen first, so that a
/// unit that stops at once never costs a wait. A unit already gone is fine. Then clears a
/// failed state so that nothing of it is left listed. Best effort on the wait.
pub fn stop(unit: &str, dir: &Path) -> Result<()> {
    let mut conn = Conn::system().context("connect to systemd")?;
    match conn.manager(
        "StopUnit",
        &[Value::Str(unit.into()), Value::Str("replace".into())],
    ) {
        Ok(reply) => {
            let job = reply.body.first().cloned().unwrap_or_default();
            let deadline = Instant::now() + JOB_TIMEOUT;
            loop {
                let slice = (Instant::now() + Duration::from_millis(50)).min(deadline);
                // "done", or "failed" for a scope whose processes were killed: stopped
                // either way.
                match conn.wait_signal("JobRemoved", slice, |b| {
                    b.get(1).map(String::as_str) == Some(job.as_str())
                }) {
                    Ok(_) => break,
                    Err(e) if e.is::<TimedOut>() && dir.exists() && Instant::now() < deadline => {}
                    Err(e) if e.is::<TimedOut>() && dir.exists() => {
                        crate::log::warn(&format!(
                            "--systemd-cgroup: unit {unit} not stopped after {JOB_TIMEOUT:?}"
                        ));
                        break;
                    }
                    Err(e) if e.is::<TimedOut>() => break,
                    Err(e) => {
                        return Err(e).with_context(|| format!("wait for the stop of unit {unit}"));
                    }
                }
            }
        }
        Err(e) if e.to_string().contains("NoSuchUnit") => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("stop unit {unit}")),
    }
    let _ = conn.manager("ResetFailedUnit", &[Value::Str(unit.into())]);
    Ok(())
}

/// `update` (as runc's): the new limits as the unit's properties, for the runtime only
/// (SetUnitProperties with runtime=true), so that systemd keeps them when it rewrites the
/// unit's cgroup files; the files are written afterwards by the cgroupfs code.
pub fn set_properties(unit: &str, r: &LinuxResources) -> Result<()> {
    let props = resource_props(r)?;
    if props.is_empty() {
        return Ok(());
    }
    let mut conn = Conn::system().context("--systemd-cgroup: connect to systemd")?;
    conn.manager(
        "SetUnitProperties",
        &[
            Value::Str(unit.into()),
            Value::Bool(true),
            Value::Props(props),
        ],
    )
    .with_context(|| format!("--systemd-cgroup: set the properties of unit {unit}"))?;
    Ok(())
}

fn prop(name: &str, v: Value) -> (String, Value) {
    (name.to_string(), v)
}

/// linux.resources as systemd's unit properties (as runc's v2 driver sets them); the
/// files written afterwards by the cgroupfs code carry the same values and the rest.
pub fn resource_props(r: &LinuxResources) -> Result<Vec<(String, Value)>> {
    let mut p = Vec::new();
    let max = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit().filter(|&l| l != 0) {
            p.push(prop("MemoryMax", Value::U64(max(l))));
        }
        if let Some(l) = m.reservation().filter(|&l| l != 0) {
            p.push(prop("MemoryLow", Value::U64(max(l))));
        }
        if let Some(swap) = m.swap().filter(|&s| s != 0) {
            let v = match m.limit() {
                _ if swap < 0 => u64::MAX,
                Some(l) if l > 0 => (swap - l).max(0) as u64,
                _ => swap as u64,
            };
            p.push(prop("MemorySwapMax", Value::U64(v)));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|&s| s != 0) {
            p.push(prop(
                "CPUWeight",
                Value::U64(super::resources::shares_to_weight(s)),
            ));
        }
        let (quota, period) = (c.quota().unwrap_or(0), c.period().unwrap_or(0));
        if quota != 0 || period != 0 {
            let mut per_sec = u64::MAX;
            if quota > 0 {
                let period = if period == 0 { 100_000 } else { period };
                // systemd keeps a whole percent: round up to 10 ms, or the kernel's
                // cpu.max would come out below the quota asked for.
                per_sec = (quota as u64 * 1_000_000) / period;
                if !per_sec.is_multiple_of(10_000) {
                    per_sec = (per_sec / 10_000 + 1) * 10_000;
                }
            }
            p.push(prop("CPUQuotaPerSecUSec", Value::U64(per_sec)));
            if period != 0 {
                p.push(prop("CPUQuotaPeriodUSec", Value::U64(period)));
            }
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            p.push(prop(
                "AllowedCPUs",
                Value::Bytes(range_bits(cpus).context("linux.resources.cpu.cpus")?),
            ));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            p.push(prop(
                "AllowedMemoryNodes",
                Value::Bytes(range_bits(mems).context("linux.resources.cpu.mems")?),
            ));
        }
    }
    if let Some(l) = r.pids().as_ref().map(|p| p.limit())
        && (l > 0 || l == -1)
    {
        p.push(prop("TasksMax", Value::U64(max(l))));
    }
    if let Some(high) = r.unified().as_ref().and_then(|u| u.get("memory.high")) {
        let v = if high == "max" {
            u64::MAX
        } else {
            high.parse()
                .with_context(|| format!("linux.resources.unified memory.high {high:?}"))?
        };
        p.push(prop("MemoryHigh", Value::U64(v)));
    }
    Ok(p)
}

/// A cpu/node list ("0-3,6") as systemd's bitmask: byte i holds bits 8i..8i+7.
fn range_bits(list: &str) -> Result<Vec<u8>> {
    let mut bits: Vec<u8> = Vec::new();
    for part in list.trim().split(',') {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim().parse().with_context(|| format!("{list:?}"))?,
            b.trim().parse().with_context(|| format!("{list:?}"))?,
        );
        if a > b || b >= 1 << 16 {
            bail!("{list:?}: invalid range {part:?}");
        }
        for i in a..=b {
            if bits.len() <= i / 8 {
                bits.resize(i / 8 + 1, 0);
            }
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    Ok(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_as_runc() {
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
        for bad in [
            "a",
            ".slice",
            "a--b.slice",
            "-a.slice",
            "a/b.slice",
            "a-.slice",
        ] {
            assert_eq!(
                expand_slice(bad).unwrap_err().to_string(),
                format!("invalid slice name: {bad}")
            );
        }
    }

    #[test]
    fn cgroups_paths_as_runc() {
        let u = |p: &str| unit_of(Some(Path::new(p)), "id");
        assert_eq!(
            u("system.slice:docker:abc").unwrap(),
            ("system.slice".into(), "docker-abc.scope".into())
        );
        assert_eq!(
            u(":p:n").unwrap(),
            ("system.slice".into(), "p-n.scope".into())
        );
        assert_eq!(u("s.slice::n").unwrap().1, "n.scope");
        assert_eq!(
            unit_of(None, "id").unwrap(),
            ("system.slice".into(), "corten-id.scope".into())
        );
        for bad in ["/a/b", "a:b", "a:b:c:d"] {
            assert_eq!(
                u(bad).unwrap_err().to_string(),
                format!(
                    "expected cgroupsPath to be of format \"slice:prefix:name\" for systemd cgroups, got {bad:?} instead"
                )
            );
        }
        assert!(u("s.slice:p:a/b").is_err());
        assert!(u("s.slice:p:").is_err());
    }

    #[test]
    fn resources_as_properties() {
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1048576, "swap": 3145728, "reservation": 524288},
            "cpu": {"shares": 1024, "quota": 33333, "period": 100000, "cpus": "0-1,9"},
            "pids": {"limit": 42},
            "unified": {"memory.high": "max"}
        }))
        .unwrap();
        let p = resource_props(&r).unwrap();
        let get = |n: &str| p.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("MemoryMax"), Some(Value::U64(1048576)));
        assert_eq!(get("MemoryLow"), Some(Value::U64(524288)));
        assert_eq!(get("MemorySwapMax"), Some(Value::U64(2097152)));
        assert_eq!(get("CPUWeight"), Some(Value::U64(39)));
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Value::U64(340000)));
        assert_eq!(get("CPUQuotaPeriodUSec"), Some(Value::U64(100000)));
        assert_eq!(get("AllowedCPUs"), Some(Value::Bytes(vec![0b11, 0b10])));
        assert_eq!(get("TasksMax"), Some(Value::U64(42)));
        assert_eq!(get("MemoryHigh"), Some(Value::U64(u64::MAX)));
    }
}
