//! The staff JSON API, `/api/v1`: bearer tokens, problem+json errors.
//!
//! Every handler carries its `#[utoipa::path]` contract and every body is a
//! type deriving `ToSchema`, so `openapi.rs` describes the API from this code
//! (`schemas/openapi.json`). A new route needs both.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::openapi::{
    BadQuery, BadRequest, Conflict, Forbidden, Internal, NotFound, TooLarge, Unauthorized,
    Unprocessable, audit_action_schema,
};
use super::{ApiError, AppState};
use crate::casework::{self, Actor, Role, Submitted};
use crate::domain::answer::Outcome;
use crate::domain::audit::AuditAction;
use crate::domain::ids::{BatchId, CaseId, InquiryId, RequestId, SubjectId};
use crate::domain::request::{Period, RequestInput, SubjectInput, Target};
use crate::domain::state::{BatchState, InquiryKind, InquiryState};
use crate::domain::time::{parse_date, rfc3339};
use crate::domain::zengin::{BranchCode, InstitutionCode};
use crate::store::{AlertRecord, AuditFilter, CaseRecord, InquiryView, RequestView};

/// Staff API bodies are small; a request for 1,000 inquiries fits easily.
const MAX_BODY: usize = 256 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/cases", web::post().to(create_case))
            .route("/cases/{id}", web::get().to(get_case))
            .route(
                "/cases/{id}/file",
                web::get().to(super::casefile::get_case_file),
            )
            .route(
                "/cases/{id}/department-inquiry",
                web::post().to(super::casefile::department_inquiry),
            )
            .route(
                "/admin/linkage-files",
                web::get().to(super::casefile::list_linkage_files),
            )
            .route("/requests", web::post().to(submit_request))
            .route("/requests/{id}", web::get().to(get_request))
            .route("/requests/{id}/cancel", web::post().to(cancel_request))
            .route("/inquiries/{id}/cancel", web::post().to(cancel_inquiry))
            .route("/cases/{id}/decision", web::put().to(put_decision))
            .route("/cases/{id}/close", web::post().to(close_case))
            .route(
                "/cases/{id}/alerts/{alert}/acknowledge",
                web::post().to(acknowledge_alert),
            )
            .route(
                "/admin/institutions/{code}/pause",
                web::post().to(pause_institution),
            )
            .route(
                "/admin/institutions/{code}/resume",
                web::post().to(resume_institution),
            )
            .route("/admin/batches", web::get().to(list_batches))
            .route("/audit", web::get().to(list_audit))
            .route("/admin/batches/{id}/retry", web::post().to(retry_batch)),
    )
    .default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint",
        ))
    }));
}

pub(super) async fn actor(req: &HttpRequest, state: &AppState) -> Result<Actor, ApiError> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
    let token = header.strip_prefix("Bearer ").ok_or_else(|| {
        ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
    })?;
    let hash = crate::accounts::token_hash(token.trim());
    let record = state
        .store
        .token(&hash)
        .await
        .map_err(casework::CaseworkError::from)?
        .ok_or_else(|| ApiError::unauthorized("the token is not valid"))?;
    Ok(Actor {
        // Labels are for people and need not be unique; the hash prefix is.
        id: format!("token:{}:{}", &hash[..16], record.label),
        role: Role::parse(&record.role)?,
        office: record.office,
    })
}

/// Reads the body with a cap, so an oversize body gets a problem+json 413
/// like every other error here.
async fn read_body(mut payload: web::Payload) -> Result<Vec<u8>, ApiError> {
    use futures_util::StreamExt;
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()))?;
        if body.len() + chunk.len() > MAX_BODY {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!("the body is larger than {MAX_BODY} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Parses the query string after authentication, so that a stranger learns
/// nothing from its errors, and errors are problems like every other.
pub(super) fn parse_query<T: serde::de::DeserializeOwned>(
    req: &HttpRequest,
) -> Result<T, ApiError> {
    web::Query::<T>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("the query string is not valid: {e}"),
            )
        })
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid: {e}"),
        )
    })
}

fn date(field: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    Ok(parse_date(field, raw)?)
}

// ---------------------------------------------------------------------------
// Bodies the API reads.

/// A person the case is about.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewSubject)]
struct SubjectBody {
    /// The name in kana, full- or half-width; kept as full-width katakana.
    #[schema(example = "サトウ キョウコ")]
    kana_name: String,
    kanji_name: Option<String>,
    #[schema(format = Date)]
    birth_date: String,
    /// `NNN-NNNN`.
    postal_code: Option<String>,
    address: Option<String>,
    /// Earlier names in kana (e.g. before a marriage); banks are asked about
    /// them too.
    #[serde(default)]
    former_kana_names: Vec<String>,
}

