//! `natsgate genconfig`: write a starter config file with fresh secrets.

use serde::Serialize;
use std::io::Write;
use std::path::Path;

use super::CliError;

/// The generated file: fresh secrets plus the options people change first.
/// Field order is the order in the file.
#[derive(Serialize)]
struct Starter {
    token_hmac_secret_key: String,
    api_key: String,
    address: &'static str,
    port: u16,
    allowed_origins: &'static str,
    allow_anonymous_connect_without_token: bool,
    allow_subscribe_for_client: bool,
    allow_publish_for_client: bool,
    log_level: &'static str,
}

/// 32 random bytes from the OS-seeded thread RNG, hex-encoded.
pub(crate) fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the file (mode 0600 on Unix); never replaces an existing one.
pub fn run(path: &Path) -> Result<(), CliError> {
    let starter = Starter {
        token_hmac_secret_key: random_secret(),
        api_key: random_secret(),
        address: "127.0.0.1",
        port: 8000,
        allowed_origins: "",
        allow_anonymous_connect_without_token: false,
        allow_subscribe_for_client: false,
        allow_publish_for_client: false,
        log_level: "info",
    };
    let mut text = serde_json::to_string_pretty(&starter).expect("a plain struct serializes");
    text.push('\n');

    let mut options = std::fs::OpenOptions::new();
    // create_new: refuse atomically if the file exists, even if it appears
    // between a check and the write.
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let name = path.display();
    let mut file = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => CliError::Failed(format!("{name} already exists; not overwriting it")),
        _ => CliError::Failed(format!("cannot create {name}: {e}")),
    })?;
    file.write_all(text.as_bytes()).map_err(|e| CliError::Failed(format!("cannot write {name}: {e}")))?;
    eprintln!("natsgate: wrote {name} (it holds secrets: keep it private)");
    Ok(())
}
