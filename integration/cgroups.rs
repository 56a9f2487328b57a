//! linux.resources (config-linux.md, "Control groups") on real cgroups (v1 on this host,
//! and v2 by hiding the v1 hierarchies in a private mount namespace), and the commands
//! that act on running containers: pause/resume, ps, update, kill --all.

use crate::common::*;
use serde_json::json;
use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const V1: &str = "/sys/fs/cgroup";

fn v1_file(controller: &str, id: &str, file: &str) -> String {
    let p = PathBuf::from(V1).join(controller).join(id).join(file);
    fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

fn busy(test: &str) -> Container {
    let mut c = Container::new(test);
    c.args(&["sh", "-c", "while :; do :; done"]);
    c
}

/// utime+stime of `pid` in clock ticks, from the host's /proc.
fn cpu_ticks(pid: i64) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn limits_land_in_the_v1_files_the_container_sees() {
    let mut c = Container::new("res-files");
    c.set("/linux/resources", json!({
        "memory": {"limit": 67108864, "reservation": 33554432, "swappiness": 5, "kernelTCP": 50593792},
        "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 20}
    }));
    let out = c.run_sh(
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory/memory.soft_limit_in_bytes \
         /sys/fs/cgroup/memory/memory.swappiness /sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes \
         /sys/fs/cgroup/cpu/cpu.shares /sys/fs/cgroup/cpu/cpu.cfs_quota_us \
         /sys/fs/cgroup/cpu/cpu.cfs_period_us /sys/fs/cgroup/cpuset/cpuset.cpus /sys/fs/cgroup/pids/pids.max",
    );
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines,
        [
            "67108864", "33554432", "5", "50593792", "512", "20000", "100000", "0", "20"
        ],
        "{out}"
    );
}

