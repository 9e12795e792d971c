//! Where option values come from, layered: the defaults, then the JSON
//! config file, then `NATSGATE_*` variables, then `--set` flags, each
//! winning over the ones before; and how a bad value is traced back to the
//! variable, file key or flag that set it.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use super::{Config, ConfigError, CONFIG_ENV, ENV_PREFIX};
use crate::channels::ChannelOptions;

/// Where a value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    File,
    Env,
    Flag,
}

/// `(name, value)` pairs.
type Vars = Vec<(String, String)>;

/// Option values by key (lower case, no prefix), each with its source;
/// keys not set by any layer take `Config`'s defaults when parsed.
#[derive(Default)]
pub(super) struct Layers {
    values: Map<String, Value>,
    sources: BTreeMap<String, Source>,
    /// Names that are no option, described for the operator.
    unknown: Vec<String>,
}

impl Layers {
    fn set(&mut self, key: String, value: Value, source: Source) {
        self.sources.insert(key.clone(), source);
        self.values.insert(key, value);
    }

    /// The entries of a config file object. `null` and `""` mean unset, as
    /// an empty variable does; keys that are no option are set aside.
    pub(super) fn file(&mut self, file: Value) -> Result<(), ConfigError> {
        let Value::Object(entries) = file else {
            return Err(file_problem("must be a JSON object of option names"));
        };
        for (key, value) in entries {
            if !is_option(&key) {
                let hint = suggest(key.to_lowercase().trim_start_matches("natsgate_"))
                    .map(|k| format!(" (did you mean `{k}`?)"))
                    .unwrap_or_default();
                self.unknown.push(format!("config file key `{key}`{hint}"));
            } else if !(value.is_null() || value == "") {
                self.set(key, value, Source::File);
            }
        }
        Ok(())
    }

    /// The `NATSGATE_*` variables among `vars`, read by envy (which strips
    /// the prefix and lower-cases the name). Empty ones are unset; names
    /// that are no option are set aside.
    pub(super) fn env(&mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<(), ConfigError> {
        let (known, unknown): (Vars, Vars) = vars
            .into_iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX) && k != CONFIG_ENV)
            .partition(|(k, _)| is_option(&k[ENV_PREFIX.len()..].to_lowercase()));
        self.unknown.extend(unknown.iter().map(|(name, _)| describe_unknown_variable(name)));
        let known: Vars = known.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        check_service_links(&known)?;
        let values: Map<String, Value> =
            envy::prefixed(ENV_PREFIX).from_iter(known).map_err(|e| ConfigError::Parse(e.to_string()))?;
        values.into_iter().for_each(|(key, value)| self.set(key, value, Source::Env));
        Ok(())
    }

    /// `--set NAME=VALUE` flags, values as text like variables. A name that
    /// is no option is an error: it was typed on this command line.
    pub(super) fn flags(&mut self, flags: &[(String, String)]) -> Result<(), ConfigError> {
        for (name, value) in flags {
            let key = name.to_lowercase();
            if !is_option(&key) {
                let hint = suggest(&key).map(|k| format!(" (did you mean `{k}`?)")).unwrap_or_default();
                return Err(ConfigError::Invalid {
                    var: format!("--set {name}"),
                    problem: format!("no such option{hint}"),
                });
            }
            if !value.is_empty() {
                self.set(key, Value::String(value.clone()), Source::Flag);
            }
        }
        Ok(())
    }

    /// Parses the layered values into a `Config` and validates it; errors
    /// name the variable, and the file key or flag when the value came
    /// from there. Values are never shown: some are secrets.
    pub(super) fn into_config(mut self) -> Result<Config, ConfigError> {
        let all = Value::Object(std::mem::take(&mut self.values));
        let mut config: Config = serde_path_to_error::deserialize(&all).map_err(|e| self.parse_error(e, &all))?;
        config.unknown = std::mem::take(&mut self.unknown);
        config.validate().map_err(|e| describe(&self.sources, e))?;
        Ok(config)
    }

    /// serde_path_to_error gives the key of the bad value; the error names
    /// its variable, and where it came from.
    fn parse_error(&self, e: serde_path_to_error::Error<serde_json::Error>, all: &Value) -> ConfigError {
        // serde_path_to_error cannot see into `#[serde(flatten)]`: serde
        // buffers those entries and parses them after the map, where the
        // path is gone. Parse the channel options alone to find the key.
        let e = match top_key(e.path()) {
            Some(_) => e,
            None => flattened_error(all).unwrap_or(e),
        };
        match top_key(e.path()) {
            Some(key) => {
                let problem = explain(&e.inner().to_string(), all.get(&key));
                describe(&self.sources, super::invalid(&key, format!("invalid {key} ({problem})")))
            }
            None => ConfigError::Parse(explain(&e.inner().to_string(), None)),
        }
    }
}

/// The option names (lower case, no prefix): the keys `Config` serializes
/// to, so the list can never drift from the struct.
pub(super) fn option_names() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| keys(&Config::default()))
}

fn keys(value: &impl serde::Serialize) -> Vec<String> {
    match serde_json::to_value(value) {
        Ok(Value::Object(map)) => map.into_iter().map(|(k, _)| k).collect(),
        _ => unreachable!("options serialize to an object"),
    }
}

fn is_option(key: &str) -> bool {
    option_names().iter().any(|k| k == key)
}

fn top_key(path: &serde_path_to_error::Path) -> Option<String> {
    match path.iter().next() {
        Some(serde_path_to_error::Segment::Map { key }) => Some(key.clone()),
        _ => None,
    }
}