/// A new case with its subjects.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewCase)]
struct CaseBody {
    /// The office's own number for the case.
    case_number: String,
    subjects: Vec<SubjectBody>,
}

/// An institution to ask, optionally narrowed to some of its branches.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RequestInstitution)]
struct InstitutionBody {
    /// A 4-digit zengin institution code from the directory.
    #[schema(example = "0001")]
    code: String,
    /// 3-digit branch codes; every branch when empty or absent.
    #[serde(default)]
    branches: Vec<String>,
}

/// An inclusive range of dates.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = RequestPeriod)]
struct PeriodBody {
    #[schema(format = Date)]
    from: String,
    #[schema(format = Date)]
    to: String,
}

/// A request: which subjects of a case to ask which institutions about.
/// It fans out into one inquiry per subject and institution.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = NewRequest)]
struct RequestBody {
    case_id: String,
    /// Subjects of the case; every subject of the case when absent. An
    /// empty list is refused (`missing_subjects`).
    subject_ids: Option<Vec<String>>,
    institutions: Vec<InstitutionBody>,
    /// `existence`, `balance` and/or `transactions`.
    #[schema(example = json!(["existence", "balance"]))]
    kinds: Vec<String>,
    /// The date balances are asked for; today (JST) when absent.
    #[schema(format = Date)]
    reference_date: Option<String>,
    /// The period transactions are asked for; needed with `transactions`.
    period: Option<PeriodBody>,
    /// The legal basis cited to the bank; the office's default when absent.
    legal_basis: Option<String>,
    purpose: Option<String>,
    /// When the answers are due; later inquiries are flagged `overdue`.
    #[schema(format = Date)]
    due_date: String,
}

/// The date the office decided the case.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = Decision)]
struct DecisionBody {
    /// Not in the future. `null` or absent clears it.
    #[schema(format = Date)]
    decision_date: Option<String>,
}

/// Batches in one state.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct BatchQuery {
    /// The state to list, e.g. `dead`.
    #[param(value_type = BatchState)]
    state: String,
    /// At most this many; 100 when absent, clamped to 1..=1000.
    limit: Option<i64>,
}

/// A filter on the audit trail; every given condition must hold.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// The actor id, e.g. `token:<16 hex>:<label>`.
    actor: Option<String>,
    #[param(schema_with = audit_action_schema, required = false)]
    action: Option<String>,
    case_id: Option<String>,
    /// Entries at or after this instant (RFC 3339).
    #[param(format = DateTime)]
    from: Option<String>,
    /// Entries before this instant (RFC 3339).
    #[param(format = DateTime)]
    to: Option<String>,
    /// Entries after this sequence number, for paging.
    after_seq: Option<i64>,
    /// At most this many; 100 when absent, clamped to 1..=1000.
    limit: Option<i64>,
}

// ---------------------------------------------------------------------------
// Bodies the API writes. Instants are RFC 3339 strings in UTC, dates
// `YYYY-MM-DD`.

/// A person a case is about.
#[derive(Serialize, ToSchema)]
#[schema(as = Subject)]
struct SubjectJson {
    id: SubjectId,
    /// Full-width katakana.
    kana_name: String,
    /// The half-width form banks match on.
    zengin_name: String,
    kanji_name: Option<String>,
    #[schema(value_type = String, format = Date)]
    birth_date: NaiveDate,
    postal_code: Option<String>,
    address: Option<String>,
    former_kana_names: Vec<String>,
}

/// A case and its subjects.
#[derive(Serialize, ToSchema)]
#[schema(as = Case)]
pub(super) struct CaseJson {
    id: CaseId,
    /// The office the case belongs to.
    office: String,
    case_number: String,
    /// When the office decided the case; an answer filed on a later JST
    /// day raises a `reopen` alert.
    #[schema(value_type = Option<String>, format = Date)]
    decision_date: Option<NaiveDate>,
    #[schema(format = DateTime)]
    created_at: String,
    /// When the case was closed; its retention period runs from then.
    #[schema(format = DateTime)]
    closed_at: Option<String>,
    subjects: Vec<SubjectJson>,
}

