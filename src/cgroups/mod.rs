//! Cgroup placement: find the host's hierarchies (v1, v2 or hybrid), make the container's
//! directory in each, put the init there, and remove it all again.
//!
//! Confinement (runc's rules, and stricter where runc kills or removes what it did not
//! make): linux.cgroupsPath is cleaned lexically as an absolute path and always joined to
//! a hierarchy's mount, so `..` can't leave it; the root cgroup is refused; every directory
//! is checked to be on a cgroup filesystem before a pid is written or read there. corten
//! records which levels it made: only those are removed, and only the members of a cgroup
//! it made are the container's. A cgroup that existed before `create` is joined and left
//! as it was, its other processes untouched.
//!
//! `resources` translates linux.resources into the files written here.

pub mod dbus;
pub mod devices_bpf;
pub mod gvariant;
pub mod resources;
pub mod systemd;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use procfs::process::MountInfo;
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
    // procfs parses each line; it leaves the octal escapes of paths in place.
    for m in info.lines().filter_map(|l| MountInfo::from_line(l).ok()) {
        // Only a hierarchy's root mount: a bind of a sub-cgroup would misplace us.
        if m.root != "/" {
            continue;
        }
        let mount = PathBuf::from(unescape(&m.mount_point.to_string_lossy()));
        let h = match m.fs_type.as_str() {
            "cgroup2" => Hierarchy {
                mount,
                controllers: Vec::new(),
                v2: true,
            },
            "cgroup" => {
                // The super options come as a map: sorted, so that one hierarchy always
                // has one list (they are compared as sets everywhere else).
                let mut controllers: Vec<String> = m
                    .super_options
                    .iter()
                    .filter(|(k, _)| {
                        !matches!(
                            k.as_str(),
                            "rw" | "ro" | "xattr" | "clone_children" | "release_agent"
                        )
                    })
                    .map(|(k, v)| match v {
                        Some(v) => format!("{k}={v}"),
                        None => k.clone(),
                    })
                    .collect();
                controllers.sort();
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
    /// `make` has run: each `Dir::created` lists exactly the levels corten made. Before,
    /// it lists the levels that were missing when planned (recorded first, so that a
    /// create killed midway is still cleaned up): those are removed, but their members are
    /// never taken for the container's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub made: bool,
    /// --systemd-cgroup: the transient unit whose cgroup `dirs` is (see `systemd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<systemd::Unit>,
}

/// The container's directory in one hierarchy.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Dir {
    pub path: PathBuf,
    pub hierarchy: Hierarchy,
    /// The levels of `path` that corten made, shallowest first (the last is `path` itself
    /// when the container's cgroup is its own). Only these are removed. State files from
    /// before it was recorded have none: nothing is removed for them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<PathBuf>,
}

impl Dir {
    /// corten made the container's directory itself (not joined an existing one).
    fn owned(&self) -> bool {
        self.created.last() == Some(&self.path)
    }
}

/// `p` as an absolute path, cleaned lexically (runc's CleanPath): empty and "." parts are
/// dropped, ".." takes the part before it away and stops at "/". Joined to a hierarchy's
/// mount, the result can't leave it.
fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The path inside each hierarchy, cleaned: an absolute cgroupsPath is taken from the
/// hierarchy's root; a relative one is under the runtime's own cgroup (cleaned on its own
/// first, so "../x" is "x" there, as runc's); none gives `/<id>`.
pub fn container_path(cgroups_path: Option<&Path>, id: &str) -> PathBuf {
    match cgroups_path {
        Some(p) if p.is_absolute() => clean(p),
        Some(p) if !p.as_os_str().is_empty() => {
            let c = clean(p);
            c.strip_prefix("/").unwrap_or(&c).to_path_buf()
        }
        _ => PathBuf::from("/").join(id),
    }
}

/// Checks linux.cgroupsPath before anything is made: names the kernel can't take (a NUL
/// byte, a newline, more than 255 bytes) and the root cgroup are refused at once.
pub fn validate_path(p: &Path) -> Result<()> {
    if p.as_os_str().as_bytes().contains(&0) {
        bail!("linux.cgroupsPath {p:?}: contains a NUL byte");
    }
    for c in p.components() {
        if let Component::Normal(name) = c {
            if name.as_bytes().contains(&b'\n') {
                bail!("linux.cgroupsPath {p:?}: a cgroup name can't contain a newline");
            }
            if name.len() > 255 {
                bail!("linux.cgroupsPath {p:?}: a cgroup name is longer than 255 bytes");
            }
        }
    }
    if p.is_absolute() && clean(p) == Path::new("/") {
        bail!("linux.cgroupsPath {p:?} is the root cgroup, which can't be a container's cgroup");
    }
    Ok(())
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

/// The levels of `path` below `mount` (which it is under), shallowest first, `path` last.
fn levels<'a>(mount: &Path, path: &'a Path) -> Vec<&'a Path> {
    let mut v: Vec<&Path> = path
        .ancestors()
        .take_while(|a| *a != mount && a.starts_with(mount))
        .collect();
    v.reverse();
    v
}

