//! The container's network devices over rtnetlink: the loopback device of a network
//! namespace corten creates is brought up by the init (as runc and crun do), and
//! `linux.netDevices` moves host network interfaces into the container's network
//! namespace (runtime-spec 1.2), done by `create` once the init is parked.
//!
//! Per device: its permanent global addresses are read, it is moved and renamed in one
//! RTM_NEWLINK (IFLA_NET_NS_FD + IFLA_IFNAME), the addresses are added back (a move
//! flushes them) and it is set up. Per the spec the runtime MUST NOT move devices back on
//! delete: the kernel returns physical devices to the host when the namespace dies.
//! A failed create moves back what it had moved.
//!
//! Raw rtnetlink, a few request types: the crates that cover it (rtnetlink) bring an async
//! runtime or a large message model (neli, netlink-packet-route) for what is four messages.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxNamespaceType, LinuxNetDevice, Spec};

/// The devices of `spec`, host name → name in the container.
fn devices(spec: &Spec) -> Vec<(String, String)> {
    let map: Option<&HashMap<String, LinuxNetDevice>> =
        spec.linux().as_ref().and_then(|l| l.net_devices().as_ref());
    let mut v: Vec<(String, String)> = map
        .into_iter()
        .flatten()
        .map(|(host, d)| {
            let name = d.name().clone().filter(|n| !n.is_empty());
            (host.clone(), name.unwrap_or_else(|| host.clone()))
        })
        .collect();
    v.sort();
    v
}

/// The kernel's dev_valid_name, plus the `%d` template it expands.
fn check_name(field: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if !ok {
        bail!("{field}: {name:?} is not a valid interface name");
    }
    Ok(())
}

/// Checks names and that there is a network namespace to move into.
pub fn validate(spec: &Spec) -> Result<()> {
    let devs = devices(spec);
    if devs.is_empty() {
        return Ok(());
    }
    let has_netns = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|v| v.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
    if !has_netns {
        bail!("linux.netDevices needs a network namespace in linux.namespaces");
    }
    let mut seen = Vec::new();
    for (host, name) in &devs {
        check_name("linux.netDevices", host)?;
        check_name(&format!("linux.netDevices[{host:?}].name"), name)?;
        if !name.contains("%d") && seen.contains(name) {
            bail!("linux.netDevices: two devices are named {name:?} in the container");
        }
        seen.push(name.clone());
    }
    Ok(())
}

/// Before anything is created: every device exists on the host, and a joined network
/// namespace is not the host's own.
pub fn check_host(spec: &Spec) -> Result<()> {
    let devs = devices(spec);
    if devs.is_empty() {
        return Ok(());
    }
    for (host, _) in &devs {
        if_index(host).context("linux.netDevices")?;
    }
    let joined = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|v| v.iter().find(|n| n.typ() == LinuxNamespaceType::Network))
        .and_then(|n| n.path().clone());
    if let Some(p) = joined {
        let ns = nix::sys::stat::stat(&p)
            .with_context(|| format!("linux.netDevices: network namespace {}", p.display()))?;
        let own = nix::sys::stat::stat("/proc/self/ns/net").context("stat /proc/self/ns/net")?;
        if (ns.st_dev, ns.st_ino) == (own.st_dev, own.st_ino) {
            bail!(
                "linux.netDevices: the network namespace {} is the host's own",
                p.display()
            );
        }
    }
    Ok(())
}

/// Does the container get a network namespace of its own (listed without a path)?
pub fn creates_netns(spec: &Spec) -> bool {
    spec.linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .and_then(|v| v.iter().find(|n| n.typ() == LinuxNamespaceType::Network))
        .is_some_and(|n| n.path().as_ref().is_none_or(|p| p.as_os_str().is_empty()))
}

/// Sets `lo` up in the caller's network namespace: one RTM_NEWLINK, no lookup (the
/// loopback device is index 1 in every namespace). Called by the init of a container whose
/// network namespace corten made; a joined one is left as it is.
pub fn loopback_up() -> Result<()> {
    const LOOPBACK_IFINDEX: i32 = 1;
    let up = link_msg(LOOPBACK_IFINDEX, libc::IFF_UP as u32);
    Netlink::open()
        .and_then(|mut nl| nl.request(libc::RTM_NEWLINK, 0, &up))
        .context("bring up the loopback device lo")?;
    Ok(())
}

