//! HTTP API bodies: the first byte picks the form (every `/api/<method>`,
//! `batch`, the legacy `/api`, an unknown method: see
//! `natsgate::fuzzing::API_FORMS`), the rest is the request body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some((&selector, body)) = data.split_first() {
        natsgate::fuzzing::api(selector, body);
    }
});
