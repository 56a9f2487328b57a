//! Cgroup placement: find the host's hierarchies (v1, v2 or hybrid), make the container's
//! directory in each, put the init there, and remove it all again.
//!
//! `resources` translates linux.resources into the files written here.

pub mod devices_bpf;
pub mod resources;

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// One mounted cgroup hierarchy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hierarchy {
    pub mount: PathBuf,
    /// v1 controllers (and `name=...`) from the super options; empty for cgroup2.
    pub controllers: Vec<String>,
    pub v2: bool,
}

/// The hierarchies mounted in this mount namespace, one per superblock.
pub fn hierarchies() -> Result<Vec<Hierarchy>> {
    let info = fs::read_to_string("/proc/self/mountinfo").context("read /proc/self/mountinfo")?;
    Ok(parse_mountinfo(&info))
}

fn parse_mountinfo(info: &str) -> Vec<Hierarchy> {
    let mut out: Vec<Hierarchy> = Vec::new();
    for line in info.lines() {
        // id parent major:minor root mountpoint opts [optional...] - fstype source superopts
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post = post.split(' ');
        let (Some(fstype), _, Some(superopts)) = (post.next(), post.next(), post.next()) else {
            continue;
        };
        let fields: Vec<&str> = pre.split(' ').collect();
        // Only a hierarchy's root mount: a bind of a sub-cgroup would misplace us.
        if fields.len() < 5 || fields[3] != "/" {
            continue;
        }
        let mount = PathBuf::from(unescape(fields[4]));
        let h = match fstype {
            "cgroup2" => Hierarchy {
                mount,
                controllers: Vec::new(),
                v2: true,
            },
            "cgroup" => {
                let controllers = superopts
                    .split(',')
                    .filter(|o| {
                        !matches!(*o, "rw" | "ro" | "xattr" | "clone_children")
                            && !o.starts_with("release_agent=")
                    })
                    .map(str::to_string)
                    .collect();
                Hierarchy {
                    mount,
                    controllers,
                    v2: false,
                }
            }
            _ => continue,
        };
        if !out
            .iter()
            .any(|o| o.v2 == h.v2 && o.controllers == h.controllers)
        {
            out.push(h);
        }
    }
    out
}

/// mountinfo escapes space, tab, newline and backslash as octal.
pub fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            let oct: String = chars.by_ref().take(3).collect();
            if let Ok(v) = u8::from_str_radix(&oct, 8) {
                out.push(v as char);
                continue;
            }
            out.push('\\');
            out.push_str(&oct);
        } else {
            out.push(c);
        }
    }
    out
}

/// The container's cgroup: one directory per hierarchy.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct Cgroup {
    pub dirs: Vec<Dir>,
}

/// The container's directory in one hierarchy.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Dir {
    pub path: PathBuf,
    pub hierarchy: Hierarchy,
}

/// The path inside each hierarchy: runc's rule. Absolute paths are taken from the
/// hierarchy's root; relative ones are under the runtime's own cgroup; none gives `/<id>`.
pub fn container_path(cgroups_path: Option<&Path>, id: &str) -> PathBuf {
    match cgroups_path {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("/").join(id),
    }
}

/// Our own cgroup in the hierarchy with `controllers` (v1) or the unified one, from
/// /proc/self/cgroup, for relative cgroupsPath values.
fn own_cgroup(h: &Hierarchy, proc_cgroup: &str) -> PathBuf {
    for line in proc_cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let matches = if h.v2 {
            ctrls.is_empty()
        } else {
            let mut a: Vec<&str> = ctrls.split(',').collect();
            let mut b: Vec<&str> = h.controllers.iter().map(String::as_str).collect();
            a.sort_unstable();
            b.sort_unstable();
            a == b
        };
        if matches {
            return PathBuf::from(path);
        }
    }
    PathBuf::from("/")
}

