//! corten-image's networks (`pull --net none|host|bridge -p ...`): a busybox httpd pulled
//! from the local registry onto a CNI bridge of the test's own (Debian's plugins: bridge,
//! host-local, portmap, firewall, loopback), reached from the host through its published
//! port and its bridge address and from a second container by address; after `delete`
//! the address is free again and the port rule gone. Also the bad-input errors at pull
//! time, and `--net host` / `--net none`.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Out, TempDir, poll_until, rt, skip, unique_id};
use crate::engines::{Shared, quietly};
use crate::image_support::*;

const CNI_BIN: &str = "/usr/lib/cni";

/// A CNI network of the test's own: its conf dir, bridge, /24 and IPAM dir. On drop, the
/// bridge goes (the plugins never remove it), then, with the last user, CNI's shared
/// iptables chains.
struct Net {
    dir: TempDir,
    bridge: String,
    subnet: String,
    _cni: Shared,
}

impl Net {
    fn new() -> Net {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = TempDir::new("imgnet");
        let n = N.fetch_add(1, Ordering::SeqCst);
        let tag = sha256_hex(dir.path().to_string_lossy().as_bytes());
        let bridge = format!("cin{}", &tag[..10]);
        let subnet = format!("10.232.{}", (std::process::id() as usize + n) % 200 + 20);
        let conf = dir.join("net.d");
        fs::create_dir_all(&conf).unwrap();
        let list = json!({
            "cniVersion": "1.0.0",
            "name": format!("cin{}", &tag[..10]),
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": true,
                 "ipam": {"type": "host-local", "subnet": format!("{subnet}.0/24"),
                          "dataDir": dir.join("ipam"), "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "firewall"}
            ]
        });
        fs::write(conf.join("10-test.conflist"), list.to_string()).unwrap();
        Net {
            dir,
            bridge,
            subnet,
            _cni: Shared::hold("cni"),
        }
    }

    fn conf_dir(&self) -> String {
        self.dir.join("net.d").to_string_lossy().into_owned()
    }

    /// The addresses host-local has handed out (one file per address).
    fn leased(&self) -> Vec<String> {
        let mut v = Vec::new();
        for d in fs::read_dir(self.dir.join("ipam"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in fs::read_dir(d.path()).into_iter().flatten().flatten() {
                let name = f.file_name().to_string_lossy().into_owned();
                if name.starts_with(&self.subnet) {
                    v.push(name);
                }
            }
        }
        v
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        quietly(Command::new("ip").args(["link", "del", &self.bridge]));
    }
}

fn cni_ready() -> Result<(), String> {
    for p in ["bridge", "host-local", "portmap", "firewall", "loopback"] {
        if !Path::new(CNI_BIN).join(p).exists() {
            return Err(format!(
                "no CNI plugin {CNI_BIN}/{p} (containernetworking-plugins)"
            ));
        }
    }
    if Command::new("iptables").arg("-V").output().is_err() {
        return Err("no iptables".into());
    }
    Ok(())
}

/// A busybox image in the local registry, with a page for httpd at /www.
fn web_image(reg: &Registry, tmp: &TempDir) -> String {
    let mut l = base_entries();
    l.extend([
        E::Dir("www/", 0o755),
        E::File("www/index.html", "hello from corten-image\n", 0o644),
        E::Symlink("bin/httpd", "busybox"),
        E::Symlink("bin/wget", "busybox"),
        E::Symlink("bin/ip", "busybox"),
        E::Symlink("bin/hostname", "busybox"),
        E::Symlink("bin/sleep", "busybox"),
        E::Symlink("bin/nc", "busybox"),
        E::Symlink("bin/printf", "busybox"),
    ]);
    let img = image(vec![(l, Comp::Gzip)], json!({"Cmd": ["sh"]}), "amd64", None);
    layout_of(&tmp.join("layout"), &img, "v1");
    reg.push(&tmp.join("layout"), "v1", "test/web", false, None);
    format!("{}/test/web:v1", reg.host())
}

/// A container made from a bundle, deleted (with --force) on drop.
struct Running {
    root: TempDir,
    id: String,
}

impl Running {
    fn create(bundle: &Path) -> Running {
        let r = Running {
            root: TempDir::new("imgnetroot"),
            id: unique_id("imgnet"),
        };
        r.rt(&["create", "--bundle", bundle.to_str().unwrap(), &r.id])
            .ok();
        r.rt(&["start", &r.id]).ok();
        r
    }

    fn rt(&self, args: &[&str]) -> Out {
        let mut a = vec!["--root", self.root.path().to_str().unwrap()];
        a.extend_from_slice(args);
        rt(&a)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.rt(&["delete", "--force", &self.id]);
    }
}

/// GET / from `addr`, the body (empty when nothing answers).
fn http_get(addr: &str) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(2))
    else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