/// Sets `lo` up in the network namespace of `pid`: a restored container's, which CRIU made
/// empty (its loopback device down). corten joins it for the one request and returns to
/// its own.
pub fn loopback_up_in(pid: i32) -> Result<()> {
    use nix::sched::{CloneFlags, setns};
    let own =
        std::fs::File::open("/proc/thread-self/ns/net").context("open /proc/thread-self/ns/net")?;
    let theirs = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .with_context(|| format!("open /proc/{pid}/ns/net"))?;
    setns(&theirs, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns into the network namespace of {pid}"))?;
    let up = loopback_up();
    setns(&own, CloneFlags::CLONE_NEWNET)
        .context("setns back into corten's own network namespace")?;
    up
}

/// A device moved into the container: enough to move it back.
pub struct Moved {
    host_name: String,
    index: i32,
}

/// Moves every device of `spec` into the network namespace of `pid`. On failure, moves
/// back those already moved and returns the error.
pub fn move_all(spec: &Spec, pid: i32) -> Result<Vec<Moved>> {
    let devs = devices(spec);
    if devs.is_empty() {
        return Ok(Vec::new());
    }
    let ns_path = format!("/proc/{pid}/ns/net");
    let ns: OwnedFd = std::fs::File::open(&ns_path)
        .with_context(|| format!("linux.netDevices: open {ns_path}"))?
        .into();
    let indexes: HashMap<&str, i32> = devs
        .iter()
        .filter_map(|(h, _)| Some((h.as_str(), if_index(h).ok()?)))
        .collect();
    let if_index_hint = |h: &str| indexes.get(h).copied();
    let mut host = Netlink::open().context("linux.netDevices: netlink socket")?;
    let mut inside = Netlink::open_in(&ns).context("linux.netDevices: netlink socket")?;
    let mut moved = Vec::new();
    for (host_name, name) in &devs {
        match move_one(&mut host, &mut inside, &ns, host_name, name) {
            Ok(index) => moved.push(Moved {
                host_name: host_name.clone(),
                index,
            }),
            Err(e) => {
                // A move can half succeed (moved, then the rename refused): find it under
                // its host name, or under its new one at its old index.
                let index = if_index_hint(host_name);
                let here = inside.link_index(Some(host_name), 0).ok().or_else(|| {
                    let i = inside.link_index(Some(name), 0).ok()?;
                    (Some(i) == index).then_some(i)
                });
                if let Some(index) = here {
                    moved.push(Moved {
                        host_name: host_name.clone(),
                        index,
                    });
                }
                move_back(&mut inside, &moved);
                return Err(e.context(format!("linux.netDevices: move {host_name:?}")));
            }
        }
    }
    Ok(moved)
}

/// Best effort: returns moved devices to our network namespace under their host names.
fn move_back(inside: &mut Netlink, moved: &[Moved]) {
    let Ok(own) = std::fs::File::open("/proc/self/ns/net") else {
        return;
    };
    for m in moved {
        let mut msg = link_msg(m.index, 0);
        attr(
            &mut msg,
            libc::IFLA_NET_NS_FD,
            &(own.as_raw_fd() as u32).to_ne_bytes(),
        );
        attr(&mut msg, libc::IFLA_IFNAME, &cstr(&m.host_name));
        if let Err(e) = inside.request(libc::RTM_NEWLINK, 0, &msg) {
            crate::log::warn(&format!("move {} back to the host: {e:#}", m.host_name));
        }
    }
}

fn move_one(
    host: &mut Netlink,
    inside: &mut Netlink,
    ns: &OwnedFd,
    host_name: &str,
    name: &str,
) -> Result<i32> {
    let index = if_index(host_name)?;
    let addrs = host.addresses(index)?;
    let mut msg = link_msg(index, 0);
    attr(
        &mut msg,
        libc::IFLA_NET_NS_FD,
        &(ns.as_raw_fd() as u32).to_ne_bytes(),
    );
    attr(&mut msg, libc::IFLA_IFNAME, &cstr(name));
    host.request(libc::RTM_NEWLINK, 0, &msg).map_err(|e| {
        if e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.raw_os_error() == Some(libc::EEXIST))
        {
            anyhow::anyhow!("a device named {name:?} already exists in the container")
        } else {
            e
        }
    })?;
    // The kernel keeps the index when it is free in the namespace; a template name
    // ("eth%d") can only be found that way.
    let new = inside
        .link_index(
            if name.contains("%d") {
                None
            } else {
                Some(name)
            },
            index,
        )
        .context("find the moved device")?;
    for a in &addrs {
        let mut m = a.clone();
        m[4..8].copy_from_slice(&(new as u32).to_ne_bytes());
        match inside.request(libc::RTM_NEWADDR, libc::NLM_F_CREATE as u16, &m) {
            Err(e)
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.raw_os_error() == Some(libc::EEXIST)) => {}
            r => {
                r.context("restore an address")?;
            }
        }
    }
    let up = link_msg(new, libc::IFF_UP as u32);
    inside
        .request(libc::RTM_NEWLINK, 0, &up)
        .context("set the device up")?;
    Ok(new)
}