impl Cgroup {
    /// Where the container's directory goes in every hierarchy (nothing is made yet, so
    /// the paths can be recorded first and a crash later still knows what to clean up).
    pub fn plan(cgroups_path: Option<&Path>, id: &str) -> Result<Cgroup> {
        let rel = container_path(cgroups_path, id);
        let proc_cgroup = if rel.is_absolute() {
            String::new()
        } else {
            fs::read_to_string("/proc/self/cgroup").context("read /proc/self/cgroup")?
        };
        let mut cg = Cgroup::default();
        for h in hierarchies()? {
            let base = if rel.is_absolute() {
                PathBuf::from("/")
            } else {
                own_cgroup(&h, &proc_cgroup)
            };
            let inner = base.join(&rel);
            let path = h.mount.join(inner.strip_prefix("/").unwrap_or(&inner));
            cg.dirs.push(Dir { path, hierarchy: h });
        }
        Ok(cg)
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|d| d.path.as_path())
    }

    /// Makes the planned directories. On error, whatever was made is removed.
    /// For an unprivileged caller: makes the directories it can (where cgroups are
    /// delegated to it) and drops the others. Returns the hierarchies dropped.
    pub fn keep_delegated(&mut self) -> Vec<PathBuf> {
        let mut dropped = Vec::new();
        self.dirs.retain(|d| {
            let ok = make_dir(&d.hierarchy, &d.path).is_ok()
                && nix::unistd::access(
                    &d.path.join("cgroup.procs"),
                    nix::unistd::AccessFlags::W_OK,
                )
                .is_ok();
            if !ok {
                dropped.push(d.hierarchy.mount.clone());
            }
            ok
        });
        dropped
    }

    pub fn make(&self) -> Result<()> {
        for dir in &self.dirs {
            if let Err(e) = make_dir(&dir.hierarchy, &dir.path) {
                self.destroy();
                return Err(e);
            }
        }
        Ok(())
    }

    /// Writes linux.resources. Each controller goes to the v1 hierarchy that has it, else
    /// to cgroup2 if it offers it; a controller the host lacks is an error naming it.
    pub fn apply(&self, r: &oci_spec::runtime::LinuxResources) -> Result<()> {
        resources::validate(r)?;
        let (v1, v2) = (resources::v1(r)?, resources::v2(r)?);
        let mut controllers: Vec<&str> = v1.iter().chain(&v2).map(|w| w.controller).collect();
        controllers.sort_unstable();
        controllers.dedup();
        for c in controllers {
            let on_v1 = self
                .dirs
                .iter()
                .find(|d| !d.hierarchy.v2 && d.hierarchy.controllers.iter().any(|x| x == c));
            let on_v2 = || {
                self.dirs
                    .iter()
                    .find(|d| d.hierarchy.v2 && v2_offers(&d.hierarchy, c))
            };
            if let Some(d) = on_v1 {
                write_controller(d, c, &v1)?;
            } else if c == "devices"
                && let Some(d) = self.dirs.iter().find(|d| d.hierarchy.v2)
            {
                // cgroup2 has no device files: the rules become an eBPF program.
                devices_bpf::attach(&d.path, r.devices().as_deref().unwrap_or(&[]))?;
            } else if let Some(d) = on_v2() {
                enable_v2_controller(d, c)?;
                write_controller(d, c, &v2)?;
            } else if let Some(why) = v2
                .iter()
                .find(|w| w.controller == c)
                .and_then(|w| w.unsupported)
                .filter(|_| self.dirs.iter().all(|d| d.hierarchy.v2))
            {
                bail!("{why}");
            } else {
                bail!(
                    "the {c} cgroup controller is not available on this host (linux.resources needs it)"
                );
            }
        }
        Ok(())
    }

    /// Moves `pid` into the cgroup in every hierarchy. The error is runc's: "adding pid N to
    /// cgroups: open …/cgroup.procs: no such file or directory".
    pub fn add(&self, pid: i32) -> Result<()> {
        for dir in self.paths() {
            let procs = dir.join("cgroup.procs");
            if let Err(e) = fs::write(&procs, pid.to_string()) {
                bail!(
                    "adding pid {pid} to cgroups: open {}: {}",
                    procs.display(),
                    crate::sys::io_text(&e)
                );
            }
        }
        Ok(())
    }

    /// The pids in the cgroup (from the first hierarchy that answers).
    pub fn pids(&self) -> Vec<i32> {
        for dir in self.paths() {
            if let Ok(s) = fs::read_to_string(dir.join("cgroup.procs")) {
                return s.lines().filter_map(|l| l.trim().parse().ok()).collect();
            }
        }
        Vec::new()
    }

    /// Frozen by `pause` (v1 freezer.state or v2 cgroup.freeze)?
    pub fn is_frozen(&self) -> bool {
        self.paths().any(|d| {
            fs::read_to_string(d.join("freezer.state")).is_ok_and(|s| s.trim() == "FROZEN")
                || fs::read_to_string(d.join("cgroup.freeze")).is_ok_and(|s| s.trim() == "1")
        })
    }

    /// Freezes (pause) or thaws (resume) every process: v1 freezer.state, v2 cgroup.freeze.
    /// Waits until the kernel reports the new state.
    pub fn set_frozen(&self, frozen: bool) -> Result<()> {
        let dir = self
            .dirs
            .iter()
            .find(|d| d.hierarchy.controllers.iter().any(|c| c == "freezer"))
            .map(|d| (d, "freezer.state", if frozen { "FROZEN" } else { "THAWED" }))
            .or_else(|| {
                self.dirs
                    .iter()
                    .find(|d| d.hierarchy.v2)
                    .map(|d| (d, "cgroup.freeze", if frozen { "1" } else { "0" }))
            });
        let Some((d, file, value)) = dir else {
            bail!("no freezer cgroup for this container")
        };
        let path = d.path.join(file);
        fs::write(&path, value).with_context(|| format!("write {value} to {}", path.display()))?;
        for _ in 0..1000 {
            let done = if file == "freezer.state" {
                fs::read_to_string(&path).is_ok_and(|s| s.trim() == value)
            } else {
                // cgroup.events reports "frozen 1" once every task is stopped.
                fs::read_to_string(d.path.join("cgroup.events"))
                    .is_ok_and(|s| s.lines().any(|l| l == format!("frozen {value}")))
            };
            if done {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        bail!("{} did not reach {value}", path.display())
    }

    /// A numeric statistic file of `controller` (e.g. memory.usage_in_bytes), if present.
    pub fn read_stat(&self, controller: &str, file: &str) -> Option<String> {
        self.dirs
            .iter()
            .filter(|d| d.hierarchy.v2 || d.hierarchy.controllers.iter().any(|c| c == controller))
            .find_map(|d| fs::read_to_string(d.path.join(file)).ok())
    }

    /// Thaws a frozen cgroup (best effort): pending signals are only acted on when thawed.
    pub fn thaw(&self) {
        for d in self.paths() {
            let _ = fs::write(d.join("freezer.state"), "THAWED");
            let _ = fs::write(d.join("cgroup.freeze"), "0");
        }
    }

    /// Kills whatever is left and removes the directories (deepest first), retrying while
    /// the kernel still counts exiting tasks. Best effort: never fails, reports leftovers.
    pub fn destroy(&self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        for dir in self.paths() {
            if !remove_dir(dir) {
                left.push(dir.to_path_buf());
            }
        }
        left
    }
}

/// Writes controller `c`'s entries of `writes` into `d`.
fn write_controller(d: &Dir, c: &str, writes: &[resources::Write]) -> Result<()> {
    for w in writes.iter().filter(|w| w.controller == c) {
        if let Some(why) = w.unsupported {
            bail!("{why}");
        }
        let path = d.path.join(&w.file);
        // Never O_CREAT: a file this kernel's controller lacks is ENOENT, named as such.
        let r = fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, w.value.as_bytes()));
        match r {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && w.optional => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{c} cgroup: this kernel's {c} controller has no {} (needed to apply {:?})",
                w.file,
                w.value
            ),
            r => {
                r.with_context(|| format!("{c} cgroup: write {:?} to {}", w.value, path.display()))?
            }
        }
    }
    Ok(())
}

