//! SockJS wire framing, pure (no I/O, no state): the frames a server sends
//! (`o`, `h`, `a[...]`, `c[code,"reason"]`), how each HTTP transport wraps
//! them, what clients send, and the URL layout. Facts from the SockJS
//! protocol specification (sockjs-protocol 0.3.x) as sockjs-client 1.6 reads
//! it.

/// The open frame, the first thing every new session receives.
pub(crate) const OPEN: &str = "o";
/// The heartbeat frame.
pub(crate) const HEARTBEAT: &str = "h";
/// Close code and reason for a second receiving request on a session that
/// already has one (sockjs-client gives up on that session).
pub(crate) const ANOTHER_CONNECTION: (u16, &str) = (2010, "Another connection still open");

/// Appends `s` as a JSON string. Every character outside printable ASCII is
/// written as a `\u` escape: SockJS requires a set of code points (control
/// characters, surrogates, several Unicode blocks) to be escaped because some
/// browsers and proxies mangle them on streaming transports, and escaping all
/// of non-ASCII is a superset that every JSON parser reads back unchanged.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// A message frame carrying one SockJS message: `a["..."]`. Centrifugo sent
/// each write (one or more protocol messages joined by `\n`) as one message.
pub(crate) fn message_frame(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 8);
    out.push_str("a[");
    push_json_string(&mut out, message);
    out.push(']');
    out
}

/// A close frame: `c[3001,"shutdown"]`.
pub(crate) fn close_frame(code: u16, reason: &str) -> String {
    let mut out = format!("c[{code},");
    push_json_string(&mut out, reason);
    out.push(']');
    out
}

/// Why a client payload was refused; the texts are the ones SockJS servers
/// answer with (HTTP 400 in Centrifugo v5).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PayloadError {
    Empty,
    Broken,
}

impl PayloadError {
    pub(crate) fn text(&self) -> &'static str {
        match self {
            PayloadError::Empty => "Payload expected.",
            PayloadError::Broken => "Broken JSON encoding.",
        }
    }
}

/// The messages in a client payload: a JSON array of strings (`xhr_send`,
/// `jsonp_send`, framed WebSocket), or one JSON string (WebSocket clients
/// may send that too).
pub(crate) fn parse_messages(payload: &[u8]) -> Result<Vec<String>, PayloadError> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    if let Ok(messages) = serde_json::from_slice::<Vec<String>>(payload) {
        return Ok(messages);
    }
    serde_json::from_slice::<String>(payload).map(|m| vec![m]).map_err(|_| PayloadError::Broken)
}

/// A JSONP or htmlfile callback name: SockJS allows only `[A-Za-z0-9_.]`,
/// so the name cannot inject script.
pub(crate) fn valid_callback(name: &str) -> bool {
    !name.is_empty() && name.len() <= 256 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
}

/// Where a request under the SockJS prefix goes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Route<'a> {
    /// The prefix itself: the greeting.
    Greeting,
    Info,
    /// `iframe.html` or `iframe-<version>.html`.
    Iframe,
    /// `websocket` right under the prefix: plain WebSocket, no framing.
    RawWebsocket,
    Session {
        session: &'a str,
        kind: Kind,
    },
}

/// The transport named by a session URL's last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Websocket,
    XhrPolling,
    XhrStreaming,
    XhrSend,
    EventSource,
    HtmlFile,
    JsonpPolling,
    JsonpSend,
}

/// Longest server or session id segment accepted (sockjs-client uses 3 and
/// 8 characters); longer ones are not SockJS URLs.
const MAX_ID: usize = 64;

/// Parses the path below the prefix (no leading slash): `info`,
/// `<server>/<session>/<transport>` and so on. Ids may be any non-empty
/// segment without a dot, as the specification says.
pub(crate) fn route(tail: &str) -> Option<Route<'_>> {
    let tail = tail.strip_prefix('/').unwrap_or(tail);
    match tail {
        "" => return Some(Route::Greeting),
        "info" => return Some(Route::Info),
        "websocket" => return Some(Route::RawWebsocket),
        _ => {}
    }
    if tail.starts_with("iframe") && tail.ends_with(".html") && !tail.contains('/') {
        return Some(Route::Iframe);
    }
    let mut parts = tail.split('/');
    let (server, session, kind) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let id_ok = |id: &str| !id.is_empty() && id.len() <= MAX_ID && !id.contains('.');
    if !id_ok(server) || !id_ok(session) {
        return None;
    }
    let kind = match kind {
        "websocket" => Kind::Websocket,
        "xhr" => Kind::XhrPolling,
        "xhr_streaming" => Kind::XhrStreaming,
        "xhr_send" => Kind::XhrSend,
        "eventsource" => Kind::EventSource,
        "htmlfile" => Kind::HtmlFile,
        "jsonp" => Kind::JsonpPolling,
        "jsonp_send" => Kind::JsonpSend,
        _ => return None,
    };
    Some(Route::Session { session, kind })
}

