//! Kubernetes' path to corten, the CRI tests' bodies: containerd's CRI plugin (Debian's
//! 1.6) with a runtime handler `corten` (the runc shim with `BinaryName` = corten), driven
//! by crictl as the kubelet would drive it. Each body takes the handler, `corten` or
//! `runc`, so the same steps run for both and a difference from runc shows as a failure.
//! Pods get their network from Debian's CNI plugins (bridge, host-local, loopback, portmap)
//! with a conf dir, bridge and subnet of the test's own, or use the host's network.
//!
//! Test-free: the integration suite instantiates the bodies with the cgroupfs driver (cri.rs,
//! the v1-hybrid host), the guest suite (guest/cri.rs, which includes this file by path)
//! with the systemd driver, containerd's `SystemdCgroup = true` as kubeadm sets it: the shim
//! passes `--systemd-cgroup`, pods live in a kubelet-style slice
//! (`kubepods-besteffort-pod<uid>.slice`) and each container in the scope
//! `cri-containerd-<id>.scope` of it. The cgroup checks follow the driver.
//!
//! crictl comes from `CRICTL`, else `<repo>/../shared/tools/cri-tools/crictl`; without it
//! the tests print a visible skip. The daemon runs with `restrict_oom_score_adj = true`:
//! a root without CAP_SYS_RESOURCE (a container, a CI runner) cannot lower a score, and
//! `runp` fails for runc and corten alike without it.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use super::containerd_daemon::{Containerd, IMAGE};
use super::*;
use crate::common::{Out, TempDir, assert_unit_gone, poll_until, systemctl, unit_cgroup};
use crate::image_support::sha256_hex;

/// The sandbox (pause) image: the test image whose command sleeps forever.
const PAUSE: &str = "localhost/corten-pause:latest";

/// How long one crictl command may take (generous: the guest is emulated).
const CRI_TIMEOUT: Duration = Duration::from_secs(180);

/// How long the tests wait for a container to exit, a server to answer, the daemon to
/// come up.
const WAIT: Duration = Duration::from_secs(120);

/// The cgroup driver of the runtimes (containerd's `SystemdCgroup` option for both handlers).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Driver {
    /// cgroupfs (the shim's default): pods under the daemon's own test cgroup.
    Cgroupfs,
    /// systemd (`SystemdCgroup = true`): pods in kubelet-style slices, containers in scopes.
    Systemd,
}

/// crictl, if this host has it.
pub fn crictl_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CRICTL") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/cri-tools/crictl");
    p.exists().then_some(p)
}

/// A containerd with the CRI plugin (handlers `corten` and `runc`, both with `driver`), its
/// own CNI network (bridge `bridge` on a /24 of its own) and crictl pointed at it. On drop:
/// every pod removed through the CRI, then the bridge, the pods' slices (systemd), then the
/// daemon (containerd_daemon.rs).
pub struct Cri {
    driver: Driver,
    /// The pods' slices made so far (systemd driver): stopped on drop.
    slices: Mutex<Vec<String>>,
    crictl: PathBuf,
    bridge: String,
    /// The bridge's address (the pods' gateway), on the host.
    gateway: String,
    /// A host port of this daemon's own (for hostPort).
    host_port: u16,
    ctd: Containerd,
    _cni: Shared,
    _kubepods: Option<Shared>,
}

