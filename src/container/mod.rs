//! A container as stored on disk: `<root>/<id>/` holds `state.json` (written atomically) and
//! `start.sock` (the socket the parked init accepts on; it exists until `start`).
//! An flock on the directory serialises commands that change one container.
//!
//! Every command reaches a container through [`ContainerDir`], which checks the id (runc's
//! rule) before it builds a path, and never follows a link out of the root: an id names a
//! directory directly under the root, or nothing.

use std::fs::{self, File};
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::cgroups::Cgroup;
use crate::error::Error;
use crate::pid::process_alive;
use crate::spec_version::OCI_VERSION;

pub const STATE_FILE: &str = "state.json";
pub const START_SOCKET: &str = "start.sock";

/// How far `create` got; the rest of the status is derived from the live process.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    Creating,
    Created,
}

/// What corten records about a container.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct State {
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` (field 22 of /proc/<pid>/stat): a recycled pid never matches.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    pub owner: String,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
    pub phase: Phase,
    #[serde(default)]
    pub cgroup: Option<Cgroup>,
    /// The poststart and poststop hooks, which `start` and `delete` run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<oci_spec::runtime::Hooks>,
    /// Without a mount namespace of its own, the container's mounts are in the host's,
    /// on a bind of the rootfs: the id of the mount the rootfs was on before, so `delete`
    /// detaches whatever was put over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rootfs_mount_before: Option<u64>,
    /// No pid namespace of its own (none, or one joined by path): the init's death does
    /// not take the other processes along, so `kill KILL` signals the whole cgroup.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_pid_ns: bool,
    /// Created with --no-new-keyring: `exec`'d processes keep their caller's session
    /// keyring too (runc's), rather than joining `_ses.<id>`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_new_keyring: bool,
}

/// Detaches what was mounted over `rootfs` since it was on mount `before` (the container's
/// rootfs bind, with every mount under it). Nothing else is touched.
pub fn detach_rootfs_mounts(rootfs: &Path, before: u64) {
    for _ in 0..16 {
        let now = fs::File::open(rootfs)
            .ok()
            .and_then(|f| crate::sys::mount_id(f.as_fd()).ok());
        if now.is_none_or(|id| id == before) {
            return;
        }
        if let Err(e) = nix::mount::umount2(rootfs, nix::mount::MntFlags::MNT_DETACH) {
            crate::log::warn(&format!("detach the mounts on {}: {e}", rootfs.display()));
            return;
        }
    }
}

/// The status the runtime-spec defines (plus runc's `paused`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// Is `pid` still the process we started? Alive, not a zombie, same start time.
/// The state root when --root is not given: /run/corten for root; for anyone else
/// $XDG_RUNTIME_DIR/corten (as runc does), which their session owns. Root of a user
/// namespace is someone else outside (rootless podman runs the runtime so): it takes
/// $XDG_RUNTIME_DIR too when set, unless $USER is root (runc's shouldHonorXDGRuntimeDir).
pub fn default_root() -> Result<PathBuf> {
    if nix::unistd::geteuid().is_root() {
        let xdg = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty());
        return Ok(match xdg {
            Some(d)
                if crate::sys::in_user_ns()
                    && std::env::var_os("USER").is_none_or(|u| u != "root") =>
            {
                PathBuf::from(d).join("corten")
            }
            _ => PathBuf::from("/run/corten"),
        });
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
        Some(d) => Ok(PathBuf::from(d).join("corten")),
        None => bail!("not running as root and XDG_RUNTIME_DIR is not set: pass --root DIR"),
    }
}

/// A container's state directory, opened (and, for mutating commands, locked).
pub struct ContainerDir {
    pub id: String,
    pub path: PathBuf,
    _lock: Option<Flock<File>>,
}

impl ContainerDir {
    /// Makes `<root>/<id>` for a new container and locks it.
    pub fn create(root: &Path, id: &str) -> Result<ContainerDir> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .with_context(|| format!("create state root {}", root.display()))?;
        let path = root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists { id: id.to_string() }.into());
            }
            Err(e) => return Err(e).with_context(|| format!("create {}", path.display())),
        }
        let dir = Self::open_at(path, id, true)?;
        Ok(dir)
    }

    /// Opens an existing container; `lock` takes the exclusive lock.
    pub fn open(root: &Path, id: &str, lock: bool) -> Result<ContainerDir> {
        validate_id(id)?;
        Self::open_at(root.join(id), id, lock)
    }

    fn open_at(path: PathBuf, id: &str, lock: bool) -> Result<ContainerDir> {
        // Not through a link, and only a directory.
        let f = match fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NoSuchContainer { id: id.to_string() }.into());
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                bail!("{} is not a container's state directory", path.display())
            }
            Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
        };
        let lock = if lock {
            let lock = Flock::lock(f, FlockArg::LockExclusive)
                .map_err(|(_, e)| e)
                .with_context(|| format!("lock {}", path.display()))?;
            Some(lock)
        } else {
            None
        };
        Ok(ContainerDir {
            id: id.to_string(),
            path,
            _lock: lock,
        })
    }

    /// The fd holding the lock (a forked init must close its copy, or a killed `create`
    /// would leave the lock held by the init).
    pub fn lock_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        self._lock.as_ref().map(|l| l.as_raw_fd())
    }

    /// Reads state.json. `Ok(None)` for a directory whose create never got that far.
    pub fn load(&self) -> Result<Option<State>> {
        let path = self.path.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("parse {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Like [`load`](Self::load) but a missing state is "does not exist".
    pub fn load_existing(&self) -> Result<State> {
        match self.load()? {
            Some(s) => Ok(s),
            None => Err(Error::NoSuchContainer {
                id: self.id.clone(),
            }
            .into()),
        }
    }

    /// Writes state.json atomically (temp file + rename).
    pub fn save(&self, state: &State) -> Result<()> {
        write_atomic(
            &self.path.join(STATE_FILE),
            &serde_json::to_vec(state)?,
            0o600,
        )
    }

    /// An address for start.sock that fits sockaddr_un (108 bytes) however long the state
    /// root: /proc/self/fd/N/start.sock, through the returned handle on the directory,
    /// which must stay open while the address is used.
    pub fn start_socket_addr(&self) -> Result<(File, PathBuf)> {
        use std::os::fd::AsRawFd;
        let d = File::open(&self.path).with_context(|| format!("open {}", self.path.display()))?;
        let p = PathBuf::from(format!("/proc/self/fd/{}/{START_SOCKET}", d.as_raw_fd()));
        Ok((d, p))
    }

    pub fn start_socket(&self) -> PathBuf {
        self.path.join(START_SOCKET)
    }

    /// The status of `state` now.
    pub fn status(&self, state: &State) -> Status {
        if !process_alive(state.pid, state.pid_start) {
            return Status::Stopped;
        }
        if state.phase == Phase::Creating {
            return Status::Creating;
        }
        if state.cgroup.as_ref().is_some_and(|c| c.is_frozen()) {
            return Status::Paused;
        }
        if self.start_socket().exists() {
            Status::Created
        } else {
            Status::Running
        }
    }

    /// Removes what a `create` killed before it wrote state.json left: only if the
    /// directory holds nothing but what `create` puts there (the start socket, state.json
    /// being written). Anything else means it is not corten's, and it stays.
    pub fn remove_leftover(&self) -> Result<()> {
        let entries =
            fs::read_dir(&self.path).with_context(|| format!("read {}", self.path.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("read {}", self.path.display()))?;
            let name = e.file_name();
            let t = e.file_type().ok();
            let own = match name.to_str() {
                Some(START_SOCKET) => t.is_some_and(|t| t.is_socket()),
                Some(n) => is_temp_of(n, STATE_FILE) && t.is_some_and(|t| t.is_file()),
                None => false,
            };
            if !own {
                bail!(
                    "{} is not a corten state directory (it holds {name:?}): not removed",
                    self.path.display()
                );
            }
        }
        self.remove()
    }

    /// Removes the directory and everything in it.
    pub fn remove(&self) -> Result<()> {
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("remove {}", self.path.display()))
            }
            _ => Ok(()),
        }
    }
}

/// The runtime spec's state of a container: what hooks read on stdin, and the core of
/// what `state` and `list` print ([`spec_state`]). One builder, so both agree on every
/// field; they differ only where runc's do: a stopped container's `pid` is left out for
/// hooks (runc's specs.State has `pid,omitempty`) and printed as 0 by `state` (runc's
/// containerState). Not oci_spec's `State`: it has no `paused` status (runc's `state`
/// prints it), keeps annotations in a HashMap (their order would change from run to run)
/// and has no room for runc's extra fields.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SpecState {
    pub oci_version: String,
    pub id: String,
    pub status: String,
    /// Required while created or running; left out once stopped (runc leaves it out too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: PathBuf,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl SpecState {
    pub fn new(state: &State, status: Status) -> SpecState {
        SpecState {
            oci_version: OCI_VERSION.to_string(),
            id: state.id.clone(),
            status: status.as_str().to_string(),
            pid: (status != Status::Stopped).then_some(state.pid),
            bundle: state.bundle.clone(),
            annotations: state.annotations.clone(),
        }
    }

    /// The same state with another status.
    pub fn with_status(&self, status: Status) -> SpecState {
        SpecState {
            status: status.as_str().to_string(),
            ..self.clone()
        }
    }
}

/// The spec's state JSON for `state`, with runc's extra `created` and `owner` fields, in
/// runc's key order (pid 0 once stopped, annotations only when there are some).
pub fn spec_state(state: &State, status: Status) -> serde_json::Value {
    let spec = SpecState::new(state, status);
    let mut v = serde_json::json!({
        "ociVersion": spec.oci_version,
        "id": spec.id,
        "pid": spec.pid.unwrap_or(0),
        "status": spec.status,
        "bundle": spec.bundle,
        "rootfs": state.rootfs,
        "created": state.created,
    });
    if !spec.annotations.is_empty() {
        v["annotations"] = serde_json::json!(spec.annotations);
    }
    v["owner"] = state.owner.clone().into();
    v
}

/// Writes `data` to `path` through a temp file in the same directory and a rename, so a
/// reader sees the old or the new content, never a mix.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("create {}", tmp.display()))?;
    f.write_all(data)
        .with_context(|| format!("write {}", tmp.display()))?;
    drop(f);
    fs::rename(&tmp, path)
        .with_context(|| format!("rename {} to {}", tmp.display(), path.display()))
}

/// Is `file` a temp file of [`write_atomic`] for `name` (`.NAME.PID.tmp`)?
fn is_temp_of(file: &str, name: &str) -> bool {
    file.strip_prefix('.')
        .and_then(|f| f.strip_prefix(name))
        .and_then(|f| f.strip_prefix('.'))
        .and_then(|f| f.strip_suffix(".tmp"))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

/// The ids of all containers under `root` (directories named by a valid id: not the
/// seccomp program cache), sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("read {}", root.display())),
    };
    let mut ids: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|id| validate_id(id).is_ok())
        .collect();
    ids.sort();
    Ok(ids)
}

/// runc's id rule: letters, digits and `_ + - .`, not `.` or `..` (so an id is one path
/// component), and runc's words for the error. ContainerDir checks it for every command.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+-.".contains(c));
    if !ok {
        return Err(Error::InvalidId { id: id.to_string() }.into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for good in ["a", "abc-1.2_x+y", "0"] {
            validate_id(good).unwrap();
        }
        for bad in ["", ".", "..", "a/b", "../x", "a b", "é"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn temp_files_of_write_atomic_are_recognised() {
        let dir = std::env::temp_dir().join(format!("corten-unit-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!(".{STATE_FILE}.{}.tmp", std::process::id()));
        // What write_atomic names its temp file, found while it exists.
        fs::write(&tmp, "x").unwrap();
        assert!(is_temp_of(
            &tmp.file_name().unwrap().to_string_lossy(),
            STATE_FILE
        ));
        write_atomic(&dir.join(STATE_FILE), b"{}", 0o600).unwrap();
        assert!(!tmp.exists(), "write_atomic used another temp name");
        fs::remove_dir_all(&dir).unwrap();
        for bad in [
            "state.json.1.tmp",
            ".state.json..tmp",
            ".state.json.1x.tmp",
            ".other.1.tmp",
        ] {
            assert!(!is_temp_of(bad, STATE_FILE), "{bad}");
        }
    }
}
