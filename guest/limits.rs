//! The v2 limits that need something of the guest besides its controllers: memory.swap.max
//! (a swap file, made here when the guest has no swap), hugetlb.<size>.max (huge pages
//! reserved through vm.nr_hugepages), rdma.max (the guest has no RDMA device) and
//! io.weight (the iocost controller, switched on for the disk while the test runs). Each
//! test asserts the cgroup files and what the container could or could not allocate.

use serde_json::json;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::*;
use crate::{cgroup_dir, cgroup_file, cgroup_key, on_v2_host};

/// Swap for the guest while a test runs: the guest's own if it has some, else a swap file
/// made here and switched off and removed again on drop.
struct Swap {
    file: Option<PathBuf>,
}

impl Swap {
    fn ensure() -> Swap {
        let swaps = fs::read_to_string("/proc/swaps").unwrap_or_default();
        if swaps.lines().count() > 1 {
            return Swap { file: None };
        }
        // On the root disk (ext4): swapon refuses files on tmpfs or overlayfs.
        let file = PathBuf::from(format!("/var/tmp/corten-guest-swap-{}", std::process::id()));
        let sh = format!(
            "set -e; dd if=/dev/zero of={f} bs=1048576 count=160 2>/dev/null; chmod 600 {f}; \
             mkswap {f} >/dev/null; swapon {f}",
            f = file.display()
        );
        let st = Command::new("sh").args(["-c", &sh]).status().unwrap();
        let swap = Swap { file: Some(file) };
        assert!(st.success(), "could not add a swap file to the guest");
        swap
    }
}

impl Drop for Swap {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = Command::new("swapoff").arg(f).status();
            let _ = fs::remove_file(f);
        }
    }
}

/// A container whose init allocates (dd's one buffer) 48 MiB, then 96 MiB, and writes
/// each dd's exit code to `<out>/rc`, then sleeps: under memory.max 32 MiB.
fn swapper(test: &str, out: &TempDir, swap: u64) -> Container {
    let mut c = Container::new(test);
    c.add_mount(bind("/out", out.path(), &["bind", "rw"]));
    c.set(
        "/linux/resources",
        json!({"memory": {"limit": 33554432u64, "swap": swap}}),
    );
    c.sh(
        "dd if=/dev/zero of=/dev/null bs=50331648 count=1 2>/dev/null; a=$?; \
          dd if=/dev/zero of=/dev/null bs=100663296 count=1 2>/dev/null; b=$?; \
          echo \"a=$a b=$b\" >/out/tmp; mv /out/tmp /out/rc; sleep 100",
    );
    c
}

/// The dd results of a `swapper`.
fn swapper_rc(c: &Container, out: &TempDir) -> String {
    c.create_ok();
    c.start_ok();
    assert!(
        poll_until(Duration::from_secs(120), || out.join("rc").exists()),
        "the allocations did not finish: memory.events {}",
        cgroup_file(&c.id, "memory.events")
    );
    fs::read_to_string(out.join("rc"))
        .unwrap()
        .trim()
        .to_string()
}

/// memory.swap.max: with memory.limit 32 MiB and memory+swap 64 MiB (swap.max 32 MiB) a
/// 48 MiB allocation succeeds, which only swapping can make room for, and a 96 MiB one is
/// OOM-killed; with memory+swap = limit (swap.max 0) the 48 MiB one is OOM-killed too.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn memory_swap_max_enforced() {
    if !on_v2_host("memory_swap_max_enforced") {
        return;
    }
    let _swap = Swap::ensure();
    let out = TempDir::new("g-swap-out");
    let c = swapper("g-swap", &out, 67108864);
    let rc = swapper_rc(&c, &out);
    assert_eq!(cgroup_file(&c.id, "memory.max"), "33554432");
    assert_eq!(cgroup_file(&c.id, "memory.swap.max"), "33554432");
    let events = cgroup_file(&c.id, "memory.swap.events");
    eprintln!(
        "g-swap: {rc}; memory.swap.events: {}",
        events.replace('\n', ", ")
    );
    assert_eq!(
        rc, "a=0 b=137",
        "48 MiB must fit in memory+swap, 96 MiB not"
    );
    assert!(
        cgroup_key(&c.id, "memory.events", "max") >= 1,
        "memory.max was never reached: {}",
        cgroup_file(&c.id, "memory.events")
    );
    assert!(cgroup_key(&c.id, "memory.events", "oom_kill") >= 1);
    // The 96 MiB allocation met the swap limit (or, once swap was full, the OOM killer).
    assert!(
        cgroup_key(&c.id, "memory.swap.events", "max") >= 1
            || cgroup_key(&c.id, "memory.swap.events", "fail") >= 1
            || cgroup_key(&c.id, "memory.events", "oom") >= 1,
        "{events}"
    );

    let out0 = TempDir::new("g-noswap-out");
    let c0 = swapper("g-noswap", &out0, 33554432);
    let rc0 = swapper_rc(&c0, &out0);
    assert_eq!(cgroup_file(&c0.id, "memory.swap.max"), "0");
    assert_eq!(
        rc0, "a=137 b=137",
        "without swap 48 MiB can't fit in 32 MiB"
    );
}

