//! Loading and validating a bundle's config.json.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::idrange::{IdRange, parse_id_map};
use crate::spec_version::OCI_VERSION;

/// A loaded bundle: its absolute directory, the parsed config and its seccomp filter.
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    pub seccomp: Option<crate::seccomp::Program>,
}

impl Bundle {
    /// Reads `<dir>/config.json`, parses and validates it.
    pub fn load(dir: &Path) -> Result<Bundle> {
        Self::load_in(dir, None)
    }

    /// [`Bundle::load`] for state root `root`, whose seccomp program cache is used.
    pub fn load_in(dir: &Path, root: Option<&Path>) -> Result<Bundle> {
        let dir =
            std::fs::canonicalize(dir).with_context(|| format!("bundle {}", dir.display()))?;
        let path = dir.join("config.json");
        let bytes = std::fs::read(&path).with_context(|| format!("read {}", path.display()))?;
        let invalid = || format!("invalid {}", path.display());
        // With the path of a bad field in the message ("process.scheduler.policy: unknown
        // variant ..."), not just a line and column.
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        let parsed = serde_path_to_error::deserialize(de).or_else(|e| {
            // Scheduler flags as the spec spells them, which oci-spec names otherwise.
            let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                return Err(e);
            };
            if !crate::sched::spec_flag_names(&mut v, "/process/scheduler/flags") {
                return Err(e);
            }
            serde_path_to_error::deserialize(v)
        });
        let spec: Spec = match parsed {
            Ok(spec) => spec,
            Err(e) => {
                // The spec: a value that can't be mapped to the kernel MUST be an error
                // (runc 1.1 only warns); named as such.
                let unknown = serde_json::from_slice(&bytes)
                    .map(|v| unknown_capabilities(&v, "/process/capabilities"))
                    .unwrap_or_default();
                if !unknown.is_empty() {
                    bail!("{}: unknown capabilities {unknown:?}", invalid());
                }
                // A bad seccomp profile gets the message validation gives it.
                crate::seccomp::explain_parse_error(&bytes).with_context(invalid)?;
                return Err(e).with_context(|| format!("parse {}", path.display()));
            }
        };
        validate(&spec).with_context(invalid)?;
        // Compiled here, so that a bad profile fails before anything is made.
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Some(crate::seccomp::Program::build(s, root).with_context(invalid)?),
            None => None,
        };
        Ok(Bundle { dir, spec, seccomp })
    }

    /// The absolute rootfs path (root.path is relative to the bundle when not absolute).
    pub fn rootfs(&self) -> PathBuf {
        let root = self
            .spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default();
        self.dir.join(root)
    }
}

/// The capability names oci-spec doesn't know in the capabilities object at `pointer` of
/// `v` (sorted, once each).
pub fn unknown_capabilities(v: &serde_json::Value, pointer: &str) -> Vec<String> {
    let mut unknown: Vec<String> = v
        .pointer(pointer)
        .and_then(|c| c.as_object())
        .into_iter()
        .flat_map(|caps| caps.values())
        .filter_map(|set| set.as_array())
        .flatten()
        .filter(|c| serde_json::from_value::<oci_spec::runtime::Capability>((*c).clone()).is_err())
        .map(|c| c.as_str().unwrap_or_default().to_string())
        .collect();
    unknown.sort();
    unknown.dedup();
    unknown
}

