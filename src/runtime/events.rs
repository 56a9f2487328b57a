//! `events`: runc's container statistics (`--stats`: once) and a stream of stats every
//! `--interval` plus `oom` events, as JSON lines, until the container stops.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::cgroups::Cgroup;
use crate::container::{ContainerDir, Status};
use crate::error::Error;

/// One `{"type":"stats","id":…,"data":{…}}` object.
pub fn stats(root: &Path, id: &str) -> Result<Value> {
    let (_, cg) = open(root, id)?;
    Ok(json!({"type": "stats", "id": id, "data": collect(&cg)}))
}

/// Prints stats every `interval` and an `oom` event whenever the OOM-kill count rises.
pub fn stream(root: &Path, id: &str, interval: Duration) -> Result<()> {
    let (dir, cg) = open(root, id)?;
    let mut ooms = oom_kills(&cg);
    let tick = Duration::from_millis(100).min(interval);
    let mut waited = interval;
    loop {
        let state = dir.load_existing()?;
        if dir.status(&state) == Status::Stopped {
            return Ok(());
        }
        let now = oom_kills(&cg);
        if now > ooms {
            crate::outln!("{}", json!({"type": "oom", "id": id}));
            ooms = now;
        }
        if waited >= interval {
            crate::outln!(
                "{}",
                json!({"type": "stats", "id": id, "data": collect(&cg)})
            );
            waited = Duration::ZERO;
        }
        std::thread::sleep(tick);
        waited += tick;
    }
}

fn open(root: &Path, id: &str) -> Result<(ContainerDir, Cgroup)> {
    let dir = ContainerDir::open(root, id, false)?;
    let state = dir.load_existing()?;
    if dir.status(&state) == Status::Stopped {
        return Err(Error::NotRunning {
            id: Some(id.to_string()),
            status: None,
        }
        .into());
    }
    let Some(cg) = state.cgroup.clone() else {
        bail!("container {id} has no cgroup")
    };
    Ok((dir, cg))
}

fn num(s: Option<String>) -> u64 {
    s.and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// "key value" lines (memory.stat, cpu.stat, cgroup.events) as a map.
fn kv(s: Option<String>) -> BTreeMap<String, u64> {
    s.unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse().ok()?))
        })
        .collect()
}

fn oom_kills(cg: &Cgroup) -> u64 {
    let v1 = kv(cg.read_stat("memory", "memory.oom_control"));
    let v2 = kv(cg.read_stat("memory", "memory.events"));
    v1.get("oom_kill")
        .or(v2.get("oom_kill"))
        .copied()
        .unwrap_or(0)
}

/// runc's `stats` data: cpu, memory, pids, blkio (v1 files, or v2 where v1 has none).
fn collect(cg: &Cgroup) -> Value {
    let cpu_v2 = kv(cg.read_stat("cpu", "cpu.stat"));
    let cpuacct = cg.read_stat("cpuacct", "cpuacct.usage");
    let cpu = if let Some(total) = cpuacct {
        let percpu: Vec<u64> = cg
            .read_stat("cpuacct", "cpuacct.usage_percpu")
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|v| v.parse().ok())
            .collect();
        let ticks = kv(cg.read_stat("cpuacct", "cpuacct.stat"));
        // USER_HZ is 100 on Linux: one tick is 10 ms.
        let ns = |k: &str| ticks.get(k).copied().unwrap_or(0) * 10_000_000;
        json!({
            "usage": {"total": num(Some(total)), "percpu": percpu, "kernel": ns("system"), "user": ns("user")},
            "throttling": {
                "periods": cpu_v2.get("nr_periods"), "throttledPeriods": cpu_v2.get("nr_throttled"),
                "throttledTime": cpu_v2.get("throttled_time")
            }
        })
    } else {
        let us = |k: &str| cpu_v2.get(k).copied().unwrap_or(0) * 1000;
        json!({
            "usage": {"total": us("usage_usec"), "kernel": us("system_usec"), "user": us("user_usec")},
            "throttling": {
                "periods": cpu_v2.get("nr_periods"), "throttledPeriods": cpu_v2.get("nr_throttled"),
                "throttledTime": us("throttled_usec")
            }
        })
    };
    let memory = if cg.read_stat("memory", "memory.usage_in_bytes").is_some() {
        let m = |f: &str| num(cg.read_stat("memory", f));
        json!({
            "usage": {"usage": m("memory.usage_in_bytes"), "max": m("memory.max_usage_in_bytes"),
                      "limit": m("memory.limit_in_bytes"), "failcnt": m("memory.failcnt")},
            "swap": {"usage": m("memory.memsw.usage_in_bytes"), "max": m("memory.memsw.max_usage_in_bytes"),
                     "limit": m("memory.memsw.limit_in_bytes"), "failcnt": m("memory.memsw.failcnt")},
            "raw": kv(cg.read_stat("memory", "memory.stat")),
        })
    } else {
        let limit = cg
            .read_stat("memory", "memory.max")
            .map(|s| s.trim().parse().unwrap_or(u64::MAX));
        json!({
            "usage": {"usage": num(cg.read_stat("memory", "memory.current")), "limit": limit.unwrap_or(0)},
            "swap": {"usage": num(cg.read_stat("memory", "memory.swap.current"))},
            "raw": kv(cg.read_stat("memory", "memory.stat")),
        })
    };
    let pids_limit = cg
        .read_stat("pids", "pids.max")
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let pids = json!({"current": num(cg.read_stat("pids", "pids.current")), "limit": pids_limit});
    let blkio: Vec<Value> = cg
        .read_stat("blkio", "blkio.throttle.io_service_bytes_recursive")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (maj, min) = f.first()?.split_once(':')?;
            Some(
                json!({"major": maj.parse::<u64>().ok()?, "minor": min.parse::<u64>().ok()?,
                        "op": f.get(1)?, "value": f.get(2)?.parse::<u64>().ok()?}),
            )
        })
        .collect();
    json!({"cpu": cpu, "memory": memory, "pids": pids, "blkio": {"ioServiceBytesRecursive": blkio}})
}
