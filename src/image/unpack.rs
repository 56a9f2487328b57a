//! Applying layers to a rootfs: decompression by media type (checked against the magic
//! bytes), whiteouts and opaque directories, and every entry created relative to a
//! directory fd resolved with openat2(RESOLVE_BENEATH), so no path, symlink or hardlink
//! in a layer can reach outside the rootfs.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat2};
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
    let want = Compression::from_media_type(mt)?;
    let mut buf = BufReader::with_capacity(1 << 20, blob);
    let got = Compression::sniff(buf.fill_buf()?);
    if got != want {
        bail!("media type {mt} does not match the data, which is {got:?}-compressed");
    }
    let reader: Box<dyn Read> = match want {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buf)?),
    };
    let mut hr = HashReader {
        inner: reader,
        hasher: Sha256::new(),
        tee,
    };
    apply_tar(root, &mut hr)?;
    // The diff_id covers the whole stream, including padding after the end marker.
    io::copy(&mut hr, &mut io::sink()).context("decompress the layer")?;
    Ok(Digest::from_hash(&hr.hasher.finalize()))
}

/// Applies an uncompressed layer the store verified when it cached it (no hashing).
pub fn apply_unpacked(root: &File, tar: File) -> Result<()> {
    apply_tar(root, &mut BufReader::with_capacity(1 << 20, tar))
}

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
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
    let c = cstr(name)?;
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    match cvt(unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    }) {
        Ok(()) => Ok(Some(Stat { mode: st.st_mode })),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

fn open_at(dir: RawFd, name: &CString, flags: libc::c_int, mode: u32) -> io::Result<OwnedFd> {
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC, mode) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Removes `name` in `dir`, recursively for a directory, never following symlinks.
fn remove_all_at(dir: BorrowedFd, name: &OsStr) -> io::Result<()> {
    let c = cstr(name)?;
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if st.is_dir() {
        let sub = open_at(
            dir.as_raw_fd(),
            &c,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        for child in list_dir(sub.as_fd())? {
            remove_all_at(sub.as_fd(), &child)?;
        }
        cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) })
    } else {
        cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), c.as_ptr(), 0) })
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
}

fn apply_tar(root: &File, reader: &mut dyn Read) -> Result<()> {
    let mut layer = Layer {
        root: root.as_fd(),
        seen: HashSet::new(),
        dir_times: Vec::new(),
        is_root: nix::unistd::geteuid().is_root(),
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
            let ts = [libc::timespec {
                tv_sec: *mtime,
                tv_nsec: 0,
            }; 2];
            unsafe { libc::futimens(fd.as_raw_fd(), ts.as_ptr()) };
        }
    }
    Ok(())
}

