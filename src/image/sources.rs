//! Where manifests and blobs come from: a registry repository, an OCI image layout
//! directory, a tar of one (its blobs copied into the store up front), or a
//! `docker save` tarball (converted into the store up front).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use oci_spec::image::{Descriptor, ImageIndex};
use serde::Deserialize;
use serde_json::json;

use super::reference::{Digest, Reference, Source};
use super::registry::Registry;
use super::store::{Ingest, Mismatch, REF_NAME, Store, annotation, parse_json};
use super::{Global, MT_DOCKER_MANIFEST};

pub trait BlobSource: Sync {
    /// The name the image is recorded under.
    fn name(&self) -> String;
    /// The top-level manifest or index: (bytes, content type, digest), verified.
    fn top(&self) -> Result<(Vec<u8>, String, Digest)>;
    /// A manifest by digest, verified.
    fn manifest(&self, d: &Digest) -> Result<Vec<u8>>;
    /// Streams blob `d` into `ingest` (which verifies it on commit).
    fn fetch(&self, d: &Digest, ingest: &mut Ingest, progress: &dyn Fn(u64)) -> Result<()>;
}

pub fn open(source: &Source, g: &Global, store: &Store) -> Result<Box<dyn BlobSource>> {
    Ok(match source {
        Source::Registry(r) => {
            // The mirrors first, in order, then the registry itself.
            let mut regs: Vec<Registry> = super::mirrors::for_reference(&g.mirrors, r)
                .iter()
                .map(|at| Registry::new(at, None, &g.insecure))
                .collect();
            regs.push(Registry::new(r, g.creds.clone(), &g.insecure));
            Box::new(RegistrySource {
                regs,
                r: r.clone(),
                store_root: store.root().to_path_buf(),
            })
        }
        Source::OciLayout { dir, tag } => Box::new(OciLayout {
            name: source.name(),
            what: dir.clone(),
            index: std::fs::read(dir.join("index.json"))
                .with_context(|| format!("{} is not an OCI image layout", dir.display())),
            blobs: dir.join("blobs/sha256"),
            tag: tag.clone(),
        }),
        Source::OciArchive { file, tag } => Box::new(OciLayout {
            name: source.name(),
            what: file.clone(),
            index: Ok(oci_archive(file, store)?),
            blobs: store.root().join("blobs/sha256"),
            tag: tag.clone(),
        }),
        Source::DockerArchive(file) => Box::new(docker_archive(source.name(), file, store)?),
    })
}

fn verify(bytes: &[u8], want: &Digest, what: &str) -> Result<()> {
    let got = Digest::of(bytes);
    if &got != want {
        let msg = format!("digest mismatch for {what}: expected {want}, got {got}");
        return Err(Mismatch(msg).into());
    }
    Ok(())
}

/// A repository, asked of its mirrors first (`regs`: the mirrors, then the registry).
struct RegistrySource {
    regs: Vec<Registry>,
    r: Reference,
    store_root: PathBuf,
}

impl RegistrySource {
    /// `f` of the first of `regs` where it succeeds; the registry's own error otherwise.
    fn first<T>(&self, f: impl Fn(&Registry) -> Result<T>) -> Result<T> {
        let (reg, mirrors) = self.regs.split_last().expect("the registry itself");
        for m in mirrors {
            if let Ok(v) = f(m) {
                return Ok(v);
            }
        }
        f(reg)
    }
}

impl RegistrySource {
    /// Manifest `d` if the store holds it (its content checked against the digest).
    fn local(&self, d: &Digest) -> Option<Vec<u8>> {
        let b = std::fs::read(self.store_root.join("blobs/sha256").join(d.hex())).ok()?;
        (&Digest::of(&b) == d).then_some(b)
    }

    /// What the tag points to now, as the mirrors (first) or the registry say it, if they
    /// say it; errors are the registry's own (a mirror that fails is passed over).
    fn tag_digest(&self) -> Result<Option<(Digest, String)>> {
        let (reg, mirrors) = self.regs.split_last().expect("the registry itself");
        let (repo, tag, name) = (&self.r.repository, self.r.manifest_ref(), self.name());
        for m in mirrors {
            if let Ok(Some(v)) = m.manifest_digest(repo, &tag, &name) {
                return Ok(Some(v));
            }
        }
        reg.manifest_digest(repo, &tag, &name)
    }
}

impl BlobSource for RegistrySource {
    fn name(&self) -> String {
        self.r.to_string()
    }

