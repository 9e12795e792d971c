//! The GRPC server API: Centrifugo's `centrifugal.centrifugo.api.CentrifugoApi`
//! service (`proto/api.proto`) over tonic. Protobuf in and out; the methods
//! themselves are the ones in `methods.rs` that the HTTP API calls.
//!
//! Follows Centrifugo's `internal/api/grpc.go`: the key comes as
//! `authorization: apikey <key>` metadata (else `UNAUTHENTICATED`), errors
//! travel in each response's `error` field, or as GRPC statuses (with the
//! `Error` message as a status detail) in transport error mode. Messages are
//! converted to and from the methods' types in `convert.rs`.

use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tonic::metadata::MetadataMap;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Code, Request, Response, Status};

mod convert;

use super::error::ApiError;
use super::methods::{self, Command};
use crate::config::Config;
use crate::context::AppContext;
use crate::protocol::codes::ErrorCode;

/// Types and the tonic service generated from `proto/api.proto`.
#[allow(clippy::all, unreachable_pub, missing_docs)]
pub(crate) mod proto {
    tonic::include_proto!("centrifugal.centrifugo.api");
}

use convert::{command, error, reply};
use proto::centrifugo_api_server::{CentrifugoApi, CentrifugoApiServer};

/// `proto/api.proto` compiled, for server reflection.
const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/api_descriptor.bin"));

/// GRPC's default largest received message (grpc-go and tonic agree).
pub(crate) const DEFAULT_MAX_RECEIVE_MESSAGE_SIZE: usize = 4 * 1024 * 1024;

/// Streams one HTTP/2 connection may have open at once.
const MAX_CONCURRENT_STREAMS: u32 = 256;

/// Why the GRPC API could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum GrpcError {
    #[error("cannot read {what} {path}: {source}")]
    Read { what: &'static str, path: String, source: std::io::Error },
    #[error("GRPC API TLS: {0}")]
    Tls(String),
    #[error("GRPC API reflection: {0}")]
    Reflection(String),
}

type Responses = fn(http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body>;
type Layers = tower::layer::util::Stack<tower::util::MapResponseLayer<Responses>, tower::layer::util::Identity>;

/// The GRPC API, configured and ready to serve on a bound listener.
pub(crate) struct GrpcApi {
    router: tonic::transport::server::Router<Layers>,
}

impl GrpcApi {
    /// Builds the server from `NATSGATE_GRPC_API_*`; reads TLS files now so
    /// that a bad path stops startup.
    pub(crate) fn new(app: Arc<AppContext>) -> Result<GrpcApi, GrpcError> {
        let config = &app.config;
        let mut builder = Server::builder()
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .layer(tower::util::MapResponseLayer::new(too_large_status as Responses));
        if let (Some(cert), Some(key)) = (&config.grpc_api_tls_cert, &config.grpc_api_tls_key) {
            let read = |what, path: &String| {
                std::fs::read(path).map_err(|source| GrpcError::Read { what, path: path.clone(), source })
            };
            let identity = Identity::from_pem(read("certificate", cert)?, read("key", key)?);
            builder = builder
                .tls_config(ServerTlsConfig::new().identity(identity))
                .map_err(|e| GrpcError::Tls(e.to_string()))?;
        }
        let key: Arc<[u8]> = format!("apikey {}", config.grpc_api_key.as_deref().unwrap_or_default()).as_bytes().into();
        let limit = match config.grpc_api_max_receive_message_size {
            0 => DEFAULT_MAX_RECEIVE_MESSAGE_SIZE,
            n => n,
        };
        let service = CentrifugoApiServer::new(Api {
            transport_errors: config.grpc_api_error_mode == crate::config::ErrorMode::Transport,
            app: app.clone(),
        })
        .max_decoding_message_size(limit);
        let service = tonic::service::interceptor::InterceptedService::new(service, move |request: Request<()>| {
            authorize(&key, request.metadata())?;
            Ok(request)
        });
        let reflection = config.grpc_api_reflection.then(reflection).transpose().map_err(GrpcError::Reflection)?;
        let (v1, v1alpha) = reflection.unzip();
        let router = builder.add_service(service).add_optional_service(v1).add_optional_service(v1alpha);
        Ok(GrpcApi { router })
    }

    /// Serves until `stop` resolves, then stops accepting and lets calls in
    /// flight finish.
    pub(crate) async fn serve(self, listener: TcpListener, stop: impl Future<Output = ()> + Send) {
        let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
        if let Err(e) = self.router.serve_with_incoming_shutdown(incoming, stop).await {
            tracing::error!("GRPC API server stopped: {e}");
        }
    }
}

type Reflection<S> = tonic_reflection::server::v1::ServerReflectionServer<S>;
type ReflectionAlpha<S> = tonic_reflection::server::v1alpha::ServerReflectionServer<S>;

/// Reflection services, both versions (grpcurl asks v1 first, older tools
/// only know v1alpha).
#[allow(clippy::type_complexity)]
fn reflection() -> Result<
    (
        Reflection<impl tonic_reflection::server::v1::ServerReflection>,
        ReflectionAlpha<impl tonic_reflection::server::v1alpha::ServerReflection>,
    ),
    String,
> {
    let builder =
        || tonic_reflection::server::Builder::configure().register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET);
    let v1 = builder().build_v1().map_err(|e| e.to_string())?;
    let v1alpha = builder().build_v1alpha().map_err(|e| e.to_string())?;
    Ok((v1, v1alpha))
}

