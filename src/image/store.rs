//! The content-addressed blob store: an OCI image layout (`oci-layout`, `index.json`,
//! `blobs/sha256/…`) whose index.json records each pulled reference.
//!
//! Blobs enter only through [`Ingest`], which hashes and counts while data streams in and
//! renames the file into `blobs/` only when digest and size match, so no partial or bad
//! blob is ever visible there. An interrupted download stays in `ingest/` and is resumed.
//!
//! Beside the blobs: `layers/`, each layer unpacked once as an overlayfs lower directory
//! (named by its diff_id, or by its chain id when its content depends on the layers
//! below it), and `bundles/`, one reference per overlay bundle, which keeps the layers
//! and blobs it uses from `prune` while the bundle exists.

use nix::fcntl::{Flock, FlockArg};
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageManifest};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::reference::Digest;

/// Annotation holding the name an image was pulled as.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// Annotation holding the platform chosen for a ref.
pub const PLATFORM: &str = "io.corten.image.platform";
/// Annotation holding the digest of the index the platform was chosen from.
pub const INDEX_DIGEST: &str = "io.corten.image.index";

/// The annotation `key` of descriptor `d`.
pub fn annotation<'a>(d: &'a Descriptor, key: &str) -> Option<&'a str> {
    d.annotations().as_ref()?.get(key).map(String::as_str)
}

/// Parses the JSON document `what` (a manifest, index or config) into its oci-spec type;
/// a document the spec calls malformed (e.g. a descriptor without `size`) is refused with
/// one line naming it and the field.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| doc_error(what, e))
}

fn doc_error(what: &str, e: serde_path_to_error::Error<serde_json::Error>) -> anyhow::Error {
    match e.path().to_string().as_str() {
        "." => anyhow!("parse {what}: {}", e.inner()),
        path => anyhow!("parse {what}: field {path}: {}", e.inner()),
    }
}

pub struct Store {
    root: PathBuf,
}