    fn top(&self) -> Result<(Vec<u8>, String, Digest)> {
        let name = self.name();
        if let Some(d) = &self.r.digest {
            // Pinned and already here: no network needed.
            if let Some(b) = self.local(d) {
                return Ok((b, String::new(), d.clone()));
            }
        } else if let Some((d, ct)) = self.tag_digest()?
            && let Some(b) = self.local(&d)
        {
            // The tag's current manifest is already here: asked for its digest only.
            return Ok((b, ct, d));
        }
        let (bytes, ct) = self.first(|reg| {
            reg.manifest(&self.r.repository, &self.r.manifest_ref(), &name)?
                .ok_or_else(|| anyhow!("image {name} not found"))
        })?;
        let got = Digest::of(&bytes);
        if let Some(d) = &self.r.digest {
            verify(&bytes, d, &format!("the manifest of {name}"))?;
        }
        Ok((bytes, ct, got))
    }

    fn manifest(&self, d: &Digest) -> Result<Vec<u8>> {
        if let Some(b) = self.local(d) {
            return Ok(b);
        }
        let (b, _) = self.first(|reg| {
            reg.manifest(&self.r.repository, d.as_str(), &format!("manifest {d}"))?
                .ok_or_else(|| anyhow!("manifest {d} of {} not found", self.name()))
        })?;
        verify(&b, d, &format!("manifest {d}"))?;
        Ok(b)
    }

    fn fetch(&self, d: &Digest, ingest: &mut Ingest, progress: &dyn Fn(u64)) -> Result<()> {
        let (reg, mirrors) = self.regs.split_last().expect("the registry itself");
        for m in mirrors {
            if m.blob(&self.r.repository, d, ingest, progress).is_ok() {
                return Ok(());
            }
            // The next source starts over: nothing of a failed mirror's data is kept.
            ingest.reset()?;
        }
        reg.blob(&self.r.repository, d, ingest, progress)
    }
}

/// An OCI image layout: its index.json, and the directory its blobs are in (the store's,
/// for an archive whose blobs were copied there).
struct OciLayout {
    name: String,
    /// The directory or archive, for messages.
    what: PathBuf,
    index: Result<Vec<u8>>,
    blobs: PathBuf,
    tag: Option<String>,
}

/// Copies the blobs of the OCI layout tar `file` into the store, each checked against its
/// name; returns its index.json.
fn oci_archive(file: &Path, store: &Store) -> Result<Vec<u8>> {
    let f = File::open(file).with_context(|| format!("open {}", file.display()))?;
    let mut index = None;
    for e in tar::Archive::new(f)
        .entries()
        .with_context(|| format!("read {}", file.display()))?
    {
        let mut e = e.with_context(|| format!("read {}", file.display()))?;
        let p = e
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if p == "index.json" {
            let mut b = Vec::new();
            e.read_to_end(&mut b)?;
            index = Some(b);
        } else if let Some(hex) = p.strip_prefix("blobs/sha256/")
            && !hex.is_empty()
        {
            let want = Digest::parse(&format!("sha256:{hex}"))
                .with_context(|| format!("{p} in {}", file.display()))?;
            if !store.has(&want, Some(e.size())) {
                let (got, _, _) = store.put_stream(&mut e)?;
                if got != want {
                    store.remove_blob(&got);
                    return Err(
                        Mismatch(format!("{p} in {} has digest {got}", file.display())).into(),
                    );
                }
            }
        }
    }
    index.ok_or_else(|| {
        anyhow!(
            "{} is not an OCI layout archive (no index.json)",
            file.display()
        )
    })
}

impl OciLayout {
    fn blob(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }

    fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let b = std::fs::read(self.blob(d))
            .with_context(|| format!("read blob {d} of {}", self.name))?;
        verify(&b, d, &format!("blob {d}"))?;
        Ok(b)
    }
}

impl BlobSource for OciLayout {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn top(&self) -> Result<(Vec<u8>, String, Digest)> {
        let bytes = self.index.as_ref().map_err(|e| anyhow!("{e:#}"))?;
        let what = format!("the index.json of {}", self.what.display());
        let index: ImageIndex = parse_json(bytes, &what)?;
        let ms = index.manifests();
        let tag_of = |m: &Descriptor| annotation(m, REF_NAME).map(String::from);
        let chosen = match &self.tag {
            Some(t) => ms
                .iter()
                .find(|m| tag_of(m).is_some_and(|n| &n == t || n.ends_with(&format!(":{t}"))))
                .ok_or_else(|| anyhow!("image {} not found", self.name))?,
            None if ms.len() == 1 => &ms[0],
            None => {
                let tags: Vec<String> = ms.iter().filter_map(tag_of).collect();
                bail!(
                    "{} holds {} images: name one with a :TAG suffix ({})",
                    self.what.display(),
                    ms.len(),
                    tags.join(", ")
                )
            }
        };
        let (d, _) = super::descriptor(chosen)?;
        let b = self.read(&d)?;
        Ok((b, chosen.media_type().to_string(), d))
    }

