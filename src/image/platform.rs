//! Platforms (`os/arch[/variant]`) and docker's choice among an index's manifests.

use std::fmt;

use anyhow::{Result, bail};
use serde_json::Value;

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

    /// The platform of an index entry or image config (`os`, `architecture`, `variant`).
    pub fn from_json(v: &Value) -> Option<Platform> {
        let os = v["os"].as_str()?;
        let arch = v["architecture"].as_str()?;
        let variant = v["variant"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(String::from);
        Some(Platform::new(os, arch, variant))
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
pub fn choose<'a>(manifests: &'a [Value], want: &Platform, image: &str) -> Result<&'a Value> {
    let mut have = Vec::new();
    for m in manifests {
        if m["annotations"]["vnd.docker.reference.type"] == "attestation-manifest" {
            continue;
        }
        let Some(p) = Platform::from_json(&m["platform"]) else {
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
        let ms = vec![
            json!({"digest": "a", "platform": {"os": "linux", "architecture": "amd64"}}),
            json!({"digest": "b", "platform": {"os": "linux", "architecture": "arm64"}}),
            json!({"digest": "c", "platform": {"os": "unknown", "architecture": "unknown"},
                   "annotations": {"vnd.docker.reference.type": "attestation-manifest"}}),
        ];
        let arm = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(choose(&ms, &arm, "x").unwrap()["digest"], "b");
        let err = choose(&ms, &Platform::parse("linux/s390x").unwrap(), "x").unwrap_err();
        assert!(
            err.to_string().contains("linux/amd64, linux/arm64/v8"),
            "{err}"
        );
    }
}