impl Store {
    /// /var/lib/corten/images for root, else $XDG_DATA_HOME/corten/images
    /// (~/.local/share/corten/images).
    pub fn default_dir() -> PathBuf {
        if nix::unistd::geteuid().is_root() {
            return PathBuf::from("/var/lib/corten/images");
        }
        let data = std::env::var_os("XDG_DATA_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
            .unwrap_or_else(|| PathBuf::from("."));
        data.join("corten/images")
    }

    pub fn open(dir: Option<&Path>) -> Result<Store> {
        let root = dir
            .map(Path::to_path_buf)
            .unwrap_or_else(Store::default_dir);
        for d in ["blobs/sha256", "ingest", "layers", "bundles"] {
            fs::create_dir_all(root.join(d))
                .with_context(|| format!("create the image store {}", root.display()))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            fs::write(&layout, r#"{"imageLayoutVersion":"1.0.0"}"#)
                .with_context(|| format!("write {}", layout.display()))?;
        }
        Ok(Store { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    /// Whether the store holds `d` (with `size` bytes, when given).
    pub fn has(&self, d: &Digest, size: Option<u64>) -> bool {
        match fs::metadata(self.blob_path(d)) {
            Ok(m) => m.is_file() && size.is_none_or(|s| s == m.len()),
            Err(_) => false,
        }
    }

    /// Starts (or resumes) writing blob `d` of `size` bytes. Returns None when another
    /// process completed it while we waited for its lock.
    pub fn ingest(&self, d: &Digest, size: u64) -> Result<Option<Ingest>> {
        let path = self
            .root
            .join("ingest")
            .join(format!("{}.partial", d.hex()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        // One writer per blob across processes; a second puller waits, then finds it done.
        let file = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("lock {}", path.display()))?;
        if self.has(d, Some(size)) {
            let _ = fs::remove_file(&path);
            return Ok(None);
        }
        let mut ingest = Ingest {
            file,
            path,
            dest: self.blob_path(d),
            digest: d.clone(),
            size,
            written: 0,
            hasher: Sha256::new(),
        };
        // Resume: hash what an interrupted download left.
        let have = ingest.file.metadata()?.len();
        if have > 0 && have <= size {
            let mut buf = vec![0u8; 1 << 20];
            loop {
                let n = ingest.file.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                ingest.hasher.update(&buf[..n]);
                ingest.written += n as u64;
            }
        } else if have > size {
            ingest.file.set_len(0)?;
        }
        ingest.file.seek(SeekFrom::End(0))?;
        Ok(Some(ingest))
    }

    /// Stores `bytes` as blob `d`, verifying it first.
    pub fn put(&self, d: &Digest, bytes: &[u8]) -> Result<()> {
        if self.has(d, Some(bytes.len() as u64)) {
            return Ok(());
        }
        if let Some(mut ing) = self.ingest(d, bytes.len() as u64)? {
            ing.reset()?;
            ing.write_all(bytes)?;
            ing.commit()?;
        }
        Ok(())
    }

    /// Reads blob `d`, re-verifying its digest.
    pub fn get(&self, d: &Digest) -> Result<Vec<u8>> {
        let bytes =
            fs::read(self.blob_path(d)).with_context(|| format!("read blob {d} from the store"))?;
        let got = Digest::of(&bytes);
        if &got != d {
            bail!("blob {d} in the store is corrupt: its content has digest {got}");
        }
        Ok(bytes)
    }

    pub fn remove_blob(&self, d: &Digest) {
        let _ = fs::remove_file(self.blob_path(d));
    }

    /// The descriptors of index.json (one per ref and platform).
    pub fn refs(&self) -> Result<Vec<Descriptor>> {
        let path = self.root.join("index.json");
        self.raw_refs()?
            .into_iter()
            .map(|r| {
                serde_path_to_error::deserialize(r)
                    .map_err(|e| doc_error(&path.display().to_string(), e))
            })
            .collect()
    }

    /// The manifest `d`, parsed.
    pub fn manifest(&self, d: &Digest) -> Result<ImageManifest> {
        parse_json(&self.get(d)?, &format!("manifest {d}"))
    }

    /// The image config `d`, parsed.
    pub fn image_config(&self, d: &Digest) -> Result<ImageConfiguration> {
        parse_json(&self.get(d)?, &format!("image config {d}"))
    }

    /// index.json's entries as written: [`Store::update_refs`] writes them back as they
    /// are, since oci-spec's `Descriptor` would reorder their fields.
    fn raw_refs(&self) -> Result<Vec<Value>> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            Ok(b) => {
                let v: Value = serde_json::from_slice(&b)
                    .with_context(|| format!("parse {}", path.display()))?;
                Ok(v["manifests"].as_array().cloned().unwrap_or_default())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
        }
    }

    /// Takes flock(2) `how` on the store's file `name`; held until the guard is dropped.
    fn lock(&self, name: &str, how: FlockArg) -> Result<Flock<File>> {
        let path = self.root.join(name);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("create {}", path.display()))?;
        Flock::lock(f, how)
            .map_err(|(_, e)| e)
            .with_context(|| format!("lock {}", path.display()))
    }

    /// Held shared by a pull from its first blob until its ref is recorded; `prune` takes
    /// it exclusively, so it never deletes the blobs of a pull still in progress.
    pub fn pull_lock(&self) -> Result<Flock<File>> {
        self.lock("gc.lock", FlockArg::LockShared)
    }

    /// Read-modify-write index.json under a lock; not written when `f` changed nothing.
    fn update_refs<T>(&self, f: impl FnOnce(&mut Vec<Value>) -> T) -> Result<T> {
        let _lock = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut refs = self.raw_refs()?;
        let before = refs.clone();
        let out = f(&mut refs);
        if refs == before {
            return Ok(out);
        }
        let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                           "manifests": refs});
        let tmp = self.root.join("index.json.tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(&index)?)?;
        fs::rename(&tmp, self.root.join("index.json"))?;
        Ok(out)
    }

    /// Records `name` (for `platform`) → manifest descriptor `desc`.
    pub fn set_ref(&self, name: &str, platform: &str, mut desc: Value) -> Result<()> {
        desc["annotations"][REF_NAME] = json!(name);
        desc["annotations"][PLATFORM] = json!(platform);
        self.update_refs(|refs| {
            // Pulled again as it was (a warm pull): nothing to record.
            if refs.contains(&desc) {
                return;
            }
            refs.retain(|r| {
                !(r["annotations"][REF_NAME] == name && r["annotations"][PLATFORM] == platform)
            });
            refs.push(desc);
        })
    }

    /// Forgets every platform of `name`; returns how many entries went.
    pub fn remove_ref(&self, name: &str) -> Result<usize> {
        self.update_refs(|refs| {
            let before = refs.len();
            refs.retain(|r| r["annotations"][REF_NAME] != name);
            before - refs.len()
        })
    }

    /// Adds what image `manifest` uses to `keep` (hex names): the manifest, its config,
    /// its layers, and its unpacked layers by diff_id and by chain id.
    fn keep_image(&self, manifest: &Digest, keep: &mut HashSet<String>) {
        let mut add = |s: &str| {
            if let Ok(d) = Digest::parse(s) {
                keep.insert(d.hex().to_string());
            }
        };
        add(manifest.as_str());
        let Ok(m) = self.manifest(manifest) else {
            return;
        };
        add(m.config().digest().as_ref());
        if let Ok(c) =
            Digest::parse(m.config().digest().as_ref()).and_then(|cd| self.image_config(&cd))
        {
            let diff_ids: Vec<Digest> = c
                .rootfs()
                .diff_ids()
                .iter()
                .filter_map(|d| Digest::parse(d).ok())
                .collect();
            for (d, chain) in diff_ids.iter().zip(chain_ids(&diff_ids)) {
                add(d.as_str());
                add(chain.as_str());
            }
        }
        for l in m.layers() {
            add(l.digest().as_ref());
        }
    }

    /// Deletes blobs and unpacked layers no ref or live bundle uses, and stale ingest
    /// files; returns (blobs and layers, bytes) removed.
    pub fn prune(&self) -> Result<(usize, u64)> {
        let _pulls = self.lock("gc.lock", FlockArg::LockExclusive)?;
        let _index = self.lock("index.lock", FlockArg::LockExclusive)?;
        let mut keep: HashSet<String> = HashSet::new();
        for r in self.refs()? {
            if let Some(i) = annotation(&r, INDEX_DIGEST)
                && let Ok(d) = Digest::parse(i)
            {
                keep.insert(d.hex().to_string());
            }
            if let Ok(d) = Digest::parse(r.digest().as_ref()) {
                self.keep_image(&d, &mut keep);
            }
        }
        // The live bundles' images and layers; the references of bundles gone are dropped.
        for (path, b) in self.bundles()? {
            match super::overlay::read_record(&b.bundle) {
                Ok(now) if now.store == b.store && now.layers == b.layers => {
                    keep.extend(b.layers.iter().cloned());
                    if let Ok(d) = Digest::parse(&b.manifest) {
                        self.keep_image(&d, &mut keep);
                    }
                }
                _ => {
                    let _ = fs::remove_file(path);
                }
            }
        }
        let (mut n, mut bytes) = (0, 0);
        for e in fs::read_dir(self.root.join("blobs/sha256"))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                fs::remove_file(e.path())?;
                n += 1;
            }
        }
        for e in fs::read_dir(self.root.join("layers"))?.flatten() {
            // Unused layers, and what an interrupted unpack left (no pull runs now).
            let name = e.file_name().to_string_lossy().into_owned();
            if !keep.contains(&name) {
                bytes += du(&e.path());
                fs::remove_dir_all(e.path())
                    .with_context(|| format!("remove {}", e.path().display()))?;
                n += 1;
            }
        }
        for e in fs::read_dir(self.root.join("ingest"))?.flatten() {
            // Skip files another pull is writing right now (it holds their lock).
            if let Ok(f) = File::open(e.path())
                && Flock::lock(f, FlockArg::LockExclusiveNonblock).is_ok()
            {
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                let _ = fs::remove_file(e.path());
            }
        }
        Ok((n, bytes))
    }
}

/// The disk use of the files under `p` (not following links).
fn du(p: &Path) -> u64 {
    let Ok(m) = fs::symlink_metadata(p) else {
        return 0;
    };
    if !m.is_dir() {
        return m.len();
    }
    fs::read_dir(p)
        .map(|rd| rd.flatten().map(|e| du(&e.path())).sum())
        .unwrap_or(0)
}

/// The chain ids of layers `diff_ids` (bottom first): the first layer's is its diff_id,
/// each next one sha256("<chain id below> <diff_id>"), as the image spec defines them.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(below) => Digest::of(format!("{} {}", below.as_str(), d.as_str()).as_bytes()),
        };
        out.push(next);
    }
    out
}

