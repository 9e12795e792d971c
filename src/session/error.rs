//! How a command fails: an error reply, or the end of the connection.
//!
//! Every typed cause is mapped to a Centrifugo code here and nowhere else.

use crate::auth::TokenError;
use crate::broker::BrokerError;
use crate::protocol::codes::{Disconnect, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CommandError {
    /// Answer the command with this error; the connection stays.
    Reply(ErrorCode),
    /// Close the connection with this code.
    Disconnect(Disconnect),
}

impl From<ErrorCode> for CommandError {
    fn from(code: ErrorCode) -> Self {
        CommandError::Reply(code)
    }
}

impl From<Disconnect> for CommandError {
    fn from(code: Disconnect) -> Self {
        CommandError::Disconnect(code)
    }
}

impl From<BrokerError> for CommandError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::UnrecoverablePosition => CommandError::Reply(ErrorCode::UNRECOVERABLE_POSITION),
            BrokerError::NoHistory => CommandError::Reply(ErrorCode::NOT_AVAILABLE),
            BrokerError::Unavailable(_) => {
                tracing::warn!("broker error: {e}");
                CommandError::Reply(ErrorCode::INTERNAL)
            }
        }
    }
}

impl CommandError {
    /// A connection token refused on connect: an expired one asks the SDK
    /// for a fresh token (109); a bad one ends the connection for good.
    pub(crate) fn connect_token(e: TokenError) -> Self {
        match e {
            TokenError::Expired => ErrorCode::TOKEN_EXPIRED.into(),
            TokenError::Invalid(_) => Disconnect::INVALID_TOKEN.into(),
        }
    }

    /// A token refused on refresh: expired means the connection is over.
    pub(crate) fn refresh_token(e: TokenError) -> Self {
        match e {
            TokenError::Expired => Disconnect::EXPIRED.into(),
            TokenError::Invalid(_) => Disconnect::INVALID_TOKEN.into(),
        }
    }
}
