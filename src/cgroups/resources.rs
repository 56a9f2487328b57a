//! `linux.resources` → cgroup file writes, for v1 and for v2.
//!
//! Both translations are pure (tested against the spec's numbers); `apply` then writes each
//! controller's files where the host has that controller: a v1 hierarchy, or the unified
//! one (hybrid hosts mix both: here hugetlb lives on cgroup2 and the rest on v1).

use anyhow::{Result, bail};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxDeviceType, LinuxMemory, LinuxResources};

/// One file write: `<controller dir>/<file>` ← `value` (`controller` is the v1 name in
/// both lists, "blkio" for cgroup2's io, so one feature is one group); or, when `unsupported` is set, a
/// field this cgroup version can't express (an error only if the controller lands there).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub controller: &'static str,
    pub file: String,
    pub value: String,
    pub unsupported: Option<&'static str>,
    /// Skipped where the kernel has no such file (memsw without swap accounting).
    pub optional: bool,
}

fn w(controller: &'static str, file: impl Into<String>, value: impl ToString) -> Write {
    Write {
        controller,
        file: file.into(),
        value: value.to_string(),
        unsupported: None,
        optional: false,
    }
}

/// A write skipped where the file does not exist.
fn w_opt(controller: &'static str, file: impl Into<String>, value: impl ToString) -> Write {
    Write {
        optional: true,
        ..w(controller, file, value)
    }
}

fn unsupported(controller: &'static str, what: &'static str) -> Write {
    Write {
        controller,
        file: String::new(),
        value: String::new(),
        unsupported: Some(what),
        optional: false,
    }
}

/// The container's resources as applied: the config's device rules, then the devices every
/// container may use (runc's list), then an allow rule per `linux.devices` entry.
pub fn effective(spec: &oci_spec::runtime::Spec) -> LinuxResources {
    use oci_spec::runtime::LinuxDeviceCgroup;
    let linux = spec.linux().as_ref();
    let mut r = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let rule = |typ, major, minor: Option<i64>, access: &str| {
        let mut d = LinuxDeviceCgroup::default();
        d.set_allow(true);
        d.set_typ(Some(typ));
        d.set_major(major);
        d.set_minor(minor);
        d.set_access(Some(access.to_string()));
        d
    };
    let mut devices = r.devices().clone().unwrap_or_default();
    if devices.is_empty() {
        // Nothing asked: leave the devices controller alone, as runc does.
        return r;
    }
    use LinuxDeviceType::{B, C};
    devices.push(rule(C, None, None, "m"));
    devices.push(rule(B, None, None, "m"));
    for (major, minor) in [
        (1, 3),
        (1, 8),
        (1, 7),
        (5, 0),
        (1, 5),
        (1, 9),
        (5, 1),
        (5, 2),
        (10, 200),
    ] {
        devices.push(rule(C, Some(major), Some(minor), "rwm"));
    }
    devices.push(rule(C, Some(136), None, "rwm"));
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        // FIFOs are not device-cgroup controlled (devices.allow takes a, b and c only).
        if d.typ() != LinuxDeviceType::P {
            devices.push(rule(d.typ(), Some(d.major()), Some(d.minor()), "rwm"));
        }
    }
    r.set_devices(Some(devices));
    r
}

