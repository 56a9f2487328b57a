//! config.json from an image config: `corten spec`'s default with the image's command,
//! environment, working directory, user and annotations, and what `pull` was given of
//! docker run's flags (user, env, workdir, read-only, memory, cpus, pids limit).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{Context, Result, bail};
use nix::fcntl::OFlag;
use oci_spec::image::{Config, ImageConfiguration};
use serde_json::{Value, json};

use crate::default_spec::default_spec;
use crate::passwd;
use crate::safepath::open_in_root;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the bundle needs besides the image config.
pub struct BundleInfo<'a> {
    pub reference: &'a str,
    pub manifest_digest: &'a str,
    pub platform: &'a super::platform::Platform,
    pub tty: bool,
    /// Replaces the image's Cmd when not empty.
    pub cmd: &'a [String],
    /// docker run's flags given at pull time.
    pub run: &'a RunOptions,
}

/// What docker users set on `docker run`, given to `pull` and written into config.json.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// `--user`: replaces the image's User (same forms: name, uid, name:group, uid:gid).
    pub user: Option<String>,
    /// `--env K=V`: added after the image's, replacing a variable of the same name.
    pub env: Vec<String>,
    /// `--workdir`: replaces the image's WorkingDir (absolute).
    pub workdir: Option<String>,
    /// `--read-only`: the rootfs mounted read-only.
    pub read_only: bool,
    /// `--memory`: bytes (memory.limit).
    pub memory: Option<i64>,
    /// `--cpus`: a CPU quota in CPUs (cpu.quota over a 100 ms period).
    pub cpus: Option<f64>,
    /// `--pids-limit`.
    pub pids_limit: Option<i64>,
}

impl RunOptions {
    /// docker's size syntax for `--memory`: a number with an optional b, k, m or g.
    pub fn parse_memory(s: &str) -> Result<i64> {
        let t = s.trim().to_ascii_lowercase();
        let (num, mult) = match t.char_indices().last() {
            Some((i, 'b')) => (&t[..i], 1),
            Some((i, 'k')) => (&t[..i], 1 << 10),
            Some((i, 'm')) => (&t[..i], 1 << 20),
            Some((i, 'g')) => (&t[..i], 1 << 30),
            _ => (t.as_str(), 1),
        };
        match num.parse::<i64>().ok().and_then(|n| n.checked_mul(mult)) {
            // docker's floor: a container can't start in less.
            Some(n) if n >= 6 << 20 => Ok(n),
            Some(_) => bail!("--memory {s}: at least 6m"),
            None => bail!("--memory {s}: expected a size like 512m or 1g"),
        }
    }

    pub fn parse_cpus(s: &str) -> Result<f64> {
        match s.parse::<f64>() {
            Ok(c) if c > 0.0 && c.is_finite() && c <= 4096.0 => Ok(c),
            _ => bail!("--cpus {s}: expected a positive number of CPUs, like 1.5"),
        }
    }

    /// Checks what can be checked before anything is pulled.
    pub fn check(&self) -> Result<()> {
        if let Some(w) = &self.workdir
            && !w.starts_with('/')
        {
            bail!("--workdir {w:?} is not absolute");
        }
        for e in &self.env {
            if !e.contains('=') || e.starts_with('=') {
                bail!("--env {e:?}: expected KEY=VALUE");
            }
        }
        if let Some(p) = self.pids_limit
            && p == 0
        {
            bail!("--pids-limit 0: give a positive limit, or -1 for none");
        }
        Ok(())
    }

    /// linux.resources and root.readonly.
    fn apply(&self, spec: &mut Value) {
        if self.read_only {
            spec["root"]["readonly"] = json!(true);
        }
        let r = &mut spec["linux"]["resources"];
        if let Some(m) = self.memory {
            r["memory"]["limit"] = json!(m);
        }
        if let Some(c) = self.cpus {
            const PERIOD: u64 = 100_000;
            r["cpu"]["quota"] = json!((c * PERIOD as f64).round() as i64);
            r["cpu"]["period"] = json!(PERIOD);
        }
        if let Some(p) = self.pids_limit {
            r["pids"]["limit"] = json!(p);
        }
    }
}

/// Reads `etc/<file>` of the rootfs, resolved inside it (a symlink can't read the host's).
fn read_in_root(root: &File, file: &str) -> Option<String> {
    let fd = open_in_root(root.as_fd(), Path::new(file), OFlag::O_RDONLY).ok()?;
    let mut s = String::new();
    File::from(fd).take(16 << 20).read_to_string(&mut s).ok()?;
    Some(s)
}

struct User {
    uid: u32,
    gid: u32,
    additional: Vec<u32>,
    home: Option<String>,
}

