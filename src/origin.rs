//! The `Origin` check on WebSocket upgrades: `allowed_origins` patterns,
//! compiled once when the configuration is validated.
//!
//! Follows Centrifugo v6 (`internal/app/origin.go`, `internal/origin`):
//! - a request without an `Origin` header (or with an empty one) is always
//!   let in: non-browser clients do not send it;
//! - with no patterns, every request that has an `Origin` is refused, even
//!   one naming the gateway's own host (Centrifugo v6 dropped the same-host
//!   rule);
//! - `*` alone lets every origin in;
//! - otherwise the origin, lower-cased, must match one of the patterns.
//!
//! Patterns are gobwas/glob patterns without separators: `*` (or `**`) is
//! any run of characters, `.` and `/` included; `?` is one character;
//! `[abc]`, `[a-z]` and `[!...]` are character classes (a class is one list
//! or one range); `{a,b}` are alternatives (nestable); `\` escapes the next
//! character. The whole origin must match. Deviation: natsgate lower-cases
//! the patterns too, so `https://App.example.com` still matches; in
//! Centrifugo a pattern with capitals can never match.

use http::HeaderMap;

/// Most flat patterns one pattern's `{..}` alternatives may expand into.
const MAX_EXPANSION: usize = 256;

/// The compiled `allowed_origins` list (parsed from its text by `FromStr`,
/// shown as that text by `Display`).
#[derive(Clone, Debug, Default)]
pub struct OriginCheck {
    /// The list as configured.
    source: String,
    any: bool,
    /// Each allowed pattern with its alternatives expanded: an origin
    /// passes when it matches one of these.
    patterns: Vec<Vec<Token>>,
}

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Char(char),
    /// `?`
    One,
    /// `*` or `**`
    Any,
    /// `[..]`: inclusive ranges (a list is ranges of one character).
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl OriginCheck {
    /// Compiles the space-separated pattern list; the error names the
    /// malformed pattern.
    pub fn new(list: &str) -> Result<OriginCheck, String> {
        let patterns: Vec<&str> = list.split_whitespace().collect();
        let source = list.to_string();
        if patterns == ["*"] {
            return Ok(OriginCheck { source, any: true, patterns: Vec::new() });
        }
        let mut compiled = Vec::new();
        for pattern in patterns {
            let lower = pattern.to_lowercase();
            let flat = expand(&lower).map_err(|problem| format!("malformed origin pattern `{pattern}`: {problem}"))?;
            compiled.extend(flat);
        }
        Ok(OriginCheck { source, any: false, patterns: compiled })
    }

    /// Whether an upgrade with these headers may proceed.
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let origin = match headers.get("origin") {
            None => return true,
            Some(value) => match value.to_str() {
                Ok("") => return true,
                Ok(origin) => origin,
                // Not visible ASCII: no pattern can have meant it.
                Err(_) => return false,
            },
        };
        if self.any {
            return true;
        }
        let origin: Vec<char> = origin.to_lowercase().chars().collect();
        let allowed = self.patterns.iter().any(|p| matches(p, &origin));
        if !allowed {
            tracing::info!(origin = %String::from_iter(&origin), "request Origin is not allowed");
        }
        allowed
    }
}

impl std::str::FromStr for OriginCheck {
    type Err = String;
    fn from_str(list: &str) -> Result<Self, String> {
        OriginCheck::new(list)
    }
}

impl std::fmt::Display for OriginCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.source)
    }
}

/// Parses one pattern into flat token lists, one per combination of its
/// `{..}` alternatives.
fn expand(pattern: &str) -> Result<Vec<Vec<Token>>, String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut pos = 0;
    let out = sequence(&chars, &mut pos, 0)?;
    if pos != chars.len() {
        return Err("unbalanced `}`".into());
    }
    Ok(out)
}

/// Parses up to the end, or (inside braces, `depth > 0`) up to an
/// unescaped `,` or `}`, returning every expansion.
fn sequence(chars: &[char], pos: &mut usize, depth: usize) -> Result<Vec<Vec<Token>>, String> {
    let mut out: Vec<Vec<Token>> = vec![Vec::new()];
    let push = |out: &mut Vec<Vec<Token>>, token: Token| out.iter_mut().for_each(|p| p.push(token.clone()));
    while let Some(&c) = chars.get(*pos) {
        match c {
            ',' | '}' if depth > 0 => return Ok(out),
            '*' => {
                *pos += 1;
                if chars.get(*pos) == Some(&'*') {
                    *pos += 1;
                }
                push(&mut out, Token::Any);
            }
            '?' => {
                *pos += 1;
                push(&mut out, Token::One);
            }
            '[' => {
                *pos += 1;
                let class = class(chars, pos)?;
                push(&mut out, class);
            }
            '{' => {
                *pos += 1;
                let mut alternatives = Vec::new();
                loop {
                    alternatives.extend(sequence(chars, pos, depth + 1)?);
                    match chars.get(*pos) {
                        Some(',') => *pos += 1,
                        Some('}') => {
                            *pos += 1;
                            break;
                        }
                        _ => return Err("unclosed `{`".into()),
                    }
                }
                let mut combined = Vec::new();
                for prefix in &out {
                    for alternative in &alternatives {
                        combined.push(prefix.iter().chain(alternative).cloned().collect());
                    }
                }
                if combined.len() > MAX_EXPANSION {
                    return Err(format!("more than {MAX_EXPANSION} combinations of alternatives"));
                }
                out = combined;
            }
            '\\' => {
                // A trailing backslash escapes nothing and is dropped, as in gobwas/glob.
                *pos += 1;
                if let Some(&escaped) = chars.get(*pos) {
                    *pos += 1;
                    push(&mut out, Token::Char(escaped));
                }
            }
            _ => {
                *pos += 1;
                push(&mut out, Token::Char(c));
            }
        }
    }
    if depth > 0 {
        return Err("unclosed `{`".into());
    }
    Ok(out)
}

