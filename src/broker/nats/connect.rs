//! How a gateway reaches NATS: servers, authentication, TLS and connection
//! name, read once from the config into [`NatsConnect`] and turned into
//! async-nats `ConnectOptions` in one place ([`NatsConnect::options`]).
//!
//! Option names follow Centrifugo where it has them (its NATS broker's
//! `nats.tls.{enabled,server_ca_pem,cert_pem,key_pem}`, its NATS consumer's
//! `credentials_file`, `username`, `password`, `token`), else the NATS
//! clients (`nkey`, `name`). Secrets (password, token, seed, the contents of
//! a credentials file) are kept out of every `Debug` output and error
//! message: errors name the option and the file, never the value.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::server_addrs;
use async_nats::ServerAddr;
use tokio_rustls::rustls;

use crate::config::Config;

/// Everything needed to open the NATS connection, validated.
#[derive(Clone)]
pub(crate) struct NatsConnect {
    /// The servers of `nats_url` (comma-separated seeds).
    pub(crate) servers: Vec<ServerAddr>,
    pub(crate) auth: NatsAuth,
    /// Client TLS settings; `None` leaves TLS to the URL scheme and the
    /// server (async-nats then trusts the system's roots).
    pub(crate) tls: Option<NatsTls>,
    /// Connection name the server shows (`/connz`, `nats server report`).
    pub(crate) name: String,
    /// Replicas of each JetStream history stream (`nats_history_replicas`).
    pub(crate) history_replicas: usize,
    /// Wait between reconnect attempts, and the most added to it at random
    /// (`nats_reconnect_delay`, `nats_reconnect_jitter`).
    pub(crate) reconnect: (Duration, Duration),
}

/// One NATS authentication method (config validation allows at most one).
#[derive(Clone, Default)]
pub(crate) enum NatsAuth {
    #[default]
    None,
    /// A `.creds` file: user JWT plus the NKey seed that signs the nonce.
    CredentialsFile(PathBuf),
    /// An NKey seed (`SU...`); the server knows the public key.
    Nkey(String),
    Token(String),
    UserPassword {
        user: String,
        password: String,
    },
}

/// TLS towards NATS: which CA verifies the servers, which certificate
/// proves the gateway (mutual TLS), whether TLS is required.
#[derive(Clone)]
pub(crate) struct NatsTls {
    pub(crate) required: bool,
    /// PEM of the CA certificate(s); `None`: the system's roots.
    pub(crate) server_ca_pem: Option<Vec<u8>>,
    /// PEM of the client certificate chain and of its key.
    pub(crate) client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for NatsConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsConnect")
            .field("servers", &self.servers.len())
            .field("auth", &self.auth.method())
            .field("tls", &self.tls.as_ref().map(|t| (t.required, t.server_ca_pem.is_some(), t.client_cert.is_some())))
            .field("name", &self.name)
            .field("history_replicas", &self.history_replicas)
            .field("reconnect", &self.reconnect)
            .finish()
    }
}

impl NatsAuth {
    /// The method's name, for logs (never its secret).
    pub(crate) fn method(&self) -> &'static str {
        match self {
            NatsAuth::None => "none",
            NatsAuth::CredentialsFile(_) => "credentials file",
            NatsAuth::Nkey(_) => "nkey",
            NatsAuth::Token(_) => "token",
            NatsAuth::UserPassword { .. } => "user and password",
        }
    }
}

/// The NATS authentication method a config chose, for its `Debug` output
/// (by which options are set; nothing is read or checked).
pub(crate) fn auth_method(config: &Config) -> &'static str {
    match chosen_auth(config) {
        None => "none",
        Some(AuthOption::CredentialsFile(_)) => "credentials file",
        Some(AuthOption::Nkey(_)) => "nkey",
        Some(AuthOption::Token(_)) => "token",
        Some(AuthOption::UserPassword(..)) => "user and password",
    }
}