impl Cri {
    pub fn start(crictl: PathBuf, driver: Driver) -> Cri {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = TempDir::new("cri");
        let name = dir_name(&dir);
        let hash = sha256_hex(name.as_bytes());
        let bridge = format!("crt{}", &hash[..10]);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let subnet = (std::process::id() as usize + n) % 200 + 20;
        let cni_conf = dir.join("cni");
        fs::create_dir_all(&cni_conf).unwrap();
        let net = json!({
            "cniVersion": "0.4.0",
            "name": name,
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
                 "ipam": {"type": "host-local", "subnet": format!("10.231.{subnet}.0/24"),
                          "dataDir": dir.join("cni-ipam"),
                          "routes": [{"dst": "0.0.0.0/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
            ],
        });
        fs::write(cni_conf.join("10-test.conflist"), net.to_string()).unwrap();
        fs::write(
            cni_conf.join("99-loopback.conf"),
            json!({"cniVersion": "0.4.0", "name": "lo", "type": "loopback"}).to_string(),
        )
        .unwrap();
        let systemd = driver == Driver::Systemd;
        let handler = |name: &str, binary: &str, root: &Path| {
            let p = format!(r#"plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{name}"#);
            format!(
                "[{p}]\n  runtime_type = \"io.containerd.runc.v2\"\n[{p}.options]\n  \
                 BinaryName = \"{binary}\"\n  Root = \"{}\"\n  SystemdCgroup = {systemd}\n",
                root.display()
            )
        };
        let plugins = format!(
            r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  enable_selinux = false
[plugins."io.containerd.grpc.v1.cri".containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"
[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{conf}"
{corten}{runc}"#,
            conf = cni_conf.display(),
            corten = handler("corten", &corten_path(), &dir.join("runc")),
            runc = handler("runc", "runc", &dir.join("runc-runc")),
        );
        let ctd = Containerd::start_in(dir, "k8s.io".into(), name, "", &plugins);
        ctd.import(IMAGE, &["/bin/sh"]);
        ctd.import(PAUSE, &["/pause"]);
        fs::write(ctd.dir.join("crictl.yaml"), "debug: false\n").unwrap();
        let cri = Cri {
            driver,
            slices: Mutex::new(Vec::new()),
            crictl,
            bridge,
            gateway: format!("10.231.{subnet}.1"),
            host_port: 20000 + ((std::process::id() as usize * 7 + n) % 20000) as u16,
            ctd,
            _cni: Shared::hold("cni"),
            _kubepods: systemd.then(|| Shared::hold("kubepods")),
        };
        let up = poll_until(WAIT, || {
            let info = cri.cmd().arg("info").output();
            info.is_ok_and(|o| o.status.success())
        });
        assert!(up, "the CRI plugin did not come up:\n{}", cri.ctd.log());
        cri
    }

    /// crictl for this daemon (with a config file of its own: crictl warns without one).
    fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.crictl);
        let endpoint = format!("unix://{}", self.ctd.address);
        cmd.arg("--config").arg(self.ctd.dir.join("crictl.yaml"));
        cmd.args([
            "--runtime-endpoint",
            &endpoint,
            "--image-endpoint",
            &endpoint,
        ])
        .args(["--timeout", "120s"]);
        cmd
    }

    /// `crictl ARGS...` (output captured).
    fn crictl(&self, args: &[&str]) -> Out {
        run_cmd(
            self.ctd.dir.path(),
            self.cmd().args(args),
            None,
            CRI_TIMEOUT,
        )
    }

    /// Writes `value` as a JSON file named `name` in the test's dir; returns its path.
    fn write(&self, name: &str, value: &Value) -> String {
        let path = self.ctd.dir.join(name);
        fs::write(&path, value.to_string()).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// The pod config of pod `name`: its own cgroup parent (cgroupfs: under the daemon's
    /// test cgroup; systemd: a slice as the kubelet names it, from a uid unique to this
    /// daemon and pod), log dir, and `linux` fields merged from `linux`.
    fn pod_config(&self, name: &str, linux: Value) -> Value {
        let parent = match self.driver {
            Driver::Cgroupfs => format!("/{}/{name}", self.ctd.cgroup),
            Driver::Systemd => {
                let uid = &sha256_hex(format!("{}/{name}", self.ctd.cgroup).as_bytes())[..16];
                let slice = format!("kubepods-besteffort-pod{uid}.slice");
                self.slices.lock().unwrap().push(slice.clone());
                slice
            }
        };
        let mut l = json!({"cgroup_parent": parent});
        merge(&mut l, linux);
        json!({
            "metadata": {"name": name, "namespace": "default", "uid": name, "attempt": 0},
            "log_directory": self.ctd.dir.join("logs").join(name),
            "linux": l,
        })
    }

    /// `crictl runp --runtime HANDLER pod.json`: the pod's id.
    fn runp(&self, handler: &str, pod: &Value) -> String {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let file = self.write(&format!("pod-{name}.json"), pod);
        let out = self.crictl(&["runp", "--runtime", handler, &file]);
        out.ok();
        out.stdout.trim().to_string()
    }

    /// `crictl create POD container.json pod.json`: the result (the container's id on
    /// stdout).
    fn create(&self, pod_id: &str, pod: &Value, ctr: &Value) -> Out {
        let pname = pod["metadata"]["name"].as_str().unwrap();
        let cname = ctr["metadata"]["name"].as_str().unwrap();
        let pod_file = self.write(&format!("pod-{pname}.json"), pod);
        let file = self.write(&format!("ctr-{pname}-{cname}.json"), ctr);
        self.crictl(&["create", pod_id, &file, &pod_file])
    }

    /// create + start: the container's id.
    fn run(&self, pod_id: &str, pod: &Value, ctr: &Value) -> String {
        let out = self.create(pod_id, pod, ctr);
        out.ok();
        let id = out.stdout.trim().to_string();
        self.crictl(&["start", &id]).ok();
        id
    }

    /// `crictl inspect ID` (or `inspectp`) as JSON.
    fn inspect(&self, verb: &str, id: &str) -> Value {
        let out = self.crictl(&[verb, "-o", "json", id]);
        out.ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}:\n{out}"))
    }

    /// Waits for container `id` to exit; its `crictl inspect` then.
    fn wait_exited(&self, id: &str) -> Value {
        let mut last = Value::Null;
        let exited = poll_until(WAIT, || {
            last = self.inspect("inspect", id);
            last["status"]["state"] == "CONTAINER_EXITED"
        });
        assert!(exited, "container {id} did not exit:\n{last:#}");
        last
    }

    /// `crictl exec ID sh -c SCRIPT`.
    fn exec(&self, id: &str, script: &str) -> Out {
        self.crictl(&["exec", id, "sh", "-c", script])
    }

    /// The state root the shim gives the runtime of `handler` (for namespace k8s.io).
    fn runtime_root(&self, handler: &str) -> PathBuf {
        let root = match handler {
            "corten" => self.ctd.runc_root(),
            _ => self.ctd.dir.join("runc-runc"),
        };
        root.join("k8s.io")
    }

    /// The runtime of `handler` with the shim's `--root`.
    fn runtime_cmd(&self, handler: &str) -> Command {
        let bin = match handler {
            "corten" => corten_path(),
            _ => "runc".into(),
        };
        let mut cmd = Command::new(bin);
        cmd.arg("--root").arg(self.runtime_root(handler));
        cmd
    }

    /// The file with the memory limit of the container whose cgroupsPath is `cg`, after
    /// checking that its cgroup is in its pod's, `parent` (the pod config's cgroup_parent).
    fn memory_limit_file(&self, cg: &str, parent: &str) -> PathBuf {
        let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        match self.driver {
            Driver::Cgroupfs => {
                assert!(
                    cg.starts_with(&format!("{parent}/")),
                    "{cg} not in {parent}"
                );
                if v2 {
                    Path::new("/sys/fs/cgroup")
                        .join(cg.trim_start_matches('/'))
                        .join("memory.max")
                } else {
                    cgroup_v1_file("memory", cg, "memory.limit_in_bytes")
                }
            }
            Driver::Systemd => {
                assert!(v2, "the systemd driver's checks are written for cgroup v2");
                let (dir, slice) = (unit_cgroup(&cgroup_unit(cg)), unit_cgroup(parent));
                assert!(
                    dir.starts_with(&slice),
                    "{} not in the pod's slice {}",
                    dir.display(),
                    slice.display()
                );
                dir.join("memory.max")
            }
        }
    }

    /// `crictl stopp` + `rmp` of pod `pod_id`, and nothing of it left: no container in the
    /// runtime's list, no cgroup below the pod's parent (systemd: no scope of the pod's
    /// sandbox or containers, nothing in its slice, which is then stopped as the kubelet
    /// does), no mount under the test's dir, no network namespace.
    fn remove_pod_and_check(&self, handler: &str, pod_id: &str, pod: &Value) {
        let netns = self.inspect("inspectp", pod_id)["info"]["runtimeSpec"]["linux"]["namespaces"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|n| n["type"] == "network")
            .and_then(|n| n["path"].as_str().map(str::to_string));
        let out = self.crictl(&["ps", "-a", "-q", "--pod", pod_id]);
        out.ok();
        let mut ids: Vec<String> = out.stdout.split_whitespace().map(String::from).collect();
        ids.push(pod_id.to_string());
        self.crictl(&["stopp", pod_id]).ok();
        self.crictl(&["rmp", pod_id]).ok();
        let out = self.crictl(&["pods", "-q"]);
        assert!(out.stdout.trim().is_empty(), "pods left:\n{out}");
        let bin = if handler == "corten" {
            corten_path()
        } else {
            "runc".into()
        };
        let root = self.runtime_root(handler);
        let out = run_cmd(
            self.ctd.dir.path(),
            Command::new(bin)
                .arg("--root")
                .arg(&root)
                .args(["list", "-q"]),
            None,
            CMD_TIMEOUT,
        );
        out.ok();
        assert!(out.stdout.trim().is_empty(), "containers left:\n{out}");
        let parent = pod["linux"]["cgroup_parent"].as_str().unwrap();
        match self.driver {
            Driver::Cgroupfs => {
                assert!(!cgroup_has_children(parent), "cgroups left under {parent}")
            }
            Driver::Systemd => {
                // No scope of the sandbox or a container is left, none in the pod's slice;
                // then the slice goes as the kubelet removes it.
                let slice = unit_cgroup(parent);
                for id in &ids {
                    let unit = format!("cri-containerd-{id}.scope");
                    assert_unit_gone(&unit, &slice.join(&unit));
                }
                let left: Vec<_> = fs::read_dir(&slice)
                    .unwrap_or_else(|e| panic!("{}: {e}", slice.display()))
                    .flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.file_name())
                    .collect();
                assert!(left.is_empty(), "cgroups left in {parent}: {left:?}");
                systemctl(&["stop", parent]);
                assert_unit_gone(parent, &slice);
            }
        }
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.ctd.dir.path().to_string_lossy().into_owned();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&dir)).collect();
        assert!(left.is_empty(), "mounts left: {left:#?}");
        if let Some(ns) = netns {
            assert!(!Path::new(&ns).exists(), "netns {ns} left behind");
        }
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        // Pods through the CRI first (it tears down their networks and netns) ...
        quietly(self.cmd().args(["rmp", "--all", "--force"]));
        quietly(Command::new("ip").args(["link", "del", &self.bridge]));
        for slice in self.slices.lock().map(|s| s.clone()).unwrap_or_default() {
            quietly(Command::new("systemctl").args(["stop", &slice]));
        }
        // ... then the daemon and everything of it (containerd_daemon.rs), and the runc
        // handler's containers (corten's are deleted by Containerd's drop).
        let root = self.runtime_root("runc");
        if let Ok(entries) = fs::read_dir(&root) {
            for e in entries.flatten() {
                let id = e.file_name().to_string_lossy().into_owned();
                quietly(
                    Command::new("runc")
                        .arg("--root")
                        .arg(&root)
                        .args(["delete", "--force", &id]),
                );
            }
        }
    }
}

