//! JSON codec (placeholder, being written).
use super::*;
pub fn decode_commands(frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    let mut out = Vec::new();
    for line in frame.split(|b| *b == b'\n') {
        if line.iter().all(|b| b.is_ascii_whitespace()) { continue; }
        out.push(serde_json::from_slice(line)?);
    }
    Ok(out)
}
pub fn encode_reply(reply: &Reply, out: &mut BytesMut) {
    use bytes::BufMut;
    let _ = serde_json::to_writer(out.writer(), reply);
}
