//! `features`: the runtime-spec features document, listing only what corten implements.

use serde_json::{Value, json};

use crate::config::OCI_VERSION;
use crate::init::mounts::KNOWN_OPTIONS;

pub fn features() -> Value {
    let caps: Vec<String> = {
        let mut v: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
        v.sort();
        v
    };
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        // Hooks are not run yet: none is claimed.
        "hooks": [],
        "mountOptions": KNOWN_OPTIONS,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": true},
            "seccomp": {"enabled": false},
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "io.github.corten.version": env!("CARGO_PKG_VERSION"),
            "io.github.corten.commit": env!("CORTEN_COMMIT")
        },
        "potentiallyUnsafeConfigAnnotations": []
    })
}
