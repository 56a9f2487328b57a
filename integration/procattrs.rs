//! Process and linux attributes applied between clone and exec: LSM labels, personality,
//! I/O priority, scheduler, execCPUAffinity, memory policy, intelRdt and netDevices,
//! observed inside the container (/proc) and from the host (the container's pid).

use crate::common::*;
use serde_json::{Value, json};
use std::fs;
use std::process::Command;

/// The init's pid, from `state`, of a created container.
fn pid_of(c: &Container) -> i32 {
    c.state()["pid"].as_i64().unwrap() as i32
}

/// Fields of /proc/PID/stat after the command name, numbered as in proc(5) (3 = state).
fn stat_field(pid: i32, n: usize) -> String {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(n - 3).unwrap().to_string()
}

/// `create` must fail with one line naming every string of `want`, leaving nothing.
fn create_fails(c: &Container, want: &[&str]) {
    assert_err(&c.create(), want, &[]);
    c.assert_no_leftovers();
}

/// For each (value, text): `create` with `<section>.<key>` = value fails naming the field
/// and the text.
fn each_refused(section: &str, key: &str, cases: Vec<(Value, &str)>) {
    for (value, want) in cases {
        let mut c = sleeper(key);
        c.set(&format!("/{section}/{key}"), value);
        create_fails(&c, &[&format!("{section}.{key}"), want]);
    }
}

#[test]
fn personality_linux32_makes_uname_report_i686() {
    let mut c = Container::new("pers32");
    c.set("/linux/personality", json!({"domain": "LINUX32"}));
    assert_eq!(c.run_sh("uname -m").trim(), "i686");
    let mut c = Container::new("pers64");
    c.set("/linux/personality", json!({"domain": "LINUX"}));
    assert_eq!(c.run_sh("uname -m").trim(), std::env::consts::ARCH);
}

#[test]
fn unknown_personality_domain_is_refused() {
    let mut c = sleeper("persbad");
    c.set("/linux/personality", json!({"domain": "LINUX64"}));
    create_fails(&c, &["linux.personality.domain", "LINUX64"]);
}

#[test]
fn io_priority_is_seen_from_the_host_and_inside() {
    for (class, prio, number, text) in [
        ("IOPRIO_CLASS_BE", 6, 2, "best-effort: prio 6"),
        ("IOPRIO_CLASS_RT", 2, 1, "realtime: prio 2"),
        ("IOPRIO_CLASS_IDLE", 0, 3, "idle"),
    ] {
        let io = json!({"class": class, "priority": prio});
        let mut c = sleeper("ioprio");
        c.set("/process/ioPriority", io.clone());
        c.create_ok();
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        // SAFETY: integer arguments only.
        let got = unsafe { libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, pid_of(&c)) };
        assert_eq!(got, (number << 13) | prio, "{class} {prio}");
        let mut c = Container::new("ioprio-in");
        c.set("/process/ioPriority", io);
        assert_eq!(c.run_sh("ionice").trim(), text, "{class}");
    }
}

#[test]
fn io_priority_out_of_range_is_refused() {
    let mut c = sleeper("ioprio-bad");
    c.set(
        "/process/ioPriority",
        json!({"class": "IOPRIO_CLASS_BE", "priority": 8}),
    );
    create_fails(&c, &["process.ioPriority.priority", "8"]);
}

#[test]
fn scheduler_batch_with_nice_is_seen_from_the_host() {
    let mut c = sleeper("sched-batch");
    c.set(
        "/process/scheduler",
        json!({"policy": "SCHED_BATCH", "nice": 7}),
    );
    c.create_ok();
    let pid = pid_of(&c);
    assert_eq!(stat_field(pid, 19), "7", "nice");
    assert_eq!(stat_field(pid, 41), "3", "policy SCHED_BATCH");
    // Inherited by what the container runs.
    c.start_ok();
    assert_eq!(stat_field(pid, 19), "7");
}

#[test]
fn scheduler_idle_policy() {
    let mut c = sleeper("sched-idle");
    c.set("/process/scheduler", json!({"policy": "SCHED_IDLE"}));
    c.create_ok();
    assert_eq!(stat_field(pid_of(&c), 41), "5", "policy SCHED_IDLE");
}

