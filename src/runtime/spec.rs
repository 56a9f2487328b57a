//! `spec`: writes a working default config.json (crate::default_spec), the same shape
//! runc writes.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::default_spec::default_spec;

/// Writes `<bundle>/config.json`, refusing to overwrite one.
pub fn write(bundle: &Path, rootless: bool) -> Result<()> {
    let path = bundle.join("config.json");
    if path.exists() {
        bail!("{} exists: remove it first", path.display());
    }
    let text = serde_json::to_string_pretty(&default_spec(rootless))?;
    std::fs::write(&path, text + "\n").with_context(|| format!("write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_spec_parses_as_a_valid_config() {
        for rootless in [false, true] {
            let spec: oci_spec::runtime::Spec =
                serde_json::from_value(default_spec(rootless)).unwrap();
            crate::config::validate(&spec).unwrap();
        }
    }

    #[test]
    fn rootless_has_user_namespace_and_no_cgroup_mount() {
        let s = default_spec(true);
        assert!(
            s["linux"]["namespaces"]
                .as_array()
                .unwrap()
                .iter()
                .any(|n| n["type"] == "user")
        );
        assert!(
            !s["mounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["type"] == "cgroup")
        );
    }
}