/// Removes what CNI leaves on the machine and no pod uses any more (`Shared`'s last holder
/// calls this): the empty cache and netns dirs, portmap's and the firewall plugin's chains.
pub(super) fn remove_cni_leftovers() {
    for dir in ["/var/lib/cni/results", "/var/lib/cni", "/run/netns"] {
        let _ = fs::remove_dir(dir);
    }
    remove_portmap_chains();
    remove_firewall_chains();
}

/// Removes the firewall plugin's CNI-FORWARD and CNI-ADMIN (filter table: made on first
/// use, never removed) if they hold no rule but the plugin's own jumps.
fn remove_firewall_chains() {
    let iptables = |args: &[&str]| {
        Command::new("iptables")
            .arg("-w")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let rules = |chain: &str| {
        iptables(&["-S", chain]).map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.starts_with("-A") && !l.contains("-j CNI-ADMIN"))
                .count()
        })
    };
    if rules("CNI-FORWARD") != Some(0) || rules("CNI-ADMIN") != Some(0) {
        return;
    }
    let comment = "CNI firewall plugin rules";
    iptables(&[
        "-D",
        "FORWARD",
        "-m",
        "comment",
        "--comment",
        comment,
        "-j",
        "CNI-FORWARD",
    ]);
    for chain in ["CNI-FORWARD", "CNI-ADMIN"] {
        iptables(&["-F", chain]);
        iptables(&["-X", chain]);
    }
}

