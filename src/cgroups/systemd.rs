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
//!
//! Rootless (runc's rules, `user_manager`), the unit is the user's systemd's: its default
//! slice is user.slice and its cgroup is under the manager's own (ControlGroup, e.g.
//! /user.slice/user-1000.slice/user@1000.service), which systemd delegates to the user.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};

use super::dbus::{Conn, Value};
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
    /// The unit is the user's systemd's (rootless), not the system's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub user: bool,
}

/// Whether the container's unit goes to the user's systemd rather than the system's
/// (runc's rootless cgroup manager, auto-detected): a non-root caller, or root in a user
/// namespace that is a non-root user outside (as rootless podman runs the runtime; runc
/// asks the user bus for its owner, the uid outside is the same).
pub fn user_manager() -> bool {
    if !nix::unistd::geteuid().is_root() {
        return true;
    }
    super::dbus::host_uid() != 0
}

/// A connection to the systemd that owns the unit.
pub fn connect(user: bool) -> Result<Conn> {
    if user {
        Conn::user().context("connect to the user's systemd")
    } else {
        Conn::system().context("connect to systemd")
    }
}

/// The slice and unit name for linux.cgroupsPath (runc's rules): empty gives the unit
/// `corten-<id>.scope` in system.slice (user.slice for the user's systemd, `user`);
/// otherwise exactly `slice:prefix:name`.
pub fn unit_of(cgroups_path: Option<&Path>, id: &str, user: bool) -> Result<(String, String)> {
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
        if user { "user.slice" } else { "system.slice" }.to_string()
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
/// a unit of the same name that was not corten's. `user`: the user's systemd's unit
/// (asked here for its own cgroup; the connection is closed before the init is cloned).
pub fn plan(cgroups_path: Option<&Path>, id: &str, user: bool) -> Result<Cgroup> {
    let (slice, unit) = unit_of(cgroups_path, id, user)?;
    let mut slice_path = expand_slice(&slice)?;
    if user {
        slice_path = format!("{}{slice_path}", user_manager_cgroup()?);
    }
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
            user,
        }),
    })
}

/// The user's systemd's own cgroup (its ControlGroup, runc's getManagerProperty), under
/// which its units' cgroups are: a clean absolute path, no trailing slash.
fn user_manager_cgroup() -> Result<String> {
    let cg = connect(true)
        .and_then(|mut c| c.manager_property("ControlGroup"))
        .context("--systemd-cgroup: the user's systemd's ControlGroup")?;
    let cg = cg.trim_end_matches('/');
    if !cg.starts_with('/') || cg.split('/').any(|p| p == ".." || p == ".") {
        bail!("--systemd-cgroup: the user's systemd's ControlGroup {cg:?} is not a cgroup path");
    }
    Ok(cg.to_string())
}

/// Starts the scope with `pid` in it and the resource properties; on success `cg` records
/// the unit (for `destroy`) and its directory as the container's own cgroup.
pub fn start(cg: &mut Cgroup, pid: i32, id: &str, r: &LinuxResources) -> Result<()> {
    let Some(Unit {
        slice,
        name: unit,
        user,
        ..
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
    let mut conn = connect(user).context("--systemd-cgroup")?;
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

/// Stops the unit and waits for it (best effort; a unit already gone is fine), then
/// clears a failed state so that nothing of it is left listed.
pub fn stop(u: &Unit) -> Result<()> {
    let unit = u.name.as_str();
    let mut conn = connect(u.user)?;
    match conn.manager(
        "StopUnit",
        &[Value::Str(unit.into()), Value::Str("replace".into())],
    ) {
        Ok(reply) => {
            let job = reply.body.first().cloned().unwrap_or_default();
            // "done", or "failed" for a scope whose processes were killed: stopped either way.
            let _ = wait_job(&mut conn, &job, unit, "stop");
        }
        Err(e) if e.to_string().contains("NoSuchUnit") => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("stop unit {unit}")),
    }
    let _ = conn.manager("ResetFailedUnit", &[Value::Str(unit.into())]);
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
        let u = |p: &str| unit_of(Some(Path::new(p)), "id", false);
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
            unit_of(None, "id", false).unwrap(),
            ("system.slice".into(), "corten-id.scope".into())
        );
        assert_eq!(
            unit_of(None, "id", true).unwrap(),
            ("user.slice".into(), "corten-id.scope".into())
        );
        assert_eq!(
            unit_of(Some(Path::new(":libpod:x")), "id", true).unwrap(),
            ("user.slice".into(), "libpod-x.scope".into())
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
