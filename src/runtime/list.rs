//! `list`: every container under --root, as a table, JSON, or ids only.

use std::path::Path;

use anyhow::Result;

use crate::container::{self, ContainerDir, spec_state};

/// The state JSON of each container (unreadable ones are skipped).
pub fn states(root: &Path) -> Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for id in container::list_ids(root)? {
        let Ok(dir) = ContainerDir::open(root, &id, false) else {
            continue;
        };
        if let Ok(Some(state)) = dir.load() {
            out.push(spec_state(&state, dir.status(&state)));
        }
    }
    Ok(out)
}

/// runc's table: ID PID STATUS BUNDLE CREATED OWNER.
pub fn table(states: &[serde_json::Value]) -> String {
    let rows: Vec<[String; 6]> = states
        .iter()
        .map(|s| {
            let f = |k: &str| match &s[k] {
                serde_json::Value::String(v) => v.clone(),
                v => v.to_string(),
            };
            [
                f("id"),
                f("pid"),
                f("status"),
                f("bundle"),
                f("created"),
                f("owner"),
            ]
        })
        .collect();
    let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
    let mut widths = header.clone().map(|h| h.len());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}
