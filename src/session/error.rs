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
    /// Answer with an error the application backend chose (a proxy's
    /// `error`: any code, message and `temporary` flag).
    Backend(crate::protocol::Error),
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

/// A proxy call without an answer (timeout, backend down, unreadable
/// answer): internal error 100, as centrifuge answers handler errors that
/// are neither an `Error` nor a `Disconnect`. The cause is logged by
/// `crate::proxy`.
impl From<crate::proxy::ProxyError> for CommandError {
    fn from(_: crate::proxy::ProxyError) -> Self {
        CommandError::Reply(ErrorCode::INTERNAL)
    }
}

impl CommandError {
    /// The backend's refusal in a proxy answer, if any: `disconnect` wins
    /// over `error`, as in Centrifugo's proxy handlers.
    pub(crate) fn from_backend(
        error: Option<crate::proxy::pb::Error>,
        disconnect: Option<crate::proxy::pb::Disconnect>,
    ) -> Result<(), CommandError> {
        if let Some(d) = disconnect {
            let code = u16::try_from(d.code).unwrap_or(Disconnect::SERVER_ERROR.code);
            return Err(Disconnect::custom(code, &d.reason).into());
        }
        if let Some(e) = error {
            return Err(CommandError::Backend(crate::protocol::Error {
                code: e.code,
                message: e.message,
                temporary: e.temporary,
            }));
        }
        Ok(())
    }

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
