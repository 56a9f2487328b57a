//! Typed edits of a test's config.json: `Container::set("/linux/cgroupsPath", json!(..))`
//! writes one field by JSON pointer and fails loudly when the runtime-spec has no such
//! field, so a misspelt key can't leave a test checking nothing. The check round-trips the
//! edited config through oci-spec's `Spec` (the spec's own types): oci-spec ignores unknown
//! fields, so a key that does not come back out is not a field of the spec. A config those
//! types refuse (a test's invalid value on purpose, or a value where oci-spec's spelling
//! differs from the spec's, e.g. the scheduler flags) is left to the runtime under test:
//! its keys are then not checked.

use serde_json::Value;

use super::*;

impl Container {
    /// Sets the config field at JSON pointer `ptr` (creating missing parent objects, as
    /// `config["a"]["b"] = value` does) and panics if the runtime-spec has no field at
    /// `ptr` or at any key inside `value` (checked where oci-spec's types read the config).
    pub fn set(&mut self, ptr: &str, value: Value) -> &mut Container {
        set_spec_field(&mut self.config, ptr, value);
        self
    }
}

/// `Container::set` on a bare config.
fn set_spec_field(config: &mut Value, ptr: &str, value: Value) {
    let segments = pointer_segments(ptr);
    let mut slot = &mut *config;
    for seg in &segments {
        slot = match seg.parse::<usize>() {
            Ok(i) if slot.is_array() => &mut slot[i],
            _ => &mut slot[seg.as_str()],
        };
    }
    *slot = value.clone();

    let Ok(spec) = serde_json::from_value::<oci_spec::runtime::Spec>(config.clone()) else {
        return; // refused by the spec's types: the runtime under test judges it
    };
    let back = serde_json::to_value(&spec).expect("serialize the runtime-spec config");
    if value.is_null() {
        return; // a removed field: nothing comes back to compare
    }
    let Some(found) = back.pointer(ptr) else {
        panic!("{ptr}: the runtime-spec config has no such field (misspelt?)");
    };
    check_keys(ptr, &value, found);
}

/// Every object key of `set` (recursively) is in `back`, the same value as oci-spec's
/// `Spec` read it and wrote it out again.
fn check_keys(at: &str, set: &Value, back: &Value) {
    match (set, back) {
        (Value::Object(set), Value::Object(back)) => {
            for (key, value) in set {
                let path = format!("{at}/{key}");
                match back.get(key) {
                    Some(found) => check_keys(&path, value, found),
                    None if value.is_null() => {}
                    None => panic!("{path}: the runtime-spec config has no such field (misspelt?)"),
                }
            }
        }
        (Value::Array(set), Value::Array(back)) => {
            for (i, (value, found)) in set.iter().zip(back).enumerate() {
                check_keys(&format!("{at}/{i}"), value, found);
            }
        }
        _ => {}
    }
}

/// The reference tokens of a JSON pointer (`/a/b~1c` -> `a`, `b/c`).
fn pointer_segments(ptr: &str) -> Vec<String> {
    let rest = ptr
        .strip_prefix('/')
        .unwrap_or_else(|| panic!("{ptr}: a JSON pointer starts with /"));
    rest.split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect()
}