    fn manifest(&self, d: &Digest) -> Result<Vec<u8>> {
        self.read(d)
    }

    fn fetch(&self, d: &Digest, ingest: &mut Ingest, progress: &dyn Fn(u64)) -> Result<()> {
        let mut f =
            File::open(self.blob(d)).with_context(|| format!("open blob {d} of {}", self.name))?;
        ingest.reset()?;
        copy(&mut f, ingest, progress).with_context(|| format!("copy blob {d}"))
    }
}

fn copy(r: &mut dyn Read, w: &mut dyn Write, progress: &dyn Fn(u64)) -> io::Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        w.write_all(&buf[..n])?;
        progress(n as u64);
    }
}

/// A `docker save` tarball, whose config and layers were copied into the store and
/// described by a docker schema2 manifest made for them.
struct DockerArchive {
    name: String,
    manifest: Vec<u8>,
}

/// An image in a `docker save` manifest.json (docker's own format, not in oci-spec).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SavedImage {
    config: Option<String>,
    #[serde(default)]
    layers: Vec<String>,
}

fn docker_archive(name: String, file: &Path, store: &Store) -> Result<DockerArchive> {
    let open = || File::open(file).with_context(|| format!("open {}", file.display()));
    // Pass 1: manifest.json says which files are the config and the layers.
    let mut index: Option<Vec<SavedImage>> = None;
    for e in tar::Archive::new(open()?).entries()? {
        let mut e = e?;
        if e.path()?.as_os_str() == "manifest.json" {
            let mut s = Vec::new();
            e.read_to_end(&mut s)?;
            index = Some(serde_json::from_slice(&s).context("parse manifest.json")?);
            break;
        }
    }
    let index = index.ok_or_else(|| {
        anyhow!(
            "{} is not a docker save archive (no manifest.json)",
            file.display()
        )
    })?;
    let img = index.first();
    let config_path = img
        .and_then(|i| i.config.as_deref())
        .ok_or_else(|| anyhow!("manifest.json names no Config"))?;
    let layer_paths: Vec<&str> = img
        .into_iter()
        .flat_map(|i| &i.layers)
        .map(String::as_str)
        .collect();
    // Pass 2: stream each needed file into the store, hashing it on the way.
    let mut found: HashMap<String, (Digest, u64, [u8; 4])> = HashMap::new();
    for e in tar::Archive::new(open()?).entries()? {
        let mut e = e?;
        let p = e
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .to_string();
        if p == config_path || layer_paths.contains(&p.as_str()) {
            found.insert(p, store.put_stream(&mut e)?);
        }
    }
    let get = |p: &str| {
        found
            .get(p)
            .cloned()
            .ok_or_else(|| anyhow!("{p} is missing from {}", file.display()))
    };
    let (cd, csize, _) = get(config_path)?;
    let mut layers = Vec::new();
    for p in &layer_paths {
        let (d, size, head) = get(p)?;
        let mt = match super::unpack::Compression::sniff(&head) {
            super::unpack::Compression::Gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
            super::unpack::Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            super::unpack::Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
        };
        layers.push(json!({"mediaType": mt, "digest": d.as_str(), "size": size}));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": MT_DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd.as_str(), "size": csize},
        "layers": layers,
    }))?;
    Ok(DockerArchive { name, manifest })
}

impl BlobSource for DockerArchive {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn top(&self) -> Result<(Vec<u8>, String, Digest)> {
        Ok((
            self.manifest.clone(),
            MT_DOCKER_MANIFEST.into(),
            Digest::of(&self.manifest),
        ))
    }

    fn manifest(&self, d: &Digest) -> Result<Vec<u8>> {
        bail!("manifest {d} is not in {}", self.name)
    }

    fn fetch(&self, d: &Digest, _: &mut Ingest, _: &dyn Fn(u64)) -> Result<()> {
        bail!("blob {d} is not in {}", self.name)
    }
}
