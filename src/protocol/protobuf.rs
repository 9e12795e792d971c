//! Protobuf codec (placeholder, being written).
use super::*;
use prost::Message;
pub fn decode_commands(mut frame: &[u8]) -> Result<Vec<Command>, DecodeError> {
    let mut out = Vec::new();
    while !frame.is_empty() {
        out.push(Command::decode_length_delimited(&mut frame)?);
    }
    Ok(out)
}
pub fn encode_reply(reply: &Reply, out: &mut BytesMut) {
    let _ = reply.encode_length_delimited(out);
}
