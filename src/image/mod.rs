//! corten-image: pulls images from a registry v2 (or an OCI layout, or a `docker save`
//! tarball) into a content-addressed store and unpacks them into an OCI bundle.
//!
//! A bundle's rootfs is an overlay of the layers the store keeps unpacked (as root), or
//! with `--copy` (and where overlayfs can't be used) a directory the layers are applied to.
//!
//! One file per concern: [`reference`] (names), [`registry`] (HTTP, auth, retries),
//! [`tls`] (HTTPS, set up on first use), [`store`] (blobs, unpacked layers, bundle
//! references), [`unpack`] (layers), [`bundle`] (config.json), [`overlay`] (overlay
//! bundles), [`platform`], [`progress`], [`mirrors`] and [`sources`] (where manifests and
//! blobs come from).

pub mod bundle;
pub mod mirrors;
pub mod net;
pub mod overlay;
pub mod platform;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod sources;
pub mod store;
pub mod tls;
pub mod unpack;

use std::collections::HashMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use serde_json::{Value, json};

use platform::Platform;
use progress::Progress;
use reference::{Digest, Source};
use registry::Creds;
use sources::BlobSource;
use store::{Store, annotation, parse_json};

pub const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Layers downloaded at once.
const PARALLEL: usize = 4;

/// Options shared by every command.
pub struct Global {
    pub store: Option<PathBuf>,
    pub creds: Option<Creds>,
    pub insecure: Vec<String>,
    /// (prefix, mirror): tried first for the images under prefix (see [`mirrors`]).
    pub mirrors: mirrors::Mirrors,
}

pub struct PullOptions {
    pub source: String,
    pub bundle: PathBuf,
    pub platform: Option<String>,
    pub tty: bool,
    pub quiet: bool,
    pub force: bool,
    /// A plain directory rootfs, the layers applied to it, rather than an overlay.
    pub copy: bool,
    pub cmd: Vec<String>,
    /// The container's network (`--net`, `-p`, `--hostname`, `--dns`).
    pub net: net::NetOptions,
    /// docker run's flags (`--user`, `--env`, `--memory`...).
    pub run: bundle::RunOptions,
}

/// The one-line message for a failed command; a full disk or quota says so first.
pub fn error_line(e: &anyhow::Error) -> String {
    let msg = format!("{e:#}").replace('\n', " ");
    let full = e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
            .is_some_and(|n| n == libc::ENOSPC || n == libc::EDQUOT)
    });
    if full {
        format!("disk full: {msg}")
    } else {
        msg
    }
}

/// An image resolved to one platform's manifest, its config in the store. The `*_json`
/// fields are the documents as served, which `inspect` prints as they are.
pub struct Resolved {
    pub name: String,
    pub digest: Digest,
    pub media_type: String,
    pub manifest: ImageManifest,
    pub manifest_json: Value,
    pub index_digest: Option<Digest>,
    pub platform: Platform,
    pub config: ImageConfiguration,
    pub config_json: Value,
}

/// A descriptor's digest (sha256, the only algorithm the store keeps) and size.
pub fn descriptor(d: &Descriptor) -> Result<(Digest, u64)> {
    Ok((Digest::parse(d.digest().as_ref())?, d.size()))
}