/// Checks what must hold before anything is created.
pub fn validate(spec: &Spec) -> Result<()> {
    check_version(spec.version())?;
    let Some(root) = spec.root() else {
        bail!("root is required")
    };
    if root.path().as_os_str().is_empty() {
        bail!("root.path is required");
    }
    let Some(process) = spec.process() else {
        bail!("process is required")
    };
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        bail!("process.args must not be empty");
    }
    if !process.cwd().is_absolute() {
        bail!("process.cwd {:?} is not an absolute path", process.cwd());
    }
    let linux = spec.linux().as_ref();
    let namespaces = linux
        .and_then(|l| l.namespaces().as_ref())
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut seen = Vec::new();
    for ns in namespaces {
        if seen.contains(&ns.typ()) {
            bail!("namespace {} is listed twice", ns.typ());
        }
        seen.push(ns.typ());
    }
    let has = |t: LinuxNamespaceType| seen.contains(&t);
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        bail!("hostname requires a new uts namespace");
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        bail!("domainname requires a new uts namespace");
    }
    if linux
        .and_then(|l| l.time_offsets().as_ref())
        .is_some_and(|o| !o.is_empty())
        && !has(LinuxNamespaceType::Time)
    {
        // runc's wording.
        bail!("time namespace offsets specified, but time namespace isn't enabled in the config");
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            bail!(
                "mount destination {:?} is not an absolute path",
                m.destination()
            );
        }
    }
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let p = d.path();
        if !p.is_absolute() || p.file_name().is_none() {
            bail!("linux.devices: path {p:?} is not an absolute path to a file");
        }
    }
    crate::hooks::validate(spec)?;
    if let Some(r) = linux.and_then(|l| l.resources().as_ref()) {
        crate::cgroups::resources::validate(r).context("linux.resources")?;
    }
    if let Some(p) = linux.and_then(|l| l.cgroups_path().as_ref()) {
        crate::cgroups::validate_path(p)?;
    }
    let user_ns = namespaces
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::User);
    let new_user_ns =
        user_ns.is_some_and(|n| n.path().as_ref().is_none_or(|p| p.as_os_str().is_empty()));
    for (field, maps, parent_map) in [
        (
            "uidMappings",
            linux.and_then(|l| l.uid_mappings().as_ref()),
            "/proc/self/uid_map",
        ),
        (
            "gidMappings",
            linux.and_then(|l| l.gid_mappings().as_ref()),
            "/proc/self/gid_map",
        ),
    ] {
        let maps: Vec<IdRange> = maps
            .into_iter()
            .flatten()
            .map(|m| IdRange {
                inside: m.container_id(),
                outside: m.host_id(),
                size: m.size(),
            })
            .collect();
        if !maps.is_empty() && user_ns.is_none() {
            bail!("linux.{field} are given but there is no user namespace");
        }
        if new_user_ns {
            if maps.is_empty() {
                bail!("a new user namespace needs linux.{field}");
            }
            let parent = std::fs::read_to_string(parent_map)
                .map(|t| parse_id_map(&t))
                .unwrap_or_default();
            check_id_mappings(&maps, &parent).with_context(|| format!("linux.{field}"))?;
        }
    }
    if let Some(sysctl) = linux.and_then(|l| l.sysctl().as_ref()) {
        for key in sysctl.keys() {
            check_sysctl(key, &has)?;
        }
    }
    crate::sched::validate(process)?;
    if let Some(mp) = linux.and_then(|l| l.memory_policy().as_ref()) {
        crate::numa::plan(mp)?;
    }
    crate::netdev::validate(spec)?;
    crate::intelrdt::validate(spec)?;
    Ok(())
}

/// Major version 1 only: the spec promises compatibility within a major version.
fn check_version(version: &str) -> Result<()> {
    let major = version.split('.').next().unwrap_or("");
    if major != "1" || version.split('.').count() < 3 {
        bail!("unsupported ociVersion {version:?}: corten implements {OCI_VERSION}");
    }
    Ok(())
}

/// A sysctl is only allowed when it is namespaced and the container has that namespace
/// (runc's rule), so a container can never change the host's kernel settings; and, as
/// with runc, never kernel.hostname, which the hostname field sets.
fn check_sysctl(key: &str, has: &dyn Fn(LinuxNamespaceType) -> bool) -> Result<()> {
    use LinuxNamespaceType::*;
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    let needs = if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Ipc
    } else if key.starts_with("net.") {
        Network
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Uts
    } else {
        bail!("sysctl {key:?} is not namespaced and cannot be set in a container");
    };
    if !has(needs) {
        bail!("sysctl {key:?} requires a new {needs} namespace");
    }
    // runc's rule and words: the hostname field is the one way to set it (kernel.domainname
    // stays allowed, also next to domainname: the sysctl, written later, wins).
    if key == "kernel.hostname" {
        bail!("sysctl {key:?} is not allowed as it conflicts with the OCI \"hostname\" field");
    }
    if key.contains("..") || key.contains('/') && key.split('/').any(|c| c == "..") {
        bail!("sysctl {key:?} is not a valid key");
    }
    Ok(())
}