/// Checks values that no kernel accepts, before anything is created.
pub fn validate(r: &LinuxResources) -> Result<()> {
    if let Some(m) = r.memory() {
        for (name, v) in [
            ("limit", m.limit()),
            ("reservation", m.reservation()),
            ("swap", m.swap()),
        ] {
            if let Some(v) = v
                && v < -1
            {
                bail!("memory.{name} {v} is invalid: use a positive byte count or -1");
            }
        }
        if let (Some(limit), Some(swap)) = (m.limit(), m.swap())
            && limit > 0
            && swap > 0
            && swap < limit
        {
            bail!("memory.swap {swap} must not be below memory.limit {limit} (it is memory+swap)");
        }
        if m.swappiness().is_some_and(|s| s > 100) {
            bail!(
                "memory.swappiness {} is out of range 0-100",
                m.swappiness().unwrap_or(0)
            );
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(p) = c.period()
            && !(1000..=1_000_000).contains(&p)
        {
            bail!("cpu.period {p} is out of range 1000-1000000");
        }
        if let Some(q) = c.quota()
            && q != -1
            && q != 0
            && q < 1000
        {
            bail!("cpu.quota {q} is invalid: at least 1000, or -1 for no limit");
        }
        if c.shares()
            .is_some_and(|s| s != 0 && !(2..=262_144).contains(&s))
        {
            bail!(
                "cpu.shares {} is out of range 2-262144",
                c.shares().unwrap_or(0)
            );
        }
    }
    if let Some(b) = r.block_io() {
        for (name, v) in [("weight", b.weight()), ("leafWeight", b.leaf_weight())] {
            if let Some(v) = v
                && v != 0
                && !(10..=1000).contains(&v)
            {
                bail!("blockIO.{name} {v} is out of range 10-1000");
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        page_size_suffix(h.page_size())?;
    }
    Ok(())
}

/// The writes for cgroup v1.
pub fn v1(r: &LinuxResources) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        memory_v1(m, &mut out);
    }
    if let Some(c) = r.cpu() {
        cpu_v1(c, &mut out);
    }
    if let Some(p) = r.pids() {
        out.push(w("pids", "pids.max", pids_value(p.limit())));
    }
    if let Some(b) = r.block_io() {
        blkio_v1(b, &mut out);
    }
    for h in r.hugepage_limits().iter().flatten() {
        let size = page_size_suffix(h.page_size())?;
        out.push(w(
            "hugetlb",
            format!("hugetlb.{size}.limit_in_bytes"),
            h.limit(),
        ));
    }
    if let Some(n) = r.network() {
        if let Some(id) = n.class_id() {
            out.push(w("net_cls", "net_cls.classid", id));
        }
        for p in n.priorities().iter().flatten() {
            out.push(w(
                "net_prio",
                "net_prio.ifpriomap",
                format!("{} {}", p.name(), p.priority()),
            ));
        }
    }
    for (dev, limit) in r.rdma().iter().flatten() {
        out.push(w(
            "rdma",
            "rdma.max",
            rdma_value(dev, limit.hca_handles(), limit.hca_objects()),
        ));
    }
    if let Some(devices) = r.devices() {
        for d in devices {
            let file = if d.allow() {
                "devices.allow"
            } else {
                "devices.deny"
            };
            out.push(w(
                "devices",
                file,
                device_rule(d.typ(), d.major(), d.minor(), d.access().as_deref()),
            ));
        }
    }
    for key in r.unified().iter().flatten().map(|(k, _)| k) {
        out.push(unsupported(unified_controller(key)?, V1_NO_UNIFIED));
    }
    Ok(out)
}

/// runc's refusal of linux.resources.unified on a cgroup v1 host.
pub const V1_NO_UNIFIED: &str = "invalid configuration: cannot use unified on cgroup v1 (linux.resources.unified needs cgroup v2)";

fn memory_v1(m: &LinuxMemory, out: &mut Vec<Write>) {
    if let Some(v) = m.reservation() {
        out.push(w("memory", "memory.soft_limit_in_bytes", v));
    }
    // memsw must stay >= the limit at every step: write it on both sides of the limit
    // (the first may fail harmlessly when lowering; the last one is authoritative).
    match (m.limit(), m.swap()) {
        (Some(limit), Some(swap)) => {
            out.push(w("memory", "memory.memsw.limit_in_bytes", -1));
            out.push(w("memory", "memory.limit_in_bytes", limit));
            out.push(w("memory", "memory.memsw.limit_in_bytes", swap));
        }
        (Some(-1), None) => {
            // Unlimited memory lifts an old memsw limit first, which must stay >= it
            // (runc does the same).
            out.push(w_opt("memory", "memory.memsw.limit_in_bytes", -1));
            out.push(w("memory", "memory.limit_in_bytes", -1));
        }
        (Some(limit), None) => out.push(w("memory", "memory.limit_in_bytes", limit)),
        (None, Some(swap)) => out.push(w("memory", "memory.memsw.limit_in_bytes", swap)),
        (None, None) => {}
    }
    if let Some(s) = m.swappiness() {
        out.push(w("memory", "memory.swappiness", s));
    }
    if m.disable_oom_killer() == Some(true) {
        out.push(w("memory", "memory.oom_control", 1));
    }
    // memory.kernel is deprecated and ignored, as runc does; kernelTCP still works on v1.
    if let Some(v) = m.kernel_tcp() {
        out.push(w("memory", "memory.kmem.tcp.limit_in_bytes", v));
    }
}

fn cpu_v1(c: &LinuxCpu, out: &mut Vec<Write>) {
    if let Some(s) = c.shares().filter(|&s| s != 0) {
        out.push(w("cpu", "cpu.shares", s));
    }
    if let Some(p) = c.period().filter(|&p| p != 0) {
        out.push(w("cpu", "cpu.cfs_period_us", p));
    }
    if let Some(q) = c.quota().filter(|&q| q != 0) {
        out.push(w("cpu", "cpu.cfs_quota_us", q));
    }
    if let Some(b) = c.burst() {
        out.push(w("cpu", "cpu.cfs_burst_us", b));
    }
    // The period first: the runtime is checked against it.
    if let Some(p) = c.realtime_period().filter(|&p| p != 0) {
        out.push(w("cpu", "cpu.rt_period_us", p));
    }
    if let Some(r) = c.realtime_runtime().filter(|&r| r != 0) {
        out.push(w("cpu", "cpu.rt_runtime_us", r));
    }
    if let Some(i) = c.idle() {
        out.push(w("cpu", "cpu.idle", i));
    }
    if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        out.push(w("cpuset", "cpuset.cpus", cpus));
    }
    if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        out.push(w("cpuset", "cpuset.mems", mems));
    }
}