/// cgroup2's name for a controller group ("blkio" is "io" there).
fn v2_name(c: &str) -> &str {
    if c == "blkio" { "io" } else { c }
}

/// Does this cgroup2 hierarchy offer controller `c`? ("cgroup.*" files always exist.)
fn v2_offers(h: &Hierarchy, c: &str) -> bool {
    c == "cgroup"
        || fs::read_to_string(h.mount.join("cgroup.controllers"))
            .is_ok_and(|s| s.split_whitespace().any(|x| x == v2_name(c)))
}

/// Enables `c` in cgroup.subtree_control of every ancestor of `d` (cgroup2 only lets a
/// child use a controller its parent delegates).
fn enable_v2_controller(d: &Dir, c: &str) -> Result<()> {
    if c == "cgroup" {
        return Ok(());
    }
    let c = v2_name(c);
    let mut ancestors: Vec<&Path> = d
        .path
        .ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(&d.hierarchy.mount))
        .collect();
    ancestors.reverse();
    for a in ancestors {
        let file = a.join("cgroup.subtree_control");
        let on = fs::read_to_string(&file).unwrap_or_default();
        if !on.split_whitespace().any(|x| x == c) {
            fs::write(&file, format!("+{c}"))
                .with_context(|| format!("enable {c} in {}", file.display()))?;
        }
    }
    Ok(())
}

