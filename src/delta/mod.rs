//! Delta compression of publications (Centrifugo's `fossil` delta type):
//! the patch of one publication's data against the previous one, and the
//! JSON string form JSON subscribers get delta data in.
//!
//! Centrifugo computes deltas with shadowspore/fossil-delta (a Go port of
//! Fossil's delta encoder); the `fossil-delta` crate is a Rust port of the
//! same encoder and writes the same bytes (the vectors below were made by the
//! Go package), which the SDKs' decoders (centrifuge-js `applyDelta`,
//! centrifuge-python) apply.

use bytes::Bytes;

/// The one delta type there is (`allowed_delta_types`, `delta` in the
/// subscribe request).
pub(crate) const FOSSIL: &str = "fossil";

/// The fossil delta turning `base` into `target`, or None when it would be
/// no smaller than `target`: the publication then goes whole
/// (`delta: false`), as centrifuge's `getDeltaPub` decides.
pub(crate) fn fossil(base: &[u8], target: &[u8]) -> Option<Bytes> {
    // The crate takes the target first (its `delta(a, b)` makes the delta
    // that rebuilds `a` from `b`).
    let patch = fossil_delta::delta(target, base);
    (patch.len() < target.len()).then(|| Bytes::from(patch))
}

/// A delta for a JSON subscriber, which gets it as a JSON string: None when
/// the patch is not valid UTF-8 (a literal cut inside a multi-byte
/// character), which no JSON string can carry byte for byte. Centrifugo
/// sends it anyway with U+FFFD in place of the broken bytes, which the SDK
/// then applies into garbage; natsgate sends the publication whole instead.
pub(crate) fn fossil_for_json(base: &[u8], target: &[u8]) -> Option<Bytes> {
    fossil(base, target).filter(|patch| std::str::from_utf8(patch).is_ok())
}