fn blkio_v1(b: &LinuxBlockIo, out: &mut Vec<Write>) {
    if let Some(v) = b.weight().filter(|&v| v != 0) {
        out.push(w("blkio", "blkio.weight", v));
    }
    if let Some(v) = b.leaf_weight().filter(|&v| v != 0) {
        out.push(w("blkio", "blkio.leaf_weight", v));
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(v) = d.weight() {
            out.push(w(
                "blkio",
                "blkio.weight_device",
                format!("{}:{} {v}", d.major(), d.minor()),
            ));
        }
        if let Some(v) = d.leaf_weight() {
            out.push(w(
                "blkio",
                "blkio.leaf_weight_device",
                format!("{}:{} {v}", d.major(), d.minor()),
            ));
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            b.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            b.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            b.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            b.throttle_write_iops_device(),
        ),
    ];
    for (file, devs) in throttles {
        for d in devs.iter().flatten() {
            out.push(w(
                "blkio",
                file,
                format!("{}:{} {}", d.major(), d.minor(), d.rate()),
            ));
        }
    }
}

/// The writes for cgroup v2.
pub fn v2(r: &LinuxResources) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    if let Some(m) = r.memory() {
        if let Some(v) = m.reservation() {
            out.push(w("memory", "memory.low", max_or(v)));
        }
        if let Some(v) = m.limit() {
            out.push(w("memory", "memory.max", max_or(v)));
        }
        // The spec's swap is memory+swap (v1 semantics); v2 limits swap alone.
        if let Some(swap) = m.swap() {
            let value = match (swap, m.limit()) {
                (-1, _) => "max".to_string(),
                (s, Some(l)) if l > 0 => (s - l).to_string(),
                (0, _) => "0".to_string(),
                _ => String::new(),
            };
            if value.is_empty() {
                out.push(unsupported(
                    "memory",
                    "memory.swap needs memory.limit on cgroup v2",
                ));
            } else {
                out.push(w("memory", "memory.swap.max", value));
            }
        }
        if m.swappiness().is_some() {
            out.push(unsupported(
                "memory",
                "memory.swappiness is not supported on cgroup v2",
            ));
        }
        if m.disable_oom_killer() == Some(true) {
            out.push(unsupported(
                "memory",
                "memory.disableOOMKiller is not supported on cgroup v2",
            ));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares().filter(|&s| s != 0) {
            out.push(w("cpu", "cpu.weight", shares_to_weight(s)));
        }
        if c.quota().is_some_and(|q| q != 0) || c.period().is_some_and(|p| p != 0) {
            let quota = match c.quota() {
                Some(q) if q > 0 => q.to_string(),
                _ => "max".to_string(),
            };
            let period = c.period().filter(|&p| p != 0).unwrap_or(100_000);
            out.push(w("cpu", "cpu.max", format!("{quota} {period}")));
        }
        if let Some(b) = c.burst() {
            out.push(w("cpu", "cpu.max.burst", b));
        }
        if let Some(i) = c.idle() {
            out.push(w("cpu", "cpu.idle", i));
        }
        if c.realtime_runtime().is_some_and(|r| r != 0)
            || c.realtime_period().is_some_and(|p| p != 0)
        {
            out.push(unsupported(
                "cpu",
                "cpu.realtimeRuntime/realtimePeriod are not supported on cgroup v2",
            ));
        }
        if let Some(cpus) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.cpus", cpus));
        }
        if let Some(mems) = c.mems().as_deref().filter(|s| !s.is_empty()) {
            out.push(w("cpuset", "cpuset.mems", mems));
        }
    }
    if let Some(p) = r.pids() {
        out.push(w("pids", "pids.max", pids_value(p.limit())));
    }
    if let Some(b) = r.block_io() {
        if let Some(v) = b.weight().filter(|&v| v != 0) {
            out.push(w("blkio", "io.weight", blkio_weight_to_io(v)));
        }
        if b.leaf_weight().is_some_and(|v| v != 0) {
            out.push(unsupported(
                "blkio",
                "blockIO.leafWeight is not supported on cgroup v2",
            ));
        }
        for d in b.weight_device().iter().flatten() {
            if let Some(v) = d.weight() {
                out.push(w(
                    "blkio",
                    "io.weight",
                    format!("{}:{} {}", d.major(), d.minor(), blkio_weight_to_io(v)),
                ));
            }
        }
        let throttles = [
            ("rbps", b.throttle_read_bps_device()),
            ("wbps", b.throttle_write_bps_device()),
            ("riops", b.throttle_read_iops_device()),
            ("wiops", b.throttle_write_iops_device()),
        ];
        for (key, devs) in throttles {
            for d in devs.iter().flatten() {
                out.push(w(
                    "blkio",
                    "io.max",
                    format!("{}:{} {key}={}", d.major(), d.minor(), d.rate()),
                ));
            }
        }
    }
    for h in r.hugepage_limits().iter().flatten() {
        let size = page_size_suffix(h.page_size())?;
        out.push(w(
            "hugetlb",
            format!("hugetlb.{size}.max"),
            max_or(h.limit()),
        ));
    }
    if r.network()
        .as_ref()
        .is_some_and(|n| n.class_id().is_some() || n.priorities().is_some())
    {
        out.push(unsupported(
            "net_cls",
            "linux.resources.network (net_cls/net_prio) is not available on cgroup v2",
        ));
    }
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        out.push(unsupported(
            "devices",
            "device rules on cgroup v2 (eBPF) are not implemented yet",
        ));
    }
    for (dev, limit) in r.rdma().iter().flatten() {
        out.push(w(
            "rdma",
            "rdma.max",
            rdma_value(dev, limit.hca_handles(), limit.hca_objects()),
        ));
    }
    for (key, value) in r.unified().iter().flatten() {
        if key.contains('/') || key.starts_with('.') || !key.contains('.') {
            bail!("linux.resources.unified key {key:?} is not a cgroup file name");
        }
        let controller = unified_controller(key)?;
        out.push(w(controller, key.clone(), value));
    }
    Ok(out)
}

