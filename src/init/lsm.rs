//! LSM labels: `process.apparmorProfile`, `process.selinuxLabel` and `linux.mountLabel`.
//!
//! The exec labels are written to the process's own thread-self/attr files and take
//! effect at execve: the init's and every `exec`'d process's (`finalize`, runc's standard
//! and setns inits). The files are reached through the host's procfs (the init opens it
//! before pivot_root, `corten exec` before it forks: the container's /proc may be missing
//! or be anything the image or the container mounted), each one checked to be on procfs,
//! and written just before execve.
//!
//! When the host has the LSM disabled, corten does what runc does:
//! - apparmorProfile: runc writes `exec <profile>` anyway and the write fails, so the
//!   container (or the exec'd process) does not start. corten fails too, at `create` or
//!   `exec` before any process exists, with a clear message (a confinement that was asked
//!   for, in the config, the `--process` file or `exec --apparmor`, is never silently
//!   dropped).
//! - selinuxLabel: runc's validation refuses it ("selinux label is specified in config,
//!   but selinux is disabled or not supported"); corten refuses it the same way.
//! - mountLabel: ignored (a `context=` option would make every mount fail on a kernel
//!   without SELinux, and without SELinux there is nothing to label).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{Mount, Process, Spec};

/// Which LSMs the host has enabled.
#[derive(Clone, Copy, Debug, Default)]
pub struct Host {
    pub apparmor: bool,
    pub selinux: bool,
}

impl Host {
    pub fn detect() -> Host {
        Host {
            apparmor: apparmor_enabled(),
            selinux: selinux_enabled(),
        }
    }
}

/// runc's test: the securityfs directory exists and the module parameter says Y.
fn apparmor_enabled() -> bool {
    Path::new("/sys/kernel/security/apparmor").exists()
        && std::fs::read("/sys/module/apparmor/parameters/enabled")
            .is_ok_and(|b| b.first() == Some(&b'Y'))
}

/// selinuxfs is mounted at /sys/fs/selinux (checked by its magic) and has `enforce`.
fn selinux_enabled() -> bool {
    const SELINUX_MAGIC: libc::c_long = 0xf97c_ff8c;
    let fs = Path::new("/sys/fs/selinux");
    fs.join("enforce").exists()
        && nix::sys::statfs::statfs(fs)
            .is_ok_and(|s| s.filesystem_type().0 as libc::c_long == SELINUX_MAGIC)
}

fn profile(process: &Process) -> Option<&str> {
    process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
}

fn selinux_label(process: &Process) -> Option<&str> {
    process.selinux_label().as_deref().filter(|l| !l.is_empty())
}

/// Refuses labels the host can't apply (see the module comment), before anything exists.
pub fn check_host(spec: &Spec, host: Host) -> Result<()> {
    match spec.process() {
        Some(process) => check_process(process, host),
        None => Ok(()),
    }
}

/// Refuses the labels of a process (the config's, or an exec'd one's) the host can't apply.
pub fn check_process(process: &Process, host: Host) -> Result<()> {
    if let Some(p) = profile(process)
        && !host.apparmor
    {
        bail!("process.apparmorProfile {p:?} is set but AppArmor is not enabled on this host");
    }
    if let Some(l) = selinux_label(process)
        && !host.selinux
    {
        bail!("process.selinuxLabel {l:?} is set but SELinux is not enabled on this host");
    }
    Ok(())
}

/// Where the per-thread attribute files are, and how an opened one is proven to be on
/// procfs. In production that is `thread-self/attr` under the host's /proc, opened as a
/// directory fd before the process enters the container's mount namespace (the init:
/// before pivot_root; an exec'd process: by `corten exec`, on the host), so nothing the
/// container mounts over its own /proc is ever written; each file is also checked with
/// fstatfs PROC_SUPER_MAGIC (`super::check_procfs`). Unit tests inject a scratch
/// directory and a check that accepts it, so the write path is tested on hosts without
/// AppArmor or SELinux.
pub struct ProcAttr {
    dir: OwnedFd,
    /// For messages: what `dir` is.
    name: PathBuf,
    verify: fn(&OwnedFd) -> Result<()>,
}

impl ProcAttr {
    /// The host's /proc, opened now; `thread-self` through it is whichever thread uses it
    /// later, in any pid namespace below the host's.
    pub fn host() -> Result<ProcAttr> {
        let dir = Path::new("/proc");
        let fd = open_dir(dir)?;
        super::check_procfs(&fd).context("/proc")?;
        Ok(ProcAttr {
            dir: fd,
            name: dir.to_path_buf(),
            verify: super::check_procfs,
        })
    }

    fn rel(name: &str) -> PathBuf {
        Path::new("thread-self/attr").join(name)
    }