pub(super) fn case_json(c: &CaseRecord) -> CaseJson {
    CaseJson {
        id: c.id.clone(),
        office: c.office.clone(),
        case_number: c.case_number.clone(),
        decision_date: c.decision_date,
        created_at: rfc3339(c.created_at),
        closed_at: c.closed_at.map(rfc3339),
        subjects: c
            .subjects
            .iter()
            .map(|s| SubjectJson {
                id: s.id.clone(),
                kana_name: s.kana_name.as_str().to_owned(),
                zengin_name: s.kana_name.zengin(),
                kanji_name: s.kanji_name.clone(),
                birth_date: s.birth_date,
                postal_code: s.postal_code.clone(),
                address: s.address.clone(),
                former_kana_names: s
                    .former_kana_names
                    .iter()
                    .map(|n| n.as_str().to_owned())
                    .collect(),
            })
            .collect(),
    }
}

/// A case with its inquiries and alerts.
#[derive(Serialize, ToSchema)]
#[schema(as = CaseDetail)]
struct CaseDetailJson {
    #[serde(flatten)]
    case: CaseJson,
    inquiries: Vec<InquiryJson>,
    alerts: Vec<AlertJson>,
}

/// One move of an inquiry.
#[derive(Serialize, ToSchema)]
#[schema(as = InquiryTransition)]
struct TransitionJson {
    /// The state the inquiry moved to.
    state: InquiryState,
    #[schema(format = DateTime)]
    at: String,
}

/// One subject asked at one institution.
#[derive(Serialize, ToSchema)]
#[schema(as = Inquiry)]
struct InquiryJson {
    id: InquiryId,
    subject_id: SubjectId,
    institution: InstitutionCode,
    /// The branches asked; every branch when empty.
    branches: Vec<BranchCode>,
    state: InquiryState,
    /// Past `due_date` without a final state.
    overdue: bool,
    #[schema(value_type = String, format = Date)]
    due_date: NaiveDate,
    /// The batch that carries it, once sealed.
    batch_id: Option<BatchId>,
    /// Delivery attempts of its batch.
    attempts: i64,
    failure_reason: Option<String>,
    /// The answer's revision: 0 before any answer, n after n-1 corrections.
    answer_revision: i64,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    updated_at: String,
    /// Every move, oldest first.
    history: Vec<TransitionJson>,
}

fn inquiry_json(i: &InquiryView) -> InquiryJson {
    InquiryJson {
        id: i.id.clone(),
        subject_id: i.subject_id.clone(),
        institution: i.institution.clone(),
        branches: i.branches.clone(),
        state: i.state,
        overdue: i.overdue,
        due_date: i.due_date,
        batch_id: i.batch_id.clone(),
        attempts: i.attempts,
        failure_reason: i.failure_reason.clone(),
        answer_revision: i.answer_revision,
        created_at: rfc3339(i.created_at),
        updated_at: rfc3339(i.updated_at),
        history: i
            .history
            .iter()
            .map(|(s, at)| TransitionJson {
                state: *s,
                at: rfc3339(*at),
            })
            .collect(),
    }
}

/// An inclusive range of dates.
#[derive(Serialize, ToSchema)]
#[schema(as = Period)]
struct PeriodJson {
    #[schema(value_type = String, format = Date)]
    from: NaiveDate,
    #[schema(value_type = String, format = Date)]
    to: NaiveDate,
}

/// A request and its inquiries.
#[derive(Serialize, ToSchema)]
#[schema(as = Request)]
pub(super) struct RequestJson {
    id: RequestId,
    case_id: CaseId,
    kinds: Vec<InquiryKind>,
    #[schema(value_type = String, format = Date)]
    reference_date: NaiveDate,
    period: Option<PeriodJson>,
    legal_basis: String,
    purpose: Option<String>,
    #[schema(value_type = String, format = Date)]
    due_date: NaiveDate,
    #[schema(format = DateTime)]
    created_at: String,
    inquiries: Vec<InquiryJson>,
}

pub(super) fn request_json(r: &RequestView) -> RequestJson {
    RequestJson {
        id: r.id.clone(),
        case_id: r.case_id.clone(),
        kinds: r.kinds.clone(),
        reference_date: r.reference_date,
        period: r.period.map(|p| PeriodJson {
            from: p.from,
            to: p.to,
        }),
        legal_basis: r.legal_basis.clone(),
        purpose: r.purpose.clone(),
        due_date: r.due_date,
        created_at: rfc3339(r.created_at),
        inquiries: r.inquiries.iter().map(inquiry_json).collect(),
    }
}

/// What the bank answered.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AnswerOutcome)]
enum OutcomeJson {
    Found,
    NotFound,
    Refused,
}

/// Why the bank refused to answer.
#[derive(Serialize, ToSchema)]
#[schema(as = Refusal)]
struct RefusalJson {
    code: String,
    reason: String,
}

