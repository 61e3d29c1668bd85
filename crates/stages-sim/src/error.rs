//! One error type for every refusal, so that every failure leaves the
//! simulator in the protocol's single error shape.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

use crate::wire::{ErrorBody, ErrorDetail};

/// A refusal: HTTP status, a stable machine code and a message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, "not_found", message)
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(422, "validation", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "unauthorized", "missing or wrong credentials")
    }

    pub fn duplicate_xmit(code: &str) -> Self {
        Self::new(
            409,
            "duplicate_transmitter_code",
            format!("transmitter code {code:?} is already used by another device"),
        )
    }

    pub fn duplicate_billing_id(what: &str, id: &str) -> Self {
        Self::new(
            409,
            "duplicate_billing_id",
            format!("billing_id {id:?} is already held by another {what}"),
        )
    }

    pub fn device_state(message: impl Into<String>) -> Self {
        Self::new(409, "device_state", message)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.clone(),
                message: self.message.clone(),
            },
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = HttpResponse::build(self.status_code());
        if self.status == 401 {
            res.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"stages-sim\""));
        }
        res.json(self.body())
    }
}
