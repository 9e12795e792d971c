//! Server API errors and their mapping to Centrifugo codes and HTTP statuses.

use http::StatusCode;
use serde::Serialize;

use crate::broker::BrokerError;
use crate::protocol::codes::ErrorCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ApiError(pub(crate) ErrorCode);

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> Self {
        match e {
            BrokerError::UnrecoverablePosition => ApiError(ErrorCode::UNRECOVERABLE_POSITION),
            BrokerError::NoHistory => ApiError(ErrorCode::NOT_AVAILABLE),
            BrokerError::Unavailable(_) => {
                tracing::warn!("broker error in API call: {e}");
                ApiError(ErrorCode::INTERNAL)
            }
        }
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        ApiError(code)
    }
}

/// `{"code":..,"message":..}` as Centrifugo writes it.
#[derive(Serialize)]
pub(crate) struct ErrorBody {
    pub(crate) code: u32,
    pub(crate) message: &'static str,
}

impl ApiError {
    pub(crate) fn body(self) -> ErrorBody {
        ErrorBody { code: self.0.code, message: self.0.message }
    }

    /// The HTTP status used with `NATSGATE_API_ERROR_MODE=transport`.
    pub(crate) fn status(self) -> StatusCode {
        match self.0.code {
            100 => StatusCode::INTERNAL_SERVER_ERROR,
            101 => StatusCode::UNAUTHORIZED,
            102 | 104 => StatusCode::NOT_FOUND,
            103 => StatusCode::FORBIDDEN,
            108 => StatusCode::NOT_IMPLEMENTED,
            111 => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}
