//! Client protocol, Protobuf: a WebSocket binary frame of varint-delimited
//! commands, decoded as a session decodes it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natsgate::protocol::Protocol;

fuzz_target!(|frame: &[u8]| {
    let _ = Protocol::Protobuf.decode_commands(frame);
});
