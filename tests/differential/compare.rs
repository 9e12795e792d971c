//! Compares two normalised transcripts and sorts each difference into
//! allowed (an entry of the allow-list, `allow.rs`) or not.

use super::allow::{Allowed, ALLOWED};
use super::runner::Kind;
use super::scenario::{label, Scenario};
use serde_json::Value;

/// One place where natsgate's transcript differs from Centrifugo's.
#[derive(Debug)]
pub struct Difference {
    /// `step label: .json.path`, what allow-list patterns match.
    pub at: String,
    pub centrifugo: String,
    pub natsgate: String,
}

/// Every difference of `natsgate` (on `kind`) from `centrifugo`, each with
/// the allow-list entry that covers it, if any.
pub fn compare(
    scenario: &Scenario,
    kind: Kind,
    centrifugo: &[Value],
    natsgate: &[Value],
) -> Vec<(Difference, Option<&'static Allowed>)> {
    let mut out = Vec::new();
    for (i, step) in scenario.steps.iter().enumerate() {
        let mut diffs = Vec::new();
        diff(&centrifugo[i], &natsgate[i], String::new(), &mut diffs);
        for (path, c, n) in diffs {
            let at = format!("{}: {}", label(i, step), if path.is_empty() { "." } else { &path });
            let allowed = ALLOWED.iter().find(|a| a.covers(&scenario.name, kind, &at));
            out.push((Difference { at, centrifugo: c, natsgate: n }, allowed));
        }
    }
    out
}

fn show(v: Option<&Value>) -> String {
    v.map(Value::to_string).unwrap_or_else(|| "<absent>".into())
}

/// Leaf differences as (path, left, right).
fn diff(a: &Value, b: &Value, path: String, out: &mut Vec<(String, String, String)>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = format!("{path}.{k}");
                match (x.get(k), y.get(k)) {
                    (Some(l), Some(r)) => diff(l, r, p, out),
                    (l, r) => out.push((p, show(l), show(r))),
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (l, r)) in x.iter().zip(y).enumerate() {
                diff(l, r, format!("{path}[{i}]"), out);
            }
        }
        (l, r) if l != r => out.push((path, l.to_string(), r.to_string())),
        _ => {}
    }
}

/// `*` matches any run of characters (also none); everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) || text.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[test]
fn glob_matches_like_a_shell() {
    assert!(glob("a*c", "abc"));
    assert!(glob("*.offset", "3 recv a: .subscribe.offset"));
    assert!(glob("history*", "history json"));
    assert!(!glob("a*c", "abd"));
    assert!(glob("*", ""));
    assert!(!glob("ab*ba", "aba"));
}

#[test]
fn an_unlisted_difference_is_reported_and_a_listed_one_is_allowed() {
    use super::scenario::Scenario;
    use serde_json::json;
    let scenario = Scenario::new("basics Json").recv("a");
    let centrifugo = [json!({"msg": {"connect": {"client": "<client 1>"}}})];
    let natsgate = [json!({"msg": {"connect": {"client": "<client 1>", "node": "gw", "extra": 1}}})];
    let diffs = compare(&scenario, Kind::Embedded, &centrifugo, &natsgate);
    let found: Vec<(&str, bool)> = diffs.iter().map(|(d, a)| (d.at.as_str(), a.is_some())).collect();
    assert_eq!(found, [("0 recv a: .msg.connect.extra", false), ("0 recv a: .msg.connect.node", true)]);
}