/// Stops the kubelet-style parent slices the systemd-driver pods were put in
/// (kubepods-besteffort.slice in kubepods.slice, made by systemd with the first pod's) if
/// no pod is left in them (`Shared`'s last holder calls this).
pub(super) fn remove_kubepods_slices() {
    for slice in ["kubepods-besteffort.slice", "kubepods.slice"] {
        let cg = systemctl(&["show", slice, "-p", "ControlGroup", "--value"]);
        let dir = Path::new("/sys/fs/cgroup").join(cg.trim_start_matches('/'));
        let busy = fs::read_dir(&dir)
            .is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_type().is_ok_and(|t| t.is_dir()))));
        if !cg.is_empty() && !busy {
            systemctl(&["stop", slice]);
        }
    }
}

/// Removes portmap's machine-wide chains (CNI-HOSTPORT-*: made on first use, never removed
/// by the plugin) if no hostPort rule is left in them.
fn remove_portmap_chains() {
    let iptables = |args: &[&str]| {
        Command::new("iptables")
            .args(["-w", "-t", "nat"])
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let Some(dnat) = iptables(&["-S", "CNI-HOSTPORT-DNAT"]) else {
        return;
    };
    if String::from_utf8_lossy(&dnat.stdout)
        .lines()
        .any(|l| l.starts_with("-A"))
    {
        return;
    }
    let local = [
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        "CNI-HOSTPORT-DNAT",
    ];
    for chain in ["PREROUTING", "OUTPUT"] {
        iptables(&[&["-D", chain][..], &local].concat());
    }
    let comment = "CNI portfwd requiring masquerade";
    iptables(&[
        "-D",
        "POSTROUTING",
        "-m",
        "comment",
        "--comment",
        comment,
        "-j",
        "CNI-HOSTPORT-MASQ",
    ]);
    for chain in [
        "CNI-HOSTPORT-DNAT",
        "CNI-HOSTPORT-MASQ",
        "CNI-HOSTPORT-SETMARK",
    ] {
        iptables(&["-F", chain]);
        iptables(&["-X", chain]);
    }
}

/// The unit of systemd cgroupsPath `slice:prefix:name`: the scope `prefix-name.scope`.
fn cgroup_unit(cg: &str) -> String {
    match cg.split(':').collect::<Vec<_>>()[..] {
        [_, prefix, name] => format!("{prefix}-{name}.scope"),
        _ => panic!("cgroupsPath {cg:?} is not slice:prefix:name"),
    }
}

/// Merges object `add` into object `into` (keys of `add` win).
fn merge(into: &mut Value, add: Value) {
    if let (Some(a), Value::Object(b)) = (into.as_object_mut(), add) {
        a.extend(b);
    }
}

/// Does cgroup `rel` have a sub-cgroup in any hierarchy?
fn cgroup_has_children(rel: &str) -> bool {
    let rel = rel.trim_start_matches('/');
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines()
        .filter(|l| {
            let t = l.split(" - ").nth(1).and_then(|r| r.split(' ').next());
            matches!(t, Some("cgroup" | "cgroup2"))
        })
        .filter_map(|l| l.split(' ').nth(4))
        .filter_map(|h| fs::read_dir(Path::new(h).join(rel)).ok())
        .any(|mut d| d.any(|e| e.is_ok_and(|e| e.file_type().is_ok_and(|t| t.is_dir()))))
}

/// A container config: name, the test image, `command`, a log path, and more fields from
/// `extra` (e.g. `linux`).
fn container(name: &str, command: &[&str], extra: Value) -> Value {
    let mut c = json!({
        "metadata": {"name": name},
        "image": {"image": IMAGE},
        "command": command,
        "log_path": format!("{name}.log"),
    });
    merge(&mut c, extra);
    c
}

/// The whole lifecycle of a pod and a container in it: runp, create, start, ps, inspect,
/// exec, logs, stats, update --memory, stop, rm, stopp, rmp, and nothing left behind.
fn lifecycle(cri: &Cri, handler: &str, host_network: bool) {
    let linux = if host_network {
        json!({"security_context": {"namespace_options": {"network": 2}}})
    } else {
        json!({})
    };
    let pod = cri.pod_config("lc", linux);
    let pod_id = cri.runp(handler, &pod);
    let ctr = container(
        "main",
        &["sh", "-c", "echo hello from the pod; exec sleep 1000"],
        json!({}),
    );
    let id = cri.run(&pod_id, &pod, &ctr);

    let out = cri.crictl(&["ps", "-o", "json", "--pod", &pod_id]);
    out.ok();
    let ps: Value = serde_json::from_str(&out.stdout).unwrap();
    let c = &ps["containers"][0];
    assert_eq!(
        (c["id"].as_str(), c["state"].as_str()),
        (Some(id.as_str()), Some("CONTAINER_RUNNING")),
        "{out}"
    );

    // The shim keeps the runtime's state under its root: `<handler> state` reads the
    // container's and the sandbox's there (for corten: corten's own state.json).
    let info = cri.inspect("inspect", &id);
    assert_eq!(info["info"]["runtimeType"], "io.containerd.runc.v2");
    let state_dir = cri.runtime_root(handler).join(&id);
    for (what, pid) in [(&id, &info["info"]["pid"]), (&pod_id, &Value::Null)] {
        let out = run_cmd(
            cri.ctd.dir.path(),
            cri.runtime_cmd(handler).args(["state", what]),
            None,
            CMD_TIMEOUT,
        );
        out.ok();
        let state: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(state["status"], "running", "{out}");
        if !pid.is_null() {
            assert_eq!(&state["pid"], pid, "{out}");
        }
    }

    // exec: as root, in the pod's network namespace: the host's only on the host network.
    let out = cri.exec(&id, "echo exec-ok; id -u; readlink /proc/self/ns/net");
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..2], ["exec-ok", "0"], "{out}");
    let host_net = fs::read_link("/proc/self/ns/net").unwrap();
    let same = lines.get(2) == Some(&host_net.to_string_lossy().as_ref());
    assert_eq!(
        same,
        host_network,
        "host netns {}:\n{out}",
        host_net.display()
    );
    // crictl exits 1 and names the exec's own exit code, with a terminal or without.
    let out = cri.crictl(&["exec", &id, "sh", "-c", "exit 7"]);
    out.fails();
    assert!(
        out.stderr.contains("command terminated with exit code 7"),
        "{out}"
    );
    let line = sh_line(
        cri.cmd()
            .args(["exec", "-it", &id, "sh", "-c", "tty; exit 4"]),
    );
    let out = under_script(cri.ctd.dir.path(), &line);
    assert!(out.stdout.contains("/dev/pts/"), "{out}");
    assert!(
        out.stdout.contains("command terminated with exit code 4"),
        "{out}"
    );

    let out = cri.crictl(&["logs", &id]);
    out.ok();
    assert_eq!(out.stdout, "hello from the pod\n", "{out}");

    let out = cri.crictl(&["stats", "-o", "json", &id]);
    out.ok();
    let stats: Value = serde_json::from_str(&out.stdout).unwrap();
    let used = &stats["stats"][0]["memory"]["workingSetBytes"]["value"];
    assert!(
        used.as_str().and_then(|v| v.parse::<u64>().ok()).is_some(),
        "{out}"
    );

    // update --memory reaches the container's cgroup.
    let limit = 200 * 1024 * 1024;
    cri.crictl(&["update", "--memory", &limit.to_string(), &id])
        .ok();
    let cg = cri.inspect("inspect", &id)["info"]["runtimeSpec"]["linux"]["cgroupsPath"]
        .as_str()
        .unwrap()
        .to_string();
    let file = cri.memory_limit_file(&cg, pod["linux"]["cgroup_parent"].as_str().unwrap());
    let now = fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert_eq!(now.trim(), limit.to_string(), "{}", file.display());
    if cri.driver == Driver::Systemd {
        // systemd knows the new limit too (it would put its own back otherwise).
        let unit = cgroup_unit(&cg);
        let max = systemctl(&["show", &unit, "-p", "MemoryMax", "--value"]);
        assert_eq!(max, limit.to_string(), "systemctl show {unit} -p MemoryMax");
    }

    // stop: SIGTERM ends the sleep (143 = 128 + SIGTERM).
    cri.crictl(&["stop", "--timeout", "10", &id]).ok();
    let info = cri.wait_exited(&id);
    assert_eq!(info["status"]["exitCode"], 143, "{info:#}");
    cri.crictl(&["rm", &id]).ok();
    assert!(!state_dir.exists(), "state left: {}", state_dir.display());
    cri.remove_pod_and_check(handler, &pod_id, &pod);
}

