//! Messages published straight to NATS: the input is the subject on the
//! first line, then `Name: value` header lines up to an empty line, then
//! the payload (the layout of a NATS `HMSG`, without lengths).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (head, payload) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let Ok(head) = std::str::from_utf8(head) else { return };
    let mut lines = head.split('\n');
    let subject = lines.next().unwrap_or_default();
    let headers: Vec<(&str, &str)> =
        lines.filter_map(|line| line.split_once(':')).map(|(name, value)| (name, value.trim_start())).collect();
    natsgate::fuzzing::nats_message(subject, &headers, payload);
});