/// One entry of an account's statement.
#[derive(Serialize, ToSchema)]
#[schema(as = Transaction)]
struct TransactionJson {
    #[schema(value_type = String, format = Date)]
    date: NaiveDate,
    description: Option<String>,
    /// Yen out.
    debit: Option<i64>,
    /// Yen in.
    credit: Option<i64>,
    /// Yen after the entry.
    balance: i64,
}

/// An account the bank found.
#[derive(Serialize, ToSchema)]
#[schema(as = Account)]
struct AccountJson {
    branch: BranchCode,
    /// 預金種目: `1` ordinary, `2` current, `4` savings, `9` other, `T` time.
    #[serde(rename = "type")]
    #[schema(example = "1")]
    account_type: &'static str,
    /// The account type in Japanese, e.g. `普通`.
    type_label: &'static str,
    /// 7 digits.
    number: String,
    holder_kana: String,
    /// Yen on `as_of`, when balances were asked.
    balance: Option<i64>,
    #[schema(value_type = Option<String>, format = Date)]
    as_of: Option<NaiveDate>,
    #[schema(value_type = Option<String>, format = Date)]
    last_transaction: Option<NaiveDate>,
    transactions: Vec<TransactionJson>,
}

/// Something else the bank holds for the subject.
#[derive(Serialize, ToSchema)]
#[schema(as = OtherHolding)]
struct OtherHoldingJson {
    /// `COLL` (collateral) or `SAFE` (safekeeping).
    kind: String,
    description: String,
}

/// One answer revision filed into the case file.
#[derive(Serialize, ToSchema)]
#[schema(as = CaseFileEntry)]
struct CaseFileEntryJson {
    inquiry_id: InquiryId,
    subject_id: SubjectId,
    institution: InstitutionCode,
    institution_name: String,
    revision: i64,
    /// A later revision of the same inquiry's answer replaced this one.
    superseded: bool,
    #[schema(format = DateTime)]
    received_at: String,
    outcome: OutcomeJson,
    /// Set when `outcome` is `refused`.
    refusal: Option<RefusalJson>,
    /// Empty unless `outcome` is `found`.
    accounts: Vec<AccountJson>,
    /// Empty unless `outcome` is `found`.
    other_holdings: Vec<OtherHoldingJson>,
}

/// Everything about a case in one piece: subjects, requests and their
/// inquiries, bank findings, department findings, alerts and a timeline.
#[derive(Serialize, ToSchema)]
#[schema(as = CaseFile)]
pub(super) struct CaseFileJson {
    case: CaseJson,
    requests: Vec<RequestJson>,
    /// Every inquiry of the case, with its state and `overdue` flag.
    inquiries: Vec<InquiryJson>,
    /// Bank answers, every revision (superseded ones flagged).
    entries: Vec<CaseFileEntryJson>,
    /// Per subject: the sum of the balances the current answers report.
    bank_totals: Vec<super::casefile::SubjectTotalJson>,
    /// What the city's departments hold, per department, with the last fetch.
    departments: Vec<super::casefile::DepartmentFindingsJson>,
    alerts: Vec<AlertJson>,
    /// Oldest first.
    timeline: Vec<super::casefile::TimelineJson>,
}

pub(super) fn case_file_json(full: &casework::FullCaseFile) -> CaseFileJson {
    let f = &full.bank;
    let entries = f
        .entries
        .iter()
        .map(|e| {
            let (outcome, accounts, other, refusal) = match &e.outcome {
                Outcome::Found {
                    accounts,
                    other_holdings,
                } => (
                    OutcomeJson::Found,
                    accounts.as_slice(),
                    other_holdings.as_slice(),
                    None,
                ),
                Outcome::NotFound => (OutcomeJson::NotFound, &[][..], &[][..], None),
                Outcome::Refused { code, reason } => (
                    OutcomeJson::Refused,
                    &[][..],
                    &[][..],
                    Some(RefusalJson {
                        code: code.clone(),
                        reason: reason.clone(),
                    }),
                ),
            };
            CaseFileEntryJson {
                inquiry_id: e.inquiry_id.clone(),
                subject_id: e.subject_id.clone(),
                institution: e.institution.clone(),
                institution_name: e.institution_name.clone(),
                revision: e.revision,
                superseded: e.superseded,
                received_at: rfc3339(e.received_at),
                outcome,
                refusal,
                accounts: accounts
                    .iter()
                    .map(|a| AccountJson {
                        branch: a.branch.clone(),
                        account_type: a.account_type.code(),
                        type_label: a.account_type.label_ja(),
                        number: a.number.clone(),
                        holder_kana: a.holder_kana.clone(),
                        balance: a.balance,
                        as_of: a.as_of,
                        last_transaction: a.last_transaction,
                        transactions: a
                            .transactions
                            .iter()
                            .map(|t| TransactionJson {
                                date: t.date,
                                description: t.description.clone(),
                                debit: t.debit,
                                credit: t.credit,
                                balance: t.balance,
                            })
                            .collect(),
                    })
                    .collect(),
                other_holdings: other
                    .iter()
                    .map(|o| OtherHoldingJson {
                        kind: o.kind.clone(),
                        description: o.description.clone(),
                    })
                    .collect(),
            }
        })
        .collect();
    CaseFileJson {
        case: case_json(&f.case),
        requests: full.requests.iter().map(request_json).collect(),
        inquiries: f.inquiries.iter().map(inquiry_json).collect(),
        entries,
        bank_totals: super::casefile::bank_totals(f),
        departments: super::casefile::department_findings(full),
        alerts: full.alerts.iter().map(alert_json).collect(),
        timeline: full
            .timeline
            .iter()
            .map(super::casefile::timeline_json)
            .collect(),
    }
}