fn nat_rules() -> String {
    let out = Command::new("iptables")
        .args(["-w", "-t", "nat", "-S"])
        .output()
        .expect("iptables -t nat -S");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Nothing of container `id`'s network is left: its address, port rule, masquerade rules
/// (the comment names the id), its record and its pinned namespace in `bundle/net`.
fn assert_released(net: &Net, bundle: &Path, id: &str, port: u16) {
    assert!(net.leased().is_empty(), "{:?}", net.leased());
    let nat = nat_rules();
    assert!(!nat.contains(&format!("--dport {port}")), "{nat}");
    assert!(!nat.contains(&format!("id: \\\"{id}\\\"")), "{nat}");
    let netdir = bundle.join("net");
    assert!(!netdir.join(format!("result-{id}.json")).exists());
    assert!(!netdir.join(format!("ns-{id}")).exists());
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(netdir.to_str().unwrap()), "{mounts}");
}

fn pull(store: &Path, args: &[&str]) -> Out {
    let mut a = vec!["pull", "-q", "--store", store.to_str().unwrap()];
    a.extend_from_slice(args);
    image_cmd(&a, &[])
}

/// What a bridge test starts from: the web image in a local registry, a network of its
/// own, a store, a free host port and `-p PORT:80`.
struct Bridged {
    _reg: Registry,
    tmp: TempDir,
    r: String,
    net: Net,
    store: PathBuf,
    port: u16,
    publish: String,
}

impl Bridged {
    fn new(tag: &str) -> Result<Bridged, String> {
        cni_ready()?;
        let reg = Registry::start();
        let tmp = TempDir::new(tag);
        let r = web_image(&reg, &tmp);
        let store = tmp.join("store");
        let port = free_port();
        Ok(Bridged {
            _reg: reg,
            tmp,
            r,
            net: Net::new(),
            store,
            port,
            publish: format!("{port}:80"),
        })
    }
}

#[test]
fn image_net_bridge_publishes_a_port_and_releases_it() {
    let f = match Bridged::new("imgnet-b") {
        Ok(f) => f,
        Err(why) => skip!("{why}"),
    };
    let (tmp, r, net, store, port) = (&f.tmp, &f.r, &f.net, &f.store, f.port);
    let web = tmp.join("web");
    #[rustfmt::skip]
    pull(store, &[
        "--net", "bridge", "-p", &f.publish, "--hostname", "web", "--dns", "192.0.2.53",
        "--cni-conf-dir", &net.conf_dir(), r, web.to_str().unwrap(),
        "--", "httpd", "-f", "-p", "80", "-h", "/www",
    ]).ok();
    let config: Value = serde_json::from_str(&read(&web.join("config.json"))).unwrap();
    assert_eq!(config["hostname"], "web");
    assert_eq!(
        config["hooks"]["createRuntime"][0]["args"][2], "add",
        "{config:#}"
    );

    let a = Running::create(&web);
    let record = web.join(format!("net/result-{}.json", a.id));
    let result: Value = serde_json::from_str(&read(&record)).unwrap();
    let ip = result["result"]["ips"][0]["address"]
        .as_str()
        .and_then(|s| s.split('/').next())
        .unwrap_or_else(|| panic!("no address in {result:#}"))
        .to_string();
    assert!(ip.starts_with(&net.subnet), "{ip} not in {}", net.subnet);
    assert_eq!(net.leased(), vec![ip.clone()]);

    // From the host: the published port on loopback, and the container's own address.
    let page = "hello from corten-image";
    let local = format!("127.0.0.1:{port}");
    assert!(
        poll_until(Duration::from_secs(10), || http_get(&local).contains(page)),
        "nothing from {local}: {:?}",
        http_get(&local)
    );
    assert!(http_get(&format!("{ip}:80")).contains(page));
    // Inside: eth0 with the address, the hosts entry, the resolver given.
    let out = a.rt(&[
        "exec",
        &a.id,
        "sh",
        "-c",
        "ip -o -4 addr show eth0; cat /etc/hosts /etc/resolv.conf; hostname",
    ]);
    out.ok();
    assert!(out.stdout.contains(&format!("inet {ip}/24")), "{out}");
    assert!(out.stdout.contains(&format!("{ip}\tweb")), "{out}");
    assert!(out.stdout.contains("nameserver 192.0.2.53"), "{out}");
    assert!(out.stdout.trim_end().ends_with("web"), "{out}");

    // A second container on the same bridge reaches the first by its address.
    let client = tmp.join("client");
    // (nc, not wget: Debian's static busybox wget crashes in glibc's resolver code)
    let get = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 80");
    let client_s = client.to_str().unwrap();
    let conf = net.conf_dir();
    let args = [
        "--net",
        "bridge",
        "--cni-conf-dir",
        &conf,
        r,
        client_s,
        "--",
        "sh",
        "-c",
        &get,
    ];
    pull(store, &args).ok();
    let stdout = run_bundle(client.as_path());
    assert!(stdout.contains(page), "{stdout}");
    // The client's address went back when it was deleted.
    assert_eq!(net.leased(), vec![ip.clone()]);

    // delete: the address free again, the port rule and the record gone.
    assert!(
        nat_rules().contains(&format!("--dport {port}")),
        "{}",
        nat_rules()
    );
    let id = a.id.clone();
    assert!(
        nat_rules().contains(&format!("id: \\\"{id}\\\"")),
        "no masquerade rule for {id}"
    );
    drop(a);
    assert_released(net, &web, &id, port);
    assert!(
        !nat_rules().contains(&format!("--dport {port}")),
        "{}",
        nat_rules()
    );
    assert!(!record.exists());
    assert!(http_get(&local).is_empty());
}

