//! docker run's flags given to `corten-image pull` (`--user`, `--env`, `--workdir`,
//! `--read-only`, `--memory`, `--cpus`, `--pids-limit`): what the container then sees of
//! each, and the bad values refused at pull time in one line.

use serde_json::{Value, json};

use crate::common::TempDir;
use crate::image_support::*;

/// A busybox image in a local registry with a User, an Env and a WorkingDir of its own.
fn image_ref(reg: &Registry, tmp: &TempDir) -> String {
    let img = image(
        vec![(base_entries(), Comp::Gzip)],
        json!({"Cmd": ["sh"], "User": "root", "Env": ["A=image", "B=image"], "WorkingDir": "/"}),
        "amd64",
        None,
    );
    layout_of(&tmp.join("layout"), &img, "v1");
    reg.push(&tmp.join("layout"), "v1", "test/flags", false, None);
    format!("{}/test/flags:v1", reg.host())
}

fn pull(tmp: &TempDir, args: &[&str]) -> crate::common::Out {
    let store = tmp.join("store");
    let mut a = vec!["pull", "-q", "--store", store.to_str().unwrap()];
    a.extend_from_slice(args);
    image_cmd(&a, &[])
}

/// The container's own v1 cgroup file (this host: memory, cpu and pids on v1), read from
/// inside through the cgroup mount and /proc/self/cgroup.
const CGROUP_FILES: &str = r#"
for pair in memory:memory.limit_in_bytes cpu:cpu.cfs_quota_us pids:pids.max; do
  c=${pair%%:*} f=${pair#*:}
  p=$(grep -E "^[0-9]+:([^:]*,)?$c(,[^:]*)?:" /proc/self/cgroup | cut -d: -f3)
  echo "$f=$(cat /sys/fs/cgroup/$c$p/$f 2>/dev/null || cat /sys/fs/cgroup/$c/$f)"
done"#;

#[test]
fn image_run_flags_reach_the_container() {
    let reg = Registry::start();
    let tmp = TempDir::new("imgflags");
    let r = image_ref(&reg, &tmp);
    let b = tmp.join("b");
    let script = format!(
        "id -u; id -g; pwd; echo A=$A B=$B C=$C; touch /x 2>&1 || echo read-only; {CGROUP_FILES}"
    );
    #[rustfmt::skip]
    pull(&tmp, &[
        "--user", "app", "-e", "A=flag", "--env", "C=x=y", "-w", "/home/app/work", "--read-only",
        "-m", "64m", "--cpus", "0.5", "--pids-limit", "50",
        &r, b.to_str().unwrap(), "--", "sh", "-c", &script,
    ]).ok();
    let config: Value = serde_json::from_str(&read(&b.join("config.json"))).unwrap();
    let res = &config["linux"]["resources"];
    assert_eq!(res["memory"]["limit"], 64 << 20, "{res}");
    assert_eq!(res["cpu"]["quota"], 50000, "{res}");
    assert_eq!(res["cpu"]["period"], 100000, "{res}");
    assert_eq!(res["pids"]["limit"], 50, "{res}");
    assert_eq!(config["root"]["readonly"], true);

    let out = run_bundle(&b);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..3], ["1000", "1000", "/home/app/work"], "{out}");
    assert!(out.contains("A=flag B=image C=x=y"), "{out}");
    assert!(out.contains("Read-only file system"), "{out}");
    assert!(out.contains("memory.limit_in_bytes=67108864"), "{out}");
    assert!(out.contains("cpu.cfs_quota_us=50000"), "{out}");
    assert!(out.contains("pids.max=50"), "{out}");
}

#[test]
fn image_run_flags_bad_values_are_refused() {
    let reg = Registry::start();
    let tmp = TempDir::new("imgflags-bad");
    let r = image_ref(&reg, &tmp);
    let b = tmp.join("b");
    let bs = b.to_str().unwrap();
    for (args, want) in [
        (&["-m", "lots"][..], "--memory lots"),
        (&["-m", "1k"], "at least 6m"),
        (&["--cpus", "-1"], "--cpus -1"),
        (&["--cpus", "x"], "--cpus x"),
        (&["-w", "rel"], "not absolute"),
        (&["-e", "NOVALUE"], "KEY=VALUE"),
        (&["--pids-limit", "0"], "--pids-limit 0"),
        (&["--user", "nobody-here"], "nobody-here"),
    ] {
        let mut a = args.to_vec();
        a.extend([r.as_str(), bs]);
        assert_image_err(&pull(&tmp, &a), &[want]);
        assert!(!b.exists(), "{args:?} left the bundle");
    }
}