fn flattened_error(all: &Value) -> Option<serde_path_to_error::Error<serde_json::Error>> {
    let names = keys(&ChannelOptions::default());
    let channel: Map<String, Value> =
        all.as_object()?.iter().filter(|(k, _)| names.contains(k)).map(|(k, v)| (k.clone(), v.clone())).collect();
    serde_path_to_error::deserialize::<_, ChannelOptions>(&Value::Object(channel)).err()
}

/// A parse error in one line, without the value. A number or boolean is
/// read as itself, then as text ([`Lenient`](crate::channels::options::Lenient)):
/// of the two failures, the one matching the value's form is the one to show.
fn explain(message: &str, value: Option<&Value>) -> String {
    let message = match message.split_once("First:").and_then(|(_, rest)| rest.split_once("Second:")) {
        Some((_, as_text)) if matches!(value, Some(Value::String(_))) => as_text,
        Some((as_itself, _)) => as_itself,
        None => message,
    };
    let mut message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(Value::String(text)) = value.filter(|v| v.as_str().is_some_and(|s| s.len() > 1)) {
        message = message.replace(&format!("{text:?}"), "<value>").replace(text.as_str(), "<value>");
    }
    message
}

/// Adds where a value came from to an error about it, when not from a
/// variable: `(from the config file key `port`)`.
fn describe(sources: &BTreeMap<String, Source>, e: ConfigError) -> ConfigError {
    let ConfigError::Invalid { var, problem } = e else { return e };
    let key = var.strip_prefix(ENV_PREFIX).unwrap_or(&var).to_lowercase();
    let note = match sources.get(&key) {
        Some(Source::File) => format!(" (from the config file key `{key}`)"),
        Some(Source::Flag) => format!(" (from the flag `--set {key}`)"),
        Some(Source::Env) | None => String::new(),
    };
    ConfigError::Invalid { var, problem: problem + &note }
}

fn file_problem(problem: impl Into<String>) -> ConfigError {
    // `Config::load` replaces the placeholder with the file's path.
    ConfigError::File { file: "config file".into(), problem: problem.into() }
}

pub(super) fn read_json_file(path: &Path) -> Result<Value, ConfigError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::File { file: name.clone(), problem: format!("cannot read: {e}") })?;
    // Syntax errors name line and column, never the text around them.
    serde_json::from_str(&text).map_err(|e| ConfigError::File { file: name, problem: format!("not valid JSON: {e}") })
}

/// The option closest to a misspelled name, if close: a small edit away
/// (strsim's Levenshtein distance), or the only name it begins.
fn suggest(name: &str) -> Option<&'static str> {
    let known = option_names();
    let close = known.iter().map(|k| (strsim::levenshtein(name, k), k)).filter(|(d, _)| *d <= 2).min();
    let mut extended = known.iter().filter(|k| name.len() >= 4 && k.starts_with(name));
    let only = extended.next().filter(|_| extended.next().is_none());
    close.map(|(_, k)| k).or(only).map(String::as_str)
}

/// `NATSGATE_PROT (did you mean NATSGATE_PORT?)`.
fn describe_unknown_variable(name: &str) -> String {
    match suggest(&name[ENV_PREFIX.len()..].to_lowercase()) {
        Some(k) if !looks_like_service_link(name) => format!("{name} (did you mean {ENV_PREFIX}{}?)", k.to_uppercase()),
        _ => name.to_string(),
    }
}

/// Names the kubelet derives from a Service named `natsgate` (or
/// `natsgate-*`): `NATSGATE_SERVICE_HOST`, `NATSGATE_SERVICE_PORT_HTTP`,
/// `NATSGATE_PORT`, `NATSGATE_PORT_8000_TCP_ADDR`, ... (Centrifugo skips the
/// same shapes in its unknown-variable warning).
pub(super) fn looks_like_service_link(name: &str) -> bool {
    // Centrifugo's shape: `^CENTRIFUGO(?:_[A-Z0-9_]+)?_(PORT|SERVICE_)`.
    let Some(rest) = name.strip_prefix("NATSGATE") else { return false };
    rest.char_indices().any(|(i, _)| {
        let (middle, tail) = rest.split_at(i);
        let middle_ok = middle.is_empty()
            || (middle.len() > 1
                && middle.starts_with('_')
                && middle[1..].chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
        middle_ok && (tail.starts_with("_PORT") || tail.starts_with("_SERVICE_"))
    })
}

/// A `*_PORT` option holding `tcp://host:port` is a Kubernetes service link,
/// not a port: say so and how to avoid it, instead of "invalid digit".
fn check_service_links(vars: &[(String, String)]) -> Result<(), ConfigError> {
    let link = vars.iter().find(|(name, value)| {
        name.ends_with("_PORT") && ["tcp://", "udp://", "sctp://"].iter().any(|scheme| value.starts_with(scheme))
    });
    match link {
        Some((name, _)) => Err(ConfigError::Invalid {
            var: name.clone(),
            problem: format!(
                "holds a `tcp://host:port` address, not a port number: this looks like a Kubernetes service link \
                 (a Service named `{}` makes the kubelet set {name}=tcp://<service ip>:<port> in every pod of its \
                 namespace). Set `enableServiceLinks: false` in the pod spec (the natsgate chart does), rename the \
                 Service, or set {name} explicitly to a port number",
                name.trim_end_matches("_PORT").to_lowercase().replace('_', "-"),
            ),
        }),
        None => Ok(()),
    }
}
