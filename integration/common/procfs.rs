//! Parsing what tests read: /proc/PID/mountinfo and status texts, and container output
//! split into `@@NAME` sections.

use std::collections::HashMap;

/// One line of /proc/PID/mountinfo.
#[derive(Debug, Clone)]
pub struct MountInfo {
    pub root: String,
    pub mount_point: String,
    pub mount_opts: Vec<String>,
    /// The optional fields (`shared:N`, `master:N`, `propagate_from:N`, `unbindable`).
    pub optional: Vec<String>,
    pub fstype: String,
    pub super_opts: Vec<String>,
}

impl MountInfo {
    /// Whether `opt` is among the per-mount or the superblock options.
    pub fn has_opt(&self, opt: &str) -> bool {
        self.mount_opts.iter().any(|o| o == opt) || self.super_opts.iter().any(|o| o == opt)
    }
}

pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let l: Vec<&str> = left.split_whitespace().collect();
            let r: Vec<&str> = right.split_whitespace().collect();
            if l.len() < 6 || r.is_empty() {
                return None;
            }
            let split = |s: &str| s.split(',').map(String::from).collect::<Vec<_>>();
            Some(MountInfo {
                root: unescape_mountinfo(l[3]),
                mount_point: unescape_mountinfo(l[4]),
                mount_opts: split(l[5]),
                optional: l[6..].iter().map(|s| s.to_string()).collect(),
                fstype: r[0].to_string(),
                super_opts: r.get(2).map(|s| split(s)).unwrap_or_default(),
            })
        })
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// The last mount at `mount_point` in a mountinfo text (the visible one).
pub fn find_mount(mounts: &[MountInfo], mount_point: &str) -> Option<MountInfo> {
    mounts
        .iter()
        .rev()
        .find(|m| m.mount_point == mount_point)
        .cloned()
}

/// Split container output into sections introduced by lines `@@NAME`.
/// Text before the first marker goes to section "".
pub fn sections(stdout: &str) -> HashMap<String, String> {
    let mut map: HashMap<String, String> = HashMap::new();
    map.insert(String::new(), String::new());
    let mut cur = String::new();
    for line in stdout.lines() {
        if let Some(name) = line.strip_prefix("@@") {
            cur = name.trim().to_string();
            map.entry(cur.clone()).or_default();
        } else {
            let s = map.entry(cur.clone()).or_default();
            s.push_str(line);
            s.push('\n');
        }
    }
    map
}

/// A field `Name:` of a /proc/PID/status text, trimmed.
pub fn status_field(status: &str, name: &str) -> Option<String> {
    status.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(|v| v.trim().to_string())
    })
}
