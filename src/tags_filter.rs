//! Tags filters (`tf` in the subscribe request): which publications a
//! subscription gets, decided by the publication's tags. The checks and the
//! matching are centrifuge's (`internal/filter/filter.go`, v0.38.1).

use std::cmp::Ordering;
use std::collections::HashMap;

use crate::protocol::FilterNode;

/// Checks a filter tree at subscribe time; the message says what is wrong
/// (logged, never sent: the client gets error 107 as from Centrifugo).
pub(crate) fn validate(node: &FilterNode) -> Result<(), String> {
    match node.op.as_str() {
        "" => {
            let (has_val, has_vals) = (!node.val.is_empty(), !node.vals.is_empty());
            match node.cmp.as_str() {
                "" => return Err("leaf node must have cmp set".into()),
                "eq" | "neq" | "sw" | "ew" | "ct" | "gt" | "gte" | "lt" | "lte" => {
                    if !has_val {
                        return Err(format!("{} comparison requires val", node.cmp));
                    }
                    if has_vals {
                        return Err(format!("{} comparison must not use vals", node.cmp));
                    }
                }
                "in" | "nin" => {
                    if !has_vals {
                        return Err(format!("{} comparison requires non-empty vals", node.cmp));
                    }
                    if has_val {
                        return Err(format!("{} comparison must not use val", node.cmp));
                    }
                }
                "ex" | "nex" => {
                    if has_val || has_vals {
                        return Err(format!("{} comparison must not use val or vals", node.cmp));
                    }
                }
                other => return Err(format!("unknown comparison operator: {other}")),
            }
            if node.key.is_empty() && node.cmp != "ex" && node.cmp != "nex" {
                return Err("leaf node requires key".into());
            }
            Ok(())
        }
        "and" | "or" => {
            if node.nodes.is_empty() {
                return Err(format!("{} node must have at least one child", node.op));
            }
            node.nodes.iter().try_for_each(validate)
        }
        "not" => match node.nodes.as_slice() {
            [child] => validate(child),
            _ => Err("not node must have exactly one child".into()),
        },
        other => Err(format!("invalid op: {other}")),
    }
}

/// Whether a publication with these tags passes the (validated) filter. A
/// missing tag reads as the empty string for `in` and `nin`, as in
/// centrifuge; numeric comparisons fail on a missing tag or a value that is
/// not a decimal number.
pub(crate) fn matches(node: &FilterNode, tags: &HashMap<String, String>) -> bool {
    match node.op.as_str() {
        "" => {
            let tag = tags.get(&node.key);
            let val = tag.map_or("", String::as_str);
            match node.cmp.as_str() {
                "eq" => tag.is_some() && val == node.val,
                "neq" => tag.is_none() || val != node.val,
                "in" => node.vals.iter().any(|v| v == val),
                "nin" => !node.vals.iter().any(|v| v == val),
                "ex" => tag.is_some(),
                "nex" => tag.is_none(),
                "sw" => tag.is_some() && val.starts_with(&node.val),
                "ew" => tag.is_some() && val.ends_with(&node.val),
                "ct" => tag.is_some() && val.contains(&node.val),
                cmp @ ("gt" | "gte" | "lt" | "lte") => {
                    let (Some(_), Some(a), Some(b)) = (tag, Decimal::parse(val), Decimal::parse(&node.val)) else {
                        return false;
                    };
                    let order = a.cmp(&b);
                    match cmp {
                        "gt" => order == Ordering::Greater,
                        "gte" => order != Ordering::Less,
                        "lt" => order == Ordering::Less,
                        _ => order != Ordering::Greater,
                    }
                }
                _ => false,
            }
        }
        "and" => node.nodes.iter().all(|n| matches(n, tags)),
        "or" => node.nodes.iter().any(|n| matches(n, tags)),
        "not" => match node.nodes.as_slice() {
            [child] => !matches(child, tags),
            _ => false,
        },
        _ => false,
    }
}

/// A decimal number as centrifuge's numeric comparisons read it
/// (quagmt/udecimal's `Parse`): an optional sign, digits, and optionally a
/// point followed by 1 to 19 digits; at most 200 characters; no exponent,
/// no spaces. Held normalised (no leading or trailing zeros) so that
/// comparing is comparing digits.
#[derive(Debug, PartialEq, Eq)]
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
}

impl<'a> Decimal<'a> {
    fn parse(text: &'a str) -> Option<Decimal<'a>> {
        if text.is_empty() || text.len() > 200 {
            return None;
        }
        let (negative, digits) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        let (int, frac) = match digits.split_once('.') {
            Some((int, frac)) if !frac.is_empty() && frac.len() <= 19 => (int, frac),
            Some(_) => return None,
            None => (digits, ""),
        };
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !all_digits(int) || !all_digits(frac) {
            return None;
        }
        let int = int.trim_start_matches('0');
        let frac = frac.trim_end_matches('0');
        // Zero has no sign.
        let negative = negative && !(int.is_empty() && frac.is_empty());
        Some(Decimal { negative, int, frac })
    }

    fn cmp_magnitude(&self, other: &Self) -> Ordering {
        self.int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac))
    }
}

