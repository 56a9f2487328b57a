//! A network for a standalone container, set up the way containerd and podman do it: by
//! CNI plugins (bridge, host-local, portmap, firewall, loopback).
//!
//! `corten-image pull --net bridge -p 8080:80 ...` writes, besides config.json:
//! - `BUNDLE/net/net.json`: the CNI network configuration list (the one in `--cni-conf-dir`,
//!   else corten-image's own default, a `corten0` bridge), the plugin directory and the
//!   published ports, copied at pull time so that `del` later gets the same arguments;
//! - `BUNDLE/net/resolv.conf` and `BUNDLE/net/hosts`, bind-mounted over the container's
//!   `/etc/resolv.conf` and `/etc/hosts`;
//! - a `createRuntime` hook `corten-image net-hook add BUNDLE/net` (the container's network
//!   namespace exists, its init has not run the command yet) and a `poststop` hook
//!   `corten-image net-hook del BUNDLE/net`.
//!
//! The hook runs the plugins as the CNI spec says (environment `CNI_COMMAND`, `CNI_NETNS`,
//! ..., the plugin's config on stdin with the previous plugin's result), records the result
//! per container id in `BUNDLE/net/result-<id>.json`, and adds the container's address to
//! its hosts file. `del` runs the chain in reverse with that result (releasing the
//! address, removing the port rules) even once the network namespace is gone, and is a
//! no-op when nothing was added. A failing `add` undoes what it added before it reports.
//! `--net host` shares the host's network namespace; `--net none` (the default) gives the
//! container its own, with nothing in it.

use std::fs;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{MntFlags, MsFlags};
use serde_json::{Value, json};

/// Where Debian's containernetworking-plugins (and most distributions') put the plugins.
pub const DEFAULT_BIN_DIR: &str = "/usr/lib/cni";
/// The default network's configuration directory, corten-image's own.
pub const DEFAULT_CONF_DIR: &str = "/etc/corten/cni/net.d";
const DEFAULT_CONFLIST: &str = "corten.conflist";
const IFNAME: &str = "eth0";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    None,
    Host,
    Bridge,
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Mode> {
        match s {
            "none" => Ok(Mode::None),
            "host" => Ok(Mode::Host),
            "bridge" => Ok(Mode::Bridge),
            _ => bail!("--net {s:?}: expected none, host or bridge"),
        }
    }
}

/// A published port: `[IP:]HOSTPORT:CONTAINERPORT[/tcp|/udp]`, as docker's `-p`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Port {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: &'static str,
}

impl std::str::FromStr for Port {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Port> {
        let bad =
            |why: &str| anyhow!("-p {s:?}: {why} (expected [IP:]HOSTPORT:CONTAINERPORT[/tcp|udp])");
        let (spec, protocol) = match s.rsplit_once('/') {
            Some((p, "tcp")) => (p, "tcp"),
            Some((p, "udp")) => (p, "udp"),
            Some(_) => return Err(bad("the protocol is tcp or udp")),
            None => (s, "tcp"),
        };
        let (rest, cport) = spec
            .rsplit_once(':')
            .ok_or_else(|| bad("no container port"))?;
        let (host_ip, hport) = match rest.rsplit_once(':') {
            Some((ip, p)) => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                let ip: IpAddr = ip.parse().map_err(|_| bad("not an IP address"))?;
                (Some(ip), p)
            }
            None => (None, rest),
        };
        let port = |p: &str| -> Result<u16> {
            match p.parse::<u16>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(bad(&format!("{p:?} is not a port (1-65535)"))),
            }
        };
        Ok(Port {
            host_ip,
            host_port: port(hport)?,
            container_port: port(cport)?,
            protocol,
        })
    }
}

/// What `pull` was asked for the container's network.
#[derive(Clone, Debug, Default)]
pub struct NetOptions {
    pub mode: Mode,
    pub ports: Vec<Port>,
    pub hostname: Option<String>,
    pub dns: Vec<IpAddr>,
    pub conf_dir: Option<PathBuf>,
    pub bin_dir: Option<PathBuf>,
}