/// `bytes` as a JSON string literal, escaped as centrifuge escapes delta
/// data (segmentio's `json.Escape`: quote and backslash, the short escapes of
/// newline, return, tab, backspace and form feed, other control bytes and
/// `<`, `>`, `&` as `\u00XX`, U+2028 and U+2029 escaped, each byte of
/// invalid UTF-8 as U+FFFD). JSON subscribers with delta compression get
/// every publication's data in this form, whole or delta.
pub(crate) fn json_string(bytes: &[u8]) -> Bytes {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(bytes.len() + 16);
    out.push(b'"');
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '"' => out.extend_from_slice(b"\\\""),
                '\\' => out.extend_from_slice(b"\\\\"),
                '\n' => out.extend_from_slice(b"\\n"),
                '\r' => out.extend_from_slice(b"\\r"),
                '\t' => out.extend_from_slice(b"\\t"),
                '\u{8}' => out.extend_from_slice(b"\\b"),
                '\u{c}' => out.extend_from_slice(b"\\f"),
                '<' | '>' | '&' | '\u{0}'..='\u{1f}' => {
                    let b = c as u8;
                    out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
                }
                '\u{2028}' => out.extend_from_slice(b"\\u2028"),
                '\u{2029}' => out.extend_from_slice(b"\\u2029"),
                c => {
                    let mut buf = [0; 4];
                    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (base, target, delta) as shadowspore/fossil-delta's `Create` writes them.
    const GO_VECTORS: &[(&str, &str, &str)] = &[
        ("", "", "0\n0:0;"),
        ("", "hello", "5\n5:hello3NPMmh;"),
        ("hello", "", "0\n0:0;"),
        ("{\"a\":1}", "{\"a\":2}", "7\n7:{\"a\":2}2qLDtY;"),
        ("{\"text\":\"the quick brown fox jumps over the lazy dog\",\"n\":1,\"list\":[1,2,3,4,5,6,7,8,9]}", "{\"text\":\"the quick brown fox jumps over the lazy cat\",\"n\":2,\"list\":[1,2,3,4,5,6,7,8,9,10]}", "1Q\nm@0,A:cat\",\"n\":2Q@w,5:,10]}1sVCC6;"),
        ("{\"price\":\"éèêë ключ 値段\",\"items\":[\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"]}", "{\"price\":\"èéêë ключи 値段\",\"items\":[\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\",\"bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbc\"]}", "1y\nT:{\"price\":\"èéêë ключи1S@R,4:c\"]}27WlN3;"),
    ];

    #[test]
    fn deltas_are_byte_for_byte_those_of_centrifugo() {
        for (base, target, expected) in GO_VECTORS {
            let patch = fossil_delta::delta(target.as_bytes(), base.as_bytes());
            assert_eq!(String::from_utf8_lossy(&patch), *expected, "{base:?} -> {target:?}");
            assert_eq!(fossil_delta::apply(base, &patch).unwrap(), target.as_bytes());
        }
        let mut base = String::new();
        for i in 0..200 {
            base.push_str(&format!("line {i} of some text that repeats\n"));
        }
        let target = format!("{}INSERTED{}{}", &base[..1000], &base[1000..3000], &base[3500..]);
        let patch = fossil(base.as_bytes(), target.as_bytes()).expect("much smaller");
        assert_eq!(
            String::from_utf8_lossy(&patch),
            "1Zz\nFd@0,8:INSERTEDG@Hl,X@kl,1:3X@1BW,1:3X@gW,1:3X@1T0,Su@H~,2:10Y@1T0,pQ@sG,bCH~p;"
        );
        assert_eq!(fossil_delta::apply(&base, &patch).unwrap(), target.as_bytes());
    }

    #[test]
    fn a_delta_no_smaller_than_the_data_is_not_used() {
        assert_eq!(fossil(br#"{"a":1}"#, br#"{"a":2}"#), None, "7 bytes of data, a 16-byte patch");
        assert!(fossil(b"", b"").is_none());
    }

    #[test]
    fn json_deltas_are_valid_utf8_or_none() {
        // A 16-byte block of the base matches the target up to a character
        // whose first byte is shared (é = C3 A9, è = C3 A8): the literal that
        // follows starts with a lone continuation byte.
        let base = "0123456789abcdef0123456789abcdefé tail that is long enough to be copied";
        let target = "0123456789abcdef0123456789abcdefè tail that is long enough to be copied";
        let patch = fossil(base.as_bytes(), target.as_bytes()).expect("a delta");
        assert!(std::str::from_utf8(&patch).is_err(), "{patch:?}");
        assert_eq!(fossil_for_json(base.as_bytes(), target.as_bytes()), None);
        let ok = fossil_for_json(
            b"{\"text\":\"hello world, hello world, hello\"}",
            b"{\"text\":\"hello world, hello world, hellO\"}",
        );
        assert!(ok.is_some());
    }

    #[test]
    fn json_strings_escape_as_go() {
        let cases: &[(&[u8], &str)] = &[
            (b"", r#""""#),
            (br#"{"a":"<b>&"}"#, r#""{\"a\":\"\u003cb\u003e\u0026\"}""#),
            (b"\n\r\t\x08\x0c\x01\x1f\x7f", r#""\n\r\t\b\f\u0001\u001f\x7f""#),
            ("é\u{2028}\u{2029}ключ".as_bytes(), "\"é\\u2028\\u2029ключ\""),
            (b"a\xffb\xc3", r#""a\ufffdb\ufffd""#),
        ];
        for (input, expected) in cases {
            let expected = expected.replace("\\x7f", "\x7f");
            assert_eq!(String::from_utf8_lossy(&json_string(input)), expected, "{input:?}");
        }
        // What a JSON parser reads back is the input (valid UTF-8).
        let data = "{\"x\":[1,2],\"s\":\"a\\\"b\\\\c <&> \u{2028}\"}";
        let back: String = serde_json::from_slice(&json_string(data.as_bytes())).unwrap();
        assert_eq!(back, data);
    }
}
