//! The systemd cgroup driver (`--systemd-cgroup`), as runc's: linux.cgroupsPath is
//! `slice:prefix:name`, the container's cgroup is the transient scope `prefix-name.scope`
//! that systemd makes in `slice` (StartTransientUnit with PIDs = [init], Delegate=true and
//! the resource properties systemd understands). Its directory then is the container's
//! cgroup for the rest of corten (`Cgroup` with `systemd` set): the cgroupfs code writes
//! every linux.resources field on it, and `destroy` stops the unit (StopUnit) before
//! removing what is left. On a cgroup v1 host (legacy or hybrid, systemd booted with
//! systemd.unified_cgroup_hierarchy=0) it works as runc's v1 driver: systemd's v1
//! property names, and a directory per v1 hierarchy (the ones systemd does not manage
//! made by corten, as with cgroupfs), all of them removed again by `destroy`.
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
use oci_spec::runtime::{LinuxBlockIo, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};
use serde::{Deserialize, Serialize};

use super::dbus::{Conn, ErrorReply, TimedOut, Value};
use super::{Cgroup, Dir, Hierarchy, hierarchies};

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
/// otherwise exactly `slice:prefix:name`, the unit being the scope `prefix-name.scope`, or
/// the slice `name` itself when it ends in `.slice` (the prefix is then unused, `slice` is
/// its parent).
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
        // systemd places a slice by its name, whatever it is wanted by: only a name that
        // puts it in the parent keeps the container where cgroupsPath says.
        let (own, parent) = (expand_slice(&name)?, expand_slice(&slice)?);
        if parent != "/" && !own.starts_with(&format!("{parent}/")) {
            bail!(
                "linux.cgroupsPath {p:?}: systemd places the slice {name} at {own}, not in {slice} (a slice's name is its path: name it {}-<name>.slice)",
                slice.trim_end_matches(".slice")
            );
        }
        return Ok((slice, name));
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