/// corten-image's default network: a `corten0` bridge with a private /16, the host as its
/// gateway, IP masquerade, published ports (portmap) and forwarding allowed (firewall).
fn default_conflist() -> Value {
    json!({
        "cniVersion": "1.0.0",
        "name": "corten",
        "plugins": [
            {
                "type": "bridge",
                "bridge": "corten0",
                "isGateway": true,
                "ipMasq": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "ranges": [[{"subnet": "10.90.0.0/16", "gateway": "10.90.0.1"}]]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"}
        ]
    })
}

/// The network configuration list: the first `*.conflist` (or single-plugin `*.conf`) of
/// `dir` in name order, as libcni picks it; without a `dir`, corten-image's default,
/// written to [`DEFAULT_CONF_DIR`] the first time.
fn load_conflist(dir: Option<&Path>) -> Result<Value> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let d = PathBuf::from(DEFAULT_CONF_DIR);
            let f = d.join(DEFAULT_CONFLIST);
            if !f.exists() {
                fs::create_dir_all(&d).with_context(|| format!("create {}", d.display()))?;
                let text = serde_json::to_string_pretty(&default_conflist())? + "\n";
                // Written whole or not at all: two first pulls at once both succeed.
                let tmp = d.join(format!(".{DEFAULT_CONFLIST}.{}", std::process::id()));
                write(&tmp, &text)?;
                fs::rename(&tmp, &f)
                    .with_context(|| format!("rename {} to {}", tmp.display(), f.display()))?;
            }
            d
        }
    };
    let mut names: Vec<PathBuf> = fs::read_dir(&dir)
        .with_context(|| format!("read the CNI configuration directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            )
        })
        .collect();
    names.sort();
    let path = names.first().ok_or_else(|| {
        anyhow!(
            "no CNI network configuration (*.conflist, *.conf) in {}",
            dir.display()
        )
    })?;
    let text = fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut v: Value =
        serde_json::from_str(&text).with_context(|| format!("parse {}", path.display()))?;
    if v.get("plugins").is_none() {
        // A single-plugin .conf: a list of one.
        let name = v["name"].clone();
        let version = v["cniVersion"].clone();
        v = json!({"cniVersion": version, "name": name, "plugins": [v]});
    }
    let plugins = v["plugins"].as_array().filter(|p| !p.is_empty());
    if v["name"].as_str().is_none() || plugins.is_none() {
        bail!(
            "{}: a CNI configuration needs a name and plugins",
            path.display()
        );
    }
    Ok(v)
}

/// The plugin binary for `ty` in `bin_dir`: a plain name (never a path out of the dir),
/// which must exist.
fn plugin(bin_dir: &Path, ty: &str) -> Result<PathBuf> {
    if ty.is_empty() || ty.contains('/') || ty.starts_with('.') {
        bail!("CNI plugin type {ty:?} is not a plugin name");
    }
    let p = bin_dir.join(ty);
    if !p.is_file() {
        bail!(
            "CNI plugin {ty} not found in {} (install containernetworking-plugins or give --cni-bin-dir)",
            bin_dir.display()
        );
    }
    Ok(p)
}

/// A published host port already in use on this host: refused at pull time.
fn check_port_free(p: &Port) -> Result<()> {
    let ip = p.host_ip.unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let taken = match p.protocol {
        "udp" => std::net::UdpSocket::bind((ip, p.host_port)).is_err(),
        _ => std::net::TcpListener::bind((ip, p.host_port)).is_err(),
    };
    if taken {
        bail!(
            "-p: host port {}/{} is already in use",
            p.host_port,
            p.protocol
        );
    }
    Ok(())
}

