//! RFC 9457 problem details for the staff API, with stable machine codes.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};

use crate::casework::CaseworkError;
use crate::domain::DomainError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
        }
    }

    pub fn unauthorized(detail: &str) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.detail)
    }
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let body = serde_json::json!({
            "type": format!("urn:shokai:problem:{}", self.code),
            "title": title(self.status),
            "status": self.status.as_u16(),
            "detail": self.detail,
            "code": self.code,
        });
        let mut resp = HttpResponse::build(self.status);
        resp.content_type("application/problem+json");
        if self.status == StatusCode::UNAUTHORIZED {
            resp.insert_header(("www-authenticate", "Bearer"));
        }
        resp.body(body.to_string())
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code, e.message)
    }
}

impl From<CaseworkError> for ApiError {
    fn from(e: CaseworkError) -> Self {
        match e {
            CaseworkError::Invalid(d) => d.into(),
            CaseworkError::NotFound(what) => ApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("{what} not found"),
            ),
            CaseworkError::Forbidden(why) => ApiError::new(StatusCode::FORBIDDEN, "forbidden", why),
            CaseworkError::Conflict(why) => ApiError::new(StatusCode::CONFLICT, "conflict", why),
            CaseworkError::IdempotencyConflict(why) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency_key_reused",
                why,
            ),
            CaseworkError::Store(e) => {
                tracing::error!(error = %e, code = e.code(), "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the request could not be completed",
                )
            }
        }
    }
}