/// Something about a case that needs a person's attention.
#[derive(Serialize, ToSchema)]
#[schema(as = Alert)]
pub(super) struct AlertJson {
    id: i64,
    /// `reopen`: an answer came after the case's decision date;
    /// `department_change`: a department's records changed (see `change`).
    kind: String,
    inquiry_id: Option<InquiryId>,
    detail: String,
    #[schema(format = DateTime)]
    created_at: String,
    #[schema(format = DateTime)]
    acknowledged_at: Option<String>,
    /// The actor id that acknowledged it.
    acknowledged_by: Option<String>,
    /// What changed, for a `department_change` alert.
    change: Option<super::casefile::AlertChangeJson>,
}

pub(super) fn alert_json(a: &AlertRecord) -> AlertJson {
    AlertJson {
        id: a.id,
        kind: a.kind.clone(),
        inquiry_id: a.inquiry_id.clone(),
        detail: a.detail.clone(),
        created_at: rfc3339(a.created_at),
        acknowledged_at: a.acknowledged_at.map(rfc3339),
        acknowledged_by: a.acknowledged_by.clone(),
        change: a.change.as_ref().map(super::casefile::alert_change_json),
    }
}

/// A batch of inquiries for one institution.
#[derive(Serialize, ToSchema)]
#[schema(as = Batch)]
struct BatchJson {
    id: BatchId,
    institution: InstitutionCode,
    state: BatchState,
    /// How many inquiries it carries.
    inquiries: i64,
    attempts: i64,
    #[schema(format = DateTime)]
    next_attempt_at: String,
    last_error: Option<String>,
}

/// Batches in the state asked for.
#[derive(Serialize, ToSchema)]
#[schema(as = BatchList)]
struct BatchListJson {
    batches: Vec<BatchJson>,
}

/// One access to personal data, chained to the one before it.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditEntry)]
struct AuditEntryJson {
    seq: i64,
    #[schema(format = DateTime)]
    at: String,
    /// Who: `token:<16 hex>:<label>`, or `bank:<code>` for answers.
    actor: String,
    role: String,
    office: String,
    #[schema(schema_with = audit_action_schema)]
    action: &'static str,
    /// What was touched: `case:<id>`, `request:<id>`, `inquiry:<id>`…
    target: String,
    /// About whom: the case id, when the target concerns one.
    case_id: Option<String>,
    purpose: Option<String>,
    legal_basis: Option<String>,
    /// The previous entry's `hash` (64 zeros before the first entry).
    prev_hash: String,
    /// SHA-256 over `prev_hash`, `seq` and this entry's fields, hex.
    hash: String,
}

/// Audit entries, oldest first.
#[derive(Serialize, ToSchema)]
#[schema(as = AuditTrail)]
struct AuditTrailJson {
    entries: Vec<AuditEntryJson>,
}

// ---------------------------------------------------------------------------
// Handlers.