/// The host's resolv.conf for a container: its own network can't reach the host's
/// loopback resolvers (systemd-resolved's 127.0.0.53...), so those are dropped, as docker
/// does; `--dns` replaces the nameservers.
fn resolv_conf(dns: &[IpAddr], bridge: bool) -> String {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut out = String::new();
    for line in host.lines() {
        let keep = match line.trim_start().strip_prefix("nameserver") {
            None => true,
            Some(_) if !dns.is_empty() => false,
            Some(addr) => !(bridge && addr.trim().parse::<IpAddr>().is_ok_and(|a| a.is_loopback())),
        };
        if keep {
            out.push_str(line);
            out.push('\n');
        }
    }
    for d in dns {
        out.push_str(&format!("nameserver {d}\n"));
    }
    out
}

/// The network a pull will write, checked before anything is downloaded: the hostname,
/// `-p` only with a bridge, the configuration list and every plugin it names, and the
/// published host ports free.
pub struct Plan {
    opts: NetOptions,
    /// With `--net bridge`: the configuration list and the plugin directory.
    bridge: Option<(Value, PathBuf)>,
}

impl NetOptions {
    pub fn plan(&self) -> Result<Plan> {
        if let Some(h) = &self.hostname
            && (h.is_empty()
                || h.len() > 64
                || !h
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.'))
        {
            bail!("--hostname {h:?}: letters, digits, '-' and '.', at most 64");
        }
        if self.mode != Mode::Bridge && !self.ports.is_empty() {
            bail!("-p publishes a port of the container's own network: it needs --net bridge");
        }
        let mut bridge = None;
        if self.mode == Mode::Bridge {
            let bin_dir = self
                .bin_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_BIN_DIR));
            let conflist = load_conflist(self.conf_dir.as_deref())?;
            plugin(&bin_dir, "loopback")?;
            for p in conflist["plugins"].as_array().into_iter().flatten() {
                plugin(&bin_dir, p["type"].as_str().unwrap_or_default())?;
            }
            for p in &self.ports {
                check_port_free(p)?;
            }
            bridge = Some((conflist, bin_dir));
        }
        Ok(Plan {
            opts: self.clone(),
            bridge,
        })
    }
}

impl Plan {
    /// Writes the network part of the bundle into `spec` (the config.json being made for
    /// `bundle`, an absolute path) and into `bundle/net/`. `hook_bin` is corten-image.
    pub fn write(&self, spec: &mut Value, bundle: &Path, hook_bin: &Path) -> Result<()> {
        let o = &self.opts;
        if let Some(h) = &o.hostname {
            spec["hostname"] = json!(h);
        }
        let dir = bundle.join("net");
        match (o.mode, &self.bridge) {
            (Mode::None, _) if o.dns.is_empty() => return Ok(()),
            (Mode::Host, _) => {
                if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
                    ns.retain(|n| n["type"] != "network");
                }
            }
            (Mode::Bridge, Some((conflist, bin_dir))) => {
                fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
                let ports: Vec<Value> = o
                    .ports
                    .iter()
                    .map(|p| {
                        json!({"hostPort": p.host_port, "containerPort": p.container_port,
                               "protocol": p.protocol,
                               "hostIP": p.host_ip.map(|i| i.to_string()).unwrap_or_default()})
                    })
                    .collect();
                let net = json!({"conflist": conflist, "binDir": bin_dir, "portMappings": ports});
                write(
                    &dir.join("net.json"),
                    &(serde_json::to_string_pretty(&net)? + "\n"),
                )?;
                let hostname = spec["hostname"].as_str().unwrap_or("corten").to_string();
                let hosts = format!(
                    "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
                );
                write(&dir.join("hosts"), &hosts)?;
                if !spec["hooks"].is_object() {
                    spec["hooks"] = json!({});
                }
                for (kind, action) in [("createRuntime", "add"), ("poststop", "del")] {
                    let list = &mut spec["hooks"][kind];
                    if !list.is_array() {
                        *list = json!([]);
                    }
                    if let Some(l) = list.as_array_mut() {
                        l.push(json!({"path": hook_bin,
                                      "args": ["corten-image", "net-hook", action, dir]}));
                    }
                }
                add_bind(spec, &dir.join("hosts"), "/etc/hosts");
            }
            _ => {}
        }
        fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
        write(
            &dir.join("resolv.conf"),
            &resolv_conf(&o.dns, o.mode == Mode::Bridge),
        )?;
        add_bind(spec, &dir.join("resolv.conf"), "/etc/resolv.conf");
        Ok(())
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    fs::write(path, text).with_context(|| format!("write {}", path.display()))
}

