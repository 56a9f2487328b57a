//! The uts namespace's names: `hostname` and `domainname`, and their sysctls
//! (`kernel.hostname`, `kernel.domainname`) with runc's rules for the two together.

use crate::common::*;
use serde_json::json;

/// runc's validator (libcontainer/configs/validate, `sysctl`) refuses `kernel.hostname` in
/// linux.sysctl, with or without `hostname`: "sysctl %q is not allowed as it conflicts
/// with the OCI %q field". `create` fails with that one line and leaves nothing.
#[test]
fn kernel_hostname_sysctl_is_refused() {
    let words =
        r#"sysctl "kernel.hostname" is not allowed as it conflicts with the OCI "hostname" field"#;
    for hostname in [Some("corten-host"), None] {
        let mut c = Container::new("uts-sysctl-hostname");
        match hostname {
            Some(h) => {
                c.set("/hostname", json!(h));
            }
            None => {
                c.config.as_object_mut().unwrap().remove("hostname");
            }
        }
        c.set("/linux/sysctl", json!({"kernel.hostname": "from-sysctl"}));
        // runc's log quotes the quotes.
        assert_err(&c.create(), &[words], &["conflicts with the OCI"]);
        c.assert_no_leftovers();
    }
}

/// `kernel.domainname` next to `domainname` is accepted, as runc does (it has no conflict
/// check for it); the sysctl is written after setdomainname, so its value is the one the
/// container sees (runc's order too).
#[test]
fn kernel_domainname_sysctl_is_allowed_next_to_domainname() {
    let mut c = Container::new("uts-sysctl-domainname");
    c.set("/domainname", json!("from-field"));
    c.set("/linux/sysctl", json!({"kernel.domainname": "from-sysctl"}));
    let out = c.run_sh("cat /proc/sys/kernel/domainname");
    assert_eq!(out.trim(), "from-sysctl");
    c.assert_no_leftovers();
}