    /// Opens `thread-self/attr/<name>` for writing, refusing a final symlink and non-procfs.
    fn open(&self, name: &str) -> Result<OwnedFd> {
        use nix::fcntl::OFlag;
        let rel = Self::rel(name);
        let shown = self.name.join(&rel);
        let fd = nix::fcntl::openat(
            &self.dir,
            &rel,
            OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .with_context(|| format!("open {}", shown.display()))?;
        (self.verify)(&fd).with_context(|| format!("{}", shown.display()))?;
        Ok(fd)
    }

    /// AppArmor's own file (Linux 5.1+), or the shared one of older kernels.
    fn apparmor_exec(&self) -> &'static str {
        let own = Self::rel("apparmor/exec");
        if nix::sys::stat::fstatat(&self.dir, &own, nix::fcntl::AtFlags::empty()).is_ok() {
            "apparmor/exec"
        } else {
            "exec"
        }
    }

    /// Writes `value` to attr/<name> now (for keycreate).
    fn write(&self, name: &str, value: &str) -> Result<()> {
        let fd = self.open(name)?;
        nix::unistd::write(&fd, value.as_bytes())
            .with_context(|| format!("write {}", self.name.join(Self::rel(name)).display()))?;
        Ok(())
    }
}

#[cfg(test)]
impl ProcAttr {
    /// `base` standing in for /proc (its `thread-self/attr/...` files), opened files
    /// checked with `verify`.
    pub fn scratch(base: &Path, verify: fn(&OwnedFd) -> Result<()>) -> ProcAttr {
        ProcAttr {
            dir: open_dir(base).unwrap(),
            name: base.to_path_buf(),
            verify,
        }
    }
}