/// The `/info` answer. `websocket` tells the client whether to try
/// WebSocket; `entropy` seeds the client's random session ids.
pub(crate) fn info_json(websocket: bool, entropy: u32) -> String {
    format!(r#"{{"websocket":{websocket},"origins":["*:*"],"cookie_needed":false,"entropy":{entropy}}}"#)
}

/// The page iframe-based transports load from the server's origin; it
/// loads the SockJS client from `sockjs_url` (which must be the version the
/// page's own client runs) and hands over to it.
pub(crate) fn iframe_html(sockjs_url: &str) -> String {
    let url = html_attribute(sockjs_url);
    format!(
        "<!DOCTYPE html>\n<html>\n<head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  \
         <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n  <script src=\"{url}\"></script>\n  \
         <script>\n    document.domain = document.domain;\n    SockJS.bootstrap_iframe();\n  </script>\n</head>\n\
         <body>\n  <h2>Don't panic!</h2>\n  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>\n\
         </body>\n</html>"
    )
}

fn html_attribute(s: &str) -> String {
    s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The first bytes of an `xhr_streaming` response: 2048 `h` and a newline,
/// which makes old browsers start delivering the stream at once.
pub(crate) fn xhr_streaming_prelude() -> String {
    let mut s = "h".repeat(2048);
    s.push('\n');
    s
}

/// A frame on `xhr` and `xhr_streaming`: the frame and a newline.
pub(crate) fn xhr_chunk(frame: &str) -> String {
    format!("{frame}\n")
}

/// A frame on `eventsource`: one event.
pub(crate) fn eventsource_chunk(frame: &str) -> String {
    format!("data: {frame}\r\n\r\n")
}

/// The first bytes of an `htmlfile` response: a page that calls `callback`
/// in the parent frame for each script chunk, padded past 1 KiB so that
/// browsers render progressively.
pub(crate) fn htmlfile_prelude(callback: &str) -> String {
    let mut s = format!(
        "<!doctype html>\n<html><head>\n  <meta http-equiv=\"X-UA-Compatible\" content=\"IE=edge\" />\n  \
         <meta http-equiv=\"Content-Type\" content=\"text/html; charset=UTF-8\" />\n</head><body><h2>Don't panic!</h2>\n  \
         <script>\n    document.domain = document.domain;\n    var c = parent.{callback};\n    c.start();\n    \
         function p(d) {{c.message(d);}};\n    window.onload = function() {{c.stop();}};\n  </script>\n"
    );
    let pad = 1024usize.saturating_sub(s.len()) + 14;
    s.push_str(&" ".repeat(pad));
    s.push_str("\r\n\r\n");
    s
}

/// A frame on `htmlfile`: a script calling `p` with the frame as a string.
pub(crate) fn htmlfile_chunk(frame: &str) -> String {
    let mut s = String::from("<script>\np(");
    push_json_string(&mut s, frame);
    s.push_str(");\n</script>\r\n");
    s
}

/// A `jsonp` response: the callback called with the frame as a string.
pub(crate) fn jsonp_body(callback: &str, frame: &str) -> String {
    let mut s = format!("/**/{callback}(");
    push_json_string(&mut s, frame);
    s.push_str(");\r\n");
    s
}

/// The payload of a `jsonp_send` body: form-encoded `d=<payload>`, or the
/// raw body for other content types.
pub(crate) fn jsonp_send_payload(body: &[u8], form_encoded: bool) -> Option<Vec<u8>> {
    if !form_encoded {
        return Some(body.to_vec());
    }
    body.split(|&b| b == b'&').find_map(|pair| pair.strip_prefix(b"d=")).map(percent_decode)
}

/// The value of `name` in a raw query string, decoded.
pub(crate) fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| String::from_utf8_lossy(&percent_decode(value.as_bytes())).into_owned())
    })
}