/// A control file of a few bytes (freezer.state, cgroup.freeze) in one read: no stat and
/// no second read to see EOF, as a cgroup file gives its whole content to the first read.
fn read_small(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; 64];
    let n = fs::File::open(path)?.read(&mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

/// Is `p` on a cgroup filesystem (v1 or v2)?
fn on_cgroupfs(p: &Path) -> nix::Result<bool> {
    use nix::sys::statfs::{CGROUP_SUPER_MAGIC, CGROUP2_SUPER_MAGIC, statfs};
    let t = statfs(p)?.filesystem_type();
    Ok(t == CGROUP_SUPER_MAGIC || t == CGROUP2_SUPER_MAGIC)
}

/// Refuses a directory that is not on a cgroup filesystem (something mounted over a
/// cgroup, or a path that never led into one).
fn check_cgroupfs(p: &Path) -> Result<()> {
    match on_cgroupfs(p) {
        Ok(true) => Ok(()),
        Ok(false) => bail!("{} is not on a cgroup filesystem", p.display()),
        Err(e) => Err(e).with_context(|| format!("statfs {}", p.display())),
    }
}

impl Cgroup {
    /// On a v1 or hybrid host, where the container's `cgroup` mount at `dest` shows each
    /// hierarchy: a directory of the tmpfs at `dest` named as the host's mount point
    /// (`memory`, `cpu,cpuacct`: runc's layout), with that hierarchy's directory. Empty on
    /// a unified host, where `dest` is one cgroup2 mount. Used by the init's cgroup mount
    /// and by checkpoint/restore (CRIU is told these mounts are external, as runc does).
    pub fn v1_mounts(&self, dest: &Path) -> Vec<(PathBuf, &Dir)> {
        if let [only] = self.dirs.as_slice()
            && only.hierarchy.v2
        {
            return Vec::new();
        }
        self.dirs
            .iter()
            .filter_map(|d| Some((dest.join(d.hierarchy.mount.file_name()?), d)))
            .collect()
    }

    /// Where the container's directory goes in every hierarchy, and which of its levels
    /// are missing (nothing is made yet, so the plan can be recorded first and a crash
    /// later still knows what to clean up).
    pub fn plan(cgroups_path: Option<&Path>, id: &str) -> Result<Cgroup> {
        let want = container_path(cgroups_path, id);
        let proc_cgroup = if want.is_absolute() {
            String::new()
        } else {
            fs::read_to_string("/proc/self/cgroup").context("read /proc/self/cgroup")?
        };
        let mut cg = Cgroup::default();
        for h in hierarchies()? {
            let inner = if want.is_absolute() {
                want.clone()
            } else {
                clean(&own_cgroup(&h, &proc_cgroup).join(&want))
            };
            let rel = inner.strip_prefix("/").unwrap_or(&inner);
            if rel.as_os_str().is_empty() {
                bail!(
                    "linux.cgroupsPath {:?} resolves to the root cgroup of {}, which can't be a container's cgroup",
                    cgroups_path.unwrap_or(Path::new("")),
                    h.mount.display()
                );
            }
            let path = h.mount.join(rel);
            let created = levels(&h.mount, &path)
                .into_iter()
                .filter(|l| fs::symlink_metadata(l).is_err())
                .map(Path::to_path_buf)
                .collect();
            cg.dirs.push(Dir {
                path,
                hierarchy: h,
                created,
            });
        }
        Ok(cg)
    }

    fn paths(&self) -> impl Iterator<Item = &Path> {
        self.dirs.iter().map(|d| d.path.as_path())
    }

    /// For an unprivileged caller: makes the directories it can (where cgroups are
    /// delegated to it) and drops the others. Returns the hierarchies dropped.
    pub fn keep_delegated(&mut self) -> Vec<PathBuf> {
        let mut dropped = Vec::new();
        self.dirs.retain_mut(|d| {
            let ok = make_dir(d).is_ok()
                && nix::unistd::access(
                    &d.path.join("cgroup.procs"),
                    nix::unistd::AccessFlags::W_OK,
                )
                .is_ok();
            if !ok {
                let _ = remove_created(d);
                dropped.push(d.hierarchy.mount.clone());
            }
            ok
        });
        self.made = true;
        dropped
    }

    /// Makes the planned directories, level by level, and records which ones corten made;
    /// a level that exists already is joined and left as it is. On error, `created` still
    /// lists exactly what was made, for `destroy`.
    pub fn make(&mut self) -> Result<()> {
        if self.made {
            return Ok(());
        }
        let mut r = Ok(());
        for d in &mut self.dirs {
            if r.is_ok() {
                r = make_dir(d);
            } else {
                // Never reached: nothing of it is corten's.
                d.created.clear();
            }
        }
        r?;
        self.made = true;
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
            if on_cgroupfs(dir) == Ok(false) {
                bail!(
                    "adding pid {pid} to cgroups: {} is not on a cgroup filesystem",
                    dir.display()
                );
            }
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

    /// `add` for a process joining a running container (`exec`). On cgroup v2 the
    /// container's cgroup may hold no process of its own: an init that delegates (systemd
    /// in the container) has moved itself to a sub-cgroup and enabled controllers, and the
    /// kernel refuses members there (EBUSY). As runc does then, the process joins the
    /// init's cgroup instead, if that is the container's cgroup or below it.
    pub fn add_exec(&self, pid: i32, init_pid: i32) -> Result<()> {
        let err = match self.add(pid) {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        let [dir] = self.dirs.as_slice() else {
            return Err(err);
        };
        if !dir.hierarchy.v2 {
            return Err(err);
        }
        let Some(rel) = fs::read_to_string(format!("/proc/{init_pid}/cgroup"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("0::").map(String::from))
            })
        else {
            return Err(err);
        };
        let init_dir = dir.hierarchy.mount.join(
            clean(Path::new(&rel))
                .strip_prefix("/")
                .unwrap_or(Path::new("")),
        );
        if init_dir == dir.path || !init_dir.starts_with(&dir.path) {
            return Err(err);
        }
        crate::log::debug(&format!(
            "adding pid {pid} to the container's cgroup failed ({err:#}): joining the init's {}",
            init_dir.display()
        ));
        let procs = init_dir.join("cgroup.procs");
        fs::write(&procs, pid.to_string()).map_err(|e| {
            anyhow::anyhow!(
                "adding pid {pid} to cgroups: open {}: {} (after {err:#})",
                procs.display(),
                crate::sys::io_text(&e)
            )
        })
    }

    /// The pids in the cgroup (from the first hierarchy that answers).
    pub fn pids(&self) -> Vec<i32> {
        for dir in self.paths() {
            if let Some(pids) = read_procs(dir) {
                return pids;
            }
        }
        Vec::new()
    }

    /// The container's own processes as far as its cgroup tells: the members of the
    /// directories corten made (not of their sub-cgroups). A cgroup that existed before
    /// `create` is shared with processes that are not the container's: none from there.
    pub fn own_pids(&self) -> Vec<i32> {
        let mut pids: Vec<i32> = self
            .dirs
            .iter()
            .filter(|d| self.made && d.owned())
            .filter_map(|d| read_procs(&d.path))
            .flatten()
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Sends `sig` to the container's own processes (`own_pids`) but `except`, again to
    /// those forked meanwhile. For a container without a pid namespace of its own, whose
    /// init's death takes nothing along (runc's signalAllProcesses, minus sub-cgroups and
    /// cgroups it did not make). SIGKILL goes through cgroup.kill first where it can
    /// (`kill_own_v2`), which also catches processes forking at that moment.
    pub fn signal_own(&self, sig: i32, except: i32) {
        if sig == libc::SIGKILL {
            self.kill_own_v2();
        }
        let mut done = vec![except];
        for _ in 0..10 {
            let new: Vec<i32> = self
                .own_pids()
                .into_iter()
                .filter(|p| !done.contains(p))
                .collect();
            if new.is_empty() {
                break;
            }
            for &pid in &new {
                // SAFETY: kill(2) has no memory effects; a pid that just exited is ESRCH.
                unsafe { libc::kill(pid, sig) };
            }
            done.extend(new);
        }
    }

    /// Writes cgroup.kill (kernel 5.14+) of each cgroup2 directory corten made for the
    /// container, which SIGKILLs its members atomically, forks in progress included. Only
    /// where the directory has no sub-cgroups: cgroup.kill takes the whole subtree, and a
    /// sub-cgroup's processes need not be the container's (see `own_pids`).
    fn kill_own_v2(&self) {
        for d in self
            .dirs
            .iter()
            .filter(|d| self.made && d.owned() && d.hierarchy.v2)
        {
            if on_cgroupfs(&d.path) != Ok(true) {
                continue;
            }
            let descendants = fs::read_to_string(d.path.join("cgroup.stat"))
                .ok()
                .and_then(|s| {
                    s.lines().find_map(|l| {
                        l.strip_prefix("nr_descendants ")?
                            .trim()
                            .parse::<u64>()
                            .ok()
                    })
                });
            if descendants != Some(0) {
                continue;
            }
            let file = d.path.join("cgroup.kill");
            match fs::write(&file, "1") {
                Ok(()) => {
                    crate::log::debug(&format!("killed the cgroup: wrote 1 to {}", file.display()))
                }
                // An older kernel has no cgroup.kill: the signals below do it.
                Err(e) => crate::log::debug(&format!("write {}: {e}", file.display())),
            }
        }
    }

    /// Frozen by `pause` (v1 freezer.state or v2 cgroup.freeze)?
    pub fn is_frozen(&self) -> bool {
        // Only where the file can be (`list` asks this of every container): freezer.state
        // in the v1 freezer hierarchy, cgroup.freeze in cgroup2.
        self.dirs.iter().any(|d| {
            let (file, frozen) = if d.hierarchy.v2 {
                ("cgroup.freeze", "1")
            } else if d.hierarchy.controllers.iter().any(|c| c == "freezer") {
                ("freezer.state", "FROZEN")
            } else {
                return false;
            };
            read_small(&d.path.join(file)).is_ok_and(|s| s.trim_ascii() == frozen.as_bytes())
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

    /// Stops the container's systemd unit if corten started one (`systemd`), then removes
    /// the directories corten made, deepest first: the container's own with the
    /// sub-cgroups made in it (from inside, through its cgroup namespace; their processes
    /// died with its pid namespace), then the levels above it that nothing else uses.
    /// Kills nothing; a cgroup that existed before `create` is left as it is. Retries while
    /// the kernel still counts exiting tasks. Best effort: never fails, returns the
    /// container directories left.
    pub fn destroy(&self) -> Vec<PathBuf> {
        let mut left = Vec::new();
        if let Some(unit) = self.systemd.as_ref().filter(|u| u.started)
            && let Some(dir) = self.dirs.first()
            && let Err(e) = systemd::stop(unit, &dir.path)
        {
            crate::log::warn(&format!("--systemd-cgroup: {e:#}"));
        }
        let mut pending: Vec<&Dir> = self.dirs.iter().collect();
        // About 5 s: processes killed with the container (an exec'd one, whose parent is
        // outside the pid namespace) can take a while to leave under load.
        for attempt in 0..260 {
            let mut busy = Vec::new();
            for d in pending {
                match remove_created(d) {
                    Ok(()) => {}
                    Err(nix::errno::Errno::EBUSY) => busy.push(d),
                    Err(_) => left.push(d.path.clone()),
                }
            }
            pending = busy;
            if pending.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(if attempt < 10 { 2 } else { 20 }));
        }
        left.extend(pending.iter().map(|d| d.path.clone()));
        left
    }
}

/// The pids listed in `dir`/cgroup.procs, if `dir` is a cgroup.
fn read_procs(dir: &Path) -> Option<Vec<i32>> {
    if !on_cgroupfs(dir).ok()? {
        return None;
    }
    let s = fs::read_to_string(dir.join("cgroup.procs")).ok()?;
    Some(s.lines().filter_map(|l| l.trim().parse().ok()).collect())
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

/// Makes `d`'s levels that are missing, recording each one made in `d.created`.
fn make_dir(d: &mut Dir) -> Result<()> {
    let h = &d.hierarchy;
    d.created.clear();
    check_cgroupfs(&h.mount)?;
    for level in levels(&h.mount, &d.path) {
        // Level by level: a new v1 cpuset cgroup starts with no cpus/mems, and a pid
        // can't join it until they are copied from the parent.
        match fs::create_dir(level) {
            Ok(()) => d.created.push(level.to_path_buf()),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if !fs::symlink_metadata(level).is_ok_and(|m| m.is_dir()) {
                    bail!("cgroup {} exists and is not a directory", level.display());
                }
                check_cgroupfs(level)?;
                continue;
            }
            Err(e) => return Err(e).with_context(|| format!("create cgroup {}", level.display())),
        }
        check_cgroupfs(level)?;
        if h.controllers.iter().any(|c| c == "cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let own = fs::read_to_string(level.join(file)).unwrap_or_default();
                if own.trim().is_empty() {
                    let parent = level.parent().unwrap_or(level);
                    let value = fs::read_to_string(parent.join(file))
                        .with_context(|| format!("read {}", parent.join(file).display()))?;
                    fs::write(level.join(file), value.trim())
                        .with_context(|| format!("write {}", level.join(file).display()))?;
                }
            }
        }
    }
    Ok(())
}

/// Removes what corten made of `d`, deepest first. Ok once the container's directory is
/// gone (or was never corten's); the errno that keeps it otherwise. A level above it that
/// others use now is left without complaint.
fn remove_created(d: &Dir) -> Result<(), nix::errno::Errno> {
    for level in d.created.iter().rev() {
        match on_cgroupfs(level) {
            Ok(true) => {}
            Err(nix::errno::Errno::ENOENT) => continue,
            // Not a cgroup (or not reachable): never ours to remove.
            _ => return Ok(()),
        }
        let r = if *level == d.path {
            remove_tree(level)
        } else {
            rmdir(level)
        };
        match r {
            Ok(()) => {}
            Err(e) if *level == d.path => return Err(e),
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

/// rmdir(2); a directory already gone is no error.
fn rmdir(dir: &Path) -> Result<(), nix::errno::Errno> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(0))),
    }
}

/// Removes the cgroup `dir` with its sub-cgroups, deepest first (runc's RemovePath). Only
/// directories: a cgroup with processes stays (EBUSY).
fn remove_tree(dir: &Path) -> Result<(), nix::errno::Errno> {
    if rmdir(dir).is_ok() {
        return Ok(());
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                let _ = remove_tree(&e.path());
            }
        }
    }
    rmdir(dir)
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

    /// cgroupsPath is cleaned lexically, as runc's CleanPath: ".." can't climb above the
    /// hierarchy's root (absolute) or the runtime's own cgroup (relative).
    #[test]
    fn paths_are_cleaned_and_confined() {
        for (given, want) in [
            ("/../../../../tmp/x", "/tmp/x"),
            ("/a/./b//c/../d", "/a/b/d"),
            ("/a/b/", "/a/b"),
            ("../../x", "x"),
            ("a/../../b", "b"),
            ("./a", "a"),
        ] {
            assert_eq!(
                container_path(Some(Path::new(given)), "id"),
                PathBuf::from(want),
                "{given}"
            );
        }
        assert_eq!(
            container_path(Some(Path::new("")), "id"),
            PathBuf::from("/id")
        );
        // Relative: under the own cgroup, whatever its ".." says (a cgroup namespace shows
        // cgroups outside its root as "/..").
        let own = Path::new("/user/1");
        assert_eq!(
            clean(&own.join(container_path(Some(Path::new("../../../x")), "id"))),
            PathBuf::from("/user/1/x")
        );
        assert_eq!(
            levels(Path::new("/m"), Path::new("/m/a/b")),
            [Path::new("/m/a"), Path::new("/m/a/b")]
        );
    }

    #[test]
    fn invalid_cgroups_paths_are_refused() {
        use std::ffi::OsStr;
        let long = format!("/{}", "n".repeat(256));
        for (p, why) in [
            (OsStr::from_bytes(b"/a\0b"), "contains a NUL byte"),
            (OsStr::new("/a\nb/c"), "can't contain a newline"),
            (OsStr::new(long.as_str()), "longer than 255 bytes"),
            (OsStr::new("/"), "is the root cgroup"),
            (OsStr::new("/a/../.."), "is the root cgroup"),
            (OsStr::new("//."), "is the root cgroup"),
        ] {
            let e = validate_path(Path::new(p)).unwrap_err().to_string();
            assert!(
                e.starts_with("linux.cgroupsPath ") && e.contains(why),
                "{p:?}: {e}"
            );
        }
        for ok in ["/a", "a/b", "/a/../b", ".", "x.slice"] {
            validate_path(Path::new(ok)).unwrap();
        }
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
                created: Vec::new(),
            }],
            made: false,
            systemd: None,
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
