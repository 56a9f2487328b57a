//! `update`: change a running container's resources, from a JSON file (or stdin) in the
//! linux.resources format and/or runc's individual flags.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};
use oci_spec::runtime::LinuxResources;
use serde_json::{Value, json};

use crate::container::{ContainerDir, Status};
use crate::error::Error;

/// runc's `update` flags, each optional, as the CLI parses them (the doc comments are its
/// help). Sizes are bytes, -1 for unlimited (parsed by `args::bytes`).
#[derive(Default, clap::Args)]
pub struct Flags {
    /// linux.resources JSON from a file, or - for stdin
    #[arg(short = 'r', long)]
    pub resources: Option<String>,
    /// Memory limit (e.g. 512m, 1g, -1)
    #[arg(short = 'm', long, allow_hyphen_values = true, value_parser = crate::args::bytes)]
    pub memory: Option<i64>,
    #[arg(long = "memory-reservation", allow_hyphen_values = true, value_parser = crate::args::bytes)]
    pub memory_reservation: Option<i64>,
    /// Memory plus swap limit
    #[arg(long = "memory-swap", allow_hyphen_values = true, value_parser = crate::args::bytes)]
    pub memory_swap: Option<i64>,
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    pub cpu_quota: Option<i64>,
    #[arg(long = "cpu-period")]
    pub cpu_period: Option<u64>,
    #[arg(long = "cpu-share")]
    pub cpu_share: Option<u64>,
    /// CPU realtime period (microseconds)
    #[arg(long = "cpu-rt-period")]
    pub cpu_rt_period: Option<u64>,
    /// CPU realtime runtime (microseconds)
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    pub cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    pub cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    pub cpuset_mems: Option<String>,
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pub pids_limit: Option<i64>,
    #[arg(long = "blkio-weight")]
    pub blkio_weight: Option<u16>,
}

pub fn update(root: &Path, id: &str, flags: &Flags) -> Result<()> {
    let dir = ContainerDir::open(root, id, true)?;
    let state = dir.load_existing()?;
    if dir.status(&state) == Status::Stopped {
        return Err(Error::NotRunning {
            id: Some(id.to_string()),
            status: None,
        }
        .into());
    }
    let Some(cg) = &state.cgroup else {
        bail!("container {id} has no cgroup")
    };
    let resources = merge(flags)?;
    let mem = resources.memory().as_ref();
    if let Some(limit) = mem
        .filter(|m| m.check_before_update() == Some(true))
        .and_then(|m| m.limit())
    {
        let usage = cg
            .read_stat("memory", "memory.usage_in_bytes")
            .or_else(|| cg.read_stat("memory", "memory.current"))
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if limit > 0 && limit < usage {
            bail!(
                "memory limit {limit} is below the container's current usage {usage} (checkBeforeUpdate)"
            );
        }
    }
    // With the systemd driver, systemd learns the limits first (it would otherwise put its
    // own back whenever it rewrites the unit's files), then the files get them all.
    if let Some(unit) = cg.systemd.as_ref().filter(|u| u.started) {
        crate::cgroups::resources::validate(&resources)?;
        let v1 = cg.dirs.iter().any(|d| !d.hierarchy.v2);
        crate::cgroups::systemd::set_properties(unit, v1, &resources)?;
    }
    cg.apply(&resources)
}

/// The --resources document with the flags laid over it.
fn merge(f: &Flags) -> Result<LinuxResources> {
    let mut v: Value = match f.resources.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("read resources from stdin")?;
            serde_json::from_str(&s).context("parse resources from stdin")?
        }
        Some(path) => {
            let s = std::fs::read_to_string(path).with_context(|| format!("read {path}"))?;
            serde_json::from_str(&s).with_context(|| format!("parse {path}"))?
        }
        None => json!({}),
    };
    let mut set = |section: &str, key: &str, value: Value| {
        if !v[section].is_object() {
            v[section] = json!({});
        }
        v[section][key] = value;
    };
    for (key, text) in [
        ("limit", &f.memory),
        ("reservation", &f.memory_reservation),
        ("swap", &f.memory_swap),
    ] {
        if let Some(n) = text {
            set("memory", key, json!(n));
        }
    }
    if let Some(q) = f.cpu_quota {
        set("cpu", "quota", json!(q));
    }
    if let Some(p) = f.cpu_period {
        set("cpu", "period", json!(p));
    }
    if let Some(s) = f.cpu_share {
        set("cpu", "shares", json!(s));
    }
    if let Some(p) = f.cpu_rt_period {
        set("cpu", "realtimePeriod", json!(p));
    }
    if let Some(r) = f.cpu_rt_runtime {
        set("cpu", "realtimeRuntime", json!(r));
    }
    if let Some(c) = &f.cpuset_cpus {
        set("cpu", "cpus", json!(c));
    }
    if let Some(m) = &f.cpuset_mems {
        set("cpu", "mems", json!(m));
    }
    if let Some(p) = f.pids_limit {
        set("pids", "limit", json!(p));
    }
    if let Some(w) = f.blkio_weight {
        set("blockIO", "weight", json!(w));
    }
    serde_json::from_value(v).context("invalid resources")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_file() {
        let f = Flags {
            memory: Some(64 << 20),
            pids_limit: Some(5),
            cpu_quota: Some(20000),
            ..Default::default()
        };
        let r = merge(&f).unwrap();
        assert_eq!(r.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(r.pids().as_ref().unwrap().limit(), 5);
        assert_eq!(r.cpu().as_ref().unwrap().quota(), Some(20000));
    }
}