/// After `[`: `!`? then either `lo-hi` or a list of characters (with `\`
/// escapes), then `]`.
fn class(chars: &[char], pos: &mut usize) -> Result<Token, String> {
    let negated = chars.get(*pos) == Some(&'!');
    if negated {
        *pos += 1;
    }
    let mut ranges = Vec::new();
    if let (Some(&lo), Some('-'), Some(&hi)) = (chars.get(*pos), chars.get(*pos + 1), chars.get(*pos + 2)) {
        if lo > hi {
            return Err(format!("empty range `{lo}-{hi}`"));
        }
        ranges.push((lo, hi));
        *pos += 3;
    } else {
        while let Some(&c) = chars.get(*pos) {
            if c == ']' {
                break;
            }
            let c = if c == '\\' {
                *pos += 1;
                *chars.get(*pos).ok_or("unclosed `[`")?
            } else {
                c
            };
            ranges.push((c, c));
            *pos += 1;
        }
    }
    if chars.get(*pos) != Some(&']') {
        return Err("unclosed `[` (a class is one list or one range)".into());
    }
    *pos += 1;
    if ranges.is_empty() {
        return Err("empty `[]`".into());
    }
    Ok(Token::Class { negated, ranges })
}

/// Whole-string match of a flat pattern: each token but `Any` takes one
/// character, so one backtrack point (the last `*`) suffices, in
/// O(pattern × origin) at worst.
fn matches(pattern: &[Token], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(Token::Any) => {
                resume = Some((p + 1, t));
                p += 1;
            }
            Some(token) if one(token, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                Some((after_star, start)) => {
                    p = after_star;
                    t = start + 1;
                    resume = Some((after_star, start + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|token| *token == Token::Any)
}

fn one(token: &Token, c: char) -> bool {
    match token {
        Token::Char(expected) => *expected == c,
        Token::One => true,
        Token::Any => false,
        Token::Class { negated, ranges } => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)) != *negated,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allows(list: &str, origin: Option<&str>) -> bool {
        let mut headers = HeaderMap::new();
        if let Some(origin) = origin {
            headers.insert("origin", origin.parse().unwrap());
        }
        OriginCheck::new(list).unwrap().allows(&headers)
    }

    #[test]
    fn glob_patterns_as_centrifugo() {
        let list = "http://*.example.com";
        assert!(allows(list, Some("http://app.example.com")));
        assert!(allows(list, Some("HTTP://APP.Example.com")), "the origin is lower-cased");
        assert!(allows(list, Some("http://a.b.example.com")), "`*` crosses dots");
        assert!(!allows(list, Some("http://example.com")));
        assert!(!allows(list, Some("https://app.example.com")));
        assert!(!allows(list, Some("http://app.example.com.evil.com")), "the whole origin must match");
        assert!(allows("*.example.com foo.com", Some("https://two.Example.com")));
        assert!(!allows("*.example.com", Some("https://two.\u{0435}xample.com")), "a Cyrillic e is not an e");
        assert!(allows("file://*", Some("file://")));
        assert!(allows("null", Some("null")));
        assert!(allows("https://{app,admin}.example.com:{80,443}", Some("https://admin.example.com:443")));
        assert!(!allows("https://{app,admin}.example.com", Some("https://api.example.com")));
        assert!(allows("http://h[0-9].example", Some("http://h7.example")));
        assert!(!allows("http://h[!0-9].example", Some("http://h7.example")));
        assert!(allows("http://h[ab].example", Some("http://hb.example")));
        assert!(allows("http://h?.example", Some("http://hx.example")));
        assert!(!allows("http://h?.example", Some("http://h.example")));
        assert!(allows(r"http://a\*b", Some("http://a*b")));
        assert!(allows("http://a},b", Some("http://a},b")), "`}}` and `,` outside braces are plain");
        assert!(!allows(r"http://a\*b", Some("http://axb")));
        assert!(allows("http://App.Example.com", Some("http://app.example.com")), "deviation: patterns lower-cased");
    }

    #[test]
    fn empty_list_admits_only_requests_without_origin() {
        assert!(allows("", None));
        assert!(allows("", Some("")), "an empty Origin counts as none");
        assert!(!allows("", Some("http://127.0.0.1:8000")), "Centrifugo v6 has no same-host rule");
        assert!(allows("*", Some("https://anything.example")));
        assert!(allows("*", None));
    }

    #[test]
    fn malformed_patterns_are_named() {
        for bad in ["http://[a", "http://{a,b", "http://[]", "http://[z-a]", "[a-bc]"] {
            let err = OriginCheck::new(&format!("http://ok.example {bad}")).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        let many = "{a,b}".repeat(9);
        assert!(OriginCheck::new(&many).unwrap_err().contains("combinations"));
    }

    #[test]
    fn stars_do_not_blow_up() {
        let origin = "a".repeat(4000);
        let started = std::time::Instant::now();
        assert!(!allows("*a*a*a*a*a*a*a*b", Some(&origin)));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
