//! Centrifugo's error, unsubscribe and disconnect codes, in one place.
//!
//! SDKs decide whether to retry, resubscribe or reconnect from these numbers,
//! so they must match Centrifugo exactly.

use std::borrow::Cow;

use super::Error as ErrorMsg;

/// A client-facing error (reply `error` field).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorCode {
    pub code: u32,
    pub message: &'static str,
    pub temporary: bool,
}

macro_rules! errors {
    ($($name:ident = $code:expr, $msg:expr, $temp:expr;)*) => {
        impl ErrorCode { $(pub const $name: ErrorCode = ErrorCode { code: $code, message: $msg, temporary: $temp };)* }
    };
}

errors! {
    INTERNAL = 100, "internal server error", true;
    UNAUTHORIZED = 101, "unauthorized", false;
    UNKNOWN_CHANNEL = 102, "unknown channel", false;
    PERMISSION_DENIED = 103, "permission denied", false;
    METHOD_NOT_FOUND = 104, "method not found", false;
    ALREADY_SUBSCRIBED = 105, "already subscribed", false;
    LIMIT_EXCEEDED = 106, "limit exceeded", false;
    BAD_REQUEST = 107, "bad request", false;
    NOT_AVAILABLE = 108, "not available", false;
    TOKEN_EXPIRED = 109, "token expired", false;
    EXPIRED = 110, "expired", false;
    TOO_MANY_REQUESTS = 111, "too many requests", true;
    UNRECOVERABLE_POSITION = 112, "unrecoverable position", false;
}

impl ErrorCode {
    pub fn to_message(self) -> ErrorMsg {
        ErrorMsg { code: self.code, message: self.message.to_string(), temporary: self.temporary }
    }
}

/// A reason to close a client connection; sent as the WebSocket close code
/// and reason. 3000-3499 make SDKs reconnect, 3500-3999 make them stop.
/// The reason is owned only when the server API sets a custom one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u16,
    pub reason: Cow<'static, str>,
}

macro_rules! disconnects {
    ($($name:ident = $code:expr, $reason:expr;)*) => {
        impl Disconnect { $(pub const $name: Disconnect = Disconnect { code: $code, reason: Cow::Borrowed($reason) };)* }
    };
}

disconnects! {
    CONNECTION_CLOSED = 3000, "connection closed";
    SHUTDOWN = 3001, "shutdown";
    SERVER_ERROR = 3004, "internal server error";
    EXPIRED = 3005, "connection expired";
    SUBSCRIPTION_EXPIRED = 3006, "subscription expired";
    SLOW = 3008, "slow";
    WRITE_ERROR = 3009, "write error";
    INSUFFICIENT_STATE = 3010, "insufficient state";
    FORCE_RECONNECT = 3011, "force reconnect";
    NO_PONG = 3012, "no pong";
    TOO_MANY_REQUESTS = 3013, "too many requests";
    STATE_INVALIDATED = 3014, "state invalidated";
    INVALID_TOKEN = 3500, "invalid token";
    BAD_REQUEST = 3501, "bad request";
    STALE = 3502, "stale";
    FORCE_NO_RECONNECT = 3503, "force disconnect";
    CONNECTION_LIMIT = 3504, "connection limit";
    CHANNEL_LIMIT = 3505, "channel limit";
    INAPPROPRIATE_PROTOCOL = 3506, "inappropriate protocol";
    PERMISSION_DENIED = 3507, "permission denied";
    NOT_AVAILABLE = 3508, "not available";
    TOO_MANY_ERRORS = 3509, "too many errors";
}

impl Disconnect {
    /// Whether Centrifugo SDKs reconnect after this code.
    pub fn reconnects(&self) -> bool {
        (3000..3500).contains(&self.code)
    }

    /// The disconnect a unidirectional client gets instead of an error
    /// reply to its connect (centrifuge's `defaultUniErrorCodeToDisconnect`):
    /// expired and token expired 3005, too many requests 3013, permission
    /// denied 3507, any other error 3004.
    pub fn for_unidirectional_error(code: u32) -> Disconnect {
        match code {
            c if c == ErrorCode::EXPIRED.code || c == ErrorCode::TOKEN_EXPIRED.code => Disconnect::EXPIRED,
            c if c == ErrorCode::TOO_MANY_REQUESTS.code => Disconnect::TOO_MANY_REQUESTS,
            c if c == ErrorCode::PERMISSION_DENIED.code => Disconnect::PERMISSION_DENIED,
            _ => Disconnect::SERVER_ERROR,
        }
    }

    /// A custom code and reason (server API `disconnect`). WebSocket close
    /// reasons must fit in 123 bytes, so longer ones are cut at a char boundary.
    pub fn custom(code: u16, reason: &str) -> Disconnect {
        let mut end = reason.len().min(123);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Disconnect { code, reason: Cow::Owned(reason[..end].to_string()) }
    }
}

/// Unsubscribe push codes: below 2500 the client stays unsubscribed, from
/// 2500 on it resubscribes.
pub mod unsubscribe {
    pub const SERVER: (u32, &str) = (2000, "server unsubscribe");
    pub const INSUFFICIENT_STATE: (u32, &str) = (2500, "insufficient state");
    pub const EXPIRED: (u32, &str) = (2501, "subscription expired");
}