#[test]
fn memory_limit_oom_kills_a_hog() {
    let mut c = Container::new("res-oom");
    c.set(
        "/linux/resources",
        json!({"memory": {"limit": 33554432, "swap": 33554432}}),
    );
    // A shell variable of 100 MB cannot fit in 32 MB.
    c.sh("x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived");
    c.write_config();
    let out = c.run(&["--keep"]);
    assert!(
        !out.stdout.contains("survived"),
        "the hog was not stopped:\n{out}"
    );
    let oom = v1_file("memory", &c.id, "memory.oom_control");
    let kills: u64 = oom
        .lines()
        .find_map(|l| l.strip_prefix("oom_kill "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(kills >= 1, "memory.oom_control shows no OOM kill:\n{oom}");
    c.rt(&["delete", "-f", &c.id]).ok();
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let mut c = Container::new("res-pids");
    c.set("/linux/resources", json!({"pids": {"limit": 8}}));
    // The bomb runs in a subshell (busybox sh exits when a fork fails); afterwards only
    // builtins, which need no fork. The init's exit takes the sleeps with it.
    let out = c.run_sh(
        "(for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do sleep 5 & done) 2>/dev/null; \
         read n < /sys/fs/cgroup/pids/pids.current; echo $n",
    );
    let current: u64 = out
        .lines()
        .last()
        .unwrap_or("")
        .trim()
        .parse()
        .unwrap_or(999);
    assert!(
        current <= 8,
        "pids.current {current} exceeds the limit of 8:\n{out}"
    );
}

#[test]
fn device_rules_deny_what_is_not_allowed() {
    let mut c = Container::new("res-devices");
    c.set(
        "/linux/resources",
        json!({"devices": [{"allow": false, "access": "rwm"}]}),
    );
    c.config["process"]["capabilities"]["bounding"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_MKNOD"));
    c.config["process"]["capabilities"]["effective"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_MKNOD"));
    c.config["process"]["capabilities"]["permitted"]
        .as_array_mut()
        .unwrap()
        .push(json!("CAP_MKNOD"));
    c.set("/root/readonly", json!(false));
    // A FIFO in linux.devices is made, and needs no device-cgroup rule (there is none).
    c.config["linux"]["devices"] =
        json!([{"path": "/dev/fifo", "type": "p", "major": 8, "minor": 666}]);
    // mknod is allowed ("c *:* m"), opening an unlisted device is not; /dev/null is listed.
    let out = c.run_sh("mknod /tmp/mem c 1 1; head -c1 /tmp/mem 2>&1; echo rc=$?; head -c1 /dev/null; echo null=$?; test -p /dev/fifo && echo fifo");
    assert!(
        out.contains("Operation not permitted"),
        "opening c 1:1 was not denied:\n{out}"
    );
    assert!(out.contains("null=0"), "/dev/null must stay usable:\n{out}");
    assert!(out.contains("fifo"), "/dev/fifo missing:\n{out}");
}

#[test]
fn update_changes_a_running_containers_limits() {
    let mut c = Container::new("res-update");
    c.args(&["sleep", "100"]);
    c.set(
        "/linux/resources",
        json!({"memory": {"limit": 67108864}, "pids": {"limit": 50}}),
    );
    c.create_ok();
    c.start_ok();
    c.rt(&[
        "update",
        "--memory",
        "32m",
        "--pids-limit",
        "9",
        "--cpu-quota",
        "30000",
        &c.id,
    ])
    .ok();
    assert_eq!(
        v1_file("memory", &c.id, "memory.limit_in_bytes"),
        "33554432"
    );
    assert_eq!(v1_file("pids", &c.id, "pids.max"), "9");
    assert_eq!(v1_file("cpu", &c.id, "cpu.cfs_quota_us"), "30000");
    let file = c.bundle().join("res.json");
    fs::write(&file, r#"{"pids": {"limit": 11}}"#).unwrap();
    c.rt(&["update", "--resources", file.to_str().unwrap(), &c.id])
        .ok();
    assert_eq!(v1_file("pids", &c.id, "pids.max"), "11");
    let out = c.rt(&["update", "--cpu-period", "5", &c.id]);
    assert_err(&out, &["cpu.period"], &["period"]);

    // A swap limit, then -1 (a value clap must not take for a flag) lifts both.
    c.rt(&["update", "--memory", "32m", "--memory-swap", "64m", &c.id])
        .ok();
    assert_eq!(
        v1_file("memory", &c.id, "memory.memsw.limit_in_bytes"),
        "67108864"
    );
    c.rt(&["update", "--memory", "-1", &c.id]).ok();
    let unlimited = v1_file("memory", &c.id, "memory.limit_in_bytes");
    assert!(unlimited.parse::<u64>().unwrap() > 1 << 60, "{unlimited}");
    assert_eq!(
        v1_file("memory", &c.id, "memory.memsw.limit_in_bytes"),
        unlimited
    );
    // runc's realtime flags.
    c.rt(&[
        "update",
        "--cpu-rt-period",
        "900000",
        "--cpu-rt-runtime",
        "0",
        &c.id,
    ])
    .ok();
    assert_eq!(v1_file("cpu", &c.id, "cpu.rt_period_us"), "900000");
    assert_eq!(v1_file("cpu", &c.id, "cpu.rt_runtime_us"), "0");
}

#[test]
fn pause_stops_progress_and_resume_continues() {
    let c = busy("res-pause");
    c.create_ok();
    c.start_ok();
    let pid = c.state()["pid"].as_i64().unwrap();
    c.rt(&["pause", &c.id]).ok();
    assert_eq!(c.state()["status"], "paused");
    let a = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(300));
    let b = cpu_ticks(pid);
    assert_eq!(a, b, "a paused container kept running");
    c.rt(&["resume", &c.id]).ok();
    assert_eq!(c.state()["status"], "running");
    let ok = poll_until(Duration::from_secs(3), || cpu_ticks(pid) > b);
    assert!(ok, "a resumed container did not run");
    assert_err(&c.rt(&["resume", &c.id]), &["not paused"], &["not paused"]);
}

#[test]
fn ps_lists_the_containers_processes() {
    let mut c = Container::new("res-ps");
    c.sh("sleep 100 & sleep 100");
    c.create_ok();
    c.start_ok();
    let pid = c.state()["pid"].as_i64().unwrap();
    let ok = poll_until(Duration::from_secs(3), || {
        let out = c.rt(&["ps", "-f", "json", &c.id]);
        let pids: Vec<i64> = serde_json::from_str(&out.stdout).unwrap_or_default();
        pids.len() == 2 && pids.contains(&pid)
    });
    assert!(ok, "ps -f json did not list the init and its child");
    let table = c.rt(&["ps", &c.id]);
    table.ok();
    assert!(
        table.stdout.lines().next().unwrap_or("").contains("PID"),
        "{table}"
    );
    assert!(table.stdout.contains(&pid.to_string()), "{table}");
}

#[test]
fn kill_all_reaches_children_outside_a_pid_namespace() {
    let mut c = Container::new("res-killall");
    c.remove_namespace("pid");
    c.sh("sleep 1000 & echo $! > /tmp/child; wait");
    c.set("/root/readonly", json!(false));
    c.create_ok();
    c.start_ok();
    let child_file = c.rootfs().join("tmp/child");
    assert!(
        poll_until(Duration::from_secs(3), || child_file.exists()),
        "no child pid"
    );
    std::thread::sleep(Duration::from_millis(50));
    let child: i64 = fs::read_to_string(&child_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // Without a pid namespace, killing the init alone would leave the child running.
    c.rt(&["kill", "--all", &c.id, "KILL"]).ok();
    let gone = poll_until(Duration::from_secs(3), || {
        !PathBuf::from(format!("/proc/{child}")).exists()
    });
    assert!(gone, "kill --all did not reach the child {child}");
}

#[test]
fn failed_create_from_an_unavailable_controller_leaves_nothing() {
    // This host's blkio hierarchy has no blkio.weight (no BFQ): the error names it.
    let mut c = Container::new("res-blkio");
    c.args(&["true"]);
    c.set("/linux/resources", json!({"blockIO": {"weight": 500}}));
    let out = c.create();
    if std::path::Path::new("/sys/fs/cgroup/blkio/blkio.weight").exists() {
        out.ok();
        skip!("this host's blkio controller has blkio.weight");
    }
    assert_err(
        &out,
        &["this kernel's blkio controller has no blkio.weight"],
        &["blkio"],
    );
    c.assert_no_leftovers();
}

#[test]
fn invalid_values_are_refused_before_anything_exists() {
    let mut c = Container::new("res-invalid");
    c.args(&["true"]);
    c.set(
        "/linux/resources",
        json!({"memory": {"limit": 100000000, "swap": 1000}}),
    );
    let out = c.create();
    assert_err(&out, &["memory.swap"], &["swap"]);
    c.assert_no_leftovers();
    let mut c = Container::new("res-unified-v1");
    c.args(&["true"]);
    c.set(
        "/linux/resources",
        json!({"unified": {"memory.high": "1000000"}}),
    );
    let out = c.create();
    assert_err(&out, &["invalid configuration", "needs cgroup v2"], &["v2"]);
    c.assert_no_leftovers();
}

#[test]
fn hugetlb_limit_lands_on_the_hybrid_unified_hierarchy() {
    let mut c = Container::new("res-hugetlb");
    c.args(&["sleep", "100"]);
    c.config["linux"]["resources"] =
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]});
    c.create_ok();
    let f = fs::read_to_string(format!("{V1}/unified/{}/hugetlb.2MB.max", c.id)).unwrap();
    assert_eq!(f.trim(), "4194304");
    let procs = fs::read_to_string(format!("{V1}/unified/{}/cgroup.procs", c.id)).unwrap();
    assert!(
        procs.contains(&c.state()["pid"].to_string()),
        "init not placed on cgroup2"
    );
}

/// Runs this test binary's own `v2_child` inside a private mount namespace where only the
/// cgroup2 mount is left, so corten sees a unified-only host.
#[test]
fn cgroup_v2_placement_freeze_and_kill() {
    if is_runc() {
        skip!("corten's own behaviour, not runc's");
    }
    assert_child_test_passes(
        "cgroups::v2_child",
        Some(
            "mount --make-rprivate /; \
             for m in $(awk '$9==\"cgroup\" {print $5}' /proc/self/mountinfo); do umount $m; done",
        ),
    );
}

#[test]
#[ignore = "run by cgroup_v2_placement_freeze_and_kill in a unified-only mount namespace"]
fn v2_child() {
    let lines = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !lines.lines().any(|l| l.contains(" - cgroup ")),
        "v1 hierarchies still mounted"
    );
    // Device rules become an eBPF program on cgroup2: /dev/null stays usable, an unlisted
    // device node can be made (mknod is allowed) but not opened.
    let mut d = Container::new("res-v2-dev");
    d.set(
        "/linux/resources",
        json!({"devices": [{"allow": false, "access": "rwm"}]}),
    );
    for set in ["bounding", "effective", "permitted"] {
        d.config["process"]["capabilities"][set]
            .as_array_mut()
            .unwrap()
            .push(json!("CAP_MKNOD"));
    }
    d.set("/root/readonly", json!(false));
    let out =
        d.run_sh("mknod /tmp/mem c 1 1; head -c1 /tmp/mem 2>&1; head -c1 /dev/null; echo null=$?");
    assert!(
        out.contains("Operation not permitted"),
        "c 1:1 not denied by the eBPF program:\n{out}"
    );
    assert!(out.contains("null=0"), "/dev/null denied:\n{out}");

    let c = busy("res-v2");
    c.write_config();
    let log = c.bundle().join("debug.log");
    let (root, bundle) = (c.root().to_string_lossy().into_owned(), c.bundle_str());
    rt(&[
        "--root",
        &root,
        "--debug",
        "--log",
        log.to_str().unwrap(),
        "create",
        "--bundle",
        &bundle,
        &c.id,
    ])
    .ok();
    let text = fs::read_to_string(&log).unwrap_or_default();
    assert!(
        text.contains("CLONE_INTO_CGROUP"),
        "init not cloned into its cgroup:\n{text}"
    );
    c.start_ok();
    let pid = c.state()["pid"].as_i64().unwrap();
    let dir = PathBuf::from(V1).join("unified").join(&c.id);
    let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    assert!(
        procs.contains(&pid.to_string()),
        "init not in {}",
        dir.display()
    );
    c.rt(&["pause", &c.id]).ok();
    assert_eq!(
        fs::read_to_string(dir.join("cgroup.freeze"))
            .unwrap()
            .trim(),
        "1"
    );
    assert_eq!(c.state()["status"], "paused");
    let a = cpu_ticks(pid);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        a,
        cpu_ticks(pid),
        "frozen through cgroup.freeze, yet running"
    );
    c.rt(&["resume", &c.id]).ok();
    assert_eq!(
        fs::read_to_string(dir.join("cgroup.freeze"))
            .unwrap()
            .trim(),
        "0"
    );
    c.rt(&["kill", "--all", &c.id, "KILL"]).ok();
    c.wait_status("stopped", Duration::from_secs(5));
    c.rt(&["delete", &c.id]).ok();
    assert!(!dir.exists(), "delete left {}", dir.display());
}

