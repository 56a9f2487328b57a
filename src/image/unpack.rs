//! Applying layers to a rootfs: decompression by media type (checked against the magic
//! bytes), whiteouts and opaque directories, and every entry created relative to a
//! directory fd resolved with openat2(RESOLVE_BENEATH), so no path, symlink or hardlink
//! in a layer can reach outside the rootfs.
//!
//! A layer is either applied onto a rootfs (whiteouts remove, opaque markers prune) or
//! unpacked alone into a directory of the store, an overlayfs lower layer: whiteouts
//! become character devices 0/0 and opaque markers `trusted.overlay.opaque=y`. There a
//! directory the layer's entries need but don't list takes its metadata from the lower
//! layers, and a hardlink to a lower layer's file copies that file up first (as
//! containerd's overlay applier does); the result then depends on those lower layers.

use std::collections::HashSet;
use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens, makedev,
    mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};
use sha2::{Digest as _, Sha256};

use super::reference::Digest;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a layer media type (OCI and docker names).
    pub fn from_media_type(mt: &str) -> Result<Compression> {
        let base = mt.trim_end_matches(".nondistributable");
        Ok(
            if base.ends_with("+gzip") || base.ends_with(".tar.gzip") || base.ends_with("tar.gz") {
                Compression::Gzip
            } else if base.ends_with("+zstd") || base.ends_with(".tar.zstd") {
                Compression::Zstd
            } else if base.ends_with(".tar") || base.ends_with("layer.v1.tar") {
                Compression::None
            } else {
                bail!("unsupported layer media type {mt}")
            },
        )
    }

    /// From the first bytes of the data.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Hashes everything read through it (the layer's uncompressed digest, its diff_id) and
/// copies it to `tee` when there is one.
struct HashReader<'t, R> {
    inner: R,
    hasher: Sha256,
    tee: Option<&'t mut dyn Write>,
}

impl<R: Read> Read for HashReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        if let Some(t) = self.tee.as_mut() {
            t.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// Decompresses `blob` (of media type `mt`) and applies it to `root`; returns the diff_id.
/// The uncompressed stream is also written to `tee` (the store's unpacked-layer cache).
pub fn apply_layer(
    root: &File,
    blob: File,
    mt: &str,
    tee: Option<&mut dyn Write>,
) -> Result<Digest> {
    let mut hr = HashReader {
        inner: decompressed(blob, mt)?,
        hasher: Sha256::new(),
        tee,
    };
    apply_tar(root, &mut hr)?;
    // The diff_id covers the whole stream, including padding after the end marker.
    io::copy(&mut hr, &mut io::sink()).context("decompress the layer")?;
    Ok(Digest::from_hash(&hr.hasher.finalize()))
}

/// Unpacks `blob` (of media type `mt`) alone into the empty directory `dir`, as an
/// overlayfs layer over `lowers` (the image's layers below it, the nearest first).
/// Returns the diff_id and whether the result depends on `lowers` (see the module doc;
/// a directory made because an entry needs it, not listed by the layer, counts too).
pub fn unpack_layer(dir: &File, blob: File, mt: &str, lowers: &[File]) -> Result<(Digest, bool)> {
    let mut hr = HashReader {
        inner: decompressed(blob, mt)?,
        hasher: Sha256::new(),
        tee: None,
    };
    let used_lowers = apply_tar_as(dir, &mut hr, Some(lowers))?;
    io::copy(&mut hr, &mut io::sink()).context("decompress the layer")?;
    Ok((Digest::from_hash(&hr.hasher.finalize()), used_lowers))
}

/// The uncompressed stream of `blob`, whose compression must be what `mt` says.
fn decompressed(blob: File, mt: &str) -> Result<Box<dyn Read>> {
    let want = Compression::from_media_type(mt)?;
    let mut buf = BufReader::with_capacity(1 << 20, blob);
    let got = Compression::sniff(buf.fill_buf()?);
    if got != want {
        bail!("media type {mt} does not match the data, which is {got:?}-compressed");
    }
    Ok(match want {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
    })
}

/// Applies an uncompressed layer the store verified when it cached it (no hashing).
pub fn apply_unpacked(root: &File, tar: File) -> Result<()> {
    apply_tar(root, &mut BufReader::with_capacity(1 << 20, tar))
}

/// A timestamp pair (atime = mtime) of whole seconds, as tar records them.
fn times(mtime: i64) -> TimeSpec {
    TimeSpec::new(mtime, 0)
}

/// An owner id from a tar header: a u32 the kernel can store. Larger values (and -1,
/// which chown reads as "leave unchanged") are refused, never truncated: uid 2^32 must not
/// become root.
fn owner_id(what: &str, raw: io::Result<u64>) -> Result<u32> {
    let v = raw.with_context(|| format!("read the entry's {what}"))?;
    match u32::try_from(v) {
        Ok(id) if id != u32::MAX => Ok(id),
        _ => bail!("{what} {v} is out of range (at most {})", u32::MAX - 1),
    }
}

/// Opens `rel` (relative, already free of `..`) beneath `root`: symlinks are followed only
/// while they stay inside; one that leads out is refused (EXDEV).
fn open_beneath(root: BorrowedFd, rel: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let p = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    loop {
        match openat2(root, p, how) {
            Err(Errno::EAGAIN) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// The entry's path as a relative path; `..` and absolute paths are refused.
fn clean(raw: &Path) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => bail!("'..' in the path: refused"),
            Component::RootDir | Component::Prefix(_) => bail!("absolute path: refused"),
        }
    }
    Ok(out)
}

struct Stat {
    mode: u32,
}

impl Stat {
    fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }
}

