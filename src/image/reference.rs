//! Image references as docker understands them, and the offline sources.
//!
//! `busybox` is `docker.io/library/busybox:latest`, served by `registry-1.docker.io`;
//! `host:port/path/name:tag@sha256:…` names any registry. `oci:DIR[:TAG]`,
//! `oci-archive:FILE[:TAG]` (a tar of an OCI layout) and `docker-archive:FILE` are local
//! sources.
//!
//! Not oci_spec's `distribution::Reference`, though it normalises docker.io names the same
//! way: it keeps `registry-1.docker.io` as a registry of its own, accepts sha384 and sha512
//! digests (the store names blobs by sha256 only), and its one "invalid format" error does
//! not say which rule a name broke, as ours do.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

pub const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A validated `sha256:<64 hex>` digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    pub fn parse(s: &str) -> Result<Digest> {
        match s.split_once(':') {
            Some(("sha256", hex))
                if hex.len() == 64
                    && hex
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
            {
                Ok(Digest(s.to_string()))
            }
            Some((algo, _)) if algo != "sha256" => bail!("unsupported digest algorithm in {s:?}"),
            _ => bail!("invalid digest {s:?}"),
        }
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        use sha2::Digest as _;
        Digest::from_hash(&sha2::Sha256::digest(bytes))
    }

    pub fn from_hash(hash: &[u8]) -> Digest {
        let mut s = String::with_capacity(71);
        s.push_str("sha256:");
        for b in hash {
            s.push_str(&format!("{b:02x}"));
        }
        Digest(s)
    }

    pub fn hex(&self) -> &str {
        &self.0[7..]
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as docker shows them.
    pub fn short(&self) -> &str {
        &self.0[7..19]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `registry/repository[:tag][@digest]`, normalized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// The registry as named (`docker.io`, `localhost:5000`).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference> {
        let bad = |why: &str| anyhow::anyhow!("invalid image reference {s:?}: {why}");
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e| bad(&e.to_string()))?)),
            None => (s, None),
        };
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
            _ => (name_tag, None),
        };
        let (registry, mut repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        let registry = match registry.as_str() {
            "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_string(),
            _ => registry,
        };
        if registry == DOCKER_HUB && !repository.contains('/') {
            repository = format!("library/{repository}");
        }
        if repository.is_empty() {
            return Err(bad("empty repository name"));
        }
        for part in repository.split('/') {
            let ok = !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && part.as_bytes()[0].is_ascii_alphanumeric();
            if !ok {
                return Err(bad(
                    "the repository name must be lowercase letters, digits and . _ - separators",
                ));
            }
        }
        if let Some(t) = &tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && !t.starts_with(['.', '-'])
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                return Err(bad("invalid tag"));
            }
        }
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The host (and port) that serves the registry API.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".into(),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Where an image comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Registry(Reference),
    /// An OCI image layout directory and an optional tag (its `ref.name` annotation).
    OciLayout {
        dir: PathBuf,
        tag: Option<String>,
    },
    /// A tar of an OCI image layout and an optional tag.
    OciArchive {
        file: PathBuf,
        tag: Option<String>,
    },
    /// A `docker save` tarball.
    DockerArchive(PathBuf),
}

/// `PATH[:TAG]`: PATH may itself hold ':'; a suffix names a tag only if the whole is not
/// a source (`is_source`).
fn path_and_tag(rest: &str, is_source: impl Fn(&Path) -> bool) -> (PathBuf, Option<String>) {
    match rest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') && !is_source(Path::new(rest)) => {
            (path.into(), Some(tag.to_string()))
        }
        _ => (rest.into(), None),
    }
}

impl Source {
    pub fn parse(s: &str) -> Result<Source> {
        if let Some(rest) = s.strip_prefix("oci:") {
            if rest.is_empty() {
                bail!("oci: needs a directory: oci:DIR[:TAG]");
            }
            let (dir, tag) = path_and_tag(rest, |p| p.join("index.json").exists());
            return Ok(Source::OciLayout { dir, tag });
        }
        if let Some(rest) = s.strip_prefix("oci-archive:") {
            if rest.is_empty() {
                bail!("oci-archive: needs a file: oci-archive:FILE[:TAG]");
            }
            let (file, tag) = path_and_tag(rest, Path::is_file);
            return Ok(Source::OciArchive { file, tag });
        }
        if let Some(rest) = s.strip_prefix("docker-archive:") {
            if rest.is_empty() {
                bail!("docker-archive: needs a file: docker-archive:FILE");
            }
            return Ok(Source::DockerArchive(rest.into()));
        }
        Ok(Source::Registry(Reference::parse(s)?))
    }

    /// The name the store records the image under.
    pub fn name(&self) -> String {
        match self {
            Source::Registry(r) => r.to_string(),
            Source::OciLayout { dir, tag: Some(t) } => format!("oci:{}:{t}", abs(dir).display()),
            Source::OciLayout { dir, tag: None } => format!("oci:{}", abs(dir).display()),
            Source::OciArchive { file, tag: Some(t) } => {
                format!("oci-archive:{}:{t}", abs(file).display())
            }
            Source::OciArchive { file, tag: None } => {
                format!("oci-archive:{}", abs(file).display())
            }
            Source::DockerArchive(f) => format!("docker-archive:{}", abs(f).display()),
        }
    }
}

fn abs(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn docker_normalization() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("user/app:1.0"), "docker.io/user/app:1.0");
        assert_eq!(
            norm("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b:t"), "localhost:5000/a/b:t");
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("127.0.0.1:5000/x/y@{d}")).unwrap();
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.tag, None);
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(
            Reference::parse("busybox").unwrap().api_host(),
            "registry-1.docker.io"
        );
        assert_eq!(
            norm(&format!("quay.io/a/b:v1@{d}")),
            format!("quay.io/a/b:v1@{d}")
        );
    }

    #[test]
    fn invalid_references() {
        for bad in [
            "Busybox",
            "a//b",
            "busybox:",
            "x@sha256:12",
            "x@md5:00",
            "/abs",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn sources() {
        assert!(matches!(Source::parse("oci:/tmp/x:v1").unwrap(),
            Source::OciLayout { tag: Some(t), .. } if t == "v1"));
        assert!(matches!(
            Source::parse("docker-archive:/tmp/a.tar").unwrap(),
            Source::DockerArchive(_)
        ));
        assert!(
            matches!(Source::parse("oci-archive:/nonexistent/a.tar:v1").unwrap(),
            Source::OciArchive { file, tag: Some(t) } if t == "v1" && file == Path::new("/nonexistent/a.tar"))
        );
        assert!(matches!(
            Source::parse("oci-archive:a.tar").unwrap(),
            Source::OciArchive { tag: None, .. }
        ));
        assert!(Source::parse("oci-archive:").is_err());
    }
}