/// True for a slice unit (cgroupsPath's name ending in `.slice`), else it is a scope.
fn is_slice(unit: &str) -> bool {
    unit.ends_with(".slice")
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
/// a unit of the same name that was not corten's. On a cgroup v1 host (legacy or hybrid)
/// the container has a directory in each v1 hierarchy (`v1_dirs`). `user`: the user's
/// systemd's unit (asked here for its own cgroup; the connection is closed before the init
/// is cloned).
pub fn plan(cgroups_path: Option<&Path>, id: &str, user: bool) -> Result<Cgroup> {
    let (slice, unit) = unit_of(cgroups_path, id, user)?;
    // A slice's own name is its path; a scope is in its slice.
    let parent = if is_slice(&unit) {
        let own = expand_slice(&unit)?;
        own.rsplit_once('/')
            .map_or(String::new(), |(p, _)| p.to_string())
    } else {
        expand_slice(&slice)?
    };
    let hs = hierarchies()?;
    let v2 = matches!(&hs[..], [h] if h.v2);
    if user && !v2 {
        bail!(
            "--systemd-cgroup: a rootless container's systemd unit needs a cgroup v2 host; use cgroupfs"
        );
    }
    let parent = if user {
        format!("{}{parent}", user_manager_cgroup()?)
    } else {
        parent
    };
    let dirs = match &hs[..] {
        [h] if h.v2 => {
            let path = h.mount.join(parent.trim_start_matches('/')).join(&unit);
            vec![Dir {
                path,
                hierarchy: h.clone(),
                created: Vec::new(),
            }]
        }
        _ => v1_dirs(&hs, &parent, &unit)?,
    };
    Ok(Cgroup {
        dirs,
        made: false,
        systemd: Some(Unit {
            slice,
            name: unit,
            started: false,
            user,
        }),
    })
}

/// The v1 hierarchies a container joins with the systemd driver (runc's legacy manager's
/// list): systemd makes the scope in those it manages, corten in the others (`start`).
const V1_CONTROLLERS: [&str; 13] = [
    "cpuset",
    "devices",
    "memory",
    "cpu",
    "cpuacct",
    "pids",
    "blkio",
    "hugetlb",
    "perf_event",
    "freezer",
    "net_prio",
    "net_cls",
    "name=systemd",
];

/// The unit's directory in each v1 hierarchy, as runc's v1 driver finds it:
/// `<mount>/<pid 1's cgroup there, without init.scope>/<slice path>/<unit>`. The unified
/// hierarchy of a hybrid host is left to systemd (it moves the init there itself).
fn v1_dirs(hs: &[Hierarchy], slice_path: &str, unit: &str) -> Result<Vec<Dir>> {
    let has = |h: &Hierarchy, c: &str| h.controllers.iter().any(|x| x == c);
    if !hs.iter().any(|h| !h.v2 && has(h, "name=systemd")) {
        bail!(
            "--systemd-cgroup: no name=systemd cgroup hierarchy (systemd is not this host's init?); use cgroupfs"
        );
    }
    if !hs.iter().any(|h| !h.v2 && has(h, "devices")) {
        bail!("--systemd-cgroup: no devices cgroup hierarchy on this cgroup v1 host");
    }
    let init = std::fs::read_to_string("/proc/1/cgroup").context("read /proc/1/cgroup")?;
    Ok(v1_dirs_under(hs, &init, slice_path, unit))
}

/// `v1_dirs` for pid 1's /proc/<pid>/cgroup text `init`.
fn v1_dirs_under(hs: &[Hierarchy], init: &str, slice_path: &str, unit: &str) -> Vec<Dir> {
    let mut dirs = Vec::new();
    for h in hs {
        if h.v2
            || !h
                .controllers
                .iter()
                .any(|c| V1_CONTROLLERS.contains(&c.as_str()))
        {
            continue;
        }
        // pid 1's cgroup, as runc: systemd's own init.scope is not where slices are.
        let own = super::own_cgroup(h, init);
        let own = own.to_string_lossy();
        let base = own.strip_suffix("init.scope").unwrap_or(&own);
        let inner = super::clean(&Path::new(base).join(slice_path.trim_start_matches('/')));
        let path = h
            .mount
            .join(inner.strip_prefix("/").unwrap_or(&inner))
            .join(unit);
        dirs.push(Dir {
            path,
            hierarchy: h.clone(),
            created: Vec::new(),
        });
    }
    dirs
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

/// Starts the unit with the resource properties and then `extra` (the config's
/// `org.systemd.property.` annotations, see `annotation_props`): a scope is started with
/// `pid` in it; a slice (which systemd gives no processes) is started empty, and the
/// caller moves `pid` in through cgroupfs (`Cgroup::add`), as runc's v1 driver joins it.
/// On success `cg` records the unit (for `destroy`) and its directory as the container's
/// own cgroup. On v1, the directories systemd did not make (hierarchies it does not
/// manage, such as cpuset or freezer) are made here, as runc's v1 driver does; the init
/// joins them all later (`Cgroup::add`).
pub fn start(
    cg: &mut Cgroup,
    pid: i32,
    id: &str,
    r: &LinuxResources,
    extra: &[(String, Value)],
) -> Result<()> {
    let Some(Unit {
        slice,
        name: unit,
        user,
        ..
    }) = cg.systemd.clone()
    else {
        bail!("internal: no systemd unit planned");
    };
    let v1 = cg.dirs.iter().any(|d| !d.hierarchy.v2);
    let mut props = vec![prop(
        "Description",
        Value::Str(format!("corten container {id}")),
    )];
    if is_slice(&unit) {
        // runc: a slice's parent is wanted, not its Slice=; slices take neither PIDs nor
        // Delegate.
        props.push(prop("Wants", Value::Strs(vec![slice])));
    } else {
        props.extend([
            prop("Slice", Value::Str(slice)),
            prop("Delegate", Value::Bool(true)),
            prop("PIDs", Value::U32s(vec![pid as u32])),
        ]);
    }
    props.extend([
        prop("DefaultDependencies", Value::Bool(false)),
        prop("MemoryAccounting", Value::Bool(true)),
        prop("CPUAccounting", Value::Bool(true)),
        prop(
            if v1 {
                "BlockIOAccounting"
            } else {
                "IOAccounting"
            },
            Value::Bool(true),
        ),
        prop("TasksAccounting", Value::Bool(true)),
    ]);
    // The annotations before linux.resources: as with runc, which sets the resources
    // after the start, the config's limits win over an annotation of the same property.
    props.extend(extra.iter().cloned());
    props.extend(if v1 {
        v1_resource_props(r)?
    } else {
        resource_props(r)?
    });
    let mut conn = connect(user).context("--systemd-cgroup")?;
    let args = [
        Value::Str(unit.clone()),
        Value::Str("replace".into()),
        Value::Props(props),
        Value::AuxUnits,
    ];
    let reply = match conn.manager("StartTransientUnit", &args) {
        // runc's retry: a unit of that name may be a failed leftover. ResetFailedUnit
        // lets systemd collect it (a unit that is active is not touched), then once more.
        Err(e) if ErrorReply::is(&e, "org.freedesktop.systemd1.UnitExists") => {
            let _ = conn.manager("ResetFailedUnit", &[Value::Str(unit.clone())]);
            conn.manager("StartTransientUnit", &args)
        }
        r => r,
    }
    .with_context(|| format!("--systemd-cgroup: start unit {unit}"))?;
    // From here the unit is ours (it holds our init): recorded for every later cleanup.
    if let Some(u) = &mut cg.systemd {
        u.started = true;
    }
    for dir in &mut cg.dirs {
        dir.created = vec![dir.path.clone()];
    }
    cg.made = true;
    let job = reply.body.first().cloned().unwrap_or_default();
    crate::log::debug(&format!("systemd: start job {job} of {unit} queued"));
    wait_job(&mut conn, &job, &unit, "start")?;
    crate::log::debug(&format!("systemd: {unit} started"));
    if v1 {
        make_v1_dirs(cg)?;
    }
    Ok(())
}

/// Makes the unit's directories that systemd did not (runc's joinCgroups), recording the
/// levels made; a directory systemd made stays recorded as the unit's own.
fn make_v1_dirs(cg: &mut Cgroup) -> Result<()> {
    for d in &mut cg.dirs {
        if std::fs::symlink_metadata(&d.path).is_err() {
            super::make_dir(d)?;
        }
    }
    Ok(())
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
    let holds_init = inside && crate::pid::process_alive(pid, start);
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
/// failed state so that nothing of it is left listed, as runc does: a unit that failed
/// before the stop (killed by its RuntimeMaxSec, or left with no process when a create was
/// killed) ends its stop job "done" and stays failed, so ResetFailedUnit goes right behind
/// StopUnit, pipelined (no round trip of its own); a unit that fails while stopping is
/// reset once its stop job ends. Best effort on the wait.
pub fn stop(u: &Unit, dir: &Path) -> Result<()> {
    let unit = u.name.as_str();
    let mut conn = connect(u.user)?;
    let stop = conn.send_manager(
        "StopUnit",
        &[Value::Str(unit.into()), Value::Str("replace".into())],
    )?;
    let reset = conn.send_manager("ResetFailedUnit", &[Value::Str(unit.into())])?;
    let stopped = conn.reply(stop);
    // NoSuchUnit / "not loaded" when there is nothing failed to clear: fine.
    let _ = conn.reply(reset);
    let clean = match stopped {
        Ok(reply) => {
            let job = reply.body.first().cloned().unwrap_or_default();
            crate::log::debug(&format!("systemd: stop job {job} of {unit} queued"));
            let deadline = Instant::now() + JOB_TIMEOUT;
            let mut clean = false;
            loop {
                let slice = (Instant::now() + Duration::from_millis(50)).min(deadline);
                // "done", or "failed" for a scope whose processes were killed: stopped
                // either way.
                match conn.wait_signal("JobRemoved", slice, |b| {
                    b.get(1).map(String::as_str) == Some(job.as_str())
                }) {
                    Ok(m) => {
                        clean = m.body.get(3).map(String::as_str) == Some("done");
                        break;
                    }
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
            clean
        }
        Err(e) if ErrorReply::is(&e, "org.freedesktop.systemd1.NoSuchUnit") => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("stop unit {unit}")),
    };
    crate::log::debug(&format!("systemd: {unit} stopped (job done: {clean})"));
    if !clean {
        let _ = conn.manager("ResetFailedUnit", &[Value::Str(unit.into())]);
    }
    Ok(())
}

/// `update` (as runc's): the new limits as the unit's properties, for the runtime only
/// (SetUnitProperties with runtime=true), so that systemd keeps them when it rewrites the
/// unit's cgroup files; the files are written afterwards by the cgroupfs code.
/// On cgroup v1 (`v1`) with systemd's v1 names, as at the start.
pub fn set_properties(u: &Unit, v1: bool, r: &LinuxResources) -> Result<()> {
    let unit = u.name.as_str();
    let props = if v1 {
        v1_resource_props(r)?
    } else {
        resource_props(r)?
    };
    if props.is_empty() {
        return Ok(());
    }
    let mut conn = connect(u.user).context("--systemd-cgroup")?;
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

/// The config's `org.systemd.property.<Name>` annotations as unit properties, by runc's
/// rules: Name is ASCII letters only, at least 3; the value is GVariant text
/// (`uint64 123`, `'text'`, `true`, see `gvariant`); a Name ending in a lowercase letter and
/// `Sec` is given as `<Name>USec`, its number of seconds in microseconds (uint64).
/// Refused, before anything is made, when malformed.
pub fn annotation_props(
    annotations: Option<&std::collections::HashMap<String, String>>,
) -> Result<Vec<(String, Value)>> {
    const PREFIX: &str = "org.systemd.property.";
    let mut keys: Vec<(&String, &String)> = annotations.into_iter().flatten().collect();
    keys.sort();
    let mut props = Vec::new();
    for (key, text) in keys {
        let Some(name) = key.strip_prefix(PREFIX) else {
            continue;
        };
        if name.len() < 3 {
            bail!("annotation {key} name incorrect: too short");
        }
        if !name.bytes().all(|c| c.is_ascii_alphabetic()) {
            bail!("annotation {key} name incorrect: contains non-alphabetic character");
        }
        // runc's words; a value's control characters escaped, so the error is one line.
        let shown: String = text
            .chars()
            .map(|c| match c.is_control() {
                true => c.escape_default().to_string(),
                false => c.to_string(),
            })
            .collect();
        let parse_error =
            |e: anyhow::Error| anyhow::anyhow!("annotation {key}={shown} value parse error: {e}");
        let mut value = super::gvariant::parse(text).map_err(parse_error)?;
        let mut name = name.to_string();
        if let Some(base) = name.strip_suffix("Sec")
            && base.ends_with(|c: char| c.is_ascii_lowercase())
        {
            const M: f64 = 1_000_000.0;
            let secs = match value {
                Value::U8(v) => f64::from(v),
                Value::I16(v) => f64::from(v),
                Value::U16(v) => f64::from(v),
                Value::I32(v) => f64::from(v),
                Value::U32(v) => f64::from(v),
                Value::I64(v) => v as f64,
                Value::U64(v) => v as f64,
                Value::F64(v) => v,
                _ => return Err(parse_error(anyhow::anyhow!("not a number"))),
            };
            if secs < 0.0 {
                return Err(parse_error(anyhow::anyhow!("a negative time")));
            }
            let usec = match value {
                Value::U64(v) => v.saturating_mul(1_000_000),
                Value::I64(v) => (v as u64).saturating_mul(1_000_000),
                _ => (secs * M) as u64,
            };
            name = format!("{base}USec");
            value = Value::U64(usec);
        }
        props.push((name, value));
    }
    Ok(props)
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
    if let Some(b) = r.block_io() {
        p.extend(io_props(b));
    }
    if let Some(rules) = r.devices().as_deref().filter(|d| !d.is_empty()) {
        p.extend(device_props(rules));
    }
    Ok(p)
}

/// A block device as systemd's IO properties name it (its udev link, which systemd
/// resolves to the device; the container's own limits are written to io.* by major:minor
/// as well).
fn block_path(major: i64, minor: i64) -> String {
    format!("/dev/block/{major}:{minor}")
}

/// linux.resources.blockIO as IOWeight (blkio's 10-1000 mapped to 1-10000, as the files
/// get it), IODeviceWeight and IO{Read,Write}{Bandwidth,IOPS}Max.
fn io_props(b: &LinuxBlockIo) -> Vec<(String, Value)> {
    use super::resources::blkio_weight_to_io;
    let mut p = Vec::new();
    if let Some(w) = b.weight().filter(|&w| w != 0) {
        p.push(prop("IOWeight", Value::U64(blkio_weight_to_io(w))));
    }
    let weights: Vec<(String, u64)> = b
        .weight_device()
        .iter()
        .flatten()
        .filter_map(|d| {
            Some((
                block_path(d.major(), d.minor()),
                blkio_weight_to_io(d.weight()?),
            ))
        })
        .collect();
    if !weights.is_empty() {
        p.push(prop("IODeviceWeight", Value::StrU64s(weights)));
    }
    let throttles = [
        ("IOReadBandwidthMax", b.throttle_read_bps_device()),
        ("IOWriteBandwidthMax", b.throttle_write_bps_device()),
        ("IOReadIOPSMax", b.throttle_read_iops_device()),
        ("IOWriteIOPSMax", b.throttle_write_iops_device()),
    ];
    for (name, devs) in throttles {
        let limits: Vec<(String, u64)> = devs
            .iter()
            .flatten()
            .map(|d| (block_path(d.major(), d.minor()), d.rate()))
            .collect();
        if !limits.is_empty() {
            p.push(prop(name, Value::StrU64s(limits)));
        }
    }
    p
}

/// Device access as DevicePolicy + DeviceAllow (runc's generateDeviceProperties): the
/// rules are replayed with v1's semantics (an `a` rule resets to allow- or deny-all, later
/// rules add to or take from the exceptions); a deny-all list becomes DevicePolicy=strict
/// with the allowed devices, an allow-all one DevicePolicy=auto with none.
///
/// corten's own eBPF program (devices_bpf) enforces the exact rules on the same cgroup,
/// and a device is usable only if both programs allow it. So where systemd cannot say
/// what the rules say, its side is left wider, never narrower: an allow-all list with
/// denied exceptions is given as allow-all (runc gives systemd deny-all there), a deny
/// that punches a hole in an allowed wildcard keeps the wildcard. Only an allow rule
/// with a wildcard major and a fixed minor, which systemd has no syntax for, is left out
/// (as runc does, with a warning).
fn device_props(rules: &[LinuxDeviceCgroup]) -> Vec<(String, Value)> {
    type Key = (char, Option<i64>, Option<i64>);
    let mut default_allow = false;
    let mut exceptions: Vec<(Key, String)> = Vec::new();
    let norm = |access: &str| -> String { "rwm".chars().filter(|c| access.contains(*c)).collect() };
    for rule in rules {
        let typ = match rule.typ() {
            None | Some(LinuxDeviceType::A) => 'a',
            Some(LinuxDeviceType::B) => 'b',
            Some(LinuxDeviceType::C | LinuxDeviceType::U) => 'c',
            // FIFOs are not device-controlled.
            Some(LinuxDeviceType::P) => continue,
        };
        if typ == 'a' {
            default_allow = rule.allow();
            exceptions.clear();
            continue;
        }
        let key = (
            typ,
            rule.major().filter(|&m| m >= 0),
            rule.minor().filter(|&m| m >= 0),
        );
        let access = norm(rule.access().as_deref().unwrap_or("rwm"));
        let at = exceptions.iter().position(|(k, _)| *k == key);
        if rule.allow() != default_allow {
            // An exception: added to (or merged with) the one of the same key.
            match at {
                Some(i) => exceptions[i].1 = norm(&format!("{}{access}", exceptions[i].1)),
                None => exceptions.push((key, access)),
            }
        } else if let Some(i) = at {
            // Back to the default for these accesses.
            let left: String = exceptions[i]
                .1
                .chars()
                .filter(|c| !access.contains(*c))
                .collect();
            if left.is_empty() {
                exceptions.remove(i);
            } else {
                exceptions[i].1 = left;
            }
        }
    }
    let policy = |v: &str| prop("DevicePolicy", Value::Str(v.into()));
    let reset = prop("DeviceAllow", Value::StrPairs(Vec::new()));
    if default_allow {
        return vec![policy("auto"), reset];
    }
    let mut allow = Vec::new();
    for ((typ, major, minor), access) in exceptions {
        let group = if typ == 'b' { "block" } else { "char" };
        let path = match (major, minor) {
            (None, None) => format!("{group}-*"),
            (Some(major), None) => format!("{group}-{major}"),
            (Some(major), Some(minor)) => format!("/dev/{group}/{major}:{minor}"),
            (None, Some(minor)) => {
                crate::log::warn(&format!(
                    "--systemd-cgroup: systemd has no device rule for {typ} *:{minor} {access}; only corten's device filter allows it, systemd's does not"
                ));
                continue;
            }
        };
        allow.push((path, access));
    }
    vec![
        policy("strict"),
        reset,
        prop("DeviceAllow", Value::StrPairs(allow)),
    ]
}

/// linux.resources as runc's v1 driver sets them: systemd's cgroup v1 names where they
/// differ (MemoryLimit, CPUShares with the shares as given, BlockIOWeight), the CPU quota,
/// cpuset, TasksMax and the device policy as on v2, and nothing v1 lacks (memory.low, memory.high, swap: the
/// cgroupfs code writes what v1 has). linux.resources.unified is refused before anything is started, with runc's words.
pub fn v1_resource_props(r: &LinuxResources) -> Result<Vec<(String, Value)>> {
    if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
        bail!("{}", super::resources::V1_NO_UNIFIED);
    }
    let mut p: Vec<(String, Value)> = resource_props(r)?
        .into_iter()
        .filter_map(|(k, v)| match k.as_str() {
            "MemoryMax" => Some(prop("MemoryLimit", v)),
            "CPUQuotaPerSecUSec" | "CPUQuotaPeriodUSec" | "AllowedCPUs" | "AllowedMemoryNodes"
            | "TasksMax" | "DevicePolicy" | "DeviceAllow" => Some((k, v)),
            _ => None,
        })
        .collect();
    if let Some(s) = r
        .cpu()
        .as_ref()
        .and_then(|c| c.shares())
        .filter(|&s| s != 0)
    {
        p.push(prop("CPUShares", Value::U64(s)));
    }
    if let Some(w) = r
        .block_io()
        .as_ref()
        .and_then(|b| b.weight())
        .filter(|&w| w != 0)
    {
        p.push(prop("BlockIOWeight", Value::U64(w.into())));
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
        // A name ending in .slice is the unit itself, in its parent.
        assert_eq!(
            u("system.slice:p:system-x.slice").unwrap(),
            ("system.slice".into(), "system-x.slice".into())
        );
        assert_eq!(u("-.slice::x.slice").unwrap().1, "x.slice");
        assert_eq!(u("a.slice::a-b-c.slice").unwrap().1, "a-b-c.slice");
        assert_eq!(
            u(":p:x.slice").unwrap_err().to_string(),
            "linux.cgroupsPath \":p:x.slice\": systemd places the slice x.slice at /x.slice, not in system.slice (a slice's name is its path: name it system-<name>.slice)"
        );
        assert_eq!(
            u("system.slice:p:a--b.slice").unwrap_err().to_string(),
            "invalid slice name: a--b.slice"
        );
    }

    #[test]
    fn annotations_as_runc_parses_them() {
        let props = |kv: &[(&str, &str)]| {
            let m: std::collections::HashMap<String, String> = kv
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            annotation_props(Some(&m))
        };
        let p = props(&[
            ("org.systemd.property.CollectMode", "'inactive-or-failed'"),
            ("org.systemd.property.TimeoutStopUSec", "uint64 123456789"),
            ("org.systemd.property.RuntimeMaxSec", "2"),
            ("org.systemd.property.TimeoutStopSec", "1.5"),
            ("org.systemd.property.CPUSec", "2"),
            ("other.annotation", "x"),
        ])
        .unwrap();
        assert_eq!(
            p,
            [
                ("CPUSec".into(), Value::I32(2)),
                (
                    "CollectMode".into(),
                    Value::Str("inactive-or-failed".into())
                ),
                ("RuntimeMaxUSec".into(), Value::U64(2_000_000)),
                ("TimeoutStopUSec".into(), Value::U64(1_500_000)),
                ("TimeoutStopUSec".into(), Value::U64(123456789)),
            ]
        );
        let err = |kv: &[(&str, &str)]| props(kv).unwrap_err().to_string();
        assert_eq!(
            err(&[("org.systemd.property.Ab", "1")]),
            "annotation org.systemd.property.Ab name incorrect: too short"
        );
        assert_eq!(
            err(&[("org.systemd.property.Foo_Bar", "1")]),
            "annotation org.systemd.property.Foo_Bar name incorrect: contains non-alphabetic character"
        );
        assert!(
            err(&[("org.systemd.property.CollectMode", "inactive")]).starts_with(
                "annotation org.systemd.property.CollectMode=inactive value parse error: "
            )
        );
        assert_eq!(
            err(&[("org.systemd.property.Description", "'a\nb")]),
            "annotation org.systemd.property.Description='a\\nb value parse error: unterminated string"
        );
        assert_eq!(
            err(&[("org.systemd.property.RuntimeMaxSec", "'2'")]),
            "annotation org.systemd.property.RuntimeMaxSec='2' value parse error: not a number"
        );
    }

    #[test]
    fn block_io_and_devices_as_properties() {
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "blockIO": {
                "weight": 500,
                "weightDevice": [{"major": 8, "minor": 0, "weight": 10}],
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 30}]
            },
            "devices": [
                {"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
                {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "m"},
                {"allow": true, "type": "b", "access": "m"},
                {"allow": true, "type": "c", "major": 136, "access": "rwm"},
                {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                {"allow": false, "type": "c", "major": 1, "minor": 5, "access": "w"},
                {"allow": true, "type": "c", "major": 1, "minor": 9, "access": "r"},
                {"allow": false, "type": "c", "major": 1, "minor": 9, "access": "rwm"}
            ]
        }))
        .unwrap();
        let p = resource_props(&r).unwrap();
        let get = |n: &str| p.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("IOWeight"), Some(Value::U64(4950)));
        assert_eq!(
            get("IODeviceWeight"),
            Some(Value::StrU64s(vec![("/dev/block/8:0".into(), 1)]))
        );
        assert_eq!(
            get("IOReadBandwidthMax"),
            Some(Value::StrU64s(vec![("/dev/block/8:0".into(), 1048576)]))
        );
        assert_eq!(
            get("IOWriteIOPSMax"),
            Some(Value::StrU64s(vec![("/dev/block/8:16".into(), 30)]))
        );
        assert_eq!(get("IOWriteBandwidthMax"), None);
        assert_eq!(get("DevicePolicy"), Some(Value::Str("strict".into())));
        let allow: Vec<_> = p.iter().filter(|(k, _)| k == "DeviceAllow").collect();
        assert_eq!(allow[0].1, Value::StrPairs(vec![]));
        let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(
            allow[1].1,
            Value::StrPairs(vec![
                pair("/dev/char/1:3", "rwm"),
                pair("block-*", "m"),
                pair("char-136", "rwm"),
                pair("/dev/char/1:5", "rm"),
            ])
        );
        // Allow-all with exceptions: systemd allows all, corten's filter denies.
        let rules = |j| serde_json::from_value::<Vec<LinuxDeviceCgroup>>(j).unwrap();
        let p = device_props(&rules(serde_json::json!([
            {"allow": true, "access": "rwm"},
            {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "rwm"}
        ])));
        assert_eq!(p[0], prop("DevicePolicy", Value::Str("auto".into())));
        assert_eq!(p.len(), 2);
        // A later deny-all resets what came before.
        let p = device_props(&rules(serde_json::json!([
            {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
            {"allow": false, "type": "a", "access": "rwm"}
        ])));
        assert_eq!(p[2], prop("DeviceAllow", Value::StrPairs(vec![])));
    }

    #[test]
    fn v1_dirs_as_runc() {
        let h = |m: &str, c: &[&str], v2: bool| Hierarchy {
            mount: m.into(),
            controllers: c.iter().map(|s| s.to_string()).collect(),
            v2,
        };
        let hs = [
            h("/sys/fs/cgroup/unified", &[], true),
            h("/sys/fs/cgroup/systemd", &["name=systemd"], false),
            h("/sys/fs/cgroup/cpu,cpuacct", &["cpu", "cpuacct"], false),
            h("/sys/fs/cgroup/rdma", &["rdma"], false),
            h("/sys/fs/cgroup/cpuset", &["cpuset"], false),
        ];
        let init =
            "5:cpuset:/\n3:cpuacct,cpu:/init.scope\n1:name=systemd:/init.scope\n0::/init.scope\n";
        let dirs = v1_dirs_under(&hs, init, "/system.slice", "corten-x.scope");
        let paths: Vec<&Path> = dirs.iter().map(|d| d.path.as_path()).collect();
        assert_eq!(
            paths,
            [
                Path::new("/sys/fs/cgroup/systemd/system.slice/corten-x.scope"),
                Path::new("/sys/fs/cgroup/cpu,cpuacct/system.slice/corten-x.scope"),
                Path::new("/sys/fs/cgroup/cpuset/system.slice/corten-x.scope"),
            ]
        );
        let dirs = v1_dirs_under(&hs[1..2], "1:name=systemd:/a/init.scope\n", "/", "u.scope");
        assert_eq!(dirs[0].path, Path::new("/sys/fs/cgroup/systemd/a/u.scope"));
    }

    #[test]
    fn v1_resources_as_properties() {
        let r: LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1048576, "swap": 3145728, "reservation": 524288},
            "cpu": {"shares": 1024, "quota": 50000, "period": 100000},
            "blockIO": {"weight": 300},
            "pids": {"limit": -1}
        }))
        .unwrap();
        let p = v1_resource_props(&r).unwrap();
        let names: Vec<&str> = p.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "MemoryLimit",
                "CPUQuotaPerSecUSec",
                "CPUQuotaPeriodUSec",
                "TasksMax",
                "CPUShares",
                "BlockIOWeight"
            ]
        );
        let get = |n: &str| p.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("MemoryLimit"), Some(Value::U64(1048576)));
        assert_eq!(get("CPUShares"), Some(Value::U64(1024)));
        assert_eq!(get("CPUQuotaPerSecUSec"), Some(Value::U64(500000)));
        assert_eq!(get("TasksMax"), Some(Value::U64(u64::MAX)));
        assert_eq!(get("BlockIOWeight"), Some(Value::U64(300)));
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