fn add_bind(spec: &mut Value, source: &Path, destination: &str) {
    if let Some(m) = spec["mounts"].as_array_mut() {
        m.push(
            json!({"destination": destination, "type": "bind", "source": source,
                      "options": ["rbind", "rprivate"]}),
        );
    }
}

/// The state the runtime gives a hook on stdin: the container's id and (for `add`) pid.
fn read_state() -> Result<(String, Option<i32>)> {
    let mut text = String::new();
    std::io::stdin()
        .take(1 << 20)
        .read_to_string(&mut text)
        .context("read the container's state on stdin")?;
    let v: Value = serde_json::from_str(&text).context("parse the container's state on stdin")?;
    let id = v["id"].as_str().context("the state has no id")?.to_string();
    // An id names a file here: the runtime's id rule, checked again.
    if id.is_empty() || id.contains('/') || id.starts_with('.') {
        bail!("container id {id:?} is not a file name");
    }
    let pid = v["pid"].as_i64().filter(|&p| p > 0).map(|p| p as i32);
    Ok((id, pid))
}

/// Runs one CNI plugin: `command` for container `id` in `netns` on `ifname`, `conf` on
/// stdin. Returns the result it printed (ADD), or its error in one line.
fn exec_plugin(
    bin_dir: &Path,
    conf: &Value,
    command: &str,
    id: &str,
    netns: &str,
    ifname: &str,
) -> Result<Value> {
    let ty = conf["type"].as_str().unwrap_or_default();
    let bin = plugin(bin_dir, ty)?;
    let mut child = Command::new(&bin)
        .env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| PATH.into()),
        )
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", id)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", ifname)
        .env("CNI_ARGS", "")
        .env("CNI_PATH", bin_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("run the CNI plugin {}", bin.display()))?;
    let input = serde_json::to_vec(conf)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&input)
            .with_context(|| format!("write the config to the CNI plugin {ty}"))?;
    }
    let out = child
        .wait_with_output()
        .with_context(|| format!("wait for the CNI plugin {ty}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        // The spec's error: {"code", "msg", "details"} on stdout.
        let msg = serde_json::from_str::<Value>(&stdout)
            .ok()
            .map(|e| {
                let mut m = e["msg"].as_str().unwrap_or_default().to_string();
                if let Some(d) = e["details"].as_str().filter(|d| !d.is_empty()) {
                    m = format!("{m}: {d}");
                }
                m
            })
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| {
                format!(
                    "{}{}",
                    stdout.trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )
            });
        bail!(
            "CNI plugin {ty} {command} failed: {}",
            msg.replace('\n', " ")
        );
    }
    if command == "ADD" {
        serde_json::from_str(&stdout)
            .with_context(|| format!("parse the result of the CNI plugin {ty}"))
    } else {
        Ok(Value::Null)
    }
}

/// One plugin's config as the list gives it to the plugin: the list's name and version,
/// the previous result, and the runtime config the plugin asks for (capabilities).
fn plugin_conf(list: &Value, plugin: &Value, prev: &Value, ports: &Value) -> Value {
    let mut c = plugin.clone();
    c["name"] = list["name"].clone();
    c["cniVersion"] = list["cniVersion"].clone();
    if !prev.is_null() {
        c["prevResult"] = prev.clone();
    }
    if plugin["capabilities"]["portMappings"] == json!(true) {
        c["runtimeConfig"] = json!({"portMappings": ports});
    }
    c
}

fn loopback_conf(list: &Value) -> Value {
    json!({"cniVersion": list["cniVersion"], "name": "lo", "type": "loopback"})
}