/// File a case
///
/// Creates a case of the token's office with its subjects. Names are
/// normalised to full-width katakana; nothing is written if any subject is
/// invalid.
#[utoipa::path(
    post,
    path = "/api/v1/cases",
    tag = "cases",
    request_body = CaseBody,
    responses(
        (status = 201, description = "The case as filed.", body = CaseJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn create_case(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let body = read_body(payload).await?;
    let b: CaseBody = parse_json(&body)?;
    let subjects = b
        .subjects
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(SubjectInput {
                kana_name: s.kana_name,
                kanji_name: s.kanji_name,
                birth_date: date(&format!("subjects[{i}].birth_date"), &s.birth_date)?,
                postal_code: s.postal_code,
                address: s.address,
                former_kana_names: s.former_kana_names,
            })
        })
        .collect::<Result<Vec<_>, ApiError>>()?;
    let case = casework::create_case(&state.store, &actor, &b.case_number, subjects).await?;
    Ok(HttpResponse::Created().json(case_json(&case)))
}

pub(super) fn path_id<T>(
    raw: &str,
    parse: fn(&str) -> Result<T, crate::domain::DomainError>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", e.message))
}

/// Read a case
///
/// The case with its subjects, every inquiry about it and its alerts.
#[utoipa::path(
    get,
    path = "/api/v1/cases/{id}",
    tag = "cases",
    params(("id" = CaseId, Path, description = "The case.")),
    responses(
        (status = 200, description = "The case.", body = CaseDetailJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_case(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let id = path_id(&id, CaseId::parse)?;
    let case = casework::read_case(&state.store, &actor, &id).await?;
    let inquiries = state
        .store
        .case_inquiries(&id)
        .await
        .map_err(casework::CaseworkError::from)?;
    let alerts = casework::alerts(&state.store, &actor, &id).await?;
    let body = CaseDetailJson {
        case: case_json(&case),
        inquiries: inquiries.iter().map(inquiry_json).collect(),
        alerts: alerts.iter().map(alert_json).collect(),
    };
    Ok(HttpResponse::Ok().json(body))
}

/// Submit a request
///
/// Asks the given institutions about subjects of a case. The request fans
/// out into one queued inquiry per subject and institution, all written in
/// one transaction after every check passed. With an `Idempotency-Key`, a
/// repeat of the same body by the same token returns the first request
/// again (201, `idempotent-replayed: true`); another body under the same key
/// is refused (`idempotency_key_reused`).
#[utoipa::path(
    post,
    path = "/api/v1/requests",
    tag = "requests",
    params((
        "Idempotency-Key" = Option<String>,
        Header,
        nullable = false,
        description = "1 to 255 visible characters, scoped to the token."
    )),
    request_body = RequestBody,
    responses(
        (status = 201, description = "The request and its inquiries.", body = RequestJson,
            headers(("idempotent-replayed" = String,
                description = "`true` when this is the stored answer to an earlier call \
                    with the same Idempotency-Key; absent otherwise."))),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn submit_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let key = match req.headers().get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .map(str::trim)
                .filter(|k| !k.is_empty() && k.len() <= 255);
            Some(k.ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 255 visible characters",
                )
            })?)
        }
    };
    let body = read_body(payload).await?;
    let body_hash = hex::encode(Sha256::digest(&body));
    let b: RequestBody = parse_json(&body)?;
    let case_id = CaseId::parse(&b.case_id)?;
    // Absent means every subject of the case (resolved by casework).
    let subject_ids = match b.subject_ids {
        Some(ids) if ids.is_empty() => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "missing_subjects",
                "subject_ids is empty; leave it out to ask about every subject of the case",
            ));
        }
        Some(ids) => ids
            .iter()
            .map(|s| SubjectId::parse(s))
            .collect::<Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    let targets = b
        .institutions
        .iter()
        .map(|i| {
            Ok(Target {
                institution: InstitutionCode::parse(&i.code)?,
                branches: i
                    .branches
                    .iter()
                    .map(|c| BranchCode::parse(c))
                    .collect::<Result<_, _>>()?,
            })
        })
        .collect::<Result<Vec<_>, crate::domain::DomainError>>()?;
    let kinds = b
        .kinds
        .iter()
        .map(|k| InquiryKind::parse(k))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_kind",
                "kinds are existence, balance and transactions",
            )
        })?;
    let input = RequestInput {
        subject_ids,
        targets,
        kinds,
        reference_date: b
            .reference_date
            .as_deref()
            .map(|d| date("reference_date", d))
            .transpose()?,
        period: b
            .period
            .as_ref()
            .map(|p| {
                Ok::<_, ApiError>(Period {
                    from: date("period.from", &p.from)?,
                    to: date("period.to", &p.to)?,
                })
            })
            .transpose()?,
        legal_basis: b.legal_basis,
        purpose: b.purpose,
        due_date: date("due_date", &b.due_date)?,
    };
    let idempotency = key.map(|k| (k, body_hash.as_str()));
    match casework::submit_request(&state.store, &actor, &case_id, input, idempotency).await? {
        Submitted::Created(view) => {
            state.wake.notify_waiters();
            Ok(HttpResponse::Created().json(request_json(&view)))
        }
        Submitted::Replayed(view) => Ok(HttpResponse::Created()
            .insert_header(("idempotent-replayed", "true"))
            .json(request_json(&view))),
    }
}