fn lstat_at(dir: BorrowedFd, name: &OsStr) -> io::Result<Option<Stat>> {
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(Stat { mode: st.st_mode })),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Opens the directory `name` in `dir` without following a symlink.
fn open_subdir(dir: BorrowedFd, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(openat(dir, name, flags, Mode::empty())?)
}

/// Removes `name` in `dir`, recursively for a directory, never following symlinks.
fn remove_all_at(dir: BorrowedFd, name: &OsStr) -> io::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if st.is_dir() {
        let sub = open_subdir(dir, name)?;
        for child in list_dir(sub.as_fd())? {
            remove_all_at(sub.as_fd(), &child)?;
        }
        Ok(unlinkat(dir, name, UnlinkatFlags::RemoveDir)?)
    } else {
        Ok(unlinkat(dir, name, UnlinkatFlags::NoRemoveDir)?)
    }
}

/// The names in directory `dir` (without . and ..).
fn list_dir(dir: BorrowedFd) -> io::Result<Vec<std::ffi::OsString>> {
    let d = nix::dir::Dir::openat(
        dir,
        ".",
        OFlag::O_RDONLY | OFlag::O_DIRECTORY,
        nix::sys::stat::Mode::empty(),
    )?;
    let mut names = Vec::new();
    for e in d.into_iter() {
        let e = e?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    Ok(names)
}

/// The state of one layer being applied.
struct Layer<'a> {
    root: BorrowedFd<'a>,
    /// Paths this layer wrote (an opaque marker never hides them).
    seen: HashSet<PathBuf>,
    /// Directory mtimes, set once the layer's entries are all in.
    dir_times: Vec<(PathBuf, i64)>,
    is_root: bool,
    /// Unpacking alone as an overlayfs layer: the layers below, the nearest first.
    lowers: Option<&'a [File]>,
    /// Whether the result depends on `lowers`: something was taken from them, or a
    /// directory the layer doesn't list was made (over other lowers it would take their
    /// metadata).
    used_lowers: bool,
}

fn apply_tar(root: &File, reader: &mut dyn Read) -> Result<()> {
    apply_tar_as(root, reader, None).map(drop)
}

/// Applies the tar stream to `root`, or unpacks it as an overlayfs layer over `lowers`;
/// returns whether anything was taken from `lowers`.
fn apply_tar_as(root: &File, reader: &mut dyn Read, lowers: Option<&[File]>) -> Result<bool> {
    let mut layer = Layer {
        root: root.as_fd(),
        seen: HashSet::new(),
        dir_times: Vec::new(),
        is_root: nix::unistd::geteuid().is_root(),
        lowers,
        used_lowers: false,
    };
    let mut ar = tar::Archive::new(reader);
    for entry in ar.entries().context("read the layer")? {
        let mut entry = entry.context("read the layer")?;
        let raw = entry
            .path()
            .map(|p| p.into_owned())
            .unwrap_or_else(|_| PathBuf::from(OsStr::from_bytes(&entry.path_bytes())));
        layer
            .entry(&mut entry)
            .with_context(|| format!("entry {}", raw.display()))?;
    }
    for (path, mtime) in layer.dir_times.iter().rev() {
        if let Ok(fd) = open_beneath(
            layer.root,
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW,
        ) {
            // Best effort, as tar does: a directory keeps its content either way.
            let _ = futimens(&fd, &times(*mtime), &times(*mtime));
        }
    }
    Ok(layer.used_lowers)
}

/// The xattr overlayfs reads as "this directory hides the lower layers' one".
const OPAQUE: &CStr = c"trusted.overlay.opaque";