fn media_type(bytes_ct: &str, v: &Value) -> String {
    v["mediaType"]
        .as_str()
        .map(String::from)
        .unwrap_or_else(|| {
            bytes_ct
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
}

/// Resolves `src` to the manifest for `want` (the host platform unless given) and puts
/// the manifests and config in the store.
pub fn resolve(
    store: &Store,
    src: &dyn BlobSource,
    want: Option<&Platform>,
    progress: &Progress,
) -> Result<Resolved> {
    let name = src.name();
    let host = Platform::host();
    let target = want.unwrap_or(&host);
    let (mut bytes, ct, digest) = src.top()?;
    // The untyped document says what it is (an index, a manifest, a legacy schema 1)
    // before it is parsed as that type.
    let mut v: Value =
        serde_json::from_slice(&bytes).with_context(|| format!("parse the manifest of {name}"))?;
    let mut mt = media_type(&ct, &v);
    let mut digest = digest;
    let mut index_digest = None;
    if v["schemaVersion"] == 1 || mt.starts_with("application/vnd.docker.distribution.manifest.v1")
    {
        bail!(
            "unsupported legacy manifest (docker schema 1) for {name}: push the image again with a current tool"
        );
    }
    store.put(&digest, &bytes)?;
    if mt == MT_OCI_INDEX
        || mt == MT_DOCKER_LIST
        || (v["manifests"].is_array() && v["layers"].is_null())
    {
        let index: ImageIndex = parse_json(&bytes, &format!("the index of {name}"))?;
        let chosen = platform::choose(index.manifests(), target, &name)?;
        let (d, _) = descriptor(chosen)?;
        bytes = src.manifest(&d)?;
        store.put(&d, &bytes)?;
        index_digest = Some(digest);
        digest = d;
        v = serde_json::from_slice(&bytes).with_context(|| format!("parse manifest {digest}"))?;
        mt = media_type(chosen.media_type().as_ref(), &v);
        if v["schemaVersion"] == 1 {
            bail!("unsupported legacy manifest (docker schema 1) for {name}");
        }
    }
    if mt != MT_OCI_MANIFEST && mt != MT_DOCKER_MANIFEST && !v["layers"].is_array() {
        bail!("unsupported manifest type {mt:?} for {name}");
    }
    let manifest: ImageManifest = parse_json(&bytes, &format!("manifest {digest} of {name}"))?;
    let (cd, csize) = descriptor(manifest.config()).context("the manifest's config")?;
    if !store.has(&cd, Some(csize))
        && let Some(mut ing) = store.ingest(&cd, csize)?
    {
        src.fetch(&cd, &mut ing, &|_| {})?;
        ing.commit().with_context(|| format!("config {cd}"))?;
    }
    let config_bytes = store.get(&cd)?;
    let config_json: Value =
        serde_json::from_slice(&config_bytes).context("parse the image config")?;
    let config: ImageConfiguration = parse_json(&config_bytes, &format!("image config {cd}"))?;
    let platform = Platform::from_config(&config);
    if index_digest.is_none()
        && let Some(w) = want
        && !w.accepts(&platform)
    {
        bail!("image {name} has no manifest for platform {w}; it has: {platform}");
    }
    progress.step(&format!("{name}: {digest} ({platform})"));
    Ok(Resolved {
        name,
        digest,
        media_type: mt,
        manifest,
        manifest_json: v,
        index_digest,
        platform,
        config,
        config_json,
    })
}

/// Removes what a failed pull made of the bundle.
struct BundleGuard {
    dir: PathBuf,
    created: bool,
    armed: bool,
}

impl Drop for BundleGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if overlay::is_mounted(&self.dir) {
            let _ = nix::mount::umount2(&self.dir.join("rootfs"), nix::mount::MntFlags::MNT_DETACH);
        }
        if self.created {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            let _ = fs::remove_dir_all(self.dir.join("rootfs"));
            let _ = fs::remove_dir_all(self.dir.join(overlay::DIR));
            let _ = fs::remove_file(self.dir.join("config.json"));
            let _ = fs::remove_dir_all(self.dir.join("net"));
        }
    }
}

fn prepare_bundle(dir: &Path, force: bool) -> Result<BundleGuard> {
    let created = match fs::read_dir(dir) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                if !force {
                    bail!(
                        "bundle directory {} is not empty (use --force to replace it)",
                        dir.display()
                    );
                }
                overlay::umount(dir)?;
                let ov = dir.join(overlay::DIR);
                if ov.symlink_metadata().is_ok() {
                    fs::remove_dir_all(&ov).with_context(|| format!("remove {}", ov.display()))?;
                }
                let rootfs = dir.join("rootfs");
                if rootfs.symlink_metadata().is_ok() {
                    fs::remove_dir_all(&rootfs)
                        .with_context(|| format!("remove {}", rootfs.display()))?;
                }
                let _ = fs::remove_file(dir.join("config.json"));
                let _ = fs::remove_dir_all(dir.join("net"));
            }
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
            true
        }
        Err(e) => return Err(e).with_context(|| format!("open {}", dir.display())),
    };
    let guard = BundleGuard {
        dir: dir.to_path_buf(),
        created,
        armed: true,
    };
    fs::create_dir(dir.join("rootfs"))
        .with_context(|| format!("create {}/rootfs", dir.display()))?;
    Ok(guard)
}

