//! The staff API's contract: an OpenAPI 3.1 document generated with utoipa
//! from the handlers and body types in `staff.rs`. It is committed as
//! `schemas/openapi.json` (the `openapi` integration test fails when that
//! file is out of date) and served, without a token, at
//! `GET /api/openapi.json` on the staff listener.

use std::borrow::Cow;
use std::sync::LazyLock;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use utoipa::openapi::schema::{Object, ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, PartialSchema, ToResponse, ToSchema};

use super::{casefile, staff};
use crate::domain::audit::AuditAction;
use crate::domain::ids::{BatchId, CaseId, InquiryId, RequestId, SubjectId};
use crate::domain::state::{BatchState, InquiryKind, InquiryState};
use crate::domain::zengin::{BranchCode, InstitutionCode};

/// The document's path on the staff listener.
pub const PATH: &str = "/api/openapi.json";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(PATH, web::get().to(serve));
}

static DOCUMENT: LazyLock<String> = LazyLock::new(openapi_json);

async fn serve() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(DOCUMENT.as_str())
}

/// The staff API's OpenAPI document as pretty JSON with a final newline:
/// exactly the bytes of `schemas/openapi.json`. Paths, schemas and
/// properties are kept in sorted maps, so the text is stable.
pub fn openapi_json() -> String {
    let mut text = StaffApi::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Shokai staff API",
        description = "The JSON API caseworkers, supervisors, auditors and admins use to file \
            cases and deposit-inquiry requests, follow their inquiries, read case files and \
            steer delivery. Every call needs `Authorization: Bearer <token>` (tokens are made \
            with `shokai token`). Every error is an RFC 9457 problem \
            (`application/problem+json`) whose `code` is stable: match on `code`, not on \
            `detail`."
    ),
    paths(
        staff::create_case,
        staff::get_case,
        casefile::get_case_file,
        casefile::department_inquiry,
        casefile::list_linkage_files,
        staff::put_decision,
        staff::close_case,
        staff::acknowledge_alert,
        staff::submit_request,
        staff::get_request,
        staff::cancel_request,
        staff::cancel_inquiry,
        staff::pause_institution,
        staff::resume_institution,
        staff::list_batches,
        staff::retry_batch,
        staff::list_audit,
    ),
    components(
        schemas(
            Problem,
            CaseId,
            SubjectId,
            RequestId,
            InquiryId,
            BatchId,
            InstitutionCode,
            BranchCode,
            InquiryState,
            BatchState,
            InquiryKind,
        ),
        responses(
            BadQuery,
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            TooLarge,
            Unprocessable,
            Internal,
        ),
    ),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "cases", description = "Cases, their subjects, case files and alerts"),
        (name = "requests", description = "Requests and the inquiries they fan out into"),
        (name = "admin", description = "Delivery steering; needs the `admin` role"),
        (name = "audit", description = "The hash-chained audit trail; for auditors and admins"),
    ),
)]
struct StaffApi;

/// Adds the bearer scheme that `security(("bearer" = []))` names.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token made with `shokai token create`; the gateway keeps only \
                         its SHA-256. The token's role (caseworker, supervisor, auditor, admin) \
                         and office decide what it may see and do.",
                    ))
                    .build(),
            ),
        );
    }
}

// `ApiError` (problem.rs) writes this shape with `json!`; nothing builds this
// struct. It only describes the shape, and a test below checks that the two
// agree.
/// An RFC 9457 problem: the body of every staff API error, sent as
/// `application/problem+json`.
#[derive(ToSchema, Deserialize)]
#[schema(example = json!({
    "type": "urn:shokai:problem:not_found",
    "title": "Not Found",
    "status": 404,
    "detail": "case 0197c1f2a8e27d4c9b3f5a6e7d8c9b0a not found",
    "code": "not_found"
}))]
#[allow(dead_code)]
pub(super) struct Problem {
    /// `urn:shokai:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(format = "uri")]
    kind: String,
    /// The HTTP reason phrase of `status`.
    title: String,
    /// The HTTP status code.
    status: u16,
    /// What went wrong, for people; it may change between versions.
    detail: String,
    /// What went wrong, for programs; stable. Besides the generic
    /// `unauthorized`, `forbidden`, `not_found`, `conflict`, `too_large`,
    /// `invalid_json`, `invalid_body` and `internal`, a rejected input names
    /// the rule it broke, e.g. `invalid_date`, `invalid_kana`,
    /// `invalid_institution_code`, `unknown_branch`, `missing_subjects`,
    /// `invalid_kind`, `invalid_state`, `invalid_action`,
    /// `invalid_idempotency_key` or `idempotency_key_reused`.
    code: String,
}

/// Reusable error responses, all carrying a [`Problem`].
macro_rules! problem_response {
    ($(#[$doc:meta])* $name:ident, $description:literal) => {
        $(#[$doc])*
        pub(super) enum $name {}

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                (stringify!($name), RefOr::T(problem($description).build()))
            }
        }
    };
}

fn problem(description: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(Problem::name())))
            .build(),
    )
}