/// `corten-image net-hook add|del DIR`, run by the runtime as the bundle's hook.
pub fn hook(action: &str, dir: &Path) -> Result<()> {
    let net: Value = serde_json::from_str(
        &fs::read_to_string(dir.join("net.json"))
            .with_context(|| format!("read {}", dir.join("net.json").display()))?,
    )
    .with_context(|| format!("parse {}", dir.join("net.json").display()))?;
    let bin_dir = PathBuf::from(net["binDir"].as_str().unwrap_or(DEFAULT_BIN_DIR));
    let list = &net["conflist"];
    let ports = &net["portMappings"];
    let (id, pid) = read_state()?;
    let record = dir.join(format!("result-{id}.json"));
    // One hook at a time per bundle: a `del` (delete of a create killed while its `add`
    // ran) waits for that `add` to finish or roll back, and then sees its record.
    let lock_path = dir.join("net.json");
    let lock_file =
        fs::File::open(&lock_path).with_context(|| format!("open {}", lock_path.display()))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("flock {}", lock_path.display()))?;
    match action {
        "add" => {
            let pid = pid.context("the state has no pid: is the container created?")?;
            // The namespace pinned by a bind mount, as containerd and podman do: `del`
            // must run inside it (the bridge plugin removes the masquerade rules only
            // there), and the container is dead by then.
            let pinned = dir.join(format!("ns-{id}"));
            pin(&format!("/proc/{pid}/ns/net"), &pinned)?;
            let netns = pinned.to_string_lossy().into_owned();
            let result = add(&bin_dir, list, ports, &id, &netns).inspect_err(|_| {
                // Undo whatever part of the chain was added.
                let _ = del(&bin_dir, list, ports, &id, &netns, &Value::Null);
                unpin(&pinned);
            })?;
            let text = serde_json::to_string_pretty(&json!({"containerId": id, "result": result}))?;
            write(&record, &(text + "\n"))?;
            if let Some(ip) = first_address(&result) {
                add_host(&dir.join("hosts"), &ip)?;
            }
            Ok(())
        }
        "del" => {
            let pinned = dir.join(format!("ns-{id}"));
            let netns = if is_pinned(&pinned) {
                pinned.to_string_lossy().into_owned()
            } else {
                // Not pinned (the add stopped before): the plugins still release what
                // lives outside the namespace (address, port and firewall rules).
                String::new()
            };
            let result = match fs::read_to_string(&record) {
                Ok(text) => {
                    let saved: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    del(&bin_dir, list, ports, &id, &netns, &saved["result"])
                }
                // No record: the add never ran, or was stopped midway (its hook killed at
                // a timeout). DEL is idempotent, so ask anyway, quietly.
                Err(_) => {
                    let _ = del(&bin_dir, list, ports, &id, &netns, &Value::Null);
                    Ok(())
                }
            };
            unpin(&pinned);
            result?;
            match fs::remove_file(&record) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).with_context(|| format!("remove {}", record.display()))
                }
                _ => Ok(()),
            }
        }
        _ => bail!("net-hook: expected add or del, got {action:?}"),
    }
}

