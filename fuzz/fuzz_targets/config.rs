//! Configuration: the first byte picks the source. Even: the input is a
//! JSON config file (`--config`); odd: `NAME=VALUE` lines of environment
//! variables. Either is parsed and validated as `natsgate serve` does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natsgate::config::Config;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(file) = serde_json::from_slice::<serde_json::Value>(rest) {
            let _ = Config::from_sources(Some(file), Vec::new());
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        let vars = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string()));
        let _ = Config::from_iter(vars.collect::<Vec<_>>());
    }
});
