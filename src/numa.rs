//! `linux.memoryPolicy`: the NUMA memory policy of the container process, set with
//! set_mempolicy(2) just before exec (the policy is per thread and survives execve).

use anyhow::{Context, Result, bail};
use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType, MemoryPolicyModeType};

use crate::idlist;

/// Node numbers accepted (the kernel's largest MAX_NUMNODES, 1 << CONFIG_NODES_SHIFT = 10).
const MAX_NODES: usize = 1024;

/// The mode | flags word and node mask set_mempolicy takes, checked like runc does.
pub struct Policy {
    mode: i32,
    mask: Vec<u64>,
}

/// Checks `linux.memoryPolicy` and turns it into what set_mempolicy takes.
pub fn plan(mp: &LinuxMemoryPolicy) -> Result<Policy> {
    use MemoryPolicyModeType::*;
    let mode = mp.mode();
    let mask = match mp.nodes().as_deref().filter(|n| !n.is_empty()) {
        Some(n) => idlist::parse(n, MAX_NODES).context("linux.memoryPolicy.nodes")?,
        None => Vec::new(),
    };
    let count = idlist::ids(&mask).count();
    match mode {
        MpolDefault | MpolLocal if count > 0 => {
            bail!("linux.memoryPolicy: mode {mode} takes no nodes");
        }
        MpolBind | MpolInterleave | MpolPreferredMany | MpolWeightedInterleave if count == 0 => {
            bail!("linux.memoryPolicy: mode {mode} needs at least one node in nodes");
        }
        _ => {}
    }
    let mut flags = 0;
    for f in mp.flags().iter().flatten() {
        flags |= match f {
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
        };
    }
    if flags & (3 << 14) == 3 << 14 {
        bail!(
            "linux.memoryPolicy.flags: MPOL_F_STATIC_NODES and MPOL_F_RELATIVE_NODES exclude each other"
        );
    }
    let number = match mode {
        MpolDefault => 0,
        MpolPreferred => 1,
        MpolBind => 2,
        MpolInterleave => 3,
        MpolLocal => 4,
        MpolPreferredMany => 5,
        MpolWeightedInterleave => 6,
    };
    Ok(Policy {
        mode: number | flags,
        mask,
    })
}

/// set_mempolicy(2) for the calling thread.
pub fn apply(mp: &LinuxMemoryPolicy) -> Result<()> {
    let p = plan(mp)?;
    let (ptr, maxnode) = if p.mask.is_empty() {
        (std::ptr::null(), 0)
    } else {
        // The kernel reads maxnode - 1 bits.
        (p.mask.as_ptr(), p.mask.len() as libc::c_ulong * 64 + 1)
    };
    // SAFETY: `ptr` is null or points to `p.mask`, which holds maxnode - 1 bits and
    // outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, p.mode, ptr, maxnode) };
    if r != 0 {
        let nodes = mp.nodes().as_deref().unwrap_or("");
        return Err(std::io::Error::last_os_error()).with_context(|| {
            format!(
                "linux.memoryPolicy: set_mempolicy {} nodes {nodes:?} (allowed here: {})",
                mp.mode(),
                allowed_nodes()
            )
        });
    }
    Ok(())
}

/// Mems_allowed_list of the calling process, for error messages.
fn allowed_nodes() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Mems_allowed_list:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mp(v: serde_json::Value) -> LinuxMemoryPolicy {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn modes_and_nodes() {
        let p = plan(&mp(
            serde_json::json!({"mode": "MPOL_BIND", "nodes": "0-1,3"}),
        ))
        .unwrap();
        assert_eq!(p.mode, 2);
        assert_eq!(p.mask[0], 0b1011);
        let p = plan(&mp(serde_json::json!({
            "mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]
        })))
        .unwrap();
        assert_eq!(p.mode, 3 | 1 << 15);
        assert_eq!(
            plan(&mp(serde_json::json!({"mode": "MPOL_LOCAL"})))
                .unwrap()
                .mode,
            4
        );
        plan(&mp(serde_json::json!({"mode": "MPOL_PREFERRED"}))).unwrap();
    }

    #[test]
    fn bad_policies() {
        for (v, want) in [
            (
                serde_json::json!({"mode": "MPOL_BIND"}),
                "needs at least one node",
            ),
            (
                serde_json::json!({"mode": "MPOL_DEFAULT", "nodes": "0"}),
                "takes no nodes",
            ),
            (
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "0-"}),
                "nodes",
            ),
            (
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "5000"}),
                "maximum",
            ),
            (
                serde_json::json!({"mode": "MPOL_BIND", "nodes": "0",
                    "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]}),
                "exclude",
            ),
        ] {
            let e = match plan(&mp(v.clone())) {
                Ok(_) => panic!("{v} accepted"),
                Err(e) => format!("{e:#}"),
            };
            assert!(e.contains(want), "{v}: {e}");
        }
    }
}