impl Ord for Decimal<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self.negative, other.negative) {
            (false, true) => Ordering::Greater,
            (true, false) => Ordering::Less,
            (false, false) => self.cmp_magnitude(other),
            (true, true) => other.cmp_magnitude(self),
        }
    }
}

impl PartialOrd for Decimal<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf(key: &str, cmp: &str, val: &str) -> FilterNode {
        FilterNode { key: key.into(), cmp: cmp.into(), val: val.into(), ..Default::default() }
    }

    fn set(key: &str, cmp: &str, vals: &[&str]) -> FilterNode {
        FilterNode {
            key: key.into(),
            cmp: cmp.into(),
            vals: vals.iter().map(|v| v.to_string()).collect(),
            ..Default::default()
        }
    }

    fn node(op: &str, nodes: Vec<FilterNode>) -> FilterNode {
        FilterNode { op: op.into(), nodes, ..Default::default() }
    }

    fn tags(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn leaves_compare_as_centrifuge() {
        let t = tags(&[("kind", "trade"), ("price", "10.50"), ("sym", "BTCUSD"), ("empty", "")]);
        let yes = [
            leaf("kind", "eq", "trade"),
            leaf("kind", "neq", "quote"),
            leaf("missing", "neq", "x"),
            set("kind", "in", &["quote", "trade"]),
            set("missing", "in", &["", "x"]),
            set("kind", "nin", &["quote"]),
            leaf("empty", "ex", ""),
            leaf("missing", "nex", ""),
            leaf("sym", "sw", "BTC"),
            leaf("sym", "ew", "USD"),
            leaf("sym", "ct", "CU"),
            leaf("price", "gt", "9.99"),
            leaf("price", "gte", "10.5"),
            leaf("price", "lt", "100"),
            leaf("price", "lte", "+10.500"),
        ];
        for f in &yes {
            assert_eq!(validate(f), Ok(()), "{f:?}");
            assert!(matches(f, &t), "{f:?}");
        }
        let no = [
            leaf("missing", "eq", "x"),
            leaf("kind", "neq", "trade"),
            set("missing", "nin", &[""]),
            leaf("missing", "ex", ""),
            leaf("kind", "nex", ""),
            leaf("missing", "sw", "a"),
            leaf("price", "gt", "10.5"),
            leaf("kind", "lt", "100"),
            leaf("missing", "lte", "100"),
            leaf("price", "lt", "1e3"),
        ];
        for f in &no {
            assert!(!matches(f, &t), "{f:?}");
        }
    }

    #[test]
    fn nodes_combine() {
        let t = tags(&[("a", "1"), ("b", "2")]);
        let f = node("and", vec![leaf("a", "eq", "1"), node("not", vec![leaf("b", "eq", "3")])]);
        assert_eq!(validate(&f), Ok(()));
        assert!(matches(&f, &t));
        let f = node("or", vec![leaf("a", "eq", "2"), leaf("b", "eq", "3")]);
        assert!(!matches(&f, &t));
        assert!(matches(&node("or", vec![leaf("a", "eq", "2"), leaf("b", "gte", "-2")]), &t));
    }

    #[test]
    fn invalid_filters_are_refused() {
        let bad = [
            FilterNode::default(),
            leaf("k", "eq", ""),
            FilterNode { vals: vec!["x".into()], ..leaf("k", "eq", "v") },
            set("k", "in", &[]),
            FilterNode { val: "v".into(), ..set("k", "in", &["x"]) },
            leaf("k", "ex", "v"),
            leaf("k", "like", "v"),
            leaf("", "eq", "v"),
            node("and", vec![]),
            node("or", vec![leaf("k", "eq", "")]),
            node("not", vec![]),
            node("not", vec![leaf("k", "ex", ""), leaf("k", "ex", "")]),
            node("xor", vec![leaf("k", "ex", "")]),
        ];
        for f in &bad {
            assert!(validate(f).is_err(), "{f:?}");
        }
        assert_eq!(validate(&leaf("", "ex", "")), Ok(()), "ex and nex need no key");
    }

    #[test]
    fn decimals_parse_as_udecimal() {
        for ok in [
            "0",
            "-0",
            "+1",
            "007",
            "1.5",
            "-12.0001",
            "1.1234567890123456789",
            "123456789012345678901234567890123456789012345",
        ] {
            assert!(Decimal::parse(ok).is_some(), "{ok}");
        }
        for bad in [
            "",
            "-",
            "+",
            ".5",
            "-.5",
            "5.",
            "1.2.3",
            "1e3",
            " 1",
            "0x10",
            "1.12345678901234567890",
            "--1",
            &"9".repeat(201),
        ] {
            assert!(Decimal::parse(bad).is_none(), "{bad}");
        }
        let d = |s| Decimal::parse(s).unwrap();
        assert_eq!(d("-0").cmp(&d("0")), Ordering::Equal);
        assert_eq!(d("10.50").cmp(&d("10.5")), Ordering::Equal);
        assert_eq!(d("-2").cmp(&d("-10")), Ordering::Greater);
        assert_eq!(d("100").cmp(&d("99.999")), Ordering::Greater);
        assert_eq!(d("0.01").cmp(&d("0.1")), Ordering::Less);
    }
}