/// Read a request
///
/// The request with the current state of each of its inquiries.
#[utoipa::path(
    get,
    path = "/api/v1/requests/{id}",
    tag = "requests",
    params(("id" = RequestId, Path, description = "The request.")),
    responses(
        (status = 200, description = "The request.", body = RequestJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let id = path_id(&id, RequestId::parse)?;
    let view = casework::read_request(&state.store, &actor, &id).await?;
    Ok(HttpResponse::Ok().json(request_json(&view)))
}

/// Cancel a request
///
/// Cancels every inquiry of the request that is not final yet. Nothing is
/// sent to the bank; an answer to a cancelled inquiry is refused.
#[utoipa::path(
    post,
    path = "/api/v1/requests/{id}/cancel",
    tag = "requests",
    params(("id" = RequestId, Path, description = "The request.")),
    responses(
        (status = 200, description = "The request after cancelling.", body = RequestJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn cancel_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let id = path_id(&id, RequestId::parse)?;
    let view = casework::cancel_request(&state.store, &actor, &id).await?;
    Ok(HttpResponse::Ok().json(request_json(&view)))
}

/// Cancel an inquiry
///
/// Cancels one `queued`, `batched` or `delivered` inquiry; cancelling a
/// cancelled one changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/inquiries/{id}/cancel",
    tag = "requests",
    params(("id" = InquiryId, Path, description = "The inquiry.")),
    responses(
        (status = 200, description = "The inquiry after cancelling.", body = InquiryJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn cancel_inquiry(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let id = path_id(&id, InquiryId::parse)?;
    let view = casework::cancel_inquiry(&state.store, &actor, &id).await?;
    Ok(HttpResponse::Ok().json(inquiry_json(&view)))
}

/// Close a case
///
/// Starts the case's retention period: once it has passed, the purge
/// removes the case's personal data. A case with inquiries still waiting
/// for an answer cannot close (cancel them first).
#[utoipa::path(
    post,
    path = "/api/v1/cases/{id}/close",
    tag = "cases",
    params(("id" = CaseId, Path, description = "The case.")),
    responses(
        (status = 200, description = "The closed case.", body = CaseJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn close_case(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let id = path_id(&id, CaseId::parse)?;
    let case = casework::close_case(&state.store, &actor, &id).await?;
    Ok(HttpResponse::Ok().json(case_json(&case)))
}

/// Set a case's decision date
///
/// Records (or clears) the date the office decided the case. Answers filed
/// on a later JST day raise a `reopen` alert.
#[utoipa::path(
    put,
    path = "/api/v1/cases/{id}/decision",
    tag = "cases",
    params(("id" = CaseId, Path, description = "The case.")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "The case.", body = CaseJson),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 413, response = TooLarge),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn put_decision(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let id = path_id(&id, CaseId::parse)?;
    let body: DecisionBody = parse_json(&read_body(payload).await?)?;
    let date = body
        .decision_date
        .as_deref()
        .map(|d| date("decision_date", d))
        .transpose()?;
    let case = casework::set_decision_date(&state.store, &actor, &id, date).await?;
    Ok(HttpResponse::Ok().json(case_json(&case)))
}

/// Acknowledge an alert
///
/// Marks an open alert of the case as seen by this token.
#[utoipa::path(
    post,
    path = "/api/v1/cases/{id}/alerts/{alert}/acknowledge",
    tag = "cases",
    params(
        ("id" = CaseId, Path, description = "The case."),
        (
            "alert" = i64,
            Path,
            description = "The alert's `id`; a value that is not an integer is a 404 problem."
        ),
    ),
    responses(
        (status = 204, description = "Acknowledged."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn acknowledge_alert(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let (case, alert) = path.into_inner();
    let case = path_id(&case, CaseId::parse)?;
    let alert: i64 = alert
        .parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such alert"))?;
    casework::acknowledge_alert(&state.store, &actor, &case, alert).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn switch_pause(
    req: HttpRequest,
    state: web::Data<AppState>,
    code: &str,
    paused: bool,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let code = InstitutionCode::parse(code)?;
    casework::set_paused(&state.store, &actor, &code, paused).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Pause an institution
///
/// Nothing is sent to the institution until it is resumed; inquiries keep
/// being batched.
#[utoipa::path(
    post,
    path = "/api/v1/admin/institutions/{code}/pause",
    tag = "admin",
    params(("code" = InstitutionCode, Path, description = "The institution.")),
    responses(
        (status = 204, description = "Paused."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn pause_institution(
    req: HttpRequest,
    state: web::Data<AppState>,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    switch_pause(req, state, &code, true).await
}

/// Resume an institution
///
/// Delivery to the institution starts again at once.
#[utoipa::path(
    post,
    path = "/api/v1/admin/institutions/{code}/resume",
    tag = "admin",
    params(("code" = InstitutionCode, Path, description = "The institution.")),
    responses(
        (status = 204, description = "Resumed."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn resume_institution(
    req: HttpRequest,
    state: web::Data<AppState>,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let resp = switch_pause(req, state.clone(), &code, false).await?;
    state.wake.notify_waiters();
    Ok(resp)
}

/// List batches
///
/// Batches in one state, e.g. the `dead` ones to retry.
#[utoipa::path(
    get,
    path = "/api/v1/admin/batches",
    tag = "admin",
    params(BatchQuery),
    responses(
        (status = 200, description = "The batches.", body = BatchListJson),
        (status = 400, response = BadQuery),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn list_batches(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let query: BatchQuery = parse_query(&req)?;
    let batch_state = BatchState::parse(&query.state)?;
    let rows = casework::batches(
        &state.store,
        &actor,
        batch_state,
        query.limit.unwrap_or(100),
    )
    .await?;
    let batches = rows
        .iter()
        .map(|b| BatchJson {
            id: b.id.clone(),
            institution: b.institution.clone(),
            state: b.state,
            inquiries: b.inquiry_count,
            attempts: b.attempts,
            next_attempt_at: rfc3339(b.next_attempt_at),
            last_error: b.last_error.clone(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(BatchListJson { batches }))
}

/// Retry a dead batch
///
/// Sends a `dead` batch again with the same id and bytes; its attempt count
/// and deadline restart and its failed inquiries go back to `batched`.
#[utoipa::path(
    post,
    path = "/api/v1/admin/batches/{id}/retry",
    tag = "admin",
    params(("id" = BatchId, Path, description = "The dead batch.")),
    responses(
        (status = 204, description = "Queued for another try."),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn retry_batch(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let id = path_id(&id, BatchId::parse)?;
    casework::retry_dead_batch(&state.store, &actor, &id).await?;
    state.wake.notify_waiters();
    Ok(HttpResponse::NoContent().finish())
}

fn instant(field: &str, raw: &str) -> Result<i64, ApiError> {
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| t.timestamp_millis())
        .map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_date",
                format!("{field} must be an RFC 3339 time"),
            )
        })
}

/// Read the audit trail
///
/// Entries matching the filter, oldest first. Reading the trail is itself
/// recorded (`audit.read`).
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "audit",
    params(AuditQuery),
    responses(
        (status = 200, description = "The entries.", body = AuditTrailJson),
        (status = 400, response = BadQuery),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 422, response = Unprocessable),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn list_audit(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let query: AuditQuery = parse_query(&req)?;
    let action = query
        .action
        .as_deref()
        .map(|a| {
            AuditAction::parse(a).ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_action",
                    format!("unknown audit action '{a}'"),
                )
            })
        })
        .transpose()?;
    let filter = AuditFilter {
        office: None,
        actor: query.actor.clone(),
        action,
        case_id: query.case_id.clone(),
        from: query
            .from
            .as_deref()
            .map(|t| instant("from", t))
            .transpose()?,
        to: query.to.as_deref().map(|t| instant("to", t)).transpose()?,
        after_seq: query.after_seq,
        limit: query.limit.unwrap_or(100).clamp(1, 1000),
    };
    let entries = casework::audit_entries(&state.store, &actor, &filter).await?;
    let entries = entries
        .iter()
        .map(|c| {
            let e = &c.entry;
            AuditEntryJson {
                seq: c.seq,
                at: rfc3339(e.at),
                actor: e.actor.clone(),
                role: e.role.clone(),
                office: e.office.clone(),
                action: e.action.as_str(),
                target: e.target.clone(),
                case_id: e.case_id.clone(),
                purpose: e.purpose.clone(),
                legal_basis: e.legal_basis.clone(),
                prev_hash: c.prev_hash.clone(),
                hash: c.hash.clone(),
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(AuditTrailJson { entries }))
}
