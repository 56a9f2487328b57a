//! The cache of compiled seccomp programs: libseccomp takes about 13 ms to turn an engine's
//! profile (some 440 syscall names) into BPF, and nearly every container a host runs has the
//! same profile, so the program is kept under the state root and read back next time.
//!
//! An entry is named by its key, a SHA-256 of everything that determines the program: the
//! profile as serialised, the native architecture, libseccomp's version and API level (the
//! kernel's actions as libseccomp probed them), the filter flags this kernel supports, and
//! corten's version and commit. Nobody but us may plant a program: the directory is made
//! 0700 and must be ours, an entry must be ours and not writable by group or others, and it
//! carries its key and a SHA-256 of its contents. An entry that fails any check is ignored
//! (and replaced when the program is rebuilt); every error on this path means "build it",
//! never a failed create. Entries are written whole (a temporary file renamed into place),
//! and at most [`MAX_ENTRIES`] are kept, the oldest removed first.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};

/// The cache's directory under the state root. The `:` keeps it from being a container id.
pub const DIR_NAME: &str = "seccomp:cache";

/// At most this many programs are kept.
pub const MAX_ENTRIES: usize = 64;

/// The first bytes of an entry (the format's version is its last two).
const MAGIC: &[u8; 8] = b"CRTNSC01";

/// The largest entry read: the kernel's longest program plus room for the skipped names.
const MAX_SIZE: u64 = 4096 * 8 + 64 * 1024;

/// What the cache keeps of a compiled program.
#[derive(Debug, PartialEq)]
pub struct Entry {
    /// SECCOMP_FILTER_FLAG_* to load it with.
    pub flags: u64,
    /// Does a rule use SCMP_ACT_NOTIFY?
    pub notify: bool,
    /// Syscall names libseccomp didn't know (skipped).
    pub skipped: Vec<String>,
    pub bpf: Vec<libc::sock_filter>,
}

/// The key of a profile (`profile`: linux.seccomp serialised); `kernel_flags` tells which
/// filter flags this kernel supports (a bit per flag corten knows).
pub fn key(profile: &[u8], kernel_flags: u64) -> [u8; 32] {
    let lib = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let parts: [&[u8]; 8] = [
        b"corten seccomp cache 1",
        env!("CARGO_PKG_VERSION").as_bytes(),
        env!("CORTEN_COMMIT").as_bytes(),
        std::env::consts::ARCH.as_bytes(),
        lib.as_bytes(),
        &libseccomp::get_api().to_le_bytes(),
        &kernel_flags.to_le_bytes(),
        profile,
    ];
    let mut h = Sha256::new();
    for part in parts {
        // Length-prefixed, so that no two different lists hash the same bytes.
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    h.finalize().into()
}

/// The entry of `key` in `dir`, if there is a sound one.
pub fn read(dir: &Path, key: &[u8; 32]) -> Option<Entry> {
    match try_read(dir, key) {
        Ok(entry) => entry,
        Err(e) => {
            crate::log::debug(&format!("seccomp cache: {e:#}; building the program"));
            None
        }
    }
}

/// Ok(None): no entry; an error: an entry (or directory) that fails a check.
fn try_read(dir: &Path, key: &[u8; 32]) -> Result<Option<Entry>> {
    let path = dir.join(hex(key));
    let mut file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
    };
    check_dir(dir)?;
    let meta = file
        .metadata()
        .with_context(|| format!("fstat {}", path.display()))?;
    check_owner(&path, &meta, 0o022)?;
    if !meta.is_file() || meta.len() > MAX_SIZE {
        bail!("{} is not a cache entry", path.display());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.read_to_end(&mut bytes)
        .with_context(|| format!("read {}", path.display()))?;
    decode(key, &bytes)
        .map(Some)
        .with_context(|| format!("{} is damaged", path.display()))
}

/// Stores `entry` as the program of `key` in `dir` (made if missing, when its parent, the
/// state root, exists), then removes the oldest entries beyond [`MAX_ENTRIES`].
pub fn write(dir: &Path, key: &[u8; 32], entry: &Entry) -> Result<()> {
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("create {}", dir.display())),
    }
    check_dir(dir)?;
    let name = hex(key);
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&encode(key, entry)))
        .and_then(|()| fs::rename(&tmp, dir.join(&name)));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("write {}", tmp.display()));
    }
    prune(dir, MAX_ENTRIES);
    Ok(())
}

