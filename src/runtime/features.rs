//! `features`: the runtime-spec features document, listing only what corten implements.
//!
//! Built as JSON, not with oci_spec's `Features`: that type puts `mountExtensions` before
//! `netDevices` and keeps the annotations in a HashMap (their order would change from run
//! to run), so the document would no longer be byte for byte what it is.

use serde_json::{Value, json};

use crate::spec_version::OCI_VERSION;

pub fn features() -> Value {
    let caps: Vec<String> = {
        let mut v: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
        v.sort();
        v
    };
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": crate::hooks::Kind::ALL.map(crate::hooks::Kind::name),
        "mountOptions": crate::init::mounts::supported_options(),
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            // systemd: the --systemd-cgroup driver (cgroup v2 hosts; see cgroups::systemd),
            // systemdUser: rootless, with the user's systemd.
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": true, "rdma": true},
            "seccomp": {
                "enabled": true,
                "actions": crate::seccomp::ACTIONS,
                "operators": crate::seccomp::OPERATORS,
                "archs": crate::seccomp::supported_archs(),
                "knownFlags": crate::seccomp::FLAGS,
                "supportedFlags": crate::seccomp::supported_flags()
            },
            // "enabled" says whether corten supports the feature, not whether this host
            // has it (runc's meaning): labels are applied when the host's LSM is enabled.
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true},
            // resctrl groups are not managed yet: a config with intelRdt is refused.
            "intelRdt": {"enabled": false},
            "memoryPolicy": {
                "modes": [
                    "MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
                    "MPOL_PREFERRED", "MPOL_PREFERRED_MANY", "MPOL_LOCAL"
                ],
                "flags": ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES", "MPOL_F_STATIC_NODES"]
            },
            "netDevices": {"enabled": true},
            "mountExtensions": {"idmap": {"enabled": crate::sys::has_mount_setattr()}}
        },
        "annotations": {
            "io.github.corten.version": env!("CARGO_PKG_VERSION"),
            "io.github.corten.commit": env!("CORTEN_COMMIT"),
            // `checkpoint` and `restore` (with CRIU, when it is installed), as runc's key.
            "io.github.corten.checkpoint.enabled": "true"
        },
        "potentiallyUnsafeConfigAnnotations": []
    })
}