/// A create killed after its network hook ran leaves what `delete -f` removes: the
/// address and the port rule.
#[test]
fn image_net_killed_create_is_cleaned_by_delete() {
    let f = match Bridged::new("imgnet-k") {
        Ok(f) => f,
        Err(why) => skip!("{why}"),
    };
    let (tmp, r, net, store, port) = (&f.tmp, &f.r, &f.net, &f.store, f.port);
    let b = tmp.join("b");
    pull(
        store,
        &[
            "--net",
            "bridge",
            "-p",
            &f.publish,
            "--cni-conf-dir",
            &net.conf_dir(),
            r,
            b.to_str().unwrap(),
            "--",
            "sleep",
            "100",
        ],
    )
    .ok();
    // A hook after the network's that never ends: create is killed while it runs.
    let cfg = b.join("config.json");
    let mut config: Value = serde_json::from_str(&read(&cfg)).unwrap();
    config["hooks"]["createRuntime"]
        .as_array_mut()
        .unwrap()
        .push(json!({"path": "/bin/sleep", "args": ["sleep", "100"]}));
    fs::write(&cfg, config.to_string()).unwrap();
    let root = TempDir::new("imgnetroot");
    let root_s = root.path().to_str().unwrap().to_string();
    let id = unique_id("imgnet-killed");
    let mut child = Command::new(crate::common::runtime())
        .args([
            "--root",
            &root_s,
            "create",
            "--bundle",
            b.to_str().unwrap(),
            &id,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let added = poll_until(Duration::from_secs(20), || net.leased().len() == 1);
    let _ = child.kill();
    let _ = child.wait();
    assert!(added, "the network hook never ran");
    rt(&["--root", &root_s, "delete", "--force", &id]).ok();
    assert_released(net, &b, &id, port);
    assert!(
        !nat_rules().contains(&format!("--dport {port}")),
        "{}",
        nat_rules()
    );
}

#[test]
fn image_net_bad_input_is_refused_at_pull() {
    let reg = Registry::start();
    let tmp = TempDir::new("imgnet-e");
    let r = web_image(&reg, &tmp);
    let store = tmp.join("store");
    let b = tmp.join("b");
    let bs = b.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--net", "bridge", "-p", "80"], "no container port"),
        (vec!["--net", "bridge", "-p", "8080:80/sctp"], "tcp or udp"),
        (vec!["-p", "8080:80"], "needs --net bridge"),
        (vec!["--net", "wifi"], "none, host or bridge"),
        (vec!["--hostname", "a b"], "--hostname"),
    ];
    for (args, want) in cases {
        let mut a = args.clone();
        a.extend([r.as_str(), bs]);
        let out = pull(&store, &a);
        assert_image_err(&out, &[want]);
        assert!(!b.exists(), "{args:?} left the bundle");
    }
    // A published port already taken on the host.
    if cni_ready().is_ok() {
        let net = Net::new();
        let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
        let p = format!("{}:80", taken.local_addr().unwrap().port());
        let out = pull(
            &store,
            &[
                "--net",
                "bridge",
                "-p",
                &p,
                "--cni-conf-dir",
                &net.conf_dir(),
                &r,
                bs,
            ],
        );
        assert_image_err(&out, &["already in use"]);
        assert!(!b.exists());
        let out = pull(
            &store,
            &[
                "--net",
                "bridge",
                "--cni-conf-dir",
                &net.conf_dir(),
                "--cni-bin-dir",
                "/nonexistent",
                &r,
                bs,
            ],
        );
        assert_image_err(&out, &["CNI plugin", "not found in /nonexistent"]);
        assert!(!b.exists());
    }
}

/// `--net host`: the host's network namespace (the container sees the host's interfaces);
/// `--net none` (the default): its own, with loopback only.
#[test]
fn image_net_host_and_none() {
    let reg = Registry::start();
    let tmp = TempDir::new("imgnet-h");
    let r = web_image(&reg, &tmp);
    let store = tmp.join("store");
    let host_ns = fs::read_link("/proc/self/ns/net").unwrap();
    for (mode, same) in [("host", true), ("none", false)] {
        let b: PathBuf = tmp.join(mode);
        pull(
            &store,
            &[
                "--net",
                mode,
                &r,
                b.to_str().unwrap(),
                "--",
                "readlink",
                "/proc/self/ns/net",
            ],
        )
        .ok();
        let stdout = run_bundle(b.as_path());
        assert_eq!(
            stdout.trim() == host_ns.to_str().unwrap(),
            same,
            "{mode}: {stdout}"
        );
    }
}