impl Store {
    pub fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    /// The name in `layers/` of the layer `diff_id` (whose chain id is `chain`), if the
    /// store holds it unpacked.
    pub fn find_layer(&self, diff_id: &Digest, chain: &Digest) -> Option<String> {
        [diff_id, chain]
            .into_iter()
            .map(|d| d.hex().to_string())
            .find(|h| self.layers_dir().join(h).is_dir())
    }

    /// The uncompressed size of layer `diff_id` (chain id `chain`), if the store holds it
    /// as a tar (exact) or unpacked (the files' sizes).
    pub fn layer_size(&self, diff_id: &Digest, chain: &Digest) -> Option<u64> {
        if let Ok(m) = fs::metadata(self.blob_path(diff_id))
            && m.is_file()
        {
            return Some(m.len());
        }
        self.find_layer(diff_id, chain)
            .map(|name| du(&self.layers_dir().join(name)))
    }

    /// Unpacks the layer blob `blob` (media type `mt`) into `layers/` over `lowers` (the
    /// directories of the layers below, the nearest first), checking its diff_id; returns
    /// its name there. Made in a temporary directory and renamed into place, so a layer
    /// directory is complete or absent; a concurrent pull's copy wins the rename.
    pub fn unpack_layer(
        &self,
        blob: &Digest,
        diff_id: &Digest,
        chain: &Digest,
        mt: &str,
        lowers: &[File],
    ) -> Result<String> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tmp =
            self.layers_dir()
                .join(format!(".tmp-{}-{}-{n}", diff_id.hex(), std::process::id()));
        fs::create_dir(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        let unpacked = (|| -> Result<bool> {
            let dir = File::open(&tmp).with_context(|| format!("open {}", tmp.display()))?;
            let f =
                File::open(self.blob_path(blob)).with_context(|| format!("open blob {blob}"))?;
            let (got, used_lowers) = super::unpack::unpack_layer(&dir, f, mt, lowers)?;
            if &got != diff_id {
                self.remove_blob(blob);
                bail!("uncompressed digest mismatch: expected {diff_id}, got {got}");
            }
            Ok(used_lowers)
        })();
        let used_lowers = match unpacked {
            Ok(u) => u,
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let name = if used_lowers { chain } else { diff_id }.hex().to_string();
        let dest = self.layers_dir().join(&name);
        if let Err(e) = fs::rename(&tmp, &dest) {
            let _ = fs::remove_dir_all(&tmp);
            if !dest.is_dir() {
                return Err(e).with_context(|| format!("move the layer into {}", dest.display()));
            }
        }
        Ok(name)
    }

    fn bundle_ref(&self, bundle: &Path) -> PathBuf {
        let id = Digest::of(bundle.as_os_str().as_encoded_bytes());
        self.root
            .join("bundles")
            .join(format!("{}.json", &id.hex()[..32]))
    }

    /// Records the overlay bundle `r` as a user of its layers and image.
    pub fn add_bundle(&self, r: &super::overlay::Record) -> Result<()> {
        let p = self.bundle_ref(&r.bundle);
        let tmp = p.with_extension("tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(r)?)
            .with_context(|| format!("write {}", tmp.display()))?;
        fs::rename(&tmp, &p).with_context(|| format!("write {}", p.display()))
    }

    /// Drops the reference of the bundle at `bundle` (absolute).
    pub fn remove_bundle(&self, bundle: &Path) {
        let _ = fs::remove_file(self.bundle_ref(bundle));
    }

    /// The bundle references: each file and what it records.
    pub fn bundles(&self) -> Result<Vec<(PathBuf, super::overlay::Record)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.root.join("bundles"))?.flatten() {
            if e.path().extension().is_some_and(|x| x == "json")
                && let Ok(b) = fs::read(e.path())
                && let Ok(r) = serde_json::from_slice(&b)
            {
                out.push((e.path(), r));
            }
        }
        Ok(out)
    }
}

