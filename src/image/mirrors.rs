//! Registry mirrors: `--mirror REGISTRY=MIRROR`, and the `[[registry.mirror]]` entries of
//! containers' registries.conf (`/etc/containers/registries.conf`, or the file
//! `$CONTAINERS_REGISTRIES_CONF` names), read for the subset corten-image uses: each
//! `[[registry]]`'s `prefix` (else `location`) and its mirrors' `location`s, in order.
//!
//! A mirror stands for a prefix of `registry/repository` (a registry, or a namespace in
//! one), as in containers/image: the prefix is replaced by the mirror's location.

use super::reference::Reference;

/// (prefix, mirror location), tried in order.
pub type Mirrors = Vec<(String, String)>;

/// The mirrors registries.conf lists; none if it can't be read.
pub fn from_registries_conf() -> Mirrors {
    let path = std::env::var_os("CONTAINERS_REGISTRIES_CONF")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "/etc/containers/registries.conf".into());
    std::fs::read_to_string(path)
        .map(|t| parse(&t))
        .unwrap_or_default()
}

/// The `[[registry]]` tables of a registries.conf (v2 format) and their mirrors.
fn parse(text: &str) -> Mirrors {
    let mut out = Vec::new();
    let mut table = "";
    let (mut prefix, mut location, mut mirrors) = (None, None, Vec::new());
    let mut flush =
        |prefix: &mut Option<String>, location: &mut Option<String>, m: &mut Vec<String>| {
            if let Some(p) = prefix.take().or(location.take()) {
                out.extend(m.drain(..).map(|m| (p.clone(), m)));
            }
            *location = None;
            m.clear();
        };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.starts_with('[') {
            if line != "[[registry.mirror]]" {
                flush(&mut prefix, &mut location, &mut mirrors);
            }
            table = line;
        } else if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().trim_matches('"').to_string();
            match (table, k.trim()) {
                ("[[registry]]", "prefix") => prefix = Some(v),
                ("[[registry]]", "location") => location = Some(v),
                ("[[registry.mirror]]", "location") => mirrors.push(v),
                _ => {}
            }
        }
    }
    flush(&mut prefix, &mut location, &mut mirrors);
    out
}

/// `r` as each of `mirrors` that covers it names it, in order.
pub fn for_reference(mirrors: &[(String, String)], r: &Reference) -> Vec<Reference> {
    let full = format!("{}/{}", r.registry, r.repository);
    mirrors
        .iter()
        .filter_map(|(prefix, location)| {
            let rest = full.strip_prefix(prefix.as_str())?;
            if !rest.is_empty() && !rest.starts_with('/') {
                return None;
            }
            let moved = format!("{}{rest}", location.trim_end_matches('/'));
            let (registry, repository) = moved.split_once('/')?;
            Some(Reference {
                registry: registry.into(),
                repository: repository.into(),
                ..r.clone()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registries_conf_and_prefixes() {
        let conf = r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "docker.io"
location = "registry-1.docker.io"
[[registry.mirror]]
location = "mirror.example:5000"   # the closest
[[registry.mirror]]
location = "m2.example/hub"
[[registry]]
location = "quay.io"
[[registry.mirror]]
location = "q.example"
"#;
        let m = parse(conf);
        assert_eq!(
            m,
            [
                ("docker.io".into(), "mirror.example:5000".into()),
                ("docker.io".into(), "m2.example/hub".into()),
                ("quay.io".into(), "q.example".into()),
            ]
        );
        let r = Reference::parse("busybox:1.36").unwrap();
        let at: Vec<String> = for_reference(&m, &r)
            .iter()
            .map(|r| format!("{}/{}", r.registry, r.repository))
            .collect();
        assert_eq!(
            at,
            [
                "mirror.example:5000/library/busybox",
                "m2.example/hub/library/busybox"
            ]
        );
        let other = Reference::parse("quay.io.evil/x").unwrap();
        assert!(for_reference(&m, &other).is_empty(), "a prefix ends at a /");
    }
}