/// What the kernel would refuse with a bare EINVAL or EPERM, as clear errors: empty or
/// overflowing ranges, overlaps on either side, and host ids the caller's own user
/// namespace does not have (`parent`, the caller's map; empty = don't check).
pub fn check_id_mappings(maps: &[IdRange], parent: &[IdRange]) -> Result<()> {
    const LIMIT: u64 = 1 << 32;
    let end = |start: u32, size: u32| start as u64 + size as u64;
    for (i, m) in maps.iter().enumerate() {
        if m.size == 0 {
            bail!("[{i}] has size 0");
        }
        if end(m.inside, m.size) > LIMIT || end(m.outside, m.size) > LIMIT {
            bail!(
                "[{i}] ({} {} {}) runs past id 4294967295",
                m.inside,
                m.outside,
                m.size
            );
        }
        for (j, o) in maps.iter().enumerate().take(i) {
            let overlaps =
                |a: u32, b: u32| (a as u64) < end(b, o.size) && (b as u64) < end(a, m.size);
            if overlaps(m.inside, o.inside) {
                bail!("[{i}] and [{j}] overlap in the container's ids");
            }
            if overlaps(m.outside, o.outside) {
                bail!("[{i}] and [{j}] overlap in the host's ids");
            }
        }
        if !parent.is_empty() {
            // Every host id must be one the caller's namespace maps (ranges may chain).
            let mut id = m.outside as u64;
            let last = end(m.outside, m.size);
            while id < last {
                let Some(p) = parent
                    .iter()
                    .find(|p| p.inside as u64 <= id && id < end(p.inside, p.size))
                else {
                    bail!("[{i}] maps host id {id}, which the parent user namespace does not have");
                };
                id = end(p.inside, p.size);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_mappings() {
        let r = |inside, outside, size| IdRange {
            inside,
            outside,
            size,
        };
        let host = parse_id_map("         0          0 4294967295\n");
        assert_eq!(host, vec![r(0, 0, u32::MAX)]);
        check_id_mappings(&[r(0, 100000, 65536)], &host).unwrap();
        check_id_mappings(&[r(0, 1000, 1), r(1, 100000, 65536)], &host).unwrap();
        let err = |maps: &[IdRange], parent: &[IdRange]| {
            format!("{:#}", check_id_mappings(maps, parent).unwrap_err())
        };
        assert!(err(&[r(0, 1, 0)], &host).contains("size 0"));
        assert!(err(&[r(0, 100, 10), r(5, 200, 10)], &host).contains("container's ids"));
        assert!(err(&[r(0, 100, 10), r(10, 105, 10)], &host).contains("host's ids"));
        assert!(err(&[r(0, u32::MAX, 2)], &host).contains("past id"));
        // A nested namespace that has only 65536 ids.
        let nested = [r(0, 100000, 65536)];
        check_id_mappings(&[r(0, 0, 65536)], &nested).unwrap();
        assert!(err(&[r(0, 1, 65536)], &nested).contains("host id 65536"));
        // Adjacent parent ranges chain.
        check_id_mappings(&[r(0, 0, 20)], &[r(0, 5, 10), r(10, 50, 10)]).unwrap();
    }

    #[test]
    fn versions() {
        check_version("1.0.2").unwrap();
        check_version("1.2.0-rc.1").unwrap();
        assert!(check_version("2.0.0").is_err());
        assert!(check_version("0.1.0").is_err());
        assert!(check_version("1").is_err());
    }

    #[test]
    fn device_paths_are_absolute_anywhere() {
        let with_device = |path: &str| {
            let spec: Spec = serde_json::from_value(serde_json::json!({
                "ociVersion": "1.2.0", "root": {"path": "rootfs"},
                "process": {"args": ["sh"], "cwd": "/", "user": {"uid": 0, "gid": 0}},
                "linux": {"devices": [{"path": path, "type": "c", "major": 1, "minor": 3}]}
            }))
            .unwrap();
            validate(&spec)
        };
        for good in ["/dev/null2", "/foo-dev", "/mnt/x/dev"] {
            with_device(good).unwrap_or_else(|e| panic!("{good}: {e:#}"));
        }
        for bad in ["foo", "dev/null", "/", "/mnt/.."] {
            let e = format!("{:#}", with_device(bad).unwrap_err());
            assert!(e.contains("linux.devices"), "{bad}: {e}");
        }
    }

    #[test]
    fn sysctls_need_their_namespace() {
        let all = |_t: LinuxNamespaceType| true;
        let none = |_t: LinuxNamespaceType| false;
        check_sysctl("net.ipv4.ip_forward", &all).unwrap();
        assert!(check_sysctl("net.ipv4.ip_forward", &none).is_err());
        assert!(check_sysctl("kernel.panic", &all).is_err());
        check_sysctl("kernel.shmmax", &all).unwrap();
        check_sysctl("fs.mqueue.msg_max", &all).unwrap();
        check_sysctl("kernel.domainname", &all).unwrap();
        let e = check_sysctl("kernel.hostname", &all)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            r#"sysctl "kernel.hostname" is not allowed as it conflicts with the OCI "hostname" field"#
        );
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use serde_json::{Value, json};

        /// Where the hostile values go: every section of the spec a config can carry.
        const POINTERS: &[&str] = &[
            "/ociVersion",
            "/hostname",
            "/domainname",
            "/root",
            "/root/path",
            "/mounts",
            "/mounts/0",
            "/mounts/0/destination",
            "/mounts/0/options",
            "/process",
            "/process/args",
            "/process/env",
            "/process/cwd",
            "/process/user/uid",
            "/process/user/additionalGids",
            "/process/rlimits",
            "/process/capabilities",
            "/process/capabilities/bounding",
            "/process/oomScoreAdj",
            "/process/scheduler",
            "/process/ioPriority",
            "/process/consoleSize",
            "/process/terminal",
            "/hooks",
            "/hooks/prestart",
            "/annotations",
            "/linux",
            "/linux/namespaces",
            "/linux/namespaces/0",
            "/linux/uidMappings",
            "/linux/gidMappings",
            "/linux/devices",
            "/linux/cgroupsPath",
            "/linux/resources",
            "/linux/resources/memory",
            "/linux/resources/memory/limit",
            "/linux/resources/cpu",
            "/linux/resources/devices",
            "/linux/resources/pids",
            "/linux/resources/unified",
            "/linux/seccomp",
            "/linux/seccomp/syscalls",
            "/linux/sysctl",
            "/linux/maskedPaths",
            "/linux/readonlyPaths",
            "/linux/rootfsPropagation",
            "/linux/personality",
            "/linux/timeOffsets",
            "/linux/intelRdt",
            "/linux/memoryPolicy",
            "/linux/mountLabel",
        ];

        fn hostile() -> impl Strategy<Value = Value> {
            let fixed = prop::sample::select(vec![
                Value::Null,
                json!(true),
                json!(-1),
                json!(0),
                json!(u64::MAX),
                json!(i64::MIN),
                json!(1e300),
                json!(""),
                json!("\n"),
                json!("a\u{0}b"),
                json!("../../.."),
                json!("/"),
                json!([]),
                json!([null]),
                json!({}),
                json!([{"type": "pid", "path": "/proc/1/ns/pid"}]),
                json!([{"containerID": 0, "hostID": 4294967295u64, "size": 2}]),
                json!({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["x"]}]}),
                json!([{"destination": "/proc/../..", "type": "bind", "source": "/"}]),
                json!({"limit": -2, "swap": 0}),
            ]);
            let leaf = prop_oneof![
                any::<i64>().prop_map(Value::from),
                any::<u64>().prop_map(Value::from),
                ".{0,12}".prop_map(Value::from),
            ];
            let nested = leaf.prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::btree_map("[a-zA-Z]{1,8}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            });
            prop_oneof![fixed, nested]
        }

        /// Sets `pointer` in `v`, making the objects on the way.
        fn set(v: &mut Value, pointer: &str, value: Value) {
            let mut cur = v;
            for key in pointer.split('/').skip(1) {
                if !cur.is_object() && !cur.is_array() {
                    *cur = json!({});
                }
                cur = match cur {
                    Value::Array(a) => match key.parse::<usize>() {
                        Ok(i) if i < a.len() => &mut a[i],
                        _ => return,
                    },
                    other => other
                        .as_object_mut()
                        .expect("made an object above")
                        .entry(key)
                        .or_insert(Value::Null),
                };
            }
            *cur = value;
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(192))]

            /// A config with random hostile values in random places: loaded or refused
            /// with an error, never a panic.
            #[test]
            fn random_configs_load_or_fail_cleanly(
                edits in prop::collection::vec(
                    (prop::sample::select(POINTERS), hostile()), 1..4),
            ) {
                let mut config = crate::default_spec::default_spec(false);
                for (pointer, value) in edits {
                    set(&mut config, pointer, value);
                }
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let dir = std::env::temp_dir().join(format!(
                    "corten-config-prop-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
                let loaded = Bundle::load(&dir);
                std::fs::remove_dir_all(&dir).unwrap();
                if let Err(e) = loaded {
                    // An error names what is wrong on one line.
                    let msg = format!("{e:#}");
                    prop_assert!(!msg.is_empty());
                }
            }
        }
    }
}