/// vm.nr_hugepages raised by `n` pages of the default size while a test runs.
struct HugePages {
    before: String,
}

impl HugePages {
    fn reserve(n: u64) -> HugePages {
        let path = "/proc/sys/vm/nr_hugepages";
        let before = fs::read_to_string(path).unwrap().trim().to_string();
        let want = before.parse::<u64>().unwrap() + n;
        fs::write(path, want.to_string()).unwrap();
        let got: u64 = fs::read_to_string(path).unwrap().trim().parse().unwrap();
        let pages = HugePages { before };
        assert!(
            got >= want,
            "only {got} of {want} huge pages could be reserved"
        );
        pages
    }
}

impl Drop for HugePages {
    fn drop(&mut self) {
        let _ = fs::write("/proc/sys/vm/nr_hugepages", &self.before);
    }
}

/// True if the root cgroup offers `controller`; else a visible skip line.
fn offers(controller: &str, test: &str) -> bool {
    let have = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap_or_default();
    if have.split_whitespace().any(|c| c == controller) {
        return true;
    }
    skipped(
        test,
        &format!("the kernel has no {controller} cgroup controller"),
    );
    false
}

/// hugetlb.2MB.max: with a limit of one 2 MiB page, the container can allocate one huge
/// page (fallocate on a hugetlbfs mount) but not a second; hugetlb.2MB.current and
/// .events show it.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn hugetlb_max_enforced() {
    if !on_v2_host("hugetlb_max_enforced") || !offers("hugetlb", "hugetlb_max_enforced") {
        return;
    }
    let _pages = HugePages::reserve(4);
    let out = TempDir::new("g-huge-out");
    let mut c = Container::new("g-huge");
    c.add_mount(bind("/out", out.path(), &["bind", "rw"]));
    c.add_mount(
        json!({"destination": "/huge", "type": "hugetlbfs", "source": "hugetlbfs",
        "options": ["pagesize=2M"]}),
    );
    c.config["linux"]["resources"] =
        json!({"hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}]});
    c.sh("fallocate -l 2097152 /huge/a 2>/out/err; a=$?; \
          fallocate -l 2097152 /huge/b 2>>/out/err; b=$?; \
          echo \"a=$a b=$b\" >/out/tmp; mv /out/tmp /out/rc; sleep 100");
    c.create_ok();
    assert_eq!(cgroup_file(&c.id, "hugetlb.2MB.max"), "2097152");
    c.start_ok();
    assert!(
        poll_until(Duration::from_secs(30), || out.join("rc").exists()),
        "the allocations did not finish"
    );
    let rc = fs::read_to_string(out.join("rc")).unwrap();
    let err = fs::read_to_string(out.join("err")).unwrap_or_default();
    assert!(rc.starts_with("a=0 "), "one huge page must fit: {rc} {err}");
    assert!(
        !rc.contains("b=0"),
        "a second huge page went past the limit: {rc}"
    );
    assert_eq!(cgroup_file(&c.id, "hugetlb.2MB.current"), "2097152");
    assert!(
        cgroup_key(&c.id, "hugetlb.2MB.events", "max") >= 1,
        "hugetlb.2MB.events: {}",
        cgroup_file(&c.id, "hugetlb.2MB.events")
    );
}

/// rdma.max: the guest has no RDMA device (no rdma_rxe in its kernel), so a limit for one
/// can't be written: create fails and leaves no cgroup. With a device, the limit would land
/// in rdma.max (checked where there is one).
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn rdma_max_needs_the_device() {
    if !on_v2_host("rdma_max_needs_the_device") || !offers("rdma", "rdma_max_needs_the_device") {
        return;
    }
    let devices: Vec<String> = fs::read_dir("/sys/class/infiniband")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let mut c = sleeper("g-rdma");
    let Some(dev) = devices.first() else {
        eprintln!(
            "rdma_max_needs_the_device: no RDMA device in the guest: only the refusal of a \
             limit for a missing one is checked"
        );
        c.config["linux"]["resources"] =
            json!({"rdma": {"corten0": {"hcaHandles": 2, "hcaObjects": 100}}});
        let out = c.create();
        out.fails();
        if !is_runc() {
            assert!(
                out.stderr.contains("rdma.max")
                    && out.stderr.to_lowercase().contains("no such device"),
                "{out}"
            );
        }
        assert!(
            !cgroup_dir(&c.id).exists(),
            "a failed create left its cgroup"
        );
        c.assert_no_leftovers();
        return;
    };
    c.config["linux"]["resources"] =
        json!({"rdma": {dev.as_str(): {"hcaHandles": 2, "hcaObjects": 100}}});
    c.create_ok();
    assert_eq!(
        cgroup_file(&c.id, "rdma.max"),
        format!("{dev} hca_handle=2 hca_object=100")
    );
}

/// Switches the iocost controller on for a disk while a test runs (io.weight per device
/// needs it); off again on drop. None, with a skip line, where the kernel refuses.
struct IoCost {
    dev: String,
}

impl IoCost {
    fn enable(dev: &str, test: &str) -> Option<IoCost> {
        let qos = Path::new("/sys/fs/cgroup/io.cost.qos");
        match fs::write(qos, format!("{dev} enable=1")) {
            Ok(()) => Some(IoCost {
                dev: dev.to_string(),
            }),
            Err(e) => {
                skipped(test, &format!("io.weight per device: iocost on {dev}: {e}"));
                None
            }
        }
    }
}

impl Drop for IoCost {
    fn drop(&mut self) {
        let _ = fs::write(
            "/sys/fs/cgroup/io.cost.qos",
            format!("{} enable=0", self.dev),
        );
    }
}

/// io.weight: blockIO.weight becomes the default weight (runc's 10-1000 → 1-10000
/// conversion), and weightDevice a per-device line where the kernel's iocost controller
/// is on for the disk.
#[test]
#[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
fn io_weight_written() {
    if !on_v2_host("io_weight_written") {
        return;
    }
    let mut c = sleeper("g-ioweight");
    c.set("/linux/resources", json!({"blockIO": {"weight": 500}}));
    c.create_ok();
    let weight = cgroup_file(&c.id, "io.weight");
    let default = weight.lines().next().unwrap_or_default().to_string();
    if is_runc() {
        assert_ne!(default, "default 100", "weight not written: {weight}");
    } else {
        assert_eq!(default, "default 4950", "{weight}");
    }
    drop(c);

    use std::os::unix::fs::MetadataExt;
    let dev = fs::metadata("/").unwrap().dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let Some(_iocost) = IoCost::enable(&format!("{major}:{minor}"), "io_weight_written") else {
        return;
    };
    let mut c = sleeper("g-ioweight-dev");
    c.set(
        "/linux/resources",
        json!({"blockIO": {"weight": 500, "weightDevice": [
            {"major": major, "minor": minor, "weight": 200}
        ]}}),
    );
    c.create_ok();
    let weight = cgroup_file(&c.id, "io.weight");
    let line = format!("{major}:{minor} ");
    let dev_line = weight.lines().find(|l| l.starts_with(&line));
    if is_runc() {
        // Debian 12's runc (1.1) leaves weightDevice out on cgroup v2.
        eprintln!("io_weight_written: runc's io.weight: {weight:?}");
        skip!("Debian 12's runc leaves weightDevice out on cgroup v2");
    }
    // 200 → 1 + 190 * 9999 / 990 = 1920
    assert_eq!(
        dev_line,
        Some(format!("{major}:{minor} 1920").as_str()),
        "{weight}"
    );
}