/// Sets the mtime (and atime) of `name` in `dir`, not following a symlink.
fn set_mtime_at(dir: RawFd, name: &CString, mtime: i64) -> io::Result<()> {
    let ts = [libc::timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    }; 2];
    cvt(unsafe { libc::utimensat(dir, name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
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

impl Layer<'_> {
    /// The directory `rel` beneath the root, created (0755) where missing.
    fn dir(&self, rel: &Path) -> Result<OwnedFd> {
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
                    let name = cstr(c.as_os_str())?;
                    cvt(unsafe { libc::mkdirat(fd.as_raw_fd(), name.as_ptr(), 0o755) })
                        .with_context(|| format!("mkdir {}", cur.display()))?;
                    fd = open_beneath(self.root, &cur, flags).map_err(|e| escape(e, &cur))?;
                }
                Err(e) => return Err(escape(e, &cur)),
            }
        }
        Ok(fd)
    }

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
            match open_beneath(self.root, &parent, OFlag::O_PATH | OFlag::O_DIRECTORY) {
                Ok(dir) => remove_all_at(dir.as_fd(), OsStr::from_bytes(hidden))
                    .context("apply whiteout")?,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => return Err(escape(e, &parent)),
            }
            return Ok(());
        }
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
        let kind = header.entry_type();
        let mode = header.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = (
            header.uid().unwrap_or(0) as u32,
            header.gid().unwrap_or(0) as u32,
        );
        let mtime = header.mtime().unwrap_or(0) as i64;
        let major = header.device_major().ok().flatten().unwrap_or(0);
        let minor = header.device_minor().ok().flatten().unwrap_or(0);
        let dirfd = self.dir(&parent)?;
        let dir = dirfd.as_raw_fd();
        let cname = cstr(&name)?;
        // Replace whatever is there, except a directory by a directory.
        let existing = lstat_at(dirfd.as_fd(), &name)?;
        let keep_dir = kind.is_dir() && existing.as_ref().is_some_and(Stat::is_dir);
        if existing.is_some() && !keep_dir && !kind.is_hard_link() {
            remove_all_at(dirfd.as_fd(), &name).context("replace the existing entry")?;
        }
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = open_at(
                    dir,
                    &cname,
                    libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
                    0o600,
                )?;
                let mut f = File::from(fd);
                io::copy(entry, &mut f).context("write the file")?;
                self.finish_fd(f.as_raw_fd(), uid, gid, mode, &xattrs)?;
                let ts = [libc::timespec {
                    tv_sec: mtime,
                    tv_nsec: 0,
                }; 2];
                cvt(unsafe { libc::futimens(f.as_raw_fd(), ts.as_ptr()) })?;
            }
            tar::EntryType::Directory => {
                if !keep_dir {
                    cvt(unsafe { libc::mkdirat(dir, cname.as_ptr(), 0o700) }).context("mkdir")?;
                }
                let fd = open_at(
                    dir,
                    &cname,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )?;
                self.finish_fd(fd.as_raw_fd(), uid, gid, mode, &xattrs)?;
                self.dir_times.push((path.clone(), mtime));
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| anyhow!("symlink without a target"))?;
                let t = CString::new(target.into_owned())
                    .map_err(|_| anyhow!("NUL in a link target"))?;
                cvt(unsafe { libc::symlinkat(t.as_ptr(), dir, cname.as_ptr()) })
                    .context("symlink")?;
                self.chown_at(dir, &cname, uid, gid)?;
                for (k, v) in &xattrs {
                    let p = CString::new(format!("/proc/self/fd/{dir}/{}", name.to_string_lossy()))
                        .unwrap();
                    unsafe {
                        libc::lsetxattr(p.as_ptr(), k.as_ptr(), v.as_ptr().cast(), v.len(), 0)
                    };
                }
                set_mtime_at(dir, &cname, mtime)?;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| anyhow!("hardlink without a target"))?;
                let tpath =
                    clean(Path::new(OsStr::from_bytes(&target))).context("hardlink target")?;
                if tpath == path {
                    return Ok(());
                }
                let tname = tpath
                    .file_name()
                    .ok_or_else(|| anyhow!("hardlink to the root"))?;
                let tparent = tpath.parent().unwrap_or(Path::new(""));
                let tdir = open_beneath(self.root, tparent, OFlag::O_PATH | OFlag::O_DIRECTORY)
                    .map_err(|e| escape(e, &tpath))?;
                let ctname = cstr(tname)?;
                if existing.is_some() {
                    remove_all_at(dirfd.as_fd(), &name).context("replace the existing entry")?;
                }
                cvt(unsafe {
                    libc::linkat(tdir.as_raw_fd(), ctname.as_ptr(), dir, cname.as_ptr(), 0)
                })
                .with_context(|| format!("hardlink to {}", tpath.display()))?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let fmt = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                let dev = libc::makedev(major, minor);
                match cvt(unsafe { libc::mknodat(dir, cname.as_ptr(), fmt | (mode & 0o777), dev) })
                {
                    // Unprivileged: device nodes can't be made; skip them as rootless tools do.
                    Err(e) if e.raw_os_error() == Some(libc::EPERM) && !self.is_root => {
                        return Ok(());
                    }
                    r => r.context("mknod")?,
                }
                self.chown_at(dir, &cname, uid, gid)?;
                cvt(unsafe { libc::fchmodat(dir, cname.as_ptr(), mode, 0) })?;
                set_mtime_at(dir, &cname, mtime)?;
            }
            // PAX global headers and other metadata-only records carry nothing to create.
            _ => return Ok(()),
        }
        // Its ancestors count as this layer's too (an opaque parent must not hide them).
        let mut p = path.as_path();
        while self.seen.insert(p.to_path_buf()) {
            match p.parent() {
                Some(q) if !q.as_os_str().is_empty() => p = q,
                _ => break,
            }
        }
        Ok(())
    }

    fn chown_at(&self, dir: RawFd, name: &CString, uid: u32, gid: u32) -> Result<()> {
        match cvt(unsafe {
            libc::fchownat(dir, name.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW)
        }) {
            Err(e) if !self.is_root && e.raw_os_error() == Some(libc::EPERM) => Ok(()),
            r => r.context("chown"),
        }
    }

    /// Ownership, then mode (chown clears setuid/setgid), then xattrs.
    fn finish_fd(
        &self,
        fd: RawFd,
        uid: u32,
        gid: u32,
        mode: u32,
        xattrs: &[(CString, Vec<u8>)],
    ) -> Result<()> {
        match cvt(unsafe { libc::fchown(fd, uid, gid) }) {
            Err(e) if !self.is_root && e.raw_os_error() == Some(libc::EPERM) => {}
            r => r.context("chown")?,
        }
        cvt(unsafe { libc::fchmod(fd, mode) }).context("chmod")?;
        for (k, v) in xattrs {
            cvt(unsafe { libc::fsetxattr(fd, k.as_ptr(), v.as_ptr().cast(), v.len(), 0) })
                .with_context(|| format!("set xattr {}", k.to_string_lossy()))?;
        }
        Ok(())
    }

    /// `.wh..wh..opq` in `dir`: hides everything below it from lower layers, keeping what
    /// this layer wrote there.
    fn opaque(&mut self, dir: &Path) -> Result<()> {
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
                let c = cstr(&name)?;
                let sub = open_at(
                    fd.as_raw_fd(),
                    &c,
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
                    0,
                )?;
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
}