/// A realtime policy needs RT runtime in the container's cgroup when cgroup v1 has RT group
/// scheduling: without it the error says so, with `realtimeRuntime` it applies.
#[test]
fn scheduler_fifo_applies_or_says_why() {
    let rt_group = std::path::Path::new("/sys/fs/cgroup/cpu/cpu.rt_runtime_us").exists();
    let mut c = sleeper("sched-fifo");
    c.set(
        "/process/scheduler",
        json!({"policy": "SCHED_FIFO", "priority": 10}),
    );
    let out = c.create();
    if rt_group {
        assert_err(
            &out,
            &[
                "process.scheduler",
                "sched_setattr SCHED_FIFO",
                "rt_runtime_us",
            ],
            &[],
        );
        c.assert_no_leftovers();
        c.config["linux"]["resources"] =
            json!({"cpu": {"realtimeRuntime": 10000, "realtimePeriod": 1000000}});
        c.create_ok();
    } else {
        out.ok();
    }
    let pid = pid_of(&c);
    assert_eq!(stat_field(pid, 41), "1", "policy SCHED_FIFO");
    assert_eq!(stat_field(pid, 40), "10", "rt_priority");
}

#[test]
fn bad_scheduler_values_are_refused() {
    each_refused(
        "process",
        "scheduler",
        vec![
            (json!({"policy": "SCHED_FOO"}), "process.scheduler.policy"),
            (
                json!({"policy": "SCHED_RR", "priority": 100}),
                "priority 100",
            ),
            (json!({"policy": "SCHED_OTHER", "nice": -21}), "nice -21"),
            (json!({"policy": "SCHED_OTHER", "priority": 3}), "priority"),
            (
                json!({"policy": "SCHED_BATCH", "runtime": 5}),
                "SCHED_DEADLINE",
            ),
        ],
    );
}

/// Per the runtime-spec, execCPUAffinity "is not applicable to the container's init
/// process" (runc applies it to `runc exec` only): the init keeps every CPU.
#[test]
fn exec_cpu_affinity_leaves_the_init_alone_but_is_checked() {
    let mut c = Container::new("affinity");
    c.set(
        "/process/execCPUAffinity",
        json!({"initial": "1", "final": "0"}),
    );
    let out = c.run_sh("grep Cpus_allowed_list /proc/self/status");
    let all = status_field(
        &fs::read_to_string("/proc/self/status").unwrap(),
        "Cpus_allowed_list",
    );
    assert_eq!(status_field(&out, "Cpus_allowed_list"), all, "{out}");
    each_refused(
        "process",
        "execCPUAffinity",
        vec![
            (json!({"final": "0-"}), "process.execCPUAffinity.final"),
            (json!({"initial": "3-1"}), "process.execCPUAffinity.initial"),
        ],
    );
}

#[test]
fn memory_policy_bind_shows_in_numa_maps() {
    let mut c = Container::new("mempolicy");
    c.set(
        "/linux/memoryPolicy",
        json!({"mode": "MPOL_BIND", "nodes": "0"}),
    );
    let out = c.run_sh("cat /proc/self/numa_maps");
    assert!(out.lines().any(|l| l.contains(" bind:0 ")), "{out}");
    let mut c = Container::new("mempolicy-il");
    c.config["linux"]["memoryPolicy"] =
        json!({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]});
    let out = c.run_sh("cat /proc/self/numa_maps");
    assert!(
        out.lines().any(|l| l.contains(" interleave=static:0 ")),
        "{out}"
    );
}

#[test]
fn bad_memory_policies_are_refused() {
    each_refused(
        "linux",
        "memoryPolicy",
        vec![
            (json!({"mode": "MPOL_SOMETIMES"}), "linux.memoryPolicy.mode"),
            (json!({"mode": "MPOL_BIND"}), "needs at least one node"),
            (
                json!({"mode": "MPOL_BIND", "nodes": "0-x"}),
                "linux.memoryPolicy.nodes",
            ),
            (
                json!({"mode": "MPOL_LOCAL", "nodes": "0"}),
                "takes no nodes",
            ),
            // A node this host doesn't have: refused by the kernel, in the init.
            (
                json!({"mode": "MPOL_BIND", "nodes": "63"}),
                "set_mempolicy MPOL_BIND",
            ),
        ],
    );
}

