//! Compiles `proto/client.proto` into Rust types that serve both codecs, and
//! `proto/api.proto` into the GRPC server API (types, tonic service, and the
//! encoded descriptor set that server reflection serves).
//!
//! protox parses the schema in pure Rust (no protoc on the build machine);
//! prost-build generates the types. The same types carry serde attributes so
//! the JSON codec follows Centrifugo's JSON conventions: snake_case names,
//! empty fields omitted, and `bytes` fields embedded as raw JSON.

use prost_build::Config;
use prost_types::field_descriptor_proto::Type;

/// Fields Centrifugo always writes in JSON, even when empty; SDKs rely on them.
const ALWAYS_PRESENT: &[&str] = &[
    "ClientInfo.user",
    "ClientInfo.client",
    "PresenceStatsResult.num_clients",
    "PresenceStatsResult.num_users",
    "HistoryResult.publications",
    "HistoryResult.epoch",
    "HistoryResult.offset",
    "PresenceResult.presence",
];

/// `repeated SubscribeResultEntry` fields that JSON writes as an object.
const SUBS_MAPS: &[&str] = &["Connect.subs", "ConnectResult.subs"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/client.proto");
    let fds = protox::compile(["proto/client.proto"], ["proto"])?;

    let mut config = Config::new();
    config.bytes(["."]);
    config.type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]");
    for file in &fds.file {
        let package = file.package();
        for message in &file.message_type {
            for field in &message.field {
                let short = format!("{}.{}", message.name(), field.name());
                let path = format!(".{package}.{short}");
                let attr = if SUBS_MAPS.contains(&short.as_str()) {
                    "#[serde(with = \"crate::protocol::subs_map\", skip_serializing_if = \"Vec::is_empty\")]"
                } else if field.r#type() == Type::Bytes {
                    "#[serde(with = \"crate::protocol::raw_json\", skip_serializing_if = \"bytes::Bytes::is_empty\")]"
                } else if ALWAYS_PRESENT.contains(&short.as_str()) {
                    continue;
                } else {
                    "#[serde(skip_serializing_if = \"crate::protocol::is_default\")]"
                };
                config.field_attribute(path, attr);
            }
        }
    }
    config.compile_fds(fds)?;
    compile_grpc_api()?;
    compile_proxy()?;
    compile_unistream()
}

/// The GRPC server API: plain prost types (no serde: the HTTP API has its own
/// JSON types), the tonic server, and `api_descriptor.bin` for reflection.
fn compile_grpc_api() -> Result<(), Box<dyn std::error::Error>> {
    use prost::Message;
    println!("cargo:rerun-if-changed=proto/api.proto");
    let fds = protox::compile(["proto/api.proto"], ["proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("api_descriptor.bin"), fds.encode_to_vec())?;
    let mut config = Config::new();
    config.bytes(["."]);
    tonic_prost_build::configure().build_client(false).build_server(true).compile_fds_with_config(fds, config)?;
    Ok(())
}

/// Request fields Centrifugo's HTTP proxy always writes, even when empty.
const PROXY_ALWAYS_PRESENT: &[&str] = &[
    "RefreshRequest.user",
    "SubscribeRequest.user",
    "PublishRequest.user",
    "RPCRequest.user",
    "SubRefreshRequest.user",
    "MapPublishRequest.user",
    "MapRemoveRequest.user",
];

/// The application-backend proxy (`proto/proxy.proto`): types that are both
/// the GRPC proxy's messages and, through serde, the HTTP proxy's JSON bodies
/// (`bytes` fields embedded as raw JSON, as Centrifugo's `Raw` type does),
/// and a tonic client without tonic's transport (natsgate brings its own
/// HTTP/2 connection).
fn compile_proxy() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/proxy.proto");
    let fds = protox::compile(["proto/proxy.proto"], ["proto"])?;
    let mut config = Config::new();
    config.bytes(["."]);
    config.type_attribute(".", "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]");
    for file in &fds.file {
        let package = file.package();
        for message in &file.message_type {
            for field in &message.field {
                let short = format!("{}.{}", message.name(), field.name());
                let path = format!(".{package}.{short}");
                let attr = if field.r#type() == Type::Bytes {
                    "#[serde(with = \"crate::protocol::raw_json\", skip_serializing_if = \"bytes::Bytes::is_empty\")]"
                } else if PROXY_ALWAYS_PRESENT.contains(&short.as_str()) {
                    continue;
                } else {
                    "#[serde(skip_serializing_if = \"crate::protocol::is_default\")]"
                };
                config.field_attribute(path, attr);
            }
        }
    }
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .build_transport(false)
        .compile_fds_with_config(fds, config)?;
    Ok(())
}

/// The uni_grpc transport (`proto/unistream.proto`): the tonic server only.
/// Its `ConnectRequest` and `Push` have the client protocol's field numbers,
/// so the client protocol's own types stand for them: pushes the session
/// encoded go out without a conversion.
fn compile_unistream() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/unistream.proto");
    let fds = protox::compile(["proto/unistream.proto"], ["proto"])?;
    let mut config = Config::new();
    config.bytes(["."]);
    config.extern_path(".centrifugal.centrifugo.unistream.ConnectRequest", "crate::protocol::ConnectRequest");
    config.extern_path(".centrifugal.centrifugo.unistream.Push", "crate::protocol::Push");
    tonic_prost_build::configure().build_client(false).build_server(true).compile_fds_with_config(fds, config)?;
    Ok(())
}
