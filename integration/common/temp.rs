//! Unique names and temporary directories: container ids no two tests share, and the
//! `TempDir` guard that removes its directory (detaching any mount left in it) on drop.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use super::*;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub(super) fn next_n() -> usize {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

pub(super) fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// A container id unique to this test process and call:
/// `corten-it-<test>-<pid>-<n>`.
pub fn unique_id(test: &str) -> String {
    format!("corten-it-{}-{}-{}", test, std::process::id(), next_n())
}

/// The canonical temp dir (so paths compare equal to what a runtime reports).
pub(super) fn temp_base() -> PathBuf {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let t = std::env::temp_dir();
        fs::canonicalize(&t).unwrap_or(t)
    })
    .clone()
}

/// A uniquely named directory under the system temp dir, removed on drop
/// (after lazily detaching any mount a buggy runtime might have left in it).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let path = temp_base().join(format!(
            "corten-it-{}-{}-{}-{}",
            tag,
            std::process::id(),
            next_n(),
            nanos()
        ));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir { path }
    }

    /// Like `new` with a short name (`cit-<tag>-<pid>-<n>`), for tools that limit path
    /// lengths (podman's runroot: 50 characters).
    pub fn short(tag: &str) -> TempDir {
        let path = temp_base().join(format!("cit-{tag}-{}-{}", std::process::id(), next_n()));
        fs::create_dir(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, p: impl AsRef<Path>) -> PathBuf {
        self.path.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Mounts can be stacked (a shared mount may receive propagated copies): repeat
        // until none is left.
        for _ in 0..10 {
            if !detach_mounts_under(&self.path) {
                break;
            }
        }
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Lazily unmount every mount of this (host) mount namespace that lies under
/// `dir`, deepest first, so that removing `dir` never descends into a mount.
/// Returns whether there was any.
fn detach_mounts_under(dir: &Path) -> bool {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let prefix = dir.to_string_lossy().to_string();
    let mut points: Vec<String> = parse_mountinfo(&text)
        .into_iter()
        .map(|m| m.mount_point)
        .filter(|mp| mp == &prefix || mp.starts_with(&format!("{prefix}/")))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    let any = !points.is_empty();
    for p in points {
        let _ = nix::mount::umount2(p.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    any
}