fn open_dir(dir: &Path) -> Result<OwnedFd> {
    use nix::fcntl::OFlag;
    nix::fcntl::open(
        dir,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .with_context(|| format!("open {}", dir.display()))
}

/// The exec labels to write just before execve, their files already opened.
pub struct ExecLabels {
    writes: Vec<(OwnedFd, String, &'static str)>,
}

impl ExecLabels {
    /// Opens the attribute files the process's labels need on this host.
    pub fn open(process: &Process, host: Host, attrs: &ProcAttr) -> Result<ExecLabels> {
        check_process(process, host)?;
        let mut writes = Vec::new();
        if let Some(p) = profile(process) {
            let fd = attrs
                .open(attrs.apparmor_exec())
                .context("process.apparmorProfile")?;
            writes.push((fd, format!("exec {p}"), "process.apparmorProfile"));
        }
        if let Some(l) = selinux_label(process) {
            let fd = attrs.open("exec").context("process.selinuxLabel")?;
            writes.push((fd, l.to_string(), "process.selinuxLabel"));
        }
        Ok(ExecLabels { writes })
    }

    /// Writes the labels; they apply at the next execve.
    pub fn apply(&self) -> Result<()> {
        for (fd, value, field) in &self.writes {
            nix::unistd::write(fd, value.as_bytes())
                .with_context(|| format!("{field}: write {value:?} to the exec attribute"))?;
        }
        Ok(())
    }
}

/// Labels the keys the init creates (the session keyring) with the process label, as runc
/// does; SELinux resets it at execve.
pub fn set_key_label(process: &Process, host: Host, attrs: &ProcAttr) -> Result<()> {
    match selinux_label(process) {
        Some(l) if host.selinux => attrs
            .write("keycreate", l)
            .context("process.selinuxLabel: label the session keyring"),
        _ => Ok(()),
    }
}

/// `linux.mountLabel` when it applies: set, and SELinux enabled.
pub fn mount_label(spec: &Spec, host: Host) -> Option<&str> {
    spec.linux()
        .as_ref()
        .and_then(|l| l.mount_label().as_deref())
        .filter(|l| !l.is_empty() && host.selinux)
}

/// `m` with `context="<label>"` added to its options when its filesystem takes one, like
/// runc's label.FormatMountLabel: not for binds (they keep their source's labels), proc,
/// sysfs and cgroup filesystems (labelled by policy) or mqueue (runc relabels its root
/// instead; corten leaves it to policy).
pub fn label_mount<'a>(m: &'a Mount, label: Option<&str>) -> std::borrow::Cow<'a, Mount> {
    use std::borrow::Cow;
    let Some(label) = label else {
        return Cow::Borrowed(m);
    };
    let typ = m.typ().as_deref().unwrap_or("");
    let opts = m.options().as_deref().unwrap_or(&[]);
    let skip = matches!(
        typ,
        "" | "bind" | "proc" | "sysfs" | "cgroup" | "cgroup2" | "mqueue"
    ) || opts.iter().any(|o| o == "bind" || o == "rbind");
    if skip {
        return Cow::Borrowed(m);
    }
    let mut labelled = m.clone();
    let mut opts = opts.to_vec();
    opts.push(format!("context=\"{label}\""));
    labelled.set_options(Some(opts));
    Cow::Owned(labelled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// A scratch directory shaped like /proc/thread-self, with a check that accepts it:
    /// the production check (PROC_SUPER_MAGIC) would refuse it, as
    /// `production_check_refuses_a_scratch_dir` shows.
    fn scratch(apparmor_dir: bool) -> (PathBuf, ProcAttr) {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let base = std::env::temp_dir().join(format!("corten-lsm-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let dir = base.join("thread-self");
        fs::create_dir_all(dir.join("attr/apparmor")).unwrap();
        for f in ["attr/exec", "attr/keycreate"] {
            fs::write(dir.join(f), "").unwrap();
        }
        if apparmor_dir {
            fs::write(dir.join("attr/apparmor/exec"), "").unwrap();
        }
        (dir, ProcAttr::scratch(&base, |_| Ok(())))
    }

    fn process(v: serde_json::Value) -> Process {
        let mut base =
            serde_json::json!({"user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["sh"]});
        base.as_object_mut()
            .unwrap()
            .extend(v.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    const BOTH: Host = Host {
        apparmor: true,
        selinux: true,
    };

    #[test]
    fn writes_exec_labels_and_key_label() {
        let (dir, attrs) = scratch(true);
        let p = process(serde_json::json!({
            "apparmorProfile": "corten-test", "selinuxLabel": "system_u:system_r:container_t:s0"
        }));
        let labels = ExecLabels::open(&p, BOTH, &attrs).unwrap();
        // Nothing is written before apply.
        assert_eq!(
            fs::read_to_string(dir.join("attr/apparmor/exec")).unwrap(),
            ""
        );
        labels.apply().unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("attr/apparmor/exec")).unwrap(),
            "exec corten-test"
        );
        assert_eq!(
            fs::read_to_string(dir.join("attr/exec")).unwrap(),
            "system_u:system_r:container_t:s0"
        );
        set_key_label(&p, BOTH, &attrs).unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("attr/keycreate")).unwrap(),
            "system_u:system_r:container_t:s0"
        );
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn apparmor_falls_back_to_the_shared_file() {
        let (dir, attrs) = scratch(false);
        let p = process(serde_json::json!({"apparmorProfile": "corten-test"}));
        ExecLabels::open(&p, BOTH, &attrs).unwrap().apply().unwrap();
        assert_eq!(
            fs::read_to_string(dir.join("attr/exec")).unwrap(),
            "exec corten-test"
        );
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn refuses_symlinks_and_disabled_lsms() {
        let (dir, attrs) = scratch(false);
        fs::remove_file(dir.join("attr/exec")).unwrap();
        std::os::unix::fs::symlink("/dev/null", dir.join("attr/exec")).unwrap();
        let p = process(serde_json::json!({"apparmorProfile": "x"}));
        assert!(ExecLabels::open(&p, BOTH, &attrs).is_err());
        let e = ExecLabels::open(&p, Host::default(), &attrs)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("AppArmor is not enabled"), "{e}");
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn production_check_refuses_a_scratch_dir() {
        let (dir, _) = scratch(false);
        let attrs = ProcAttr::scratch(dir.parent().unwrap(), crate::init::check_procfs);
        let p = process(serde_json::json!({"apparmorProfile": "x"}));
        let e = format!("{:#}", ExecLabels::open(&p, BOTH, &attrs).err().unwrap());
        assert!(e.contains("not on procfs"), "{e}");
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    /// The production files: the host's procfs passes the check, from any thread.
    #[test]
    fn host_procfs_attr_files_open() {
        let attrs = ProcAttr::host().unwrap();
        attrs.open("exec").unwrap();
        std::thread::scope(|s| s.spawn(|| attrs.open("exec").unwrap()).join().unwrap());
    }

    #[test]
    fn mount_label_goes_to_tmpfs_not_binds_or_proc() {
        let mount = |v: serde_json::Value| -> Mount { serde_json::from_value(v).unwrap() };
        let tmpfs = mount(
            serde_json::json!({"destination": "/tmp", "type": "tmpfs", "options": ["nosuid"]}),
        );
        let l = label_mount(&tmpfs, Some("system_u:object_r:container_file_t:s0"));
        assert_eq!(
            l.options().as_deref().unwrap(),
            [
                "nosuid",
                "context=\"system_u:object_r:container_file_t:s0\""
            ]
        );
        assert!(matches!(
            label_mount(&tmpfs, None),
            std::borrow::Cow::Borrowed(_)
        ));
        for m in [
            serde_json::json!({"destination": "/proc", "type": "proc"}),
            serde_json::json!({"destination": "/x", "type": "none", "options": ["rbind"]}),
            serde_json::json!({"destination": "/dev/mqueue", "type": "mqueue"}),
        ] {
            let m = mount(m);
            assert!(matches!(
                label_mount(&m, Some("l")),
                std::borrow::Cow::Borrowed(_)
            ));
        }
    }
}