/// `pull`: resolve, download the layers in parallel into the store, apply them in order
/// as each is ready, write config.json, record the ref. Returns the summary.
pub fn pull(g: &Global, o: &PullOptions) -> Result<Value> {
    let start = Instant::now();
    let want = o.platform.as_deref().map(Platform::parse).transpose()?;
    let source = Source::parse(&o.source)?;
    let network = o.net.plan()?;
    o.run.check()?;
    let store = Store::open(g.store.as_deref())?;
    let _pulling = store.pull_lock()?;
    let progress = Progress::new(o.quiet);
    let src = sources::open(&source, g, &store)?;
    let r = resolve(&store, src.as_ref(), want.as_ref(), &progress)?;
    let host = Platform::host();
    if !host.accepts(&r.platform) {
        eprintln!(
            "corten-image: warning: {} is for {}, not for this host ({host}): it may not run here",
            r.name, r.platform
        );
    }

    let layers = r.manifest.layers();
    let diff_ids: Vec<Digest> = r
        .config
        .rootfs()
        .diff_ids()
        .iter()
        .filter_map(|s| Digest::parse(s).ok())
        .collect();
    if diff_ids.len() != layers.len() {
        bail!(
            "image {}: the manifest has {} layers but the config lists {} diff_ids",
            r.name,
            layers.len(),
            diff_ids.len()
        );
    }
    let descs: Vec<(Digest, u64)> = layers.iter().map(descriptor).collect::<Result<_>>()?;
    let chains = store::chain_ids(&diff_ids);

    let mut guard = prepare_bundle(&o.bundle, o.force)?;
    let bundle_dir =
        fs::canonicalize(&o.bundle).with_context(|| format!("resolve {}", o.bundle.display()))?;
    let rootfs_path = o.bundle.join("rootfs");
    let bars: Vec<_> = descs
        .iter()
        .map(|(d, size)| progress.layer(d.short(), *size))
        .collect();
    let job = Fetch {
        store: &store,
        src: src.as_ref(),
        descs: &descs,
        bars: &bars,
        downloaded: AtomicU64::new(0),
    };

    let mut overlay_layers = None;
    match overlay::unusable() {
        _ if o.copy => {}
        Some(why) => copy_notice(o, why),
        None => {
            // Each layer unpacked once in the store, over the ones below it.
            let mut names: Vec<String> = Vec::new();
            let cached = |i: usize| store.find_layer(&diff_ids[i], &chains[i]).is_some();
            job.run(&cached, &mut |i| {
                let name = match store.find_layer(&diff_ids[i], &chains[i]) {
                    Some(name) => name,
                    None => {
                        let lowers = names
                            .iter()
                            .rev()
                            .map(|n| File::open(store.layers_dir().join(n)))
                            .collect::<std::io::Result<Vec<_>>>()
                            .context("open the layers below")?;
                        let mt = layers[i].media_type().as_ref();
                        store
                            .unpack_layer(&descs[i].0, &diff_ids[i], &chains[i], mt, &lowers)
                            .with_context(|| format!("layer {}", descs[i].0))?
                    }
                };
                names.push(name);
                Ok(())
            })?;
            let p = overlay::Paths::of(&bundle_dir);
            for d in [&p.upper, &p.work] {
                fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
            }
            match overlay::mount(&store.layers_dir(), &names, &bundle_dir) {
                Ok(()) => overlay_layers = Some(names),
                Err(e) => {
                    fs::remove_dir_all(&p.dir)
                        .with_context(|| format!("remove {}", p.dir.display()))?;
                    copy_notice(o, &format!("{e:#}"));
                }
            }
        }
    }
    if overlay_layers.is_none() {
        let rootfs =
            File::open(&rootfs_path).with_context(|| format!("open {}", rootfs_path.display()))?;
        // A layer the store holds as an uncompressed tar needs no download.
        let cached = |i: usize| store.has(&diff_ids[i], None);
        job.run(&cached, &mut |i| {
            apply(&store, &rootfs, &descs[i].0, &diff_ids[i], &layers[i])
        })?;
    }

    let info = bundle::BundleInfo {
        reference: &r.name,
        manifest_digest: r.digest.as_str(),
        platform: &r.platform,
        tty: o.tty,
        cmd: &o.cmd,
        run: &o.run,
    };
    let mut spec = bundle::config(&r.config, &rootfs_path, &info)?;
    let bundle_dir = fs::canonicalize(&o.bundle)
        .with_context(|| format!("resolve the bundle path {}", o.bundle.display()))?;
    let hook_bin =
        std::env::current_exe().context("find corten-image's own path (for the network hooks)")?;
    network.write(&mut spec, &bundle_dir, &hook_bin)?;
    let cfg = o.bundle.join("config.json");
    fs::write(&cfg, serde_json::to_string_pretty(&spec)? + "\n")
        .with_context(|| format!("write {}", cfg.display()))?;
    if let Some(names) = &overlay_layers {
        let rec = overlay::Record {
            bundle: bundle_dir.clone(),
            store: fs::canonicalize(store.root())
                .with_context(|| format!("resolve {}", store.root().display()))?,
            layers: names.clone(),
            reference: r.name.clone(),
            manifest: r.digest.as_str().to_string(),
        };
        overlay::write_record(&rec)?;
        store.add_bundle(&rec)?;
    }
    record(&store, &r)?;
    guard.armed = false;
    progress.step(&format!("wrote {}", o.bundle.display()));
    let size: u64 = descs.iter().map(|(_, s)| s).sum();
    Ok(json!({
        "ref": r.name,
        "digest": r.digest.as_str(),
        "platform": r.platform.to_string(),
        "layers": descs.len(),
        "size": size,
        "bytes": job.downloaded.load(Ordering::Relaxed),
        "seconds": start.elapsed().as_secs_f64(),
        "bundle": o.bundle,
        "rootfs": if overlay_layers.is_some() { "overlay" } else { "copy" },
    }))
}