/// The index of the host's device `name`.
fn if_index(name: &str) -> Result<i32> {
    let c = std::ffi::CString::new(name)?;
    // SAFETY: `c` is a NUL-terminated string alive for the call.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => bail!("no network device {name:?} on the host"),
        i => Ok(i as i32),
    }
}

/// struct ifinfomsg for `index`; `up` is set in both flags and change.
fn link_msg(index: i32, up: u32) -> Vec<u8> {
    let mut m = vec![0u8; 16];
    m[4..8].copy_from_slice(&index.to_ne_bytes());
    m[8..12].copy_from_slice(&up.to_ne_bytes());
    m[12..16].copy_from_slice(&up.to_ne_bytes());
    m
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// Appends one rtattr.
fn attr(msg: &mut Vec<u8>, typ: u16, data: &[u8]) {
    let len = 4 + data.len();
    msg.extend_from_slice(&(len as u16).to_ne_bytes());
    msg.extend_from_slice(&typ.to_ne_bytes());
    msg.extend_from_slice(data);
    msg.resize(align(msg.len()), 0);
}

/// The rtattrs of `buf` as (type, data).
fn attrs(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
    let mut out = Vec::new();
    while buf.len() >= 4 {
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let typ = u16::from_ne_bytes([buf[2], buf[3]]);
        if len < 4 || len > buf.len() {
            break;
        }
        out.push((typ & 0x3fff, &buf[4..len]));
        buf = &buf[align(len).min(buf.len())..];
    }
    out
}

/// A NETLINK_ROUTE socket in one network namespace.
struct Netlink {
    fd: OwnedFd,
    seq: u32,
}

impl Netlink {
    fn open() -> Result<Netlink> {
        // SAFETY: plain socket(2) call; the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).context("socket(AF_NETLINK)");
        }
        // SAFETY: socket returned a new fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Netlink { fd, seq: 0 })
    }

    /// A socket opened inside the network namespace `ns` (a socket stays in the namespace
    /// it was made in): a helper thread joins it, so the runtime itself never moves.
    fn open_in(ns: &OwnedFd) -> Result<Netlink> {
        std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::setns(ns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .context("join the container's network namespace")?;
                Netlink::open()
            })
            .join()
            .unwrap_or_else(|_| bail!("netlink helper thread failed"))
        })
    }

    /// Sends one request with NLM_F_REQUEST | NLM_F_ACK (| `flags`) and returns the data
    /// messages of the reply as (type, payload), after the ack or the end of a dump.
    fn request(&mut self, typ: u16, flags: u16, body: &[u8]) -> Result<Vec<(u16, Vec<u8>)>> {
        self.seq += 1;
        let mut msg = Vec::with_capacity(16 + body.len());
        msg.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        msg.extend_from_slice(&typ.to_ne_bytes());
        let flags = flags | (libc::NLM_F_REQUEST | libc::NLM_F_ACK) as u16;
        msg.extend_from_slice(&flags.to_ne_bytes());
        msg.extend_from_slice(&self.seq.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes());
        msg.extend_from_slice(body);
        nix::sys::socket::send(
            self.fd.as_raw_fd(),
            &msg,
            nix::sys::socket::MsgFlags::empty(),
        )
        .context("send to netlink")?;
        let dump = flags & libc::NLM_F_DUMP as u16 != 0;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = nix::sys::socket::recv(
                self.fd.as_raw_fd(),
                &mut buf,
                nix::sys::socket::MsgFlags::empty(),
            )
            .context("receive from netlink")?;
            let mut rest = &buf[..n];
            while rest.len() >= 16 {
                let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
                let mtype = u16::from_ne_bytes([rest[4], rest[5]]);
                let seq = u32::from_ne_bytes(rest[8..12].try_into().unwrap());
                if len < 16 || len > rest.len() {
                    bail!("malformed netlink reply");
                }
                let payload = &rest[16..len];
                rest = &rest[align(len).min(rest.len())..];
                if seq != self.seq {
                    continue;
                }
                match mtype as i32 {
                    libc::NLMSG_ERROR => {
                        let code = payload
                            .get(0..4)
                            .map(|b| i32::from_ne_bytes(b.try_into().unwrap()))
                            .unwrap_or(-libc::EIO);
                        if code != 0 {
                            return Err(std::io::Error::from_raw_os_error(-code).into());
                        }
                        if !dump {
                            return Ok(out);
                        }
                    }
                    libc::NLMSG_DONE => return Ok(out),
                    _ => out.push((mtype, payload.to_vec())),
                }
            }
        }
    }

    /// The permanent, global addresses of `index` as ready-made RTM_NEWADDR bodies.
    fn addresses(&mut self, index: i32) -> Result<Vec<Vec<u8>>> {
        let req = [0u8; 8]; // struct ifaddrmsg, AF_UNSPEC: all families
        let replies = self
            .request(libc::RTM_GETADDR, libc::NLM_F_DUMP as u16, &req)
            .context("list addresses")?;
        let mut out = Vec::new();
        for (_, p) in replies {
            if p.len() < 8 || i32::from_ne_bytes(p[4..8].try_into().unwrap()) != index {
                continue;
            }
            let (scope, mut flags) = (p[3], p[2] as u32);
            let mut body = p[..8].to_vec();
            for (typ, data) in attrs(&p[8..]) {
                match typ {
                    libc::IFA_FLAGS if data.len() == 4 => {
                        flags = u32::from_ne_bytes(data.try_into().unwrap());
                        attr(&mut body, typ, data);
                    }
                    libc::IFA_ADDRESS | libc::IFA_LOCAL | libc::IFA_BROADCAST => {
                        attr(&mut body, typ, data)
                    }
                    _ => {}
                }
            }
            if scope == libc::RT_SCOPE_UNIVERSE && flags & libc::IFA_F_PERMANENT != 0 {
                out.push(body);
            }
        }
        Ok(out)
    }

    /// The index of the link called `name`, or of the one with index `index`.
    fn link_index(&mut self, name: Option<&str>, index: i32) -> Result<i32> {
        let mut msg = link_msg(if name.is_some() { 0 } else { index }, 0);
        if let Some(n) = name {
            attr(&mut msg, libc::IFLA_IFNAME, &cstr(n));
        }
        let replies = self.request(libc::RTM_GETLINK, 0, &msg)?;
        replies
            .iter()
            .find(|(t, p)| *t == libc::RTM_NEWLINK && p.len() >= 8)
            .map(|(_, p)| i32::from_ne_bytes(p[4..8].try_into().unwrap()))
            .context("no such link")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> Spec {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn names_and_namespace() {
        let ok = spec(serde_json::json!({"ociVersion": "1.2.0", "linux": {
            "namespaces": [{"type": "network"}],
            "netDevices": {"eth1": {}, "veth9": {"name": "c%d"}}
        }}));
        validate(&ok).unwrap();
        assert_eq!(
            devices(&ok),
            vec![
                ("eth1".into(), "eth1".into()),
                ("veth9".into(), "c%d".into())
            ]
        );
        for (v, want) in [
            (
                serde_json::json!({"netDevices": {"eth1": {}}}),
                "needs a network namespace",
            ),
            (
                serde_json::json!({"namespaces": [{"type": "network"}],
                    "netDevices": {"eth1": {"name": "a/b"}}}),
                "not a valid interface name",
            ),
            (
                serde_json::json!({"namespaces": [{"type": "network"}],
                    "netDevices": {"a": {"name": "x"}, "b": {"name": "x"}}}),
                "two devices",
            ),
            (
                serde_json::json!({"namespaces": [{"type": "network"}],
                    "netDevices": {"averyveryverylongname": {}}}),
                "not a valid interface name",
            ),
        ] {
            let s = spec(serde_json::json!({"ociVersion": "1.2.0", "linux": v}));
            let e = validate(&s).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn only_a_network_namespace_without_path_is_made() {
        let with = |ns: serde_json::Value| {
            creates_netns(&spec(serde_json::json!({"ociVersion": "1.2.0",
                "linux": {"namespaces": ns}})))
        };
        assert!(with(serde_json::json!([{"type": "network"}])));
        assert!(with(serde_json::json!([{"type": "network", "path": ""}])));
        assert!(!with(
            serde_json::json!([{"type": "network", "path": "/run/netns/x"}])
        ));
        assert!(!with(serde_json::json!([{"type": "pid"}])));
    }

    #[test]
    fn rtattrs_round_trip() {
        let mut m = Vec::new();
        attr(&mut m, 3, b"eth0\0");
        attr(&mut m, 28, &7u32.to_ne_bytes());
        assert_eq!(m.len(), 12 + 8);
        let a = attrs(&m);
        assert_eq!(a[0], (3, &b"eth0\0"[..]));
        assert_eq!(a[1].0, 28);
    }
}