/// The authentication option a config sets, as written.
enum AuthOption<'a> {
    CredentialsFile(&'a str),
    Nkey(&'a str),
    Token(&'a str),
    UserPassword(&'a str, &'a str),
}

/// Which authentication option wins, in one order for the connection and
/// for `Debug` (config validation allows only one; an empty value is unset).
fn chosen_auth(config: &Config) -> Option<AuthOption<'_>> {
    fn set(o: &Option<String>) -> Option<&str> {
        o.as_deref().filter(|v| !v.is_empty())
    }
    if let Some(path) = set(&config.nats_credentials_file) {
        Some(AuthOption::CredentialsFile(path))
    } else if let Some(value) = set(&config.nats_nkey) {
        Some(AuthOption::Nkey(value))
    } else if let Some(token) = set(&config.nats_token) {
        Some(AuthOption::Token(token))
    } else {
        set(&config.nats_username).zip(set(&config.nats_password)).map(|(u, p)| AuthOption::UserPassword(u, p))
    }
}

impl NatsConnect {
    /// The connection settings of `config`; `Ok(None)` without `nats_url`
    /// (embedded broker). Reads the NKey seed file and the TLS PEM files,
    /// so a missing file is reported at startup, naming the option.
    pub(crate) fn from_config(config: &Config) -> Result<Option<NatsConnect>, String> {
        let Some(url) = config.nats_url.as_deref() else { return Ok(None) };
        let (servers, url_auth) = strip_credentials(server_addrs(url).map_err(|e| format!("NATSGATE_NATS_URL: {e}"))?)?;
        if servers.is_empty() {
            return Err("NATSGATE_NATS_URL names no server".into());
        }
        let pem = |option: &str, value: &Option<String>| value.as_deref().map(|v| read_pem(option, v)).transpose();
        let server_ca_pem = pem("NATSGATE_NATS_TLS_SERVER_CA_PEM", &config.nats_tls_server_ca_pem)?;
        let cert = pem("NATSGATE_NATS_TLS_CERT_PEM", &config.nats_tls_cert_pem)?;
        let key = pem("NATSGATE_NATS_TLS_KEY_PEM", &config.nats_tls_key_pem)?;
        let client_cert = cert.zip(key);
        let tls = (config.nats_tls || server_ca_pem.is_some() || client_cert.is_some()).then_some(NatsTls {
            required: config.nats_tls,
            server_ca_pem,
            client_cert,
        });
        if let Some(tls) = &tls {
            tls.client_config()?;
        }
        let name =
            if config.nats_name.is_empty() { format!("natsgate {}", config.name) } else { config.nats_name.clone() };
        // The options win over credentials in the URL.
        let auth = match auth_of(config)? {
            NatsAuth::None => url_auth,
            auth => auth,
        };
        Ok(Some(NatsConnect {
            servers,
            auth,
            tls,
            name,
            history_replicas: config.nats_history_replicas,
            reconnect: (config.nats_reconnect_delay, config.nats_reconnect_jitter),
        }))
    }

    /// The async-nats options for one connection attempt. A credentials
    /// file is read here, at each attempt, so one mounted after the gateway
    /// started is picked up by the startup retries.
    pub(crate) async fn options(&self) -> Result<async_nats::ConnectOptions, String> {
        let (delay, jitter) = self.reconnect;
        let mut options = async_nats::ConnectOptions::new()
            .name(&self.name)
            .reconnect_delay_callback(move |attempts| reconnect_wait(attempts, delay, jitter));
        options = match &self.auth {
            NatsAuth::None => options,
            NatsAuth::CredentialsFile(path) => options.credentials_file(path).await.map_err(|e| {
                // async-nats' messages name the file and the part that did
                // not parse, never the file's contents.
                format!("NATSGATE_NATS_CREDENTIALS_FILE {}: {}", path.display(), e.kind())
            })?,
            NatsAuth::Nkey(seed) => options.nkey(seed.clone()),
            NatsAuth::Token(token) => options.token(token.clone()),
            NatsAuth::UserPassword { user, password } => options.user_and_password(user.clone(), password.clone()),
        };
        if let Some(tls) = &self.tls {
            options = options.require_tls(tls.required).tls_client_config(tls.client_config()?);
        }
        Ok(options)
    }
}

impl NatsTls {
    /// A rustls client config trusting `server_ca_pem` (else the system's
    /// roots) and presenting `client_cert` when given.
    fn client_config(&self) -> Result<rustls::ClientConfig, String> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let mut roots = rustls::RootCertStore::empty();
        match &self.server_ca_pem {
            Some(pem) => {
                let certs = CertificateDer::pem_slice_iter(pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("NATSGATE_NATS_TLS_SERVER_CA_PEM: not PEM certificates ({e})"))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err("NATSGATE_NATS_TLS_SERVER_CA_PEM: no usable CA certificate".into());
                }
            }
            None => {
                roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("NATS TLS: {e}"))?
            .with_root_certificates(roots);
        match &self.client_cert {
            None => Ok(builder.with_no_client_auth()),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("NATSGATE_NATS_TLS_CERT_PEM: not PEM certificates ({e})"))?;
                // The key's own error could quote it: say only what is wrong.
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|_| "NATSGATE_NATS_TLS_KEY_PEM: no PEM private key".to_string())?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| format!("NATSGATE_NATS_TLS_CERT_PEM and NATSGATE_NATS_TLS_KEY_PEM: {e}"))
            }
        }
    }
}