/// The cache directory must be ours and closed to everyone else.
fn check_dir(dir: &Path) -> Result<()> {
    let meta = fs::symlink_metadata(dir).with_context(|| format!("lstat {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    check_owner(dir, &meta, 0o077)
}

/// `meta` (of `path`) must be owned by our effective uid, with none of `forbidden`'s mode bits.
fn check_owner(path: &Path, meta: &fs::Metadata, forbidden: u32) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() != euid {
        bail!(
            "{} is owned by uid {}, not {euid}",
            path.display(),
            meta.uid()
        );
    }
    if meta.mode() & forbidden != 0 {
        bail!(
            "{} has mode {:o}: writable or open to others",
            path.display(),
            meta.mode() & 0o7777
        );
    }
    Ok(())
}

/// Removes the oldest entries (by modification time) until at most `max` remain.
fn prune(dir: &Path, max: usize) {
    let Ok(rd) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<(std::time::SystemTime, PathBuf)> = rd
        .flatten()
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    if entries.len() <= max {
        return;
    }
    entries.sort();
    let excess = entries.len() - max;
    for (_, path) in entries.into_iter().take(excess) {
        let _ = fs::remove_file(path);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An entry's bytes: MAGIC, key, flags (u64), notify (u8), the skipped names (u32 count,
/// then each as u32 length + UTF-8), the program (u32 count, then code u16, jt u8, jf u8,
/// k u32 per instruction), all little-endian, and a SHA-256 of everything before it.
fn encode(key: &[u8; 32], e: &Entry) -> Vec<u8> {
    let mut b = Vec::with_capacity(64 + e.bpf.len() * 8);
    b.extend_from_slice(MAGIC);
    b.extend_from_slice(key);
    b.extend_from_slice(&e.flags.to_le_bytes());
    b.push(e.notify.into());
    b.extend_from_slice(&(e.skipped.len() as u32).to_le_bytes());
    for name in &e.skipped {
        b.extend_from_slice(&(name.len() as u32).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
    }
    b.extend_from_slice(&(e.bpf.len() as u32).to_le_bytes());
    for i in &e.bpf {
        b.extend_from_slice(&i.code.to_le_bytes());
        b.extend_from_slice(&[i.jt, i.jf]);
        b.extend_from_slice(&i.k.to_le_bytes());
    }
    let sum = Sha256::digest(&b);
    b.extend_from_slice(&sum);
    b
}

/// The entry in `bytes`, if they are one, of `key`, and intact.
fn decode(key: &[u8; 32], bytes: &[u8]) -> Result<Entry> {
    let Some(body_len) = bytes.len().checked_sub(32) else {
        bail!("too short");
    };
    let (body, sum) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != sum {
        bail!("checksum mismatch");
    }
    let mut r = Reader(body);
    if r.take(8)? != MAGIC || r.take(32)? != key {
        bail!("not the entry of this key");
    }
    let flags = u64::from_le_bytes(r.array()?);
    let notify = match r.take(1)? {
        [0] => false,
        [1] => true,
        _ => bail!("bad notify byte"),
    };
    let mut skipped = Vec::new();
    for _ in 0..r.u32()? {
        let len = r.u32()? as usize;
        skipped.push(String::from_utf8(r.take(len)?.to_vec()).context("a skipped name")?);
    }
    let count = r.u32()? as usize;
    if count == 0 || count > super::BPF_MAXINSNS {
        bail!("a program of {count} instructions");
    }
    let mut bpf = Vec::with_capacity(count);
    for _ in 0..count {
        let code = u16::from_le_bytes(r.array()?);
        let [jt, jf] = r.array()?;
        let k = u32::from_le_bytes(r.array()?);
        bpf.push(libc::sock_filter { code, jt, jf, k });
    }
    if !r.0.is_empty() {
        bail!("trailing bytes");
    }
    Ok(Entry {
        flags,
        notify,
        skipped,
        bpf,
    })
}

/// Reads an entry's fields in order.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if n > self.0.len() {
            bail!("truncated");
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        Ok(self.take(N)?.try_into()?)
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn entry() -> Entry {
        Entry {
            flags: 2,
            notify: false,
            skipped: vec!["no_such_syscall".into()],
            bpf: vec![
                libc::sock_filter {
                    code: 0x20,
                    jt: 0,
                    jf: 0,
                    k: 4,
                },
                libc::sock_filter {
                    code: 0x06,
                    jt: 1,
                    jf: 2,
                    k: 0x7fff_0000,
                },
            ],
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("corten-sc-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir(&d).unwrap();
        d
    }

    #[test]
    fn an_entry_round_trips_and_any_change_is_refused() {
        let k = [7; 32];
        let bytes = encode(&k, &entry());
        assert_eq!(decode(&k, &bytes).unwrap(), entry());
        assert!(decode(&[8; 32], &bytes).is_err(), "another key");
        for n in [0, 1, 40, bytes.len() - 1] {
            assert!(decode(&k, &bytes[..n]).is_err(), "truncated to {n}");
        }
        for i in [0, 8, 45, 60, bytes.len() - 40, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(decode(&k, &bad).is_err(), "byte {i} flipped");
        }
    }

    #[test]
    fn the_key_depends_on_the_profile_and_the_kernel() {
        assert_eq!(key(b"{}", 1), key(b"{}", 1));
        assert_ne!(key(b"{}", 1), key(b"{ }", 1));
        assert_ne!(key(b"{}", 1), key(b"{}", 3));
    }

    #[test]
    fn write_then_read_and_refuse_what_others_could_write() {
        let root = temp_dir("rw");
        let dir = root.join(DIR_NAME);
        let k = [1; 32];
        assert_eq!(read(&dir, &k), None);
        write(&dir, &k, &entry()).unwrap();
        assert_eq!(fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
        assert_eq!(read(&dir, &k), Some(entry()));
        let file = dir.join(hex(&k));
        // Group-writable: ignored.
        fs::set_permissions(&file, fs::Permissions::from_mode(0o620)).unwrap();
        assert_eq!(read(&dir, &k), None);
        fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read(&dir, &k), Some(entry()));
        // A directory others can enter: ignored, and not written to.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(read(&dir, &k), None);
        assert!(write(&dir, &[2; 32], &entry()).is_err());
        // Truncated: ignored; rewritten whole.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
        let bytes = fs::read(&file).unwrap();
        fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
        assert_eq!(read(&dir, &k), None);
        write(&dir, &k, &entry()).unwrap();
        assert_eq!(read(&dir, &k), Some(entry()));
        // A link is not followed.
        fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink(root.join("elsewhere"), &file).unwrap();
        fs::write(root.join("elsewhere"), &bytes).unwrap();
        assert_eq!(read(&dir, &k), None);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_oldest_entries_go_first() {
        let root = temp_dir("prune");
        let dir = root.join(DIR_NAME);
        for i in 0..5u8 {
            write(&dir, &[i; 32], &entry()).unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(i.into());
            let f = fs::File::options()
                .write(true)
                .open(dir.join(hex(&[i; 32])))
                .unwrap();
            f.set_modified(t).unwrap();
        }
        prune(&dir, 3);
        for i in 0..5u8 {
            assert_eq!(read(&dir, &[i; 32]).is_some(), i >= 2, "entry {i}");
        }
        fs::remove_dir_all(&root).unwrap();
    }
}