problem_response!(
    BadQuery,
    "The query string does not parse, e.g. a missing `state` or a `limit` that is not an \
     integer (`invalid_query`)."
);
problem_response!(
    BadRequest,
    "The body cannot be read or is not the JSON this operation takes (`invalid_json`, \
     `invalid_body`, `invalid_idempotency_key`)."
);
problem_response!(
    Forbidden,
    "The token's role may not do this, or the resource belongs to another office \
     (`forbidden`)."
);
problem_response!(
    NotFound,
    "No such resource, or an id in the path that cannot be one (`not_found`)."
);
problem_response!(
    Conflict,
    "The resource's state does not allow this, e.g. cancelling an inquiry that has its \
     answer (`conflict`)."
);
problem_response!(TooLarge, "The body is larger than 256 KiB (`too_large`).");
problem_response!(
    Unprocessable,
    "The input breaks a rule; `code` names it (e.g. `invalid_date`, `invalid_kana`, \
     `invalid_institution_code`, `unknown_branch`). Nothing was changed."
);
problem_response!(
    Internal,
    "The gateway could not complete the call (`internal`); details are in its log."
);

/// 401, with the `WWW-Authenticate: Bearer` challenge.
pub(super) enum Unauthorized {}

impl<'r> ToResponse<'r> for Unauthorized {
    fn response() -> (&'r str, RefOr<Response>) {
        let response = problem(
            "The Authorization header is missing, is not `Bearer <token>`, or names no valid \
             token (`unauthorized`).",
        )
        .header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(Some(ObjectBuilder::new().schema_type(Type::String).build()))
                .description(Some("Always `Bearer`."))
                .build(),
        );
        ("Unauthorized", RefOr::T(response.build()))
    }
}

fn string_enum(description: &str, values: impl IntoIterator<Item = &'static str>) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values))
        .build()
}

/// Schemas for the domain's string types, written here because only `http`
/// speaks JSON. `name` is what `$ref`s point to.
macro_rules! string_schema {
    ($ty:ty, $name:literal, $schema:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                RefOr::T(Schema::Object($schema))
            }
        }

        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

fn id(what: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(format!(
            "The id of {what}: 32 lowercase hex digits (a UUIDv7) when the gateway made it. \
             Paths take 1 to 35 letters, digits or `-`."
        )))
        .pattern(Some("^[A-Za-z0-9-]{1,35}$"))
        .examples(["0197c1f2a8e27d4c9b3f5a6e7d8c9b0a"])
        .build()
}

fn digits(description: &str, n: usize, example: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .pattern(Some(format!("^[0-9]{{{n}}}$")))
        .examples([example])
        .build()
}

string_schema!(CaseId, "CaseId", id("a case"));
string_schema!(SubjectId, "SubjectId", id("a subject (a person of a case)"));
string_schema!(RequestId, "RequestId", id("a request"));
string_schema!(
    InquiryId,
    "InquiryId",
    id("an inquiry (one subject at one institution)")
);
string_schema!(
    BatchId,
    "BatchId",
    id("a batch of inquiries sent to one bank")
);
string_schema!(
    InstitutionCode,
    "InstitutionCode",
    digits("A 4-digit zengin financial institution code.", 4, "0001")
);
string_schema!(
    BranchCode,
    "BranchCode",
    digits(
        "A 3-digit zengin branch code, unique within its institution.",
        3,
        "001"
    )
);
string_schema!(
    InquiryState,
    "InquiryState",
    string_enum(
        "Where an inquiry stands. `answered`, `not_found`, `refused`, `failed` and \
         `cancelled` are final.",
        InquiryState::ALL.iter().map(|s| s.as_str()),
    )
);
string_schema!(
    BatchState,
    "BatchState",
    string_enum(
        "Where a batch stands in the delivery queue.",
        BatchState::ALL.iter().map(|s| s.as_str()),
    )
);
string_schema!(
    InquiryKind,
    "InquiryKind",
    string_enum(
        "What a caseworker can ask a bank.",
        InquiryKind::ALL.iter().map(|k| k.as_str()),
    )
);

/// An audit action's stable name (`AuditAction::as_str`), for `schema_with`.
pub(super) fn audit_action_schema() -> Object {
    string_enum(
        "What was done, e.g. `case.read`; auditors filter on these names.",
        AuditAction::ALL.iter().map(|a| a.as_str()),
    )
}

#[cfg(test)]
mod tests {
    use actix_web::ResponseError;
    use actix_web::body::MessageBody;
    use actix_web::http::StatusCode;

    use super::*;
    use crate::http::ApiError;

    #[test]
    fn problem_describes_what_api_error_writes() {
        for e in [
            ApiError::unauthorized("no token"),
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "case x not found"),
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_date", "bad"),
        ] {
            let response = e.error_response();
            let body = response.into_body().try_into_bytes().unwrap();
            let parsed: Result<Problem, _> = serde_json::from_slice(&body);
            assert!(parsed.is_ok(), "{:?}", parsed.err());
            let written: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let mut keys: Vec<&String> = written.as_object().unwrap().keys().collect();
            keys.sort();
            let schema = serde_json::to_value(Problem::schema()).unwrap();
            let mut described: Vec<&String> =
                schema["properties"].as_object().unwrap().keys().collect();
            described.sort();
            assert_eq!(keys, described);
        }
    }

    #[test]
    fn enum_schemas_list_what_serde_writes() {
        for s in InquiryState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for s in BatchState::ALL {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        for k in InquiryKind::ALL {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn document_is_openapi_3_1_with_bearer_security() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
    }
}
