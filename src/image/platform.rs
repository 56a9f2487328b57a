//! Platforms (`os/arch[/variant]`) and docker's choice among an index's manifests.

use std::fmt;

use anyhow::{Result, bail};
use oci_spec::image::{Descriptor, ImageConfiguration};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl Platform {
    /// The platform this binary runs on, as docker names it.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            "loongarch64" => "loong64",
            a => a,
        };
        let variant = match arch {
            "arm" => Some("v7".to_string()),
            _ => None,
        };
        Platform::new("linux", arch, variant)
    }

    fn new(os: &str, arch: &str, variant: Option<String>) -> Platform {
        let (architecture, variant) = normalize(arch, variant);
        Platform {
            os: os.to_lowercase(),
            architecture,
            variant,
        }
    }

    /// `OS/ARCH[/VARIANT]`, aliases normalized (`x86_64` → amd64, `aarch64` → arm64/v8).
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform::new(os, arch, None)),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => {
                Ok(Platform::new(os, arch, Some(v.to_string())))
            }
            _ => bail!("invalid platform {s:?}: expected OS/ARCH[/VARIANT]"),
        }
    }

    /// The platform of an index entry or a stored ref, normalized as [`Platform::parse`]
    /// does. oci-spec's `Arch` reads Go's `armbe` as `arm64be` (its one lossy name); no
    /// registry publishes armbe images, so matching on its names loses nothing real.
    pub fn from_oci(p: &oci_spec::image::Platform) -> Platform {
        let variant = p.variant().clone().filter(|s| !s.is_empty());
        Platform::new(&p.os().to_string(), &p.architecture().to_string(), variant)
    }

    /// The platform an image config declares (`os`, `architecture`, `variant`).
    pub fn from_config(c: &ImageConfiguration) -> Platform {
        let variant = c.variant().clone().filter(|s| !s.is_empty());
        Platform::new(&c.os().to_string(), &c.architecture().to_string(), variant)
    }

    /// Whether an image for `other` runs here: same os and arch, and the variant equal
    /// (an entry without a variant matches any wanted variant, as containerd does).
    pub fn accepts(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (other.variant.is_none() || self.variant == other.variant)
    }
}

fn normalize(arch: &str, variant: Option<String>) -> (String, Option<String>) {
    let arch = arch.to_lowercase();
    let variant = variant.map(|v| v.to_lowercase());
    match arch.as_str() {
        "x86_64" | "x86-64" | "amd64" => ("amd64".into(), variant.filter(|v| v != "v1")),
        "aarch64" | "arm64" => ("arm64".into(), Some(variant.unwrap_or("v8".into()))),
        "armhf" => ("arm".into(), Some("v7".into())),
        "armel" => ("arm".into(), Some("v6".into())),
        "i386" | "i686" => ("386".into(), variant),
        _ => (arch, variant),
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks the manifest for `want` from an index's `manifests` array (attestations and
/// `unknown/unknown` skipped); the error lists the platforms the image has.
pub fn choose<'a>(
    manifests: &'a [Descriptor],
    want: &Platform,
    image: &str,
) -> Result<&'a Descriptor> {
    let mut have = Vec::new();
    for m in manifests {
        let kind = m
            .annotations()
            .as_ref()
            .and_then(|a| a.get("vnd.docker.reference.type"));
        if kind.is_some_and(|k| k == "attestation-manifest") {
            continue;
        }
        let Some(p) = m.platform().as_ref().map(Platform::from_oci) else {
            continue;
        };
        if p.os == "unknown" || p.architecture == "unknown" {
            continue;
        }
        if want.accepts(&p) {
            return Ok(m);
        }
        have.push(p.to_string());
    }
    if have.is_empty() {
        bail!("image {image} has no manifest for any platform");
    }
    bail!(
        "image {image} has no manifest for platform {want}; it has: {}",
        have.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const C: &str = "sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc";
    const MT: &str = "application/vnd.oci.image.manifest.v1+json";

    #[test]
    fn parse_and_normalize() {
        assert_eq!(
            Platform::parse("linux/arm64").unwrap().to_string(),
            "linux/arm64/v8"
        );
        assert_eq!(
            Platform::parse("linux/x86_64").unwrap().to_string(),
            "linux/amd64"
        );
        assert_eq!(
            Platform::parse("linux/arm/v6").unwrap().to_string(),
            "linux/arm/v6"
        );
        assert!(Platform::parse("linux").is_err());
    }

    #[test]
    fn choose_skips_attestations_and_lists_platforms() {
        let ms: Vec<Descriptor> = serde_json::from_value(json!([
            {"mediaType": MT, "digest": A, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": MT, "digest": B, "size": 1, "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": MT, "digest": C, "size": 1, "platform": {"os": "unknown", "architecture": "unknown"},
             "annotations": {"vnd.docker.reference.type": "attestation-manifest"}},
        ]))
        .unwrap();
        let arm = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(choose(&ms, &arm, "x").unwrap().digest().to_string(), B);
        let err = choose(&ms, &Platform::parse("linux/s390x").unwrap(), "x").unwrap_err();
        assert!(
            err.to_string().contains("linux/amd64, linux/arm64/v8"),
            "{err}"
        );
    }
}