/// A started sleeper container with `field` of the config section set.
fn running_with(tag: &str, section: &str, field: &str, value: Value) -> Container {
    let mut c = sleeper(tag);
    c.set(&format!("/{section}/{field}"), value);
    c.create_ok();
    c.start_ok();
    c
}

/// `exec ID ARGS...` (or `exec --process FILE ID` for a process object), which must
/// succeed; its stdout.
fn exec_out(c: &Container, args: &[&str]) -> String {
    let mut full = vec!["exec", c.id.as_str()];
    full.extend_from_slice(args);
    c.rt(&full).ok().stdout.clone()
}

fn exec_process(c: &Container, process: Value) -> Out {
    let tmp = TempDir::new("process");
    let f = tmp.join("process.json");
    fs::write(&f, process.to_string()).unwrap();
    c.rt(&["exec", "--process", f.to_str().unwrap(), &c.id])
}

fn exec_process_out(c: &Container, process: Value) -> String {
    exec_process(c, process).ok().stdout.clone()
}

/// Field `n` of a /proc/PID/stat text (numbered as in proc(5)).
fn stat_text_field(stat: &str, n: usize) -> String {
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split_whitespace().nth(n - 3).unwrap().to_string()
}

/// runc 1.2 applies the container's attributes to exec'd processes too.
#[test]
fn exec_gets_the_io_priority() {
    let io = json!({"class": "IOPRIO_CLASS_BE", "priority": 4});
    let c = running_with("exec-ioprio", "process", "ioPriority", io);
    assert_eq!(exec_out(&c, &["ionice"]).trim(), "best-effort: prio 4");
    // A --process object's own ioPriority wins; without one, the container's applies.
    let own = json!({"args": ["ionice"], "cwd": "/", "ioPriority": {"class": "IOPRIO_CLASS_IDLE"}});
    assert_eq!(exec_process_out(&c, own).trim(), "idle");
    let none = json!({"args": ["ionice"], "cwd": "/"});
    assert_eq!(exec_process_out(&c, none).trim(), "best-effort: prio 4");
}

#[test]
fn exec_gets_the_scheduler() {
    let s = json!({"policy": "SCHED_BATCH", "nice": 7});
    let c = running_with("exec-sched", "process", "scheduler", s);
    let stat = exec_out(&c, &["cat", "/proc/self/stat"]);
    assert_eq!(
        stat_text_field(&stat, 41),
        "3",
        "policy SCHED_BATCH: {stat}"
    );
    assert_eq!(stat_text_field(&stat, 19), "7", "nice: {stat}");
    let own = json!({"args": ["cat", "/proc/self/stat"], "cwd": "/",
        "scheduler": {"policy": "SCHED_IDLE"}});
    let stat = exec_process_out(&c, own);
    assert_eq!(stat_text_field(&stat, 41), "5", "policy SCHED_IDLE: {stat}");
    // Checked as the config's is.
    let bad = json!({"args": ["true"], "cwd": "/", "scheduler": {"policy": "SCHED_RR"}});
    assert_err(
        &exec_process(&c, bad),
        &[
            "--process",
            "process.scheduler",
            "SCHED_RR needs a priority",
        ],
        &[],
    );
}

/// runc hands the container's oomScoreAdj to exec'd processes too; a --process object's
/// own wins.
#[test]
fn exec_gets_the_oom_score_adj() {
    let c = running_with("exec-oom", "process", "oomScoreAdj", json!(500));
    let read = ["cat", "/proc/self/oom_score_adj"];
    assert_eq!(exec_out(&c, &read).trim(), "500");
    let own = json!({"args": read, "cwd": "/", "oomScoreAdj": 600});
    assert_eq!(exec_process_out(&c, own).trim(), "600");
    let none = json!({"args": read, "cwd": "/"});
    assert_eq!(exec_process_out(&c, none).trim(), "500");
}

#[test]
fn exec_gets_the_personality() {
    let p = json!({"domain": "LINUX32"});
    let c = running_with("exec-pers", "linux", "personality", p);
    assert_eq!(exec_out(&c, &["uname", "-m"]).trim(), "i686");
}