/// The controller a unified key belongs to ("memory.high" → memory), as a static name.
fn unified_controller(key: &str) -> Result<&'static str> {
    let prefix = key.split('.').next().unwrap_or("");
    Ok(match prefix {
        "cgroup" => "cgroup",
        "memory" => "memory",
        "cpu" => "cpu",
        "cpuset" => "cpuset",
        "io" => "blkio",
        "pids" => "pids",
        "hugetlb" => "hugetlb",
        "rdma" => "rdma",
        "misc" => "misc",
        _ => bail!("linux.resources.unified key {key:?}: unknown controller {prefix:?}"),
    })
}

/// runc's conversion of cpu.shares (2-262144) to cpu.weight (1-10000).
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        0
    } else {
        1 + ((shares.max(2) - 2) * 9999) / 262_142
    }
}

/// blkio.weight (10-1000) to io.weight (1-10000), as runc converts it.
pub fn blkio_weight_to_io(weight: u16) -> u64 {
    1 + (u64::from(weight).max(10) - 10) * 9999 / 990
}

/// pids.limit: positive and 0 are real limits (spec 1.3); negative means none.
fn pids_value(limit: i64) -> String {
    if limit < 0 {
        "max".into()
    } else {
        limit.to_string()
    }
}

fn max_or(v: i64) -> String {
    if v == -1 { "max".into() } else { v.to_string() }
}