/// A blob being written: hashed and counted as it streams, moved into `blobs/` by
/// [`Ingest::commit`] only if both match.
/// Data that is not what was announced for it (size or digest): the source is wrong, so
/// such a download is not kept for a resume.
#[derive(Debug)]
pub struct Mismatch(pub String);

impl Mismatch {
    /// Is `e`, or an error it wraps (an io::Error's payload too), a mismatch?
    pub fn in_chain(e: &anyhow::Error) -> bool {
        e.chain().any(|c| {
            c.is::<Mismatch>()
                || c.downcast_ref::<io::Error>()
                    .and_then(io::Error::get_ref)
                    .is_some_and(|inner| inner.is::<Mismatch>())
        })
    }
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Mismatch {}

pub struct Ingest {
    /// Locked while it lives: one writer per blob across processes.
    file: Flock<File>,
    path: PathBuf,
    dest: PathBuf,
    digest: Digest,
    size: u64,
    written: u64,
    hasher: Sha256,
}

impl Ingest {
    /// Bytes already held (a resumed download continues from here).
    pub fn offset(&self) -> u64 {
        self.written
    }

    /// Starts over (the server ignored our Range request).
    pub fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(0)?;
        self.file.seek(SeekFrom::Start(0))?;
        self.written = 0;
        self.hasher = Sha256::new();
        Ok(())
    }