/// Resolves docker's User (`name`, `uid`, `name:group`, `uid:gid`…) against the rootfs's
/// /etc/passwd and /etc/group, with the user's supplementary groups.
fn resolve_user(root: &File, spec: &str) -> Result<User> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let u = if u.is_empty() { "0" } else { u };
    let passwd = read_in_root(root, "etc/passwd").unwrap_or_default();
    let group = read_in_root(root, "etc/group").unwrap_or_default();
    let entry = if let Ok(uid) = u.parse::<u32>() {
        passwd::by_uid(&passwd, uid)
    } else {
        let e = passwd::users(&passwd).find(|e| e.name == u);
        if e.is_none() {
            bail!("user {u:?} of the image is not in its /etc/passwd");
        }
        e
    };
    let uid = match entry {
        Some(e) => e.uid.context("bad uid in /etc/passwd")?,
        None => u.parse().unwrap_or(0),
    };
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => match passwd::groups(&group).find(|e| e.name == g) {
                Some(e) => e.gid.context("bad gid in /etc/group")?,
                None => bail!("group {g:?} of the image is not in its /etc/group"),
            },
        },
        None => entry.and_then(|e| e.gid).unwrap_or(0),
    };
    let mut additional = Vec::new();
    if g.is_none()
        && let Some(e) = entry
    {
        for ge in passwd::groups(&group) {
            if ge.has_member(e.name)
                && let Some(n) = ge.gid
                && n != gid
                && !additional.contains(&n)
            {
                additional.push(n);
            }
        }
    }
    Ok(User {
        uid,
        gid,
        additional,
        home: entry.map(|e| e.home.to_string()),
    })
}

/// The runtime config for an image config `image` unpacked at `rootfs`.
pub fn config(image: &ImageConfiguration, rootfs: &Path, info: &BundleInfo) -> Result<Value> {
    let none = Config::default();
    let c = image.config().as_ref().unwrap_or(&none);
    let strs = |v: &Option<Vec<String>>| v.clone().unwrap_or_default();
    let mut args = strs(c.entrypoint());
    if info.cmd.is_empty() {
        args.extend(strs(c.cmd()));
    } else {
        args.extend(info.cmd.iter().cloned());
    }
    if args.is_empty() {
        bail!("the image has no Entrypoint or Cmd: give a command after --");
    }
    let root = File::open(rootfs).with_context(|| format!("open {}", rootfs.display()))?;
    let user_spec = info
        .run
        .user
        .as_deref()
        .or(c.user().as_deref())
        .unwrap_or("");
    let user = resolve_user(&root, user_spec)?;

    // Env: the default PATH, overridden key by key by the image.
    let mut env: Vec<String> = vec![DEFAULT_PATH.into()];
    for e in strs(c.env())
        .into_iter()
        .chain(info.run.env.iter().cloned())
    {
        let key = e.split('=').next().unwrap_or_default().to_string();
        env.retain(|x| x.split('=').next() != Some(key.as_str()));
        env.push(e);
    }
    if info.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home.as_deref().unwrap_or("/")));
    }
    let cwd = info
        .run
        .workdir
        .as_deref()
        .or(c.working_dir().as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("/");
    if !cwd.starts_with('/') {
        bail!("the image's WorkingDir {cwd:?} is not absolute");
    }
    // The working directory exists in the container, as docker makes sure.
    crate::safepath::mkdir_all_in_root(root.as_fd(), Path::new(cwd), 0o755)
        .with_context(|| format!("create the working directory {cwd}"))?;

    let mut ann: BTreeMap<String, Value> = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        ann.insert(format!("org.opencontainers.image.{k}"), json!(v));
    };
    put("ref.name", info.reference.to_string());
    put("digest", info.manifest_digest.to_string());
    put("os", info.platform.os.clone());
    put("architecture", info.platform.architecture.clone());
    if let Some(v) = &info.platform.variant {
        put("variant", v.clone());
    }
    if let Some(s) = image.created() {
        put("created", s.clone());
    }
    if let Some(s) = image.author() {
        put("author", s.clone());
    }
    if let Some(s) = c.stop_signal() {
        put("stopSignal", s.clone());
    }
    if let Some(p) = c.exposed_ports() {
        // oci-spec keeps the ports in a HashMap's order; sorted, they are in the order
        // the document has when Go (docker, buildkit) wrote it.
        let mut ports = p.clone();
        ports.sort();
        put("exposedPorts", ports.join(","));
    }
    for (k, v) in c.labels().iter().flatten() {
        ann.insert(k.clone(), json!(v));
    }

    let mut spec = default_spec(false);
    let p = &mut spec["process"];
    p["terminal"] = json!(info.tty);
    p["args"] = json!(args);
    p["env"] = json!(env);
    p["cwd"] = json!(cwd);
    p["user"] = json!({"uid": user.uid, "gid": user.gid});
    if !user.additional.is_empty() {
        p["user"]["additionalGids"] = json!(user.additional);
    }
    // An image's rootfs is the container's writable layer, as with docker.
    spec["root"]["readonly"] = json!(false);
    spec["annotations"] = json!(ann);
    info.run.apply(&mut spec);
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::RunOptions;

    #[test]
    fn memory_sizes_as_docker_s() {
        assert_eq!(RunOptions::parse_memory("64m").unwrap(), 64 << 20);
        assert_eq!(RunOptions::parse_memory("1G").unwrap(), 1 << 30);
        assert_eq!(RunOptions::parse_memory("10485760").unwrap(), 10 << 20);
        assert_eq!(RunOptions::parse_memory("8192k").unwrap(), 8 << 20);
        for bad in ["", "m", "1k", "-5m", "1.5g", "9999999999g"] {
            assert!(RunOptions::parse_memory(bad).is_err(), "{bad}");
        }
        assert!(RunOptions::parse_cpus("0").is_err());
        assert_eq!(RunOptions::parse_cpus("1.5").unwrap(), 1.5);
    }
}