fn make_dir(h: &Hierarchy, dir: &Path) -> Result<()> {
    // Create level by level: a new v1 cpuset cgroup starts with no cpus/mems, and a pid
    // can't join it until they are copied from the parent.
    let mut missing = Vec::new();
    let mut p = dir;
    while !p.exists() {
        missing.push(p.to_path_buf());
        match p.parent() {
            Some(parent) if parent != h.mount => p = parent,
            _ => break,
        }
    }
    for d in missing.iter().rev() {
        match fs::create_dir(d) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("create cgroup {}", d.display())),
        }
        if h.controllers.iter().any(|c| c == "cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let own = fs::read_to_string(d.join(file)).unwrap_or_default();
                if own.trim().is_empty() {
                    let parent = d.parent().unwrap_or(d);
                    let value = fs::read_to_string(parent.join(file))
                        .with_context(|| format!("read {}", parent.join(file).display()))?;
                    fs::write(d.join(file), value.trim())
                        .with_context(|| format!("write {}", d.join(file).display()))?;
                }
            }
        }
    }
    Ok(())
}

/// Kills the tasks in `dir` and removes it; true when it is gone.
fn remove_dir(dir: &Path) -> bool {
    // About 5 s: processes killed with the container (an exec'd one, whose parent is
    // outside the pid namespace) can take a while to leave under load.
    for attempt in 0..260 {
        match fs::remove_dir(dir) {
            Ok(()) => return true,
            Err(e) if e.kind() == ErrorKind::NotFound => return true,
            Err(_) => {}
        }
        // Subdirectories made inside the container (nested cgroups) go first.
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    remove_dir(&e.path());
                }
            }
        }
        if let Ok(procs) = fs::read_to_string(dir.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) has no memory effects.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(if attempt < 10 { 2 } else { 20 }));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