pub fn lifecycle_pod_network(cri: &Cri, handler: &str) {
    lifecycle(cri, handler, false);
}

pub fn lifecycle_host_network(cri: &Cri, handler: &str) {
    lifecycle(cri, handler, true);
}

/// Pod security fields reach the container: runAsUser/Group, readOnlyRootFilesystem,
/// capabilities dropped and added, seccomp RuntimeDefault, noNewPrivileges; a memory limit
/// is enforced and the OOM kill is the reason `crictl inspect` gives.
pub fn security_fields(cri: &Cri, handler: &str) {
    let pod = cri.pod_config("sec", json!({}));
    let pod_id = cri.runp(handler, &pod);
    let script = "id -u; id -g; touch /x 2>/dev/null || echo read-only; \
                  grep -E '^(CapBnd|NoNewPrivs|Seccomp):' /proc/self/status";
    let ctr = container(
        "sec",
        &["sh", "-c", script],
        json!({"linux": {"security_context": {
            "run_as_user": {"value": 1000},
            "run_as_group": {"value": 1000},
            "readonly_rootfs": true,
            "capabilities": {"add_capabilities": ["NET_ADMIN"], "drop_capabilities": ["CHOWN"]},
            "seccomp": {"profile_type": 0},
            "no_new_privs": true,
        }}}),
    );
    let id = cri.run(&pod_id, &pod, &ctr);
    let info = cri.wait_exited(&id);
    assert_eq!(info["status"]["exitCode"], 0, "{info:#}");
    let out = cri.crictl(&["logs", &id]);
    out.ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..3], ["1000", "1000", "read-only"], "{out}");
    let field = |name: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
    };
    let bnd = u64::from_str_radix(field("CapBnd:"), 16).unwrap();
    assert_eq!(bnd & 1, 0, "CAP_CHOWN should be dropped:\n{out}");
    assert_ne!(bnd & (1 << 12), 0, "CAP_NET_ADMIN should be added:\n{out}");
    assert_eq!(field("NoNewPrivs:"), "1", "{out}");
    assert_eq!(field("Seccomp:"), "2", "RuntimeDefault is a filter:\n{out}");

    // A 16 MiB limit: `tail /dev/zero` (one endless line) is OOM-killed.
    let ctr = container(
        "oom",
        &["tail", "/dev/zero"],
        json!({"linux": {"resources": {"memory_limit_in_bytes": 16 << 20}}}),
    );
    let id = cri.run(&pod_id, &pod, &ctr);
    let mut info = cri.wait_exited(&id);
    assert_eq!(info["status"]["exitCode"], 137, "{info:#}");
    // The CRI sets the reason when the shim's OOM event arrives, which containerd 1.6 may
    // deliver after the exit (containerd#8180): until then it says "Error".
    poll_until(Duration::from_secs(20), || {
        info = cri.inspect("inspect", &id);
        info["status"]["reason"] == "OOMKilled"
    });
    if cri.driver == Driver::Systemd && info["status"]["reason"] == "Error" {
        // With SystemdCgroup, containerd 1.6's shim may lose the OOM event
        // (containerd#8893): it watches the scope's memory.events only once the task has
        // started, and a container killed at once can be gone, scope and all, by then. Seen
        // with runc in every guest run and with corten in one: no runtime can be held to it.
        // The kill itself is checked above (137 under a 16 MiB limit).
        eprintln!("note: {handler} with SystemdCgroup: OOM kill reported as Error");
    } else {
        assert_eq!(info["status"]["reason"], "OOMKilled", "{info:#}");
    }
    cri.remove_pod_and_check(handler, &pod_id, &pod);
}

