//! config.json from an image config: `corten spec`'s default with the image's command,
//! environment, working directory, user and annotations.

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
    let user = resolve_user(&root, c.user().as_deref().unwrap_or(""))?;

    // Env: the default PATH, overridden key by key by the image.
    let mut env: Vec<String> = vec![DEFAULT_PATH.into()];
    for e in strs(c.env()) {
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
    let cwd = c
        .working_dir()
        .as_deref()
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
    Ok(spec)
}
