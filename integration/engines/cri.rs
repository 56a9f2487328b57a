//! The CRI tests on this host (cgroup v1 hybrid, no systemd): each body of cri_suite.rs
//! with the cgroupfs driver, once for the `corten` handler and once for `runc`. The guest
//! suite runs the same bodies with the systemd driver (guest/cri.rs).

use super::cri_suite::*;
use crate::common::skipped;

/// Runs test `test`'s `body` with a fresh daemon (cgroupfs driver) for `handler`; without
/// crictl, a visible skip.
fn run(test: &str, handler: &str, body: fn(&Cri, &str)) {
    match crictl_path() {
        Some(crictl) => body(&Cri::start(crictl, Driver::Cgroupfs), handler),
        None => skipped(
            test,
            "no crictl (set CRICTL, or see ../shared/tools/cri-tools)",
        ),
    }
}

/// `body` as two tests: for handler `corten`, then for `runc`.
macro_rules! both_handlers {
    ($corten:ident, $runc:ident, $body:ident) => {
        #[test]
        fn $corten() {
            run(stringify!($corten), "corten", $body);
        }
        #[test]
        fn $runc() {
            run(stringify!($runc), "runc", $body);
        }
    };
}

both_handlers!(
    cri_lifecycle_pod_network_corten,
    cri_lifecycle_pod_network_runc,
    lifecycle_pod_network
);
both_handlers!(
    cri_lifecycle_host_network_corten,
    cri_lifecycle_host_network_runc,
    lifecycle_host_network
);
both_handlers!(
    cri_security_fields_corten,
    cri_security_fields_runc,
    security_fields
);
both_handlers!(cri_failures_corten, cri_failures_runc, failures);
both_handlers!(
    cri_shared_namespaces_corten,
    cri_shared_namespaces_runc,
    shared_namespaces
);
both_handlers!(cri_host_port_corten, cri_host_port_runc, host_port);