/// fsetxattr(2) of `k` = `v` on `fd`.
fn set_xattr(fd: BorrowedFd, k: &CStr, v: &[u8]) -> Result<()> {
    // SAFETY: fd is open for the call, k is a NUL-terminated C string and v a live buffer
    // of v.len() bytes (nix has no xattr wrappers).
    let r = unsafe { libc::fsetxattr(fd.as_raw_fd(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
    Errno::result(r).with_context(|| format!("set xattr {}", k.to_string_lossy()))?;
    Ok(())
}

/// An overlayfs whiteout: a character device 0/0.
fn is_whiteout(st: &nix::sys::stat::FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// Whether, in the overlay layer `low`, `dir` or one of its ancestors hides what the
/// layers below have there: a whiteout, a non-directory or an opaque directory.
fn hides_below(low: BorrowedFd, dir: &Path) -> bool {
    for anc in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        let (Some(name), parent) = (anc.file_name(), anc.parent().unwrap_or(Path::new(""))) else {
            continue;
        };
        let Ok(pdir) = open_beneath(low, parent, OFlag::O_PATH | OFlag::O_DIRECTORY) else {
            continue;
        };
        match fstatat(&pdir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(_) => continue,
            Ok(st) if st.st_mode & libc::S_IFMT != libc::S_IFDIR => return true,
            Ok(_) => {}
        }
        let Ok(d) = open_subdir(pdir.as_fd(), name) else {
            continue;
        };
        let mut buf = [0u8; 4];
        // SAFETY: d is open for the call, OPAQUE is NUL-terminated and buf a live buffer of
        // buf.len() bytes (nix has no xattr wrappers).
        let n = unsafe {
            libc::fgetxattr(
                d.as_raw_fd(),
                OPAQUE.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if n == 1 && buf[0] == b'y' {
            return true;
        }
    }
    false
}

/// Sets the mtime (and atime) of `name` in `dir`, not following a symlink.
fn set_mtime_at(dir: BorrowedFd, name: &OsStr, mtime: i64) -> io::Result<()> {
    let t = times(mtime);
    Ok(utimensat(
        dir,
        name,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )?)
}

/// Map openat2's escape errors to a clear refusal.
fn escape(e: io::Error, what: &Path) -> anyhow::Error {
    match e.raw_os_error() {
        Some(libc::EXDEV) | Some(libc::ELOOP) => anyhow!(
            "{} leads outside the rootfs through a symlink: refused",
            what.display()
        ),
        _ => anyhow::Error::from(e).context(format!("resolve {}", what.display())),
    }
}

/// What a tar header says of an entry, checked: owner ids the kernel can store, times
/// clamped, permission bits only.
struct Meta {
    kind: tar::EntryType,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    major: u32,
    minor: u32,
    /// `SCHILY.xattr.*` PAX records.
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl Meta {
    fn read(entry: &mut tar::Entry<&mut dyn Read>) -> Result<Meta> {
        let xattrs: Vec<(CString, Vec<u8>)> = match entry.pax_extensions() {
            Ok(Some(exts)) => exts
                .flatten()
                .filter_map(|e| {
                    let k = e.key_bytes().strip_prefix(b"SCHILY.xattr.")?;
                    Some((CString::new(k).ok()?, e.value_bytes().to_vec()))
                })
                .collect(),
            _ => Vec::new(),
        };
        let header = entry.header();
        Ok(Meta {
            kind: header.entry_type(),
            mode: header.mode().unwrap_or(0o644) & 0o7777,
            uid: owner_id("uid", header.uid())?,
            gid: owner_id("gid", header.gid())?,
            // Times past i64 (a hostile header) are clamped, not wrapped into the past.
            mtime: i64::try_from(header.mtime().unwrap_or(0)).unwrap_or(i64::MAX),
            major: header.device_major().ok().flatten().unwrap_or(0),
            minor: header.device_minor().ok().flatten().unwrap_or(0),
            xattrs,
        })
    }
}

impl Layer<'_> {
    /// The directory `rel` beneath the root, created (0755) where missing.
    fn dir(&mut self, rel: &Path) -> Result<OwnedFd> {
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        match open_beneath(self.root, rel, flags) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            r => return r.map_err(|e| escape(e, rel)),
        }
        let mut cur = PathBuf::new();
        let mut fd = open_beneath(self.root, Path::new(""), flags)?;
        for c in rel.components() {
            cur.push(c);
            match open_beneath(self.root, &cur, flags) {
                Ok(f) => fd = f,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    mkdirat(&fd, c.as_os_str(), Mode::from_bits_truncate(0o755))
                        .with_context(|| format!("mkdir {}", cur.display()))?;
                    self.lower_dir_meta(fd.as_fd(), c.as_os_str(), &cur)?;
                    fd = open_beneath(self.root, &cur, flags).map_err(|e| escape(e, &cur))?;
                }
                Err(e) => return Err(escape(e, &cur)),
            }
        }
        Ok(fd)
    }

    /// Applies one tar entry: a whiteout, an opaque marker, or a file, directory, link or
    /// node created in its (resolved, never escaping) parent, replacing what was there.
    fn entry(&mut self, entry: &mut tar::Entry<&mut dyn Read>) -> Result<()> {
        let raw = PathBuf::from(OsStr::from_bytes(&entry.path_bytes()));
        let path = clean(&raw)?;
        let Some(name) = path.file_name().map(|n| n.to_os_string()) else {
            return Ok(()); // the layer's root "./": nothing to create
        };
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let name_b = name.as_bytes();
        if name_b == b".wh..wh..opq" {
            return self.opaque(&parent);
        }
        if let Some(hidden) = name_b.strip_prefix(b".wh.") {
            return self.whiteout(&parent, OsStr::from_bytes(hidden));
        }
        let meta = Meta::read(entry)?;
        let kind = meta.kind;
        let dirfd = self.dir(&parent)?;
        let dir = dirfd.as_fd();
        // Replace whatever is there, except a directory by a directory.
        let existing = lstat_at(dir, &name)?;
        let keep_dir = kind.is_dir() && existing.as_ref().is_some_and(Stat::is_dir);
        if existing.is_some() && !keep_dir && !kind.is_hard_link() {
            remove_all_at(dir, &name).context("replace the existing entry")?;
        }
        let made = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.regular(entry, dir, &name, &meta)?
            }
            tar::EntryType::Directory => self.directory(dir, &name, &path, keep_dir, &meta)?,
            tar::EntryType::Symlink => self.symlink(entry, dir, &name, &meta)?,
            tar::EntryType::Link => self.hardlink(entry, dir, &name, &path, existing.is_some())?,
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                self.node(dir, &name, &meta)?
            }
            // PAX global headers and other metadata-only records carry nothing to create.
            _ => false,
        };
        if made {
            self.mark_written(&path);
        }
        Ok(())
    }

    /// `.wh.<hidden>` in `parent`: removes what lower layers put there.
    fn whiteout(&mut self, parent: &Path, hidden: &OsStr) -> Result<()> {
        if self.lowers.is_some() {
            // This layer's own entry of that name is not hidden by its whiteout.
            if self.seen.contains(&parent.join(hidden)) {
                return Ok(());
            }
            let dir = self.dir(parent)?;
            remove_all_at(dir.as_fd(), hidden).context("replace the existing entry")?;
            mknodat(&dir, hidden, SFlag::S_IFCHR, Mode::empty(), makedev(0, 0))
                .context("make the overlay whiteout (character device 0/0)")?;
            return Ok(());
        }
        match open_beneath(self.root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
            Ok(dir) => remove_all_at(dir.as_fd(), hidden).context("apply whiteout")?,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(escape(e, parent)),
        }
        Ok(())
    }

    /// Records `path` and its ancestors as this layer's (an opaque parent must not hide
    /// them).
    fn mark_written(&mut self, path: &Path) {
        let mut p = path;
        while self.seen.insert(p.to_path_buf()) {
            match p.parent() {
                Some(q) if !q.as_os_str().is_empty() => p = q,
                _ => break,
            }
        }
    }

    // One function per entry type: each creates `name` in `dir` (where nothing is in the
    // way) and returns whether it made anything.

    /// A regular file, created (never through a symlink) and filled from the entry.
    fn regular(
        &self,
        entry: &mut tar::Entry<&mut dyn Read>,
        dir: BorrowedFd,
        name: &OsStr,
        meta: &Meta,
    ) -> Result<bool> {
        let flags =
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd =
            openat(dir, name, flags, Mode::from_bits_truncate(0o600)).context("create the file")?;
        let mut f = File::from(fd);
        io::copy(entry, &mut f).context("write the file")?;
        self.finish_fd(f.as_fd(), meta.uid, meta.gid, meta.mode, &meta.xattrs)?;
        futimens(&f, &times(meta.mtime), &times(meta.mtime)).context("set the mtime")?;
        Ok(true)
    }

    /// A directory (an existing one is kept, `keep_dir`); its mtime is set once the layer's
    /// entries are all in.
    fn directory(
        &mut self,
        dir: BorrowedFd,
        name: &OsStr,
        path: &Path,
        keep_dir: bool,
        meta: &Meta,
    ) -> Result<bool> {
        if !keep_dir {
            mkdirat(dir, name, Mode::from_bits_truncate(0o700)).context("mkdir")?;
        }
        let fd = open_subdir(dir, name)?;
        self.finish_fd(fd.as_fd(), meta.uid, meta.gid, meta.mode, &meta.xattrs)?;
        self.dir_times.push((path.to_path_buf(), meta.mtime));
        Ok(true)
    }

    /// A symlink, with any target: it is never followed while the layers are applied.
    fn symlink(
        &self,
        entry: &tar::Entry<&mut dyn Read>,
        dir: BorrowedFd,
        name: &OsStr,
        meta: &Meta,
    ) -> Result<bool> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| anyhow!("symlink without a target"))?;
        let t = CString::new(target.into_owned()).map_err(|_| anyhow!("NUL in a link target"))?;
        symlinkat(t.as_c_str(), dir, name).context("symlink")?;
        self.chown_at(dir, name, meta.uid, meta.gid)?;
        // Best effort, as before: xattrs on a symlink through its /proc path.
        let link = format!("/proc/self/fd/{}/", dir.as_raw_fd());
        let mut link = link.into_bytes();
        link.extend_from_slice(name.as_bytes());
        if let Ok(p) = CString::new(link) {
            for (k, v) in &meta.xattrs {
                // SAFETY: p and k are NUL-terminated C strings and v a live buffer
                // of v.len() bytes, all borrowed for the call only (nix has no
                // xattr wrappers).
                unsafe { libc::lsetxattr(p.as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0) };
            }
        }
        set_mtime_at(dir, name, meta.mtime)?;
        Ok(true)
    }

    /// A hardlink to an earlier entry, resolved beneath the root like any path; what is at
    /// `name` (`existing`) is replaced only once the target is known to be inside. A link
    /// to itself makes nothing.
    fn hardlink(
        &mut self,
        entry: &tar::Entry<&mut dyn Read>,
        dir: BorrowedFd,
        name: &OsStr,
        path: &Path,
        existing: bool,
    ) -> Result<bool> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| anyhow!("hardlink without a target"))?;
        let tpath = clean(Path::new(OsStr::from_bytes(&target))).context("hardlink target")?;
        if tpath == path {
            return Ok(false);
        }
        let tname = tpath
            .file_name()
            .ok_or_else(|| anyhow!("hardlink to the root"))?;
        let tparent = tpath.parent().unwrap_or(Path::new(""));
        if self.lowers.is_some() && !self.seen.contains(&tpath) {
            self.copy_up(&tpath)?;
        }
        let tdir = open_beneath(self.root, tparent, OFlag::O_PATH | OFlag::O_DIRECTORY)
            .map_err(|e| escape(e, &tpath))?;
        if existing {
            remove_all_at(dir, name).context("replace the existing entry")?;
        }
        linkat(&tdir, tname, dir, name, AtFlags::empty())
            .with_context(|| format!("hardlink to {}", tpath.display()))?;
        Ok(true)
    }

    /// A character or block device or a fifo. Unprivileged, device nodes can't be made:
    /// they are skipped, as rootless tools do.
    fn node(&self, dir: BorrowedFd, name: &OsStr, meta: &Meta) -> Result<bool> {
        let fmt = match meta.kind {
            tar::EntryType::Char => SFlag::S_IFCHR,
            tar::EntryType::Block => SFlag::S_IFBLK,
            _ => SFlag::S_IFIFO,
        };
        let dev = makedev(meta.major.into(), meta.minor.into());
        let perm = Mode::from_bits_truncate(meta.mode & 0o777);
        match mknodat(dir, name, fmt, perm, dev) {
            Err(Errno::EPERM) if !self.is_root => return Ok(false),
            r => r.context("mknod")?,
        }
        self.chown_at(dir, name, meta.uid, meta.gid)?;
        fchmodat(
            dir,
            name,
            Mode::from_bits_truncate(meta.mode),
            FchmodatFlags::FollowSymlink,
        )
        .context("chmod")?;
        set_mtime_at(dir, name, meta.mtime)?;
        Ok(true)
    }

    fn chown_at(&self, dir: BorrowedFd, name: &OsStr, uid: u32, gid: u32) -> Result<()> {
        let (u, g) = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
        match fchownat(dir, name, u, g, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Err(Errno::EPERM) if !self.is_root => Ok(()),
            r => r.context("chown"),
        }
    }

    /// Ownership, then mode (chown clears setuid/setgid), then xattrs.
    fn finish_fd(
        &self,
        fd: BorrowedFd,
        uid: u32,
        gid: u32,
        mode: u32,
        xattrs: &[(CString, Vec<u8>)],
    ) -> Result<()> {
        match fchown(fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid))) {
            Err(Errno::EPERM) if !self.is_root => {}
            r => r.context("chown")?,
        }
        fchmod(fd, Mode::from_bits_truncate(mode)).context("chmod")?;
        for (k, v) in xattrs {
            set_xattr(fd, k, v)?;
        }
        Ok(())
    }

    /// In an overlay layer, the directory `name` just made in `parent` (at `rel`) takes the
    /// owner, mode and mtime of the lower layers' directory there, if they have one: an
    /// upper directory's metadata is what the merged view shows.
    fn lower_dir_meta(&mut self, parent: BorrowedFd, name: &OsStr, rel: &Path) -> Result<()> {
        if self.lowers.is_some() {
            self.used_lowers = true;
        }
        let Some((_, st)) = self.lower_find(rel)? else {
            return Ok(());
        };
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Ok(());
        }
        self.chown_at(parent, name, st.st_uid, st.st_gid)?;
        fchmodat(
            parent,
            name,
            Mode::from_bits_truncate(st.st_mode & 0o7777),
            FchmodatFlags::FollowSymlink,
        )
        .context("chmod")?;
        self.dir_times.push((rel.to_path_buf(), st.st_mtime));
        Ok(())
    }

    /// The entry at `rel` in the merged view of the lower layers: the layer holding it
    /// (an index into `lowers`) and its stat; None if absent or whited out.
    fn lower_find(&self, rel: &Path) -> Result<Option<(usize, nix::sys::stat::FileStat)>> {
        let (Some(lowers), Some(name)) = (self.lowers, rel.file_name()) else {
            return Ok(None);
        };
        let parent = rel.parent().unwrap_or(Path::new(""));
        for (i, low) in lowers.iter().enumerate() {
            match open_beneath(low.as_fd(), parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(dir) => match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                    Ok(st) if is_whiteout(&st) => return Ok(None),
                    Ok(st) => return Ok(Some((i, st))),
                    Err(Errno::ENOENT) => {}
                    Err(e) => {
                        return Err(e).context(format!("stat {} in a lower layer", rel.display()));
                    }
                },
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {}
                Err(e) => return Err(escape(e, rel)),
            }
            if hides_below(low.as_fd(), parent) {
                return Ok(None);
            }
        }
        Ok(None)
    }

    /// Copies the lower layers' file (or symlink) at `rel` into this layer, with its owner,
    /// mode and mtime, so that a hardlink to it can be made here.
    fn copy_up(&mut self, rel: &Path) -> Result<()> {
        let Some((i, st)) = self.lower_find(rel)? else {
            return Ok(()); // linkat below then names the missing target
        };
        let low = self.lowers.unwrap_or_default()[i].as_fd();
        let name = rel.file_name().unwrap_or_default().to_os_string();
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let dir = self.dir(&parent)?;
        self.used_lowers = true;
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => {
                let src = open_beneath(low, rel, OFlag::O_RDONLY | OFlag::O_NOFOLLOW)
                    .map_err(|e| escape(e, rel))?;
                let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW;
                let fd = openat(
                    &dir,
                    name.as_os_str(),
                    flags | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .context("copy up the hardlink's target")?;
                let mut f = File::from(fd);
                io::copy(&mut File::from(src), &mut f).context("copy up the hardlink's target")?;
                self.finish_fd(f.as_fd(), st.st_uid, st.st_gid, st.st_mode & 0o7777, &[])?;
                futimens(&f, &times(st.st_mtime), &times(st.st_mtime)).context("set the mtime")?;
            }
            libc::S_IFLNK => {
                let pdir = open_beneath(low, &parent, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(|e| escape(e, rel))?;
                let target = nix::fcntl::readlinkat(&pdir, name.as_os_str()).context("readlink")?;
                symlinkat(target.as_os_str(), &dir, name.as_os_str()).context("symlink")?;
                self.chown_at(dir.as_fd(), &name, st.st_uid, st.st_gid)?;
                set_mtime_at(dir.as_fd(), &name, st.st_mtime)?;
            }
            _ => bail!(
                "hardlink to a lower layer's special file {}: not supported in an overlay bundle (use --copy)",
                rel.display()
            ),
        }
        self.mark_written(rel);
        Ok(())
    }

    /// `.wh..wh..opq` in `dir`: hides everything below it from lower layers, keeping what
    /// this layer wrote there.
    fn opaque(&mut self, dir: &Path) -> Result<()> {
        if self.lowers.is_some() {
            self.dir(dir)?;
            let fd = open_beneath(self.root, dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY)
                .map_err(|e| escape(e, dir))?;
            return set_xattr(fd.as_fd(), OPAQUE, b"y");
        }
        let fd = match open_beneath(self.root, dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(escape(e, dir)),
        };
        self.prune_lower(fd.as_fd(), dir)
            .context("apply the opaque marker")
    }

    fn prune_lower(&self, fd: BorrowedFd, dir: &Path) -> io::Result<()> {
        for name in list_dir(fd)? {
            let p = dir.join(&name);
            if !self.seen.contains(&p) {
                remove_all_at(fd, &name)?;
            } else if lstat_at(fd, &name)?.is_some_and(|s| s.is_dir()) {
                let sub = open_subdir(fd, &name)?;
                self.prune_lower(sub.as_fd(), &p)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert_eq!(
            Compression::from_media_type("application/vnd.docker.image.rootfs.diff.tar.gzip")
                .unwrap(),
            Compression::Gzip
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar+zstd").unwrap(),
            Compression::Zstd
        );
        assert_eq!(
            Compression::from_media_type("application/vnd.oci.image.layer.v1.tar").unwrap(),
            Compression::None
        );
        assert!(Compression::from_media_type("text/plain").is_err());
    }

    #[test]
    fn clean_paths() {
        assert_eq!(clean(Path::new("./a/b/")).unwrap(), PathBuf::from("a/b"));
        assert!(clean(Path::new("a/../../b")).is_err());
        assert!(clean(Path::new("/etc/passwd")).is_err());
    }

    /// A scratch directory: `target` to unpack into and `outside` beside it holding a
    /// sentinel that no layer may reach. Removed on drop.
    struct Sandbox {
        base: PathBuf,
    }

    impl Sandbox {
        fn new(tag: &str) -> Sandbox {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let n = N.fetch_add(1, Ordering::Relaxed);
            let base = std::env::temp_dir()
                .join(format!("corten-unpack-{tag}-{}-{n}", std::process::id()));
            let _ = std::fs::remove_dir_all(&base);
            std::fs::create_dir_all(base.join("target")).unwrap();
            std::fs::create_dir_all(base.join("outside")).unwrap();
            std::fs::write(base.join("outside/sentinel"), "untouched").unwrap();
            Sandbox { base }
        }

        fn target(&self) -> File {
            File::open(self.base.join("target")).unwrap()
        }

        fn outside(&self) -> PathBuf {
            self.base.join("outside")
        }

        /// Panics unless the sandbox holds exactly `target` and an untouched `outside`.
        fn assert_confined(&self) {
            let mut top: Vec<_> = std::fs::read_dir(&self.base)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            top.sort();
            assert_eq!(top, ["outside", "target"], "written beside the target");
            let inside: Vec<_> = std::fs::read_dir(self.outside())
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(inside, ["sentinel"], "written outside the target");
            let meta = std::fs::symlink_metadata(self.outside().join("sentinel")).unwrap();
            assert!(meta.is_file(), "sentinel replaced");
            assert_eq!(
                std::fs::read_to_string(self.outside().join("sentinel")).unwrap(),
                "untouched"
            );
        }
    }

    impl Drop for Sandbox {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.base);
        }
    }

    /// One tar entry with any name and link bytes (the tar crate's own setters refuse
    /// `..`, and hostile layers are exactly what is tested).
    #[derive(Debug, Clone)]
    struct RawEntry {
        kind: tar::EntryType,
        name: Vec<u8>,
        link: Vec<u8>,
        uid: u64,
        mode: u32,
        data: Vec<u8>,
    }

    fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
        let mut out = Vec::new();
        for e in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(e.kind);
            h.set_mode(e.mode);
            h.set_uid(e.uid);
            h.set_gid(e.uid);
            h.set_mtime(1_600_000_000);
            h.set_size(e.data.len() as u64);
            let old = h.as_old_mut();
            let n = e.name.len().min(99);
            old.name[..n].copy_from_slice(&e.name[..n]);
            let l = e.link.len().min(99);
            old.linkname[..l].copy_from_slice(&e.link[..l]);
            h.set_cksum();
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(&e.data);
            out.resize(out.len().next_multiple_of(512), 0);
        }
        out.resize(out.len() + 1024, 0);
        out
    }

    fn file(name: &str, uid: u64) -> RawEntry {
        RawEntry {
            kind: tar::EntryType::Regular,
            name: name.as_bytes().to_vec(),
            link: Vec::new(),
            uid,
            mode: 0o644,
            data: b"data".to_vec(),
        }
    }

    /// A uid or gid the kernel can't store is refused, not truncated: 2^32 would become
    /// uid 0, root, in the bundle. Nothing of the entry is written.
    #[test]
    fn owner_ids_past_u32_are_refused() {
        for uid in [1u64 << 32, (1 << 32) + 1000, u64::from(u32::MAX)] {
            let sb = Sandbox::new("uid");
            let tar = raw_tar(&[file("f", uid)]);
            let err = apply_tar(&sb.target(), &mut tar.as_slice()).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(&format!("uid {uid} is out of range")), "{msg}");
            assert!(msg.starts_with("entry f:"), "names the entry: {msg}");
            assert!(!sb.base.join("target/f").exists(), "entry written");
        }
        let sb = Sandbox::new("uid-ok");
        let tar = raw_tar(&[file("f", 4_294_967_294)]);
        apply_tar(&sb.target(), &mut tar.as_slice()).unwrap();
        if nix::unistd::geteuid().is_root() {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::metadata(sb.base.join("target/f")).unwrap();
            assert_eq!(m.uid(), 4_294_967_294);
        }
    }

    fn entry_of(kind: tar::EntryType, name: &str, link: &str, mode: u32) -> RawEntry {
        RawEntry {
            kind,
            name: name.as_bytes().to_vec(),
            link: link.as_bytes().to_vec(),
            uid: 0,
            mode,
            data: if kind == tar::EntryType::Regular {
                b"data".to_vec()
            } else {
                Vec::new()
            },
        }
    }

    /// Layers unpacked alone as overlay layers: whiteouts as 0/0 devices, opaque markers
    /// as xattrs, a missing parent taking the lower directory's mode, a hardlink to a lower
    /// file copying it up; and which results depend on the layers below.
    #[test]
    fn overlay_layers() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
        use tar::EntryType::{Directory, Link, Regular};
        if !nix::unistd::geteuid().is_root() {
            eprintln!(
                "SKIP: image::unpack::tests::overlay_layers: needs root (mknod, trusted xattrs)"
            );
            return;
        }
        let sb = Sandbox::new("ovl");
        let dir = |i: usize| {
            let p = sb.base.join("target").join(i.to_string());
            std::fs::create_dir(&p).unwrap();
            (File::open(&p).unwrap(), p)
        };
        let (l0, p0) = dir(0);
        let base = [
            entry_of(Directory, "d/", "", 0o700),
            entry_of(Regular, "d/f", "", 0o640),
        ];
        assert!(!apply_tar_as(&l0, &mut raw_tar(&base).as_slice(), Some(&[])).unwrap());
        assert!(p0.join("d/f").is_file());

        let (l1, p1) = dir(1);
        let top = [
            entry_of(Regular, "d/g", "", 0o644),
            entry_of(Regular, ".wh.gone", "", 0o644),
            entry_of(Regular, "o/.wh..wh..opq", "", 0o644),
            entry_of(Link, "h", "d/f", 0o644),
        ];
        let lowers = [l0];
        assert!(apply_tar_as(&l1, &mut raw_tar(&top).as_slice(), Some(&lowers)).unwrap());
        let m = std::fs::metadata(p1.join("d")).unwrap();
        assert_eq!(
            m.permissions().mode() & 0o7777,
            0o700,
            "the lower directory's mode"
        );
        let wh = std::fs::symlink_metadata(p1.join("gone")).unwrap();
        assert!(
            wh.file_type().is_char_device() && wh.rdev() == 0,
            "whiteout"
        );
        let o = CString::new(p1.join("o").as_os_str().as_bytes()).unwrap();
        let mut v = [0u8; 4];
        // SAFETY: o and OPAQUE are NUL-terminated and v a live buffer of v.len() bytes.
        let n =
            unsafe { libc::getxattr(o.as_ptr(), OPAQUE.as_ptr(), v.as_mut_ptr().cast(), v.len()) };
        assert_eq!((n, v[0]), (1, b'y'), "opaque xattr");
        let (f, h) = (p1.join("d/f"), p1.join("h"));
        assert_eq!(
            std::fs::metadata(&f).unwrap().ino(),
            std::fs::metadata(&h).unwrap().ino()
        );
        assert_eq!(
            std::fs::metadata(&f).unwrap().permissions().mode() & 0o7777,
            0o640
        );

        // A layer whose entries need nothing below stands alone.
        let (l2, _) = dir(2);
        let alone = [entry_of(Regular, "x", "", 0o644)];
        assert!(!apply_tar_as(&l2, &mut raw_tar(&alone).as_slice(), Some(&lowers)).unwrap());
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        const PARTS: &[&str] = &["a", "b", "..", ".", "", ".wh.a", ".wh..wh..opq", "l"];

        /// Paths that go through the links the other entries make (`l`, `a/l`), half the
        /// time; any mix of the parts otherwise.
        fn name() -> impl Strategy<Value = Vec<u8>> {
            let through_links = prop::sample::select(vec![
                "l",
                "l/a",
                "l/sentinel",
                "l/.wh.sentinel",
                "l/.wh..wh..opq",
                "a/l",
                "a/l/sentinel",
                "a/l/x/y",
                "a/.wh..wh..opq",
                ".wh.l",
                "l/../x",
            ])
            .prop_map(|s| s.as_bytes().to_vec());
            let mixed = (
                any::<bool>(),
                prop::collection::vec(prop::sample::select(PARTS), 1..5),
            )
                .prop_map(|(abs, parts)| {
                    let joined = parts.join("/");
                    if abs { format!("/{joined}") } else { joined }.into_bytes()
                });
            prop_oneof![through_links, mixed]
        }

        /// Link targets: inside, climbing out, and absolute, the absolute one pointing at
        /// the sandbox's `outside` (named by the `@OUT@` placeholder), so an escape shows
        /// there rather than on the host.
        fn link() -> impl Strategy<Value = Vec<u8>> {
            prop::sample::select(vec![
                "a",
                "a/b",
                "..",
                "../..",
                "../outside",
                "../outside/sentinel",
                "/",
                "@OUT@",
                "@OUT@/sentinel",
                "l/x",
                "/a",
                "l/sentinel",
            ])
            .prop_map(|s| s.as_bytes().to_vec())
        }

        /// Links named where the other entries' paths lead (`l`, `a/l`, `a`).
        fn link_entry() -> impl Strategy<Value = RawEntry> {
            let kind = prop::sample::select(vec![tar::EntryType::Symlink, tar::EntryType::Link]);
            let name = prop::sample::select(vec!["l", "a/l", "a"]);
            (kind, name, link()).prop_map(|(kind, name, link)| RawEntry {
                kind,
                name: name.as_bytes().to_vec(),
                link,
                uid: 0,
                mode: 0o777,
                data: Vec::new(),
            })
        }

        /// `layer` with the `@OUT@` placeholder in link targets replaced by `out`.
        fn with_outside(layer: &[RawEntry], out: &Path) -> Vec<RawEntry> {
            layer
                .iter()
                .cloned()
                .map(|mut e| {
                    if e.link.starts_with(b"@OUT@") {
                        let mut l = out.as_os_str().as_bytes().to_vec();
                        l.extend_from_slice(&e.link[5..]);
                        e.link = l;
                    }
                    e
                })
                .collect()
        }

        fn entry() -> impl Strategy<Value = RawEntry> {
            prop_oneof![link_entry(), any_entry()]
        }

        fn any_entry() -> impl Strategy<Value = RawEntry> {
            let kind = prop::sample::select(vec![
                tar::EntryType::Regular,
                tar::EntryType::Directory,
                tar::EntryType::Symlink,
                tar::EntryType::Link,
                tar::EntryType::Fifo,
            ]);
            let uid = prop::sample::select(vec![0u64, 1000, 1 << 32, u64::from(u32::MAX)]);
            (
                kind,
                name(),
                link(),
                uid,
                0u32..0o7777,
                prop::collection::vec(any::<u8>(), 0..8),
            )
                .prop_map(|(kind, name, link, uid, mode, data)| RawEntry {
                    kind,
                    name,
                    link,
                    uid,
                    mode,
                    data: if kind == tar::EntryType::Regular {
                        data
                    } else {
                        Vec::new()
                    },
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(96))]

            /// Random layers, applied one after another: each is applied or refused,
            /// never panics, and nothing appears or changes outside the target.
            #[test]
            fn random_layers_stay_inside(
                layers in prop::collection::vec(prop::collection::vec(entry(), 1..12), 1..3),
                flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
            ) {
                let sb = Sandbox::new("prop");
                let out = sb.outside();
                for (i, layer) in layers.iter().enumerate() {
                    let layer = with_outside(layer, &out);
                    let mut bytes = raw_tar(&layer);
                    // The first layer also gets a few corrupted bytes.
                    if i == 0 {
                        for (at, v) in &flips {
                            let n = bytes.len();
                            bytes[at.index(n)] = *v;
                        }
                    }
                    let _ = apply_tar(&sb.target(), &mut bytes.as_slice());
                    sb.assert_confined();
                }
            }

            /// The same layers unpacked each alone as overlay layers (target/0, target/1…),
            /// each over the ones before: nothing appears or changes outside the target.
            #[test]
            fn random_overlay_layers_stay_inside(
                layers in prop::collection::vec(prop::collection::vec(entry(), 1..12), 1..4),
            ) {
                let sb = Sandbox::new("prop-ov");
                let out = sb.outside();
                let mut lowers: Vec<File> = Vec::new();
                for (i, layer) in layers.iter().enumerate() {
                    let layer = with_outside(layer, &out);
                    let dir = sb.base.join("target").join(i.to_string());
                    std::fs::create_dir(&dir).unwrap();
                    let d = File::open(&dir).unwrap();
                    let _ = apply_tar_as(&d, &mut raw_tar(&layer).as_slice(), Some(&lowers));
                    lowers.insert(0, d);
                    sb.assert_confined();
                }
            }
        }
    }
}
