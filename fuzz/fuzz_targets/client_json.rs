//! Client protocol, JSON: a WebSocket text frame of newline-delimited
//! commands, decoded as a session decodes it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natsgate::protocol::Protocol;

fuzz_target!(|frame: &[u8]| {
    let _ = Protocol::Json.decode_commands(frame);
});