    /// Verifies size and digest and publishes the blob; a mismatch deletes the data.
    pub fn commit(self) -> Result<()> {
        let got = Digest::from_hash(&self.hasher.finalize());
        if self.written != self.size || got != self.digest {
            let _ = fs::remove_file(&self.path);
            if self.written != self.size {
                return Err(Mismatch(format!(
                    "size mismatch for blob {}: expected {} bytes, got {}",
                    self.digest, self.size, self.written
                ))
                .into());
            }
            let msg = format!("digest mismatch: expected {}, got {}", self.digest, got);
            return Err(Mismatch(msg).into());
        }
        fs::rename(&self.path, &self.dest)
            .with_context(|| format!("move blob {} into the store", self.digest))?;
        Ok(())
    }

    /// Drops the partial data (a bad stream must not be resumed later).
    pub fn discard(self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written + buf.len() as u64 > self.size {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                Mismatch(format!(
                    "size mismatch for blob {}: more than the {} bytes announced",
                    self.digest, self.size
                )),
            ));
        }
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// An uncompressed layer being cached in the store under its diff_id, so that a later
/// pull of an image with this layer applies it without downloading or decompressing.
/// The caller hashes the stream; [`LayerCache::publish`] moves the file into `blobs/`
/// only once that hash matched the diff_id. Dropped unpublished, the file is removed.
pub struct LayerCache {
    file: io::BufWriter<File>,
    tmp: PathBuf,
    dest: PathBuf,
    published: bool,
}

impl LayerCache {
    pub fn writer(&mut self) -> &mut dyn Write {
        &mut self.file
    }

    pub fn publish(mut self) -> Result<()> {
        self.file.flush().context("write the layer cache")?;
        fs::rename(&self.tmp, &self.dest).context("move the unpacked layer into the store")?;
        self.published = true;
        Ok(())
    }
}

impl Drop for LayerCache {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

impl Store {
    /// Starts caching the uncompressed layer `diff_id`; None if the store has it.
    pub fn cache_layer(&self, diff_id: &Digest) -> Result<Option<LayerCache>> {
        if self.has(diff_id, None) {
            return Ok(None);
        }
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tmp = self.root.join("ingest").join(format!(
            "{}.tar-{}-{n}",
            diff_id.hex(),
            std::process::id()
        ));
        let file = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        Ok(Some(LayerCache {
            file: io::BufWriter::with_capacity(1 << 20, file),
            tmp,
            dest: self.blob_path(diff_id),
            published: false,
        }))
    }

    /// Stores a stream of unknown digest: returns its digest, size and first bytes.
    pub fn put_stream(&self, r: &mut dyn std::io::Read) -> Result<(Digest, u64, [u8; 4])> {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let tmp = self
            .root
            .join("ingest")
            .join(format!("stream-{}-{n}", std::process::id()));
        let mut f = File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
        let (mut hasher, mut size, mut head) = (Sha256::new(), 0u64, [0u8; 4]);
        let mut buf = vec![0u8; 256 << 10];
        let res = (|| -> io::Result<()> {
            loop {
                let k = r.read(&mut buf)?;
                if k == 0 {
                    return Ok(());
                }
                if size < 4 {
                    let m = (4 - size as usize).min(k);
                    head[size as usize..size as usize + m].copy_from_slice(&buf[..m]);
                }
                hasher.update(&buf[..k]);
                f.write_all(&buf[..k])?;
                size += k as u64;
            }
        })();
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(e).context("store a blob");
        }
        let d = Digest::from_hash(&hasher.finalize());
        fs::rename(&tmp, self.blob_path(&d))?;
        Ok((d, size, head))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_document_is_named_with_its_field() {
        let m = br#"{"schemaVersion": 2, "config": {"mediaType": "x",
            "digest": "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},
            "layers": []}"#;
        let err = parse_json::<ImageManifest>(m, "manifest M").unwrap_err();
        assert_eq!(
            err.to_string().split(" at line").next().unwrap(),
            "parse manifest M: field config: missing field `size`"
        );
        let err = parse_json::<ImageManifest>(b"{}", "manifest M").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("parse manifest M: missing field"),
            "{err}"
        );
    }
}