#[test]
fn exec_gets_the_memory_policy() {
    let mp = json!({"mode": "MPOL_BIND", "nodes": "0"});
    let c = running_with("exec-mempolicy", "linux", "memoryPolicy", mp);
    let out = exec_out(&c, &["cat", "/proc/self/numa_maps"]);
    assert!(out.lines().any(|l| l.contains(" bind:0 ")), "{out}");
}

#[test]
fn intel_rdt_without_resctrl_is_a_clear_error() {
    let mut c = sleeper("rdt");
    c.set(
        "/linux/intelRdt",
        json!({"closID": "corten", "l3CacheSchema": "L3:0=f"}),
    );
    create_fails(&c, &["linux.intelRdt"]);
    let mut c = sleeper("rdt-bad");
    c.set("/linux/intelRdt", json!({"closID": "../x"}));
    create_fails(&c, &["linux.intelRdt.closID"]);
}

const PROFILE: &str = "corten-test";
const LABEL: &str = "system_u:system_r:container_t:s0";
/// The one line `create` and `exec` print for a label this host can't apply.
const NO_APPARMOR: &str = "corten: process.apparmorProfile \"corten-test\" is set but AppArmor is not enabled on this host";
const NO_SELINUX: &str = "corten: process.selinuxLabel \"system_u:system_r:container_t:s0\" is set but SELinux is not enabled on this host";

/// True when this host has AppArmor or SELinux enabled (the tests below skip).
fn host_has_lsm() -> bool {
    let aa = fs::read("/sys/module/apparmor/parameters/enabled").is_ok_and(|b| b.starts_with(b"Y"));
    let se = std::path::Path::new("/sys/fs/selinux/enforce").exists();
    aa || se
}

/// `out` failed with exactly `line` and ran nothing (the command would print "ran").
fn refused_with(out: &Out, line: &str) {
    assert_err(out, &[], &[]);
    assert_eq!(out.stderr.trim(), line, "{out}");
    assert!(!out.stdout.contains("ran"), "the process ran: {out}");
}

/// This host has neither AppArmor nor SELinux: a profile or a process label is refused
/// before anything exists (runc fails on both too); a mount label is ignored.
#[test]
fn lsm_labels_on_a_host_without_lsms() {
    if host_has_lsm() {
        skip!("this host has an LSM enabled");
    }
    let mut c = sleeper("apparmor");
    c.set("/process/apparmorProfile", json!(PROFILE));
    refused_with(&c.create(), NO_APPARMOR);
    c.assert_no_leftovers();
    let mut c = sleeper("selinux");
    c.set("/process/selinuxLabel", json!(LABEL));
    refused_with(&c.create(), NO_SELINUX);
    c.assert_no_leftovers();
    let mut c = Container::new("mountlabel");
    c.set(
        "/linux/mountLabel",
        json!("system_u:object_r:container_file_t:s0"),
    );
    assert_eq!(c.run_sh("echo ok").trim(), "ok");
}

/// `exec --apparmor`, `--process-label` and a `--process` file's labels are applied as
/// the init's are (runc's setns init), never dropped: on this host they are refused in
/// `create`'s words before any process runs.
#[test]
fn exec_lsm_labels_on_a_host_without_lsms() {
    if host_has_lsm() {
        skip!("this host has an LSM enabled");
    }
    let c = sleeper("exec-lsm");
    c.create_ok();
    c.start_ok();
    let run = |flags: &[&str]| {
        let mut args = vec!["exec"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[&c.id, "echo", "ran"]);
        c.rt(&args)
    };
    refused_with(&run(&["--apparmor", PROFILE]), NO_APPARMOR);
    refused_with(&run(&["--process-label", LABEL]), NO_SELINUX);
    let file = json!({"args": ["echo", "ran"], "cwd": "/", "apparmorProfile": PROFILE});
    refused_with(&exec_process(&c, file), NO_APPARMOR);
    // Without labels exec still works, and the container is untouched.
    assert_eq!(exec_out(&c, &["echo", "ran"]).trim(), "ran");
}