/// Keeps the network namespace `ns` alive at `at` (an empty file bind-mounted over).
fn pin(ns: &str, at: &Path) -> Result<()> {
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(at)
        .with_context(|| format!("create {}", at.display()))?;
    nix::mount::mount(Some(ns), at, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .with_context(|| format!("bind-mount {ns} on {}", at.display()))
}

/// True if `at` holds a pinned namespace (a mount of nsfs, not the empty file).
fn is_pinned(at: &Path) -> bool {
    nix::sys::statfs::statfs(at).is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
}

/// Releases a pinned namespace, if any, and removes its file.
fn unpin(at: &Path) {
    if is_pinned(at) {
        let _ = nix::mount::umount2(at, MntFlags::MNT_DETACH);
    }
    let _ = fs::remove_file(at);
}

fn add(bin_dir: &Path, list: &Value, ports: &Value, id: &str, netns: &str) -> Result<Value> {
    exec_plugin(bin_dir, &loopback_conf(list), "ADD", id, netns, "lo")?;
    let mut prev = Value::Null;
    for p in list["plugins"].as_array().into_iter().flatten() {
        prev = exec_plugin(
            bin_dir,
            &plugin_conf(list, p, &prev, ports),
            "ADD",
            id,
            netns,
            IFNAME,
        )?;
    }
    Ok(prev)
}

/// DEL of the chain in reverse order, then of the loopback; every plugin is asked even if
/// one fails (the first error is returned).
fn del(
    bin_dir: &Path,
    list: &Value,
    ports: &Value,
    id: &str,
    netns: &str,
    prev: &Value,
) -> Result<()> {
    let mut first = None;
    for p in list["plugins"].as_array().into_iter().flatten().rev() {
        if let Err(e) = exec_plugin(
            bin_dir,
            &plugin_conf(list, p, prev, ports),
            "DEL",
            id,
            netns,
            IFNAME,
        ) {
            first.get_or_insert(e);
        }
    }
    if !netns.is_empty() {
        let _ = exec_plugin(bin_dir, &loopback_conf(list), "DEL", id, netns, "lo");
    }
    first.map_or(Ok(()), Err)
}

/// The container's first address in a CNI result (`ips[].address`, CIDR form).
pub fn first_address(result: &Value) -> Option<String> {
    result["ips"]
        .as_array()?
        .iter()
        .filter_map(|i| i["address"].as_str())
        .find_map(|a| a.split('/').next().map(str::to_string))
}

/// Adds `ip hostname` to the bundle's hosts file, in place (it is bind-mounted: the
/// container sees the same inode).
fn add_host(hosts: &Path, ip: &str) -> Result<()> {
    let text = fs::read_to_string(hosts).with_context(|| format!("read {}", hosts.display()))?;
    let hostname = text
        .lines()
        .find_map(|l| l.strip_prefix("127.0.1.1\t"))
        .unwrap_or("corten")
        .to_string();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(hosts)
        .with_context(|| format!("open {}", hosts.display()))?;
    writeln!(f, "{ip}\t{hostname}").with_context(|| format!("write {}", hosts.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_as_docker_s() {
        let p: Port = "8080:80".parse().unwrap();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol, p.host_ip),
            (8080, 80, "tcp", None)
        );
        let p: Port = "127.0.0.1:53:5353/udp".parse().unwrap();
        assert_eq!(p.protocol, "udp");
        assert_eq!(p.host_ip, Some("127.0.0.1".parse().unwrap()));
        let p: Port = "[::1]:8443:443".parse().unwrap();
        assert_eq!(p.host_ip, Some("::1".parse().unwrap()));
        for bad in [
            "80",
            "0:80",
            "8080:70000",
            "x:80",
            "8080:80/sctp",
            "1.2.3:8080:80",
            "",
        ] {
            assert!(bad.parse::<Port>().is_err(), "{bad}");
        }
    }

    #[test]
    fn result_address_and_plugin_names() {
        let r = json!({"ips": [{"address": "10.90.0.5/16", "gateway": "10.90.0.1"}]});
        assert_eq!(first_address(&r).as_deref(), Some("10.90.0.5"));
        assert_eq!(first_address(&json!({})), None);
        assert!(plugin(Path::new("/usr/lib/cni"), "../../bin/sh").is_err());
        assert!(plugin(Path::new("/usr/lib/cni"), "").is_err());
    }

    #[test]
    fn plugin_conf_carries_name_prev_and_ports() {
        let list = json!({"cniVersion": "1.0.0", "name": "n", "plugins": []});
        let pm = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        let c = plugin_conf(&list, &pm, &json!({"ips": []}), &json!([{"hostPort": 1}]));
        assert_eq!(c["name"], "n");
        assert_eq!(c["prevResult"], json!({"ips": []}));
        assert_eq!(c["runtimeConfig"]["portMappings"][0]["hostPort"], 1);
        let c = plugin_conf(&list, &json!({"type": "bridge"}), &Value::Null, &json!([]));
        assert!(c.get("prevResult").is_none() && c.get("runtimeConfig").is_none());
    }
}