/// Form decoding: `+` is a space, `%XX` a byte; malformed escapes stay as
/// they are.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < input.len() => match (hex(input[i + 1]), hex(input[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h << 4) | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_escape_everything_outside_printable_ascii() {
        assert_eq!(message_frame("{\"id\":1}\n{}"), r#"a["{\"id\":1}\n{}"]"#);
        assert_eq!(message_frame("é\u{2028}😀\u{1}"), r#"a["\u00e9\u2028\ud83d\ude00\u0001"]"#);
        assert_eq!(close_frame(3001, "shutdown"), r#"c[3001,"shutdown"]"#);
        // What is escaped reads back as the original.
        let parsed: Vec<String> = serde_json::from_str(&message_frame("é\u{2028}😀\"\\")[1..]).unwrap();
        assert_eq!(parsed, ["é\u{2028}😀\"\\"]);
    }

    #[test]
    fn client_payloads() {
        assert_eq!(parse_messages(br#"["a","b"]"#), Ok(vec!["a".into(), "b".into()]));
        assert_eq!(parse_messages(br#""a""#), Ok(vec!["a".into()]));
        assert_eq!(parse_messages(b""), Err(PayloadError::Empty));
        assert_eq!(parse_messages(b" \n"), Err(PayloadError::Empty));
        assert_eq!(parse_messages(b"[1]"), Err(PayloadError::Broken));
        assert_eq!(parse_messages(b"[\"a\""), Err(PayloadError::Broken));
        assert_eq!(parse_messages(b"{}"), Err(PayloadError::Broken));
    }

    #[test]
    fn routes() {
        assert_eq!(route(""), Some(Route::Greeting));
        assert_eq!(route("/"), Some(Route::Greeting));
        assert_eq!(route("info"), Some(Route::Info));
        assert_eq!(route("iframe-1.6.1.html"), Some(Route::Iframe));
        assert_eq!(route("websocket"), Some(Route::RawWebsocket));
        assert_eq!(route("123/abcdefgh/xhr"), Some(Route::Session { session: "abcdefgh", kind: Kind::XhrPolling }));
        assert_eq!(route("1/a/xhr_send"), Some(Route::Session { session: "a", kind: Kind::XhrSend }));
        assert_eq!(route("1/a.b/xhr"), None);
        assert_eq!(route("1//xhr"), None);
        assert_eq!(route("1/a/xhr/more"), None);
        assert_eq!(route("1/a/nope"), None);
        assert_eq!(route(&format!("1/{}/xhr", "x".repeat(65))), None);
    }

    #[test]
    fn callbacks_and_jsonp() {
        assert!(valid_callback("_jp.a1b2"));
        assert!(!valid_callback(""));
        assert!(!valid_callback("alert(1)"));
        assert!(!valid_callback("a-b"));
        assert_eq!(jsonp_body("cb", "o"), "/**/cb(\"o\");\r\n");
        assert_eq!(jsonp_send_payload(b"d=%5B%22x+y%22%5D", true), Some(br#"["x y"]"#.to_vec()));
        assert_eq!(jsonp_send_payload(b"x=1", true), None);
        assert_eq!(query_value("t=1&c=_jp.x%2Ey", "c").as_deref(), Some("_jp.x.y"));
        assert_eq!(percent_decode(b"%zz%4"), b"%zz%4");
    }

    #[test]
    fn preludes() {
        assert_eq!(xhr_streaming_prelude().len(), 2049);
        let page = htmlfile_prelude("cb");
        assert!(page.len() > 1024 && page.contains("parent.cb;"));
        assert_eq!(htmlfile_chunk("a[\"x\"]"), "<script>\np(\"a[\\\"x\\\"]\");\n</script>\r\n");
        assert_eq!(eventsource_chunk("o"), "data: o\r\n\r\n");
        assert!(iframe_html("https://x/\"s.js").contains("src=\"https://x/&quot;s.js\""));
        let info: serde_json::Value = serde_json::from_str(&info_json(true, 7)).unwrap();
        assert_eq!(info["websocket"], true);
        assert_eq!(info["entropy"], 7);
    }
}