/// How long async-nats waits before reconnect attempt `attempts` (1 is the
/// first after a disconnect): nothing for the first, then `delay` plus up to
/// `jitter` at random. async-nats' own default doubles the wait up to 4 s,
/// so after an outage of a few seconds a gateway came back up to 2-4 s
/// after nats-server did, and direct NATS publications to channels without
/// history reached nobody meanwhile (issue 19).
fn reconnect_wait(attempts: usize, delay: Duration, jitter: Duration) -> Duration {
    if attempts <= 1 {
        return Duration::ZERO;
    }
    let extra = match jitter.as_micros() as u64 {
        0 => 0,
        max => rand::random_range(0..=max),
    };
    delay + Duration::from_micros(extra)
}

/// Moves `user:password@` (or `token@`) out of the URLs into an auth
/// method, so that no URL handed to async-nats (which logs the servers it
/// tries at debug level) holds a secret. The first URL with credentials
/// gives them, as nats.go does.
fn strip_credentials(servers: Vec<ServerAddr>) -> Result<(Vec<ServerAddr>, NatsAuth), String> {
    let mut auth = NatsAuth::None;
    let mut out = Vec::with_capacity(servers.len());
    for server in servers {
        let user = server.username().filter(|u| !u.is_empty()).map(str::to_string);
        let password = server.password().map(str::to_string);
        if matches!(auth, NatsAuth::None) {
            auth = match (user, password) {
                (Some(user), Some(password)) => NatsAuth::UserPassword { user, password },
                (Some(token), None) => NatsAuth::Token(token),
                _ => NatsAuth::None,
            };
        }
        let mut url = server.into_inner();
        // Only fails for URLs that cannot have credentials (none here).
        let _ = url.set_username("");
        let _ = url.set_password(None);
        out.push(ServerAddr::from_url(url).map_err(|e| format!("NATSGATE_NATS_URL: {}", e.kind()))?);
    }
    Ok((out, auth))
}

fn auth_of(config: &Config) -> Result<NatsAuth, String> {
    Ok(match chosen_auth(config) {
        None => NatsAuth::None,
        Some(AuthOption::CredentialsFile(path)) => NatsAuth::CredentialsFile(path.into()),
        Some(AuthOption::Nkey(value)) => NatsAuth::Nkey(nkey_seed(value)?),
        Some(AuthOption::Token(token)) => NatsAuth::Token(token.to_string()),
        Some(AuthOption::UserPassword(user, password)) => {
            NatsAuth::UserPassword { user: user.to_string(), password: password.to_string() }
        }
    })
}

