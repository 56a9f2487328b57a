//! Kubernetes' path on a production-shaped node: the CRI tests of the integration suite
//! (integration/engines/cri_suite.rs) with containerd's `SystemdCgroup = true` for both
//! handlers, the kubeadm default. The shim passes `--systemd-cgroup` and cgroupsPath
//! `kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>`: each body checks that the
//! container's scope is in its pod's slice, that `crictl update --memory` reaches the
//! scope's memory.max and systemd's MemoryMax, and that after `rmp` no scope and no cgroup
//! of the pod is left. crictl comes from `CRICTL` (hack/guest.sh hands it over on the
//! binaries disk when the host has it); without it the tests print a visible skip.

use crate::common::skipped;
use crate::engines::cri_suite::*;
use crate::systemd::on_systemd_host;

/// Runs test `test`'s `body` with a fresh daemon (systemd driver) for `handler`, in the
/// systemd guest; without crictl, a visible skip.
fn run(test: &str, handler: &str, body: fn(&Cri, &str)) {
    if !on_systemd_host(test) {
        return;
    }
    match crictl_path() {
        Some(crictl) => body(&Cri::start(crictl, Driver::Systemd), handler),
        None => skipped(
            test,
            "no crictl (hack/guest.sh hands over $CRICTL or ../shared/tools/cri-tools/crictl)",
        ),
    }
}

/// `body` as two tests: for handler `corten`, then for `runc`.
macro_rules! both_handlers {
    ($corten:ident, $runc:ident, $body:ident) => {
        #[test]
        #[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
        fn $corten() {
            run(stringify!($corten), "corten", $body);
        }
        #[test]
        #[ignore = "guest only: hack/guest.sh runs it in the systemd + cgroup v2 guest"]
        fn $runc() {
            run(stringify!($runc), "runc", $body);
        }
    };
}

both_handlers!(
    cri_systemd_lifecycle_pod_network_corten,
    cri_systemd_lifecycle_pod_network_runc,
    lifecycle_pod_network
);
both_handlers!(
    cri_systemd_lifecycle_host_network_corten,
    cri_systemd_lifecycle_host_network_runc,
    lifecycle_host_network
);
both_handlers!(
    cri_systemd_security_fields_corten,
    cri_systemd_security_fields_runc,
    security_fields
);
both_handlers!(
    cri_systemd_failures_corten,
    cri_systemd_failures_runc,
    failures
);
both_handlers!(
    cri_systemd_shared_namespaces_corten,
    cri_systemd_shared_namespaces_runc,
    shared_namespaces
);
both_handlers!(
    cri_systemd_host_port_corten,
    cri_systemd_host_port_runc,
    host_port
);
