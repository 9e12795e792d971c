//! Helpers for tests/chart.rs: static checks of values.yaml (every key
//! documented, every `.Values` path real and used), and running the real
//! `helm` and `kubernetes-validate` (see `helm.rs`).

#![allow(dead_code)]

pub mod helm;

use serde_norway::Value;
use std::collections::BTreeSet;

/// Looks up a dotted path (`a.b.c`) in the values tree. A key whose value is
/// null still exists.
pub fn lookup<'a>(values: &'a Value, path: &str) -> Option<&'a Value> {
    let mut node = values;
    for key in path.split('.') {
        node = node.as_mapping()?.get(key)?;
    }
    Some(node)
}

/// Every `.Values.x.y` path mentioned anywhere in `text` (`$.Values` too).
pub fn values_refs(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    let needle = ".Values.";
    let mut from = 0;
    while let Some(pos) = text[from..].find(needle) {
        let start = from + pos + needle.len();
        let path: String =
            text[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '.').collect();
        let path = path.trim_end_matches('.').to_string();
        if !path.is_empty() {
            refs.insert(path);
        }
        from = start;
    }
    refs
}

/// Leaf paths of a values tree (empty maps and sequences are leaves).
pub fn leaf_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value.as_mapping() {
        Some(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = k.as_str().unwrap_or("?");
                let path = if prefix.is_empty() { key.to_string() } else { format!("{prefix}.{key}") };
                leaf_paths(v, &path, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

/// Key lines of values.yaml with no comment right above them or on the line.
/// Keys inside list items of defaults are held to the same rule.
pub fn undocumented_keys(values_text: &str) -> Vec<String> {
    let mut missing = Vec::new();
    let mut previous = "";
    for (n, line) in values_text.lines().enumerate() {
        let trimmed = line.trim_start();
        if trimmed.is_empty() {
            previous = "";
            continue;
        }
        if trimmed.starts_with('#') {
            previous = trimmed;
            continue;
        }
        let item = trimmed.strip_prefix("- ").unwrap_or(trimmed);
        let is_key = item
            .split_once(':')
            .map(|(k, rest)| {
                !k.is_empty() && !k.contains(' ') && !k.starts_with('"') && (rest.is_empty() || rest.starts_with(' '))
            })
            .unwrap_or(false);
        let documented = previous.starts_with('#') || line.contains(" # ");
        if is_key && !documented {
            missing.push(format!("values.yaml:{}: {}", n + 1, line.trim_end()));
        }
        previous = trimmed;
    }
    missing
}