/// `NATSGATE_NATS_NKEY` is the user seed itself, or the path of a file
/// holding it (as `nats --nkey` takes). Checked here so that a wrong seed
/// fails at startup; the error never quotes the value.
fn nkey_seed(value: &str) -> Result<String, String> {
    let seed = if value.starts_with("SU") && !value.contains('/') {
        value.to_string()
    } else {
        std::fs::read_to_string(value)
            .map_err(|e| format!("NATSGATE_NATS_NKEY: neither a user seed nor a readable file ({})", e.kind()))?
            .trim()
            .to_string()
    };
    match nkeys::KeyPair::from_seed(&seed) {
        Ok(pair) if pair.key_pair_type() == nkeys::KeyPairType::User => Ok(seed),
        Ok(_) => Err("NATSGATE_NATS_NKEY: the seed is not a user seed (`SU...`)".into()),
        Err(_) => Err("NATSGATE_NATS_NKEY: not a valid NKey seed".into()),
    }
}

/// A PEM option's value: PEM text itself, or the path of a PEM file (as
/// Centrifugo's `*_pem` options; its base64 form is not supported).
fn read_pem(option: &str, value: &str) -> Result<Vec<u8>, String> {
    if value.trim_start().starts_with("-----BEGIN") {
        return Ok(value.as_bytes().to_vec());
    }
    std::fs::read(value).map_err(|e| format!("{option}: cannot read {value}: {}", e.kind()))
}

/// A NATS URL with its password (or token) replaced by `***`, for logs.
pub(crate) fn redact_url(url: &str) -> String {
    url.split(',')
        .map(|one| match (one.find("://"), one.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &one[scheme + 3..at];
                let user = userinfo.split_once(':').map_or("***", |(u, _)| u);
                let masked = if userinfo.contains(':') { format!("{user}:***") } else { "***".into() };
                format!("{}{masked}{}", &one[..scheme + 3], &one[at..])
            }
            _ => one.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_waits_are_bounded() {
        let (delay, jitter) = (Duration::from_millis(50), Duration::from_millis(20));
        assert_eq!(reconnect_wait(1, delay, jitter), Duration::ZERO, "the first attempt is immediate");
        for attempts in [2, 3, 100, usize::MAX] {
            let wait = reconnect_wait(attempts, delay, jitter);
            assert!(wait >= delay && wait <= delay + jitter, "{attempts}: {wait:?}");
        }
        assert_eq!(reconnect_wait(5, delay, Duration::ZERO), delay);
    }

    #[test]
    fn urls_are_redacted() {
        assert_eq!(redact_url("nats://a:4222"), "nats://a:4222");
        assert_eq!(redact_url("nats://u:hunter2@a:4222,tls://tok@b"), "nats://u:***@a:4222,tls://***@b");
    }

    #[test]
    fn url_credentials_leave_the_url() {
        let addrs = server_addrs("nats://u:hunter2@a:4222,nats://b:4222").unwrap();
        let (servers, auth) = strip_credentials(addrs).unwrap();
        assert!(
            matches!(auth, NatsAuth::UserPassword { ref user, ref password } if user == "u" && password == "hunter2")
        );
        assert!(servers.iter().all(|s| s.username().is_none() && s.password().is_none()));
        assert!(!format!("{servers:?}").contains("hunter2"));
        let (_, auth) = strip_credentials(server_addrs("nats://s3cret@a").unwrap()).unwrap();
        assert!(matches!(auth, NatsAuth::Token(ref t) if t == "s3cret"));
    }

    #[test]
    fn bad_nkey_is_named_not_quoted() {
        let err = nkey_seed("SUNOTASEEDhunter2").unwrap_err();
        assert!(err.contains("NATSGATE_NATS_NKEY") && !err.contains("hunter2"), "{err}");
        let pair = nkeys::KeyPair::new_user();
        assert_eq!(nkey_seed(&pair.seed().unwrap()).unwrap(), pair.seed().unwrap());
        let account = nkeys::KeyPair::new_account().seed().unwrap();
        assert!(nkey_seed(&account).is_err(), "an account seed is refused");
    }
}