25 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 25 0:26 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
32 31 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
35 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:14 - cgroup cgroup rw,cpu,cpuacct
36 31 0:31 / /sys/fs/cgroup/memory rw shared:15 - cgroup cgroup rw,memory
37 31 0:32 / /sys/fs/cgroup/systemd rw shared:16 - cgroup cgroup rw,xattr,name=systemd,release_agent=/x
38 31 0:31 /sub /mnt/memsub rw - cgroup cgroup rw,memory
39 31 0:31 / /mnt/mem\\040copy rw - cgroup cgroup rw,memory
";

    #[test]
    fn parses_hybrid_layout() {
        let h = parse_mountinfo(HYBRID);
        assert_eq!(h.len(), 4, "{h:?}");
        assert!(h[0].v2 && h[0].mount == Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(h[1].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(h[2].controllers, vec!["memory"]);
        assert_eq!(h[3].controllers, vec!["name=systemd"]);
    }

    #[test]
    fn default_and_relative_paths() {
        assert_eq!(container_path(None, "abc"), PathBuf::from("/abc"));
        assert_eq!(
            container_path(Some(Path::new("/x/y")), "abc"),
            PathBuf::from("/x/y")
        );
        let h = Hierarchy {
            mount: "/m".into(),
            controllers: vec!["cpu".into(), "cpuacct".into()],
            v2: false,
        };
        let pc = "12:memory:/a\n4:cpuacct,cpu:/user/1\n0::/unified\n";
        assert_eq!(own_cgroup(&h, pc), PathBuf::from("/user/1"));
        let v2 = Hierarchy {
            mount: "/u".into(),
            controllers: vec![],
            v2: true,
        };
        assert_eq!(own_cgroup(&v2, pc), PathBuf::from("/unified"));
    }

    /// linux.resources applied to a scratch directory laid out like a cgroup2 hierarchy.
    #[test]
    fn applies_v2_files_to_a_scratch_hierarchy() {
        let base = std::env::temp_dir().join(format!("corten-v2-scratch-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let leaf = base.join("ctr");
        fs::create_dir_all(&leaf).unwrap();
        fs::write(
            base.join("cgroup.controllers"),
            "cpuset cpu io memory hugetlb pids rdma misc\n",
        )
        .unwrap();
        fs::write(base.join("cgroup.subtree_control"), "").unwrap();
        // The interface files the kernel would have made (writes never create files).
        for f in [
            "memory.max",
            "memory.swap.max",
            "memory.low",
            "cpu.weight",
            "cpu.max",
            "cpuset.cpus",
            "pids.max",
            "io.weight",
            "io.max",
            "hugetlb.1GB.max",
            "rdma.max",
            "memory.oom.group",
        ] {
            fs::write(leaf.join(f), "").unwrap();
        }
        let h = Hierarchy {
            mount: base.clone(),
            controllers: vec![],
            v2: true,
        };
        let cg = Cgroup {
            dirs: vec![Dir {
                path: leaf.clone(),
                hierarchy: h,
            }],
        };
        let r: oci_spec::runtime::LinuxResources = serde_json::from_value(serde_json::json!({
            "memory": {"limit": 1048576, "swap": 3145728, "reservation": 524288},
            "cpu": {"shares": 2048, "quota": 50000, "period": 100000, "cpus": "0-1"},
            "pids": {"limit": 42},
            "blockIO": {"weight": 1000, "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 300}]},
            "hugepageLimits": [{"pageSize": "1GB", "limit": 0}],
            "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}},
            "unified": {"memory.oom.group": "1"}
        }))
        .unwrap();
        cg.apply(&r).unwrap();
        let read = |f: &str| fs::read_to_string(leaf.join(f)).unwrap();
        assert_eq!(read("memory.max"), "1048576");
        assert_eq!(
            read("memory.swap.max"),
            "2097152",
            "v2 swap excludes memory"
        );
        assert_eq!(read("memory.low"), "524288");
        assert_eq!(read("cpu.weight"), "79");
        assert_eq!(read("cpu.max"), "50000 100000");
        assert_eq!(read("cpuset.cpus"), "0-1");
        assert_eq!(read("pids.max"), "42");
        assert_eq!(read("io.weight"), "10000");
        assert_eq!(read("io.max"), "8:0 wiops=300");
        assert_eq!(read("hugetlb.1GB.max"), "0");
        assert_eq!(read("rdma.max"), "mlx5_1 hca_handle=3 hca_object=10000");
        assert_eq!(read("memory.oom.group"), "1");
        // Controllers were delegated from the parent (the scratch file keeps the last one).
        assert!(
            fs::read_to_string(base.join("cgroup.subtree_control"))
                .unwrap()
                .starts_with('+')
        );
        // A v1-only field on a v2 host is an error naming it.
        let bad: oci_spec::runtime::LinuxResources =
            serde_json::from_value(serde_json::json!({"memory": {"swappiness": 10}})).unwrap();
        assert!(
            cg.apply(&bad)
                .unwrap_err()
                .to_string()
                .contains("swappiness")
        );
        fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape("/mnt/a\\040b"), "/mnt/a b");
    }
}