/// A failing command's exit code shows in `crictl inspect`; a missing binary fails the
/// start (where the runtime creates the container) with an error naming it.
pub fn failures(cri: &Cri, handler: &str) {
    let pod = cri.pod_config("fail", json!({}));
    let pod_id = cri.runp(handler, &pod);
    let id = cri.run(
        &pod_id,
        &pod,
        &container("exit3", &["sh", "-c", "exit 3"], json!({})),
    );
    let info = cri.wait_exited(&id);
    assert_eq!(info["status"]["exitCode"], 3, "{info:#}");
    assert_eq!(info["status"]["reason"], "Error", "{info:#}");

    let out = cri.create(
        &pod_id,
        &pod,
        &container("missing", &["/nonexistent"], json!({})),
    );
    out.ok();
    let out = cri.crictl(&["start", out.stdout.trim()]);
    out.fails();
    assert!(
        out.stderr.contains("/nonexistent") && out.stderr.contains("no such file or directory"),
        "{out}"
    );
    cri.remove_pod_and_check(handler, &pod_id, &pod);
}

/// Two containers of one pod share its network and IPC namespaces (a server on 127.0.0.1
/// in one answers the other) and, when the pod asks, its pid namespace.
pub fn shared_namespaces(cri: &Cri, handler: &str) {
    let pid_pod = json!({"security_context": {"namespace_options": {"pid": 0}}});
    let pod = cri.pod_config("shared", pid_pod.clone());
    let pod_id = cri.runp(handler, &pod);
    let server = container(
        "server",
        &["httpd", "-f", "-p", "127.0.0.1:8081", "-h", "/etc"],
        json!({"linux": pid_pod.clone()}),
    );
    let server = cri.run(&pod_id, &pod, &server);
    let client = container("client", &["sleep", "1000"], json!({"linux": pid_pod}));
    let client = cri.run(&pod_id, &pod, &client);
    let mut out = cri.exec(&client, "wget -qO- http://127.0.0.1:8081/passwd");
    for _ in 0..50 {
        if out.success() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        out = cri.exec(&client, "wget -qO- http://127.0.0.1:8081/passwd");
    }
    out.ok();
    assert!(out.stdout.starts_with("root:"), "{out}");
    let ns = "for n in net ipc pid; do readlink /proc/self/ns/$n; done";
    let a = cri.exec(&server, ns);
    let b = cri.exec(&client, ns);
    assert_eq!(a.ok().stdout, b.ok().stdout);
    assert_eq!(a.stdout.lines().count(), 3, "{a}");
    // The pod's pid namespace: its pid 1 is the sandbox's pause.
    let out = cri.exec(&client, "tr '\\0' ' ' </proc/1/cmdline; echo; pidof httpd");
    out.ok();
    assert!(out.stdout.starts_with("sleep 2147483647"), "{out}");
    assert_eq!(out.stdout.lines().count(), 2, "{out}");
    cri.remove_pod_and_check(handler, &pod_id, &pod);
}

/// A hostPort (portmap) reaches the container's server from the host.
pub fn host_port(cri: &Cri, handler: &str) {
    let mut pod = cri.pod_config("port", json!({}));
    pod["port_mappings"] =
        json!([{"protocol": 0, "container_port": 8080, "host_port": cri.host_port}]);
    let pod_id = cri.runp(handler, &pod);
    let ctr = container(
        "web",
        &["httpd", "-f", "-p", "8080", "-h", "/etc"],
        json!({}),
    );
    cri.run(&pod_id, &pod, &ctr);
    let addr = format!("{}:{}", cri.gateway, cri.host_port);
    let mut got = String::new();
    let ok = poll_until(WAIT, || {
        got = http_get(&addr, "/passwd").unwrap_or_else(|e| e.to_string());
        got.contains("root:")
    });
    assert!(ok, "GET http://{addr}/passwd through the hostPort: {got}");
    cri.remove_pod_and_check(handler, &pod_id, &pod);
}

/// A plain HTTP/1.0 GET: the whole response.
fn http_get(addr: &str, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\n\r\n")?;
    let mut resp = String::new();
    s.read_to_string(&mut resp)?;
    Ok(resp)
}