/// grpc-go (so Centrifugo) refuses a request over the size limit with
/// `RESOURCE_EXHAUSTED`; tonic says `OUT_OF_RANGE`, which Centrifugo's
/// clients read as error 112. Such refusals are headers-only responses.
fn too_large_status(mut response: http::Response<tonic::body::Body>) -> http::Response<tonic::body::Body> {
    let headers = response.headers_mut();
    let too_large = headers.get("grpc-status").is_some_and(|s| s == "11")
        && headers.get("grpc-message").is_some_and(|m| {
            let m = m.as_bytes();
            m.windows(b"message%20length%20too%20large".len()).any(|w| w == b"message%20length%20too%20large")
        });
    if too_large {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

/// Centrifugo compares the whole `authorization` value, in constant time.
fn authorize(expected: &[u8], metadata: &MetadataMap) -> Result<(), Status> {
    let given = metadata.get("authorization").map(|v| v.as_bytes()).unwrap_or_default();
    if bool::from(given.ct_eq(expected)) {
        Ok(())
    } else {
        Err(Status::unauthenticated("unauthenticated"))
    }
}

struct Api {
    app: Arc<AppContext>,
    /// `NATSGATE_GRPC_API_ERROR_MODE=transport`.
    transport_errors: bool,
}

impl Api {
    /// Transport error mode for this call: configured, or asked for with
    /// Centrifugo's `x-centrifugo-error-mode: transport` metadata.
    fn transport_errors(&self, metadata: &MetadataMap) -> bool {
        self.transport_errors || metadata.get("x-centrifugo-error-mode").is_some_and(|v| v.as_bytes() == b"transport")
    }

    /// Runs `command` and gives its reply in batch shape, from which each
    /// method's response takes its result field.
    async fn call(&self, command: Command) -> proto::Reply {
        reply(methods::execute(&self.app, command).await)
    }
}

/// A response, or in transport error mode the error as a GRPC status.
fn respond<T>(
    transport_errors: bool,
    error: Option<proto::Error>,
    response: impl FnOnce(Option<proto::Error>) -> T,
) -> Result<Response<T>, Status> {
    match error {
        Some(error) if transport_errors => Err(status(error)),
        error => Ok(Response::new(response(error))),
    }
}

/// Centrifugo's `MapErrorToGRPCCode`, with the `Error` as a status detail
/// (`google.rpc.Status.details`) as Centrifugo adds it.
fn status(error: proto::Error) -> Status {
    use prost::Message as _;
    let code = match error.code {
        100 => Code::Internal,
        102 | 104 => Code::NotFound,
        107 | 108 => Code::InvalidArgument,
        112 => Code::OutOfRange,
        113 => Code::AlreadyExists,
        _ => Code::Internal,
    };
    let details = RpcStatus {
        code: code as i32,
        message: error.message.clone(),
        details: vec![Any {
            type_url: "type.googleapis.com/centrifugal.centrifugo.api.Error".into(),
            value: error.encode_to_vec().into(),
        }],
    };
    Status::with_details(code, error.message, details.encode_to_vec().into())
}

/// `google.rpc.Status`, the payload of `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, prost::Message)]
struct Any {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "bytes", tag = "2")]
    value: Bytes,
}

/// The service: each served method turns its request into a [`Command`] and
/// takes its result field from the reply; each method natsgate does not have
/// answers error 104, as the HTTP API answers a method it does not know.
/// (One macro emits the whole impl: `async_trait` must see every method.)
macro_rules! service {
    (
        served { $($method:ident($request:ident) -> $response:ident { $field:ident }),* $(,)? }
        unsupported { $($other:ident($other_request:ident) -> $other_response:ident),* $(,)? }
    ) => {
        #[tonic::async_trait]
        impl CentrifugoApi for Api {
            $(
                async fn $method(&self, request: Request<proto::$request>) -> Result<Response<proto::$response>, Status> {
                    let transport_errors = self.transport_errors(request.metadata());
                    let reply = self.call(request.into_inner().into()).await;
                    respond(transport_errors, reply.error, |error| proto::$response { error, result: reply.$field })
                }
            )*
            $(
                async fn $other(&self, request: Request<proto::$other_request>) -> Result<Response<proto::$other_response>, Status> {
                    let transport_errors = self.transport_errors(request.metadata());
                    let error = error(ApiError(ErrorCode::METHOD_NOT_FOUND));
                    respond(transport_errors, Some(error), |error| proto::$other_response { error })
                }
            )*
            async fn batch(&self, request: Request<proto::BatchRequest>) -> Result<Response<proto::BatchResponse>, Status> {
                self.run_batch(request).await
            }
        }
    };
}