/// A veth pair on the host; the guard deletes what is left of it.
struct Veth(String);

impl Veth {
    fn new(tag: &str) -> Veth {
        let name = format!("cv{tag}{}", std::process::id() % 100_000);
        let peer = format!("{name}p");
        let ok = Command::new("ip")
            .args(["link", "add", &name, "type", "veth", "peer", "name", &peer])
            .status()
            .unwrap()
            .success();
        assert!(ok, "ip link add {name}");
        Veth(name)
    }

    fn exists(name: &str) -> bool {
        std::path::Path::new("/sys/class/net").join(name).exists()
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting either end deletes the pair.
        if let Some(n) = [self.0.clone(), format!("{}p", self.0)]
            .into_iter()
            .find(|n| Veth::exists(n))
        {
            let _ = Command::new("ip").args(["link", "del", &n]).status();
        }
    }
}

#[test]
fn net_device_is_moved_renamed_up_and_keeps_its_address() {
    let v = Veth::new("a");
    let ok = Command::new("ip")
        .args(["addr", "add", "10.251.7.1/24", "dev", &v.0])
        .status()
        .unwrap()
        .success();
    assert!(ok);
    let mut c = sleeper("netdev");
    c.set(
        "/linux/netDevices",
        json!({ v.0.clone(): {"name": "ctr0"} }),
    );
    c.create_ok();
    assert!(!Veth::exists(&v.0), "{} is still on the host", v.0);
    // `ip` on the host, run in the container's network namespace.
    let ip_in = |args: &[&str]| -> String {
        let pid = pid_of(&c).to_string();
        let out = Command::new("nsenter")
            .args(["-t", &pid, "-n", "ip", "-o"])
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let addr = ip_in(&["addr", "show", "dev", "ctr0"]);
    assert!(addr.contains("inet 10.251.7.1/24"), "{addr}");
    let link = ip_in(&["link", "show", "ctr0"]);
    assert!(link.contains(",UP"), "{link}");
    // What the container itself sees.
    c.delete().ok();
    let mut c2 = Container::new("netdev-in");
    let v2 = Veth::new("b");
    c2.set("/linux/netDevices", json!({ v2.0.clone(): {} }));
    let out = c2.run_sh("ls /sys/class/net | sort | tr '\\n' ' '");
    assert_eq!(out.trim(), format!("{} lo", v2.0));
}

#[test]
fn bad_net_devices_are_refused_and_leave_nothing() {
    let mut c = sleeper("netdev-missing");
    c.set("/linux/netDevices", json!({"cvnosuchdev0": {}}));
    create_fails(&c, &["linux.netDevices", "cvnosuchdev0"]);
    let v = Veth::new("c");
    let mut c = sleeper("netdev-nons");
    c.remove_namespace("network");
    c.set("/linux/netDevices", json!({ v.0.clone(): {} }));
    create_fails(&c, &["linux.netDevices", "network namespace"]);
    let mut c = sleeper("netdev-badname");
    c.set("/linux/netDevices", json!({ v.0.clone(): {"name": "a/b"} }));
    create_fails(&c, &["linux.netDevices", "a/b"]);
    // Two devices, the second one's new name taken in the container ("lo"): the first,
    // already moved, comes back to the host.
    let w = Veth::new("d");
    let mut c = sleeper("netdev-clash");
    c.config["linux"]["netDevices"] =
        json!({ v.0.clone(): {"name": "first0"}, w.0.clone(): {"name": "lo"} });
    create_fails(&c, &["linux.netDevices", "already exists"]);
    assert!(Veth::exists(&v.0) && Veth::exists(&w.0));
}

#[test]
fn features_claim_what_is_implemented() {
    let out = rt(&["features"]);
    out.ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    let linux = &v["linux"];
    assert_eq!(linux["apparmor"]["enabled"], true);
    assert_eq!(linux["selinux"]["enabled"], true);
    assert_eq!(linux["intelRdt"]["enabled"], false);
    assert_eq!(linux["netDevices"]["enabled"], true);
    let modes = linux["memoryPolicy"]["modes"].as_array().unwrap();
    assert!(modes.iter().any(|m| m == "MPOL_BIND"), "{v}");
}