#[test]
fn events_stats_report_the_cgroup() {
    let mut c = Container::new("res-events");
    c.args(&["sleep", "100"]);
    c.set(
        "/linux/resources",
        json!({"memory": {"limit": 67108864}, "pids": {"limit": 33}}),
    );
    c.create_ok();
    c.start_ok();
    let out = c.rt(&["events", "--stats", &c.id]);
    out.ok();
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"));
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], c.id.as_str());
    let d = &v["data"];
    assert_eq!(d["memory"]["usage"]["limit"], 67108864, "{v}");
    assert!(
        d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0,
        "{v}"
    );
    assert_eq!(d["pids"]["limit"], 33, "{v}");
    assert!(d["pids"]["current"].as_u64().unwrap_or(0) >= 1, "{v}");
    assert!(d["cpu"]["usage"]["total"].as_u64().is_some(), "{v}");
}

#[test]
fn events_stream_reports_an_oom_kill() {
    if is_runc() {
        skip!("corten's own behaviour, not runc's");
    }
    let mut c = Container::new("res-events-oom");
    c.set(
        "/linux/resources",
        json!({"memory": {"limit": 33554432, "swap": 33554432}}),
    );
    // The init survives; a child hog is OOM-killed again and again. The hog asks to be
    // the OOM killer's first choice: on a loaded host the init (the other candidate, had
    // the hog not grown yet) was picked once, ending the stream before any oom event.
    c.sh("while :; do sh -c 'echo 1000 > /proc/self/oom_score_adj; \
         x=$(head -c 100000000 /dev/zero | tr \"\\0\" a)'; sleep 0.2; done");
    c.create_ok();
    let root = c.root().to_string_lossy().into_owned();
    let mut child = Command::new(runtime())
        .args(["--root", &root, "events", "--interval", "1s", &c.id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.start_ok();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let found = loop {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) if line.contains(r#""type":"oom""#) => {
                // Exactly runc's line.
                assert_eq!(line, format!(r#"{{"type":"oom","id":"{}"}}"#, c.id));
                break true;
            }
            Ok(line) => seen.push(line),
            Err(_) => break false,
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        found,
        "no oom event; saw {} lines: {:?}",
        seen.len(),
        seen.iter().take(2).collect::<Vec<_>>()
    );
    assert!(
        seen.iter().any(|l| l.contains(r#""type":"stats""#)),
        "no stats line before the oom"
    );
}

#[test]
fn systemd_cgroup_without_systemd_is_a_clear_error() {
    if is_runc() {
        skip!("corten's own behaviour, not runc's");
    }
    if std::path::Path::new("/run/systemd/system").exists() {
        skip!("this host runs systemd");
    }
    let mut c = Container::new("res-systemd");
    c.args(&["true"]);
    c.set("/linux/cgroupsPath", json!("system.slice:corten:x"));
    c.write_config();
    let bundle = c.bundle_str();
    let root = c.root().to_string_lossy().into_owned();
    let out = rt(&[
        "--root",
        &root,
        "--systemd-cgroup",
        "create",
        "--bundle",
        &bundle,
        &c.id,
    ]);
    assert_err(&out, &["systemd is not running"], &[]);
    c.assert_no_leftovers();
}

#[test]
fn update_with_check_before_update_refuses_a_limit_below_usage() {
    let mut c = Container::new("res-checkupd");
    c.args(&["sleep", "100"]);
    c.set("/linux/resources", json!({"memory": {"limit": 67108864}}));
    c.create_ok();
    c.start_ok();
    let file = c.bundle().join("res.json");
    fs::write(
        &file,
        r#"{"memory": {"limit": 4096, "checkBeforeUpdate": true}}"#,
    )
    .unwrap();
    let out = c.rt(&["update", "--resources", file.to_str().unwrap(), &c.id]);
    assert_err(&out, &["checkBeforeUpdate"], &["usage"]);
    assert_eq!(
        v1_file("memory", &c.id, "memory.limit_in_bytes"),
        "67108864",
        "limit changed anyway"
    );
}