fn rdma_value(dev: &str, handles: Option<u32>, objects: Option<u32>) -> String {
    let mut s = dev.to_string();
    if let Some(h) = handles {
        s.push_str(&format!(" hca_handle={h}"));
    }
    if let Some(o) = objects {
        s.push_str(&format!(" hca_object={o}"));
    }
    s
}

/// "2MB" / "1GB" / "64KB" as the kernel names hugetlb files.
fn page_size_suffix(size: &str) -> Result<String> {
    let ok = size.len() > 2
        && (size.ends_with("KB") || size.ends_with("MB") || size.ends_with("GB"))
        && size[..size.len() - 2].chars().all(|c| c.is_ascii_digit());
    if !ok {
        bail!("hugepage pageSize {size:?} is invalid (expected like 2MB or 1GB)");
    }
    Ok(size.to_string())
}

/// A v1 devices rule: "c 1:3 rwm", with `*` for a missing number and `a` for all types.
pub fn device_rule(
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: Option<&str>,
) -> String {
    let t = match typ {
        None | Some(LinuxDeviceType::A) => "a",
        Some(LinuxDeviceType::B) => "b",
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => "c",
        Some(LinuxDeviceType::P) => "p",
    };
    let num = |n: Option<i64>| {
        n.filter(|&n| n >= 0)
            .map_or("*".to_string(), |n| n.to_string())
    };
    let access = access.filter(|a| !a.is_empty()).unwrap_or("rwm");
    if t == "a" && major.is_none() && minor.is_none() {
        return format!("a *:* {access}");
    }
    format!("{t} {}:{} {access}", num(major), num(minor))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(json: serde_json::Value) -> LinuxResources {
        serde_json::from_value(json).unwrap()
    }

    fn files(ws: &[Write]) -> Vec<(String, String)> {
        ws.iter()
            .map(|w| (w.file.clone(), w.value.clone()))
            .collect()
    }

    #[test]
    fn memory_and_cpu_v1() {
        let r = res(serde_json::json!({
            "memory": {"limit": 104857600, "reservation": 52428800, "swap": 209715200, "swappiness": 10, "disableOOMKiller": true, "kernelTCP": 50593792},
            "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 0}
        }));
        let f = files(&v1(&r).unwrap());
        assert!(f.contains(&("memory.limit_in_bytes".into(), "104857600".into())));
        assert_eq!(
            f.iter()
                .rfind(|(k, _)| k == "memory.memsw.limit_in_bytes")
                .unwrap()
                .1,
            "209715200"
        );
        assert!(f.contains(&("memory.soft_limit_in_bytes".into(), "52428800".into())));
        assert!(f.contains(&("memory.swappiness".into(), "10".into())));
        assert!(f.contains(&("memory.oom_control".into(), "1".into())));
        assert!(f.contains(&("memory.kmem.tcp.limit_in_bytes".into(), "50593792".into())));
        assert!(f.contains(&("cpu.shares".into(), "512".into())));
        assert!(f.contains(&("cpu.cfs_quota_us".into(), "50000".into())));
        assert!(f.contains(&("cpuset.cpus".into(), "0".into())));
        assert!(
            f.contains(&("pids.max".into(), "0".into())),
            "0 is a real pids limit"
        );
    }

    #[test]
    fn v2_conversions() {
        let r = res(serde_json::json!({
            "memory": {"limit": 100, "swap": 300, "reservation": -1},
            "cpu": {"shares": 1024, "quota": -1, "period": 50000, "burst": 1000},
            "pids": {"limit": -1},
            "blockIO": {"weight": 500, "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "unified": {"memory.high": "50000"}
        }));
        let f = files(&v2(&r).unwrap());
        for want in [
            ("memory.max", "100"),
            ("memory.swap.max", "200"),
            ("memory.low", "max"),
            ("cpu.weight", "39"),
            ("cpu.max", "max 50000"),
            ("cpu.max.burst", "1000"),
            ("pids.max", "max"),
            ("io.weight", "4950"),
            ("io.max", "8:0 rbps=1048576"),
            ("hugetlb.2MB.max", "4194304"),
            ("memory.high", "50000"),
        ] {
            assert!(
                f.contains(&(want.0.into(), want.1.into())),
                "missing {want:?} in {f:?}"
            );
        }
    }

    #[test]
    fn runc_weight_conversion_endpoints() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(blkio_weight_to_io(10), 1);
        assert_eq!(blkio_weight_to_io(1000), 10_000);
    }

    #[test]
    fn invalid_values_are_refused() {
        for bad in [
            serde_json::json!({"memory": {"limit": -5}}),
            serde_json::json!({"memory": {"limit": 200, "swap": 100}}),
            serde_json::json!({"memory": {"swappiness": 101}}),
            serde_json::json!({"cpu": {"period": 10}}),
            serde_json::json!({"cpu": {"quota": 10}}),
            serde_json::json!({"blockIO": {"weight": 5}}),
            serde_json::json!({"hugepageLimits": [{"pageSize": "2XB", "limit": 1}]}),
        ] {
            assert!(validate(&res(bad.clone())).is_err(), "{bad} accepted");
        }
        let u = v1(&res(serde_json::json!({"unified": {"memory.high": "1"}}))).unwrap();
        assert!(u[0].unsupported.is_some(), "unified is not a v1 write");
        assert!(v2(&res(serde_json::json!({"unified": {"../x": "1"}}))).is_err());
    }

    #[test]
    fn fifos_in_linux_devices_get_no_cgroup_rule() {
        let spec: oci_spec::runtime::Spec = serde_json::from_value(serde_json::json!({
            "ociVersion": "1.0.2",
            "linux": {
                "devices": [
                    {"path": "/dev/fifo", "type": "p", "major": 8, "minor": 666},
                    {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}
                ],
                "resources": {"devices": [{"allow": false, "access": "rwm"}]}
            }
        }))
        .unwrap();
        let rules: Vec<_> = effective(&spec)
            .devices()
            .clone()
            .unwrap_or_default()
            .iter()
            .map(|d| device_rule(d.typ(), d.major(), d.minor(), d.access().as_deref()))
            .collect();
        assert!(rules.contains(&"c 10:229 rwm".to_string()), "{rules:?}");
        assert!(!rules.iter().any(|r| r.starts_with('p')), "{rules:?}");
    }

    #[test]
    fn device_rules() {
        assert_eq!(device_rule(None, None, None, Some("rwm")), "a *:* rwm");
        assert_eq!(
            device_rule(Some(LinuxDeviceType::C), Some(1), Some(3), Some("rw")),
            "c 1:3 rw"
        );
        assert_eq!(
            device_rule(Some(LinuxDeviceType::B), Some(8), None, None),
            "b 8:* rwm"
        );
    }
}