/// The one line saying a pull makes a copied rootfs instead of an overlay, and why.
fn copy_notice(o: &PullOptions, why: &str) {
    if !o.quiet {
        eprintln!("corten-image: {why}: copying the layers into the rootfs instead (--copy)");
    }
}

/// The layers of one pull: downloaded in parallel, handed on in order as each is ready.
struct Fetch<'a> {
    store: &'a Store,
    src: &'a dyn BlobSource,
    descs: &'a [(Digest, u64)],
    bars: &'a [progress::LayerBar],
    downloaded: AtomicU64,
}

impl Fetch<'_> {
    /// Downloads the layers not `cached` (PARALLEL at once) and calls `apply` with each
    /// layer's index, in order, once it is in the store. A failure stops the rest.
    fn run(
        &self,
        cached: &(dyn Fn(usize) -> bool + Sync),
        apply: &mut dyn FnMut(usize) -> Result<()>,
    ) -> Result<()> {
        if (0..self.descs.len()).all(cached) {
            // All in the store (a warm pull): no download threads to start.
            for (i, bar) in self.bars.iter().enumerate() {
                bar.set_message("cached");
                apply(i)?;
                bar.done("unpacked");
            }
            return Ok(());
        }
        let next = AtomicUsize::new(0);
        let cancel = AtomicBool::new(false);
        let (tx, rx) = mpsc::channel::<(usize, Result<()>)>();
        std::thread::scope(|s| -> Result<()> {
            for _ in 0..PARALLEL.min(self.descs.len()) {
                let tx = tx.clone();
                let (next, cancel) = (&next, &cancel);
                s.spawn(move || {
                    loop {
                        let i = next.fetch_add(1, Ordering::SeqCst);
                        if i >= self.descs.len() || cancel.load(Ordering::SeqCst) {
                            break;
                        }
                        let (d, size) = &self.descs[i];
                        let r = if cached(i) {
                            Ok(false)
                        } else {
                            fetch_blob(self.store, self.src, d, *size, &|n| {
                                self.bars[i].inc(n);
                                self.downloaded.fetch_add(n, Ordering::Relaxed);
                            })
                        };
                        match &r {
                            Ok(true) => self.bars[i].set_message("downloaded"),
                            Ok(false) => self.bars[i].set_message("cached"),
                            Err(_) => {}
                        }
                        if tx.send((i, r.map(|_| ()))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            let mut ready: HashMap<usize, Result<()>> = HashMap::new();
            let result = (|| -> Result<()> {
                for (i, (d, _)) in self.descs.iter().enumerate() {
                    while !ready.contains_key(&i) {
                        let (j, r) = rx
                            .recv()
                            .map_err(|_| anyhow!("download of layer {d} stopped"))?;
                        ready.insert(j, r);
                    }
                    ready.remove(&i).unwrap()?;
                    self.bars[i].set_message("unpacking");
                    apply(i)?;
                    self.bars[i].done("unpacked");
                }
                Ok(())
            })();
            if result.is_err() {
                cancel.store(true, Ordering::SeqCst);
            }
            result
        })
    }
}

/// Applies layer `d` to `rootfs`: from the store's unpacked copy (`diff_id`) if it has
/// one, else by decompressing the blob, checking its diff_id and caching the result.
fn apply(
    store: &Store,
    rootfs: &File,
    d: &Digest,
    diff_id: &Digest,
    desc: &Descriptor,
) -> Result<()> {
    let cached = store.blob_path(diff_id);
    if let Ok(tar) = File::open(&cached) {
        return unpack::apply_unpacked(rootfs, tar)
            .with_context(|| format!("layer {d} (unpacked copy {diff_id})"));
    }
    let mt = desc.media_type().as_ref();
    let blob = File::open(store.blob_path(d)).with_context(|| format!("open blob {d}"))?;
    let mut cache = store.cache_layer(diff_id)?;
    let got = unpack::apply_layer(rootfs, blob, mt, cache.as_mut().map(|c| c.writer()))
        .with_context(|| format!("layer {d}"))?;
    if &got != diff_id {
        store.remove_blob(d);
        bail!("layer {d}: uncompressed digest mismatch: expected {diff_id}, got {got}");
    }
    if let Some(c) = cache {
        c.publish().with_context(|| format!("layer {d}"))?;
    }
    Ok(())
}

/// Makes sure blob `d` is in the store; Ok(true) if it was downloaded.
fn fetch_blob(
    store: &Store,
    src: &dyn BlobSource,
    d: &Digest,
    size: u64,
    progress: &dyn Fn(u64),
) -> Result<bool> {
    if store.has(d, Some(size)) {
        return Ok(false);
    }
    let Some(mut ing) = store.ingest(d, size)? else {
        return Ok(false);
    };
    if let Err(e) = src.fetch(d, &mut ing, progress) {
        // Keep a partial download for a later resume, unless its data is wrong.
        if store::Mismatch::in_chain(&e) {
            ing.discard();
        }
        return Err(e.context(format!("blob {d}")));
    }
    ing.commit().with_context(|| format!("blob {d}"))?;
    Ok(true)
}

fn record(store: &Store, r: &Resolved) -> Result<()> {
    let bytes = serde_json::to_vec(&r.manifest_json)?;
    let size = fs::metadata(store.blob_path(&r.digest))
        .map(|m| m.len())
        .unwrap_or(bytes.len() as u64);
    let mut desc = json!({"mediaType": r.media_type, "digest": r.digest.as_str(), "size": size,
                          "platform": {"os": r.platform.os, "architecture": r.platform.architecture}});
    if let Some(v) = &r.platform.variant {
        desc["platform"]["variant"] = json!(v);
    }
    if let Some(i) = &r.index_digest {
        desc["annotations"][store::INDEX_DIGEST] = json!(i.as_str());
    }
    store.set_ref(&r.name, &r.platform.to_string(), desc)
}

/// `images`: one row per ref and platform.
pub fn images(g: &Global) -> Result<Vec<Value>> {
    let store = Store::open(g.store.as_deref())?;
    let mut rows = Vec::new();
    for r in store.refs()? {
        let (d, _) = descriptor(&r)?;
        let m = store.manifest(&d)?;
        let size: u64 = m
            .layers()
            .iter()
            .chain(std::iter::once(m.config()))
            .map(Descriptor::size)
            .sum();
        // Uncompressed: known for the layers the store holds as tars or unpacked.
        let (cd, _) = descriptor(m.config())?;
        let diff_ids: Vec<Digest> = store
            .image_config(&cd)?
            .rootfs()
            .diff_ids()
            .iter()
            .filter_map(|s| Digest::parse(s).ok())
            .collect();
        let unpacked: Option<u64> = diff_ids
            .iter()
            .zip(store::chain_ids(&diff_ids))
            .map(|(d, c)| store.layer_size(d, &c))
            .sum();
        rows.push(json!({
            "ref": annotation(&r, store::REF_NAME),
            "platform": annotation(&r, store::PLATFORM),
            "digest": d.as_str(),
            "size": size,
            "unpacked": unpacked,
        }));
    }
    Ok(rows)
}

/// The name a user's REF is stored under.
fn store_name(reference: &str) -> Result<String> {
    Ok(Source::parse(reference)?.name())
}

/// `rm REF`: forgets the ref and deletes the blobs nothing else uses.
pub fn rm(g: &Global, reference: &str) -> Result<(usize, u64)> {
    let store = Store::open(g.store.as_deref())?;
    let name = store_name(reference)?;
    if store.remove_ref(&name)? == 0 {
        bail!("image {name} is not in the store");
    }
    store.prune()
}

/// `mount BUNDLE`: mounts an overlay bundle's rootfs again (after a reboot, or an
/// `umount`); false if it was mounted already.
pub fn mount(bundle: &Path) -> Result<bool> {
    let rec = overlay::read_record(bundle)?;
    if overlay::is_mounted(bundle) {
        return Ok(false);
    }
    let store = Store::open(Some(&rec.store))?;
    for l in &rec.layers {
        if !store.layers_dir().join(l).is_dir() {
            bail!(
                "layer {l} of {} is gone from the store {}: pull the image again (with --force)",
                bundle.display(),
                rec.store.display()
            );
        }
    }
    let dir = fs::canonicalize(bundle).with_context(|| format!("resolve {}", bundle.display()))?;
    overlay::mount(&store.layers_dir(), &rec.layers, &dir)?;
    Ok(true)
}

/// `umount BUNDLE`: unmounts an overlay bundle's rootfs; false if it was not mounted.
pub fn umount(bundle: &Path) -> Result<bool> {
    overlay::read_record(bundle)?;
    overlay::umount(bundle)
}

/// `rm-bundle BUNDLE`: unmounts and removes a bundle pull made, and drops the store's
/// reference to it.
pub fn rm_bundle(bundle: &Path) -> Result<()> {
    let rec = overlay::read_record(bundle).ok();
    if rec.is_none() && !bundle.join("config.json").is_file() {
        bail!("{} is not a bundle (no config.json)", bundle.display());
    }
    let dir = fs::canonicalize(bundle).with_context(|| format!("resolve {}", bundle.display()))?;
    overlay::umount(&dir)?;
    fs::remove_dir_all(&dir).with_context(|| format!("remove {}", dir.display()))?;
    if let Some(rec) = rec {
        Store::open(Some(&rec.store))?.remove_bundle(&rec.bundle);
    }
    Ok(())
}

/// `prune`: deletes blobs no ref uses.
pub fn prune(g: &Global) -> Result<(usize, u64)> {
    Store::open(g.store.as_deref())?.prune()
}

/// `inspect REF`: the manifest and config (from the store if pulled, else from the
/// source), with the platform chosen.
pub fn inspect(g: &Global, reference: &str, platform: Option<&str>) -> Result<Value> {
    let want = platform.map(Platform::parse).transpose()?;
    let store = Store::open(g.store.as_deref())?;
    let name = store_name(reference)?;
    let host = Platform::host();
    let target = want.as_ref().unwrap_or(&host);
    for r in store.refs()? {
        let p = r.platform().as_ref().map(Platform::from_oci);
        if annotation(&r, store::REF_NAME) == Some(name.as_str())
            && let Some(p) = p.filter(|p| target.accepts(p))
        {
            // Printed as stored: the typed manifest is read only for the config's digest.
            let (d, _) = descriptor(&r)?;
            let bytes = store.get(&d)?;
            let m: Value = serde_json::from_slice(&bytes)?;
            let manifest: ImageManifest = parse_json(&bytes, &format!("manifest {d}"))?;
            let (cd, _) = descriptor(manifest.config())?;
            let c: Value = serde_json::from_slice(&store.get(&cd)?)?;
            return Ok(
                json!({"ref": name, "digest": d.as_str(), "index": annotation(&r, store::INDEX_DIGEST),
                             "platform": p.to_string(), "manifest": m, "config": c}),
            );
        }
    }
    let source = Source::parse(reference)?;
    let src = sources::open(&source, g, &store)?;
    let r = resolve(&store, src.as_ref(), want.as_ref(), &Progress::new(true))?;
    Ok(json!({"ref": r.name, "digest": r.digest.as_str(),
              "index": r.index_digest.as_ref().map(Digest::as_str),
              "platform": r.platform.to_string(), "manifest": r.manifest_json, "config": r.config_json}))
}