service! {
    served {
        publish(PublishRequest) -> PublishResponse { publish },
        broadcast(BroadcastRequest) -> BroadcastResponse { broadcast },
        subscribe(SubscribeRequest) -> SubscribeResponse { subscribe },
        unsubscribe(UnsubscribeRequest) -> UnsubscribeResponse { unsubscribe },
        disconnect(DisconnectRequest) -> DisconnectResponse { disconnect },
        presence(PresenceRequest) -> PresenceResponse { presence },
        presence_stats(PresenceStatsRequest) -> PresenceStatsResponse { presence_stats },
        history(HistoryRequest) -> HistoryResponse { history },
        history_remove(HistoryRemoveRequest) -> HistoryRemoveResponse { history_remove },
        info(InfoRequest) -> InfoResponse { info },
        refresh(RefreshRequest) -> RefreshResponse { refresh },
        channels(ChannelsRequest) -> ChannelsResponse { channels },
        map_publish(MapPublishRequest) -> MapPublishResponse { map_publish },
        map_remove(MapRemoveRequest) -> MapRemoveResponse { map_remove },
        map_read_state(MapReadStateRequest) -> MapReadStateResponse { map_read_state },
        map_read_stream(MapReadStreamRequest) -> MapReadStreamResponse { map_read_stream },
        map_stats(MapStatsRequest) -> MapStatsResponse { map_stats },
        map_clear(MapClearRequest) -> MapClearResponse { map_clear },
        shared_poll_publish(SharedPollPublishRequest) -> SharedPollPublishResponse { shared_poll_publish },
    }
    unsupported {
        rpc(RpcRequest) -> RpcResponse,
        connections(ConnectionsRequest) -> ConnectionsResponse,
        update_user_status(UpdateUserStatusRequest) -> UpdateUserStatusResponse,
        get_user_status(GetUserStatusRequest) -> GetUserStatusResponse,
        delete_user_status(DeleteUserStatusRequest) -> DeleteUserStatusResponse,
        block_user(BlockUserRequest) -> BlockUserResponse,
        unblock_user(UnblockUserRequest) -> UnblockUserResponse,
        revoke_token(RevokeTokenRequest) -> RevokeTokenResponse,
        invalidate_user_tokens(InvalidateUserTokensRequest) -> InvalidateUserTokensResponse,
        device_register(DeviceRegisterRequest) -> DeviceRegisterResponse,
        device_update(DeviceUpdateRequest) -> DeviceUpdateResponse,
        device_remove(DeviceRemoveRequest) -> DeviceRemoveResponse,
        device_list(DeviceListRequest) -> DeviceListResponse,
        device_topic_list(DeviceTopicListRequest) -> DeviceTopicListResponse,
        device_topic_update(DeviceTopicUpdateRequest) -> DeviceTopicUpdateResponse,
        user_topic_list(UserTopicListRequest) -> UserTopicListResponse,
        user_topic_update(UserTopicUpdateRequest) -> UserTopicUpdateResponse,
        send_push_notification(SendPushNotificationRequest) -> SendPushNotificationResponse,
        update_push_status(UpdatePushStatusRequest) -> UpdatePushStatusResponse,
        cancel_push(CancelPushRequest) -> CancelPushResponse,
    }
}

impl Api {
    /// Batch replies always come back whole: errors stay in each reply, as in
    /// Centrifugo, even in transport error mode; only a batch refused as a
    /// whole (too many commands) gets a status there.
    async fn run_batch(&self, request: Request<proto::BatchRequest>) -> Result<Response<proto::BatchResponse>, Status> {
        let transport_errors = self.transport_errors(request.metadata());
        let request = request.into_inner();
        let commands = request.commands.into_iter().map(command).collect();
        match methods::batch(&self.app, commands, request.parallel).await {
            Ok(replies) => {
                Ok(Response::new(proto::BatchResponse { replies: replies.into_iter().map(reply).collect() }))
            }
            Err(e) if transport_errors => Err(status(error(e))),
            Err(e) => Ok(Response::new(proto::BatchResponse { replies: vec![reply(Err(e))] })),
        }
    }
}

/// Where the GRPC API listens, when it is on.
pub(crate) fn enabled(config: &Config) -> Option<std::net::SocketAddr> {
    config.grpc_api.then(|| config.grpc_api_addr())
}
