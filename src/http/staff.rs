//! The staff JSON API, `/api/v1`: bearer tokens, problem+json errors.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::NaiveDate;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{ApiError, AppState};
use crate::casework::{self, Actor, Role, Submitted};
use crate::domain::answer::Outcome;
use crate::domain::audit::AuditAction;
use crate::domain::ids::{BatchId, CaseId, InquiryId, RequestId, SubjectId};
use crate::domain::request::{Period, RequestInput, SubjectInput, Target};
use crate::domain::state::{BatchState, InquiryKind};
use crate::domain::time::{parse_date, rfc3339};
use crate::domain::zengin::{BranchCode, InstitutionCode};
use crate::store::{AlertRecord, AuditFilter, CaseFile, CaseRecord, InquiryView, RequestView};

/// Staff API bodies are small; a request for 1,000 inquiries fits easily.
const MAX_BODY: usize = 256 * 1024;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api/v1")
            .route("/cases", web::post().to(create_case))
            .route("/cases/{id}", web::get().to(get_case))
            .route("/cases/{id}/file", web::get().to(get_case_file))
            .route("/requests", web::post().to(submit_request))
            .route("/requests/{id}", web::get().to(get_request))
            .route("/requests/{id}/cancel", web::post().to(cancel_request))
            .route("/inquiries/{id}/cancel", web::post().to(cancel_inquiry))
            .route("/cases/{id}/decision", web::put().to(put_decision))
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

pub(crate) fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

async fn actor(req: &HttpRequest, state: &AppState) -> Result<Actor, ApiError> {
    let header = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::unauthorized("an Authorization: Bearer token is required"))?;
    let token = header.strip_prefix("Bearer ").ok_or_else(|| {
        ApiError::unauthorized("the Authorization header must be 'Bearer <token>'")
    })?;
    let hash = hash_token(token.trim());
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectBody {
    kana_name: String,
    kanji_name: Option<String>,
    birth_date: String,
    postal_code: Option<String>,
    address: Option<String>,
    #[serde(default)]
    former_kana_names: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseBody {
    case_number: String,
    subjects: Vec<SubjectBody>,
}

fn case_json(c: &CaseRecord) -> Value {
    json!({
        "id": c.id,
        "office": c.office,
        "case_number": c.case_number,
        "decision_date": c.decision_date,
        "created_at": rfc3339(c.created_at),
        "subjects": c.subjects.iter().map(|s| json!({
            "id": s.id,
            "kana_name": s.kana_name.as_str(),
            "zengin_name": s.kana_name.zengin(),
            "kanji_name": s.kanji_name,
            "birth_date": s.birth_date,
            "postal_code": s.postal_code,
            "address": s.address,
            "former_kana_names": s.former_kana_names.iter().map(|n| n.as_str()).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

async fn create_case(
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

fn path_id<T>(
    raw: &str,
    parse: fn(&str) -> Result<T, crate::domain::DomainError>,
) -> Result<T, ApiError> {
    parse(raw).map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "not_found", e.message))
}

async fn get_case(
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
    let mut body = case_json(&case);
    body["inquiries"] = inquiries.iter().map(inquiry_json).collect();
    body["alerts"] = alerts.iter().map(alert_json).collect();
    Ok(HttpResponse::Ok().json(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InstitutionBody {
    code: String,
    #[serde(default)]
    branches: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeriodBody {
    from: String,
    to: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    case_id: String,
    /// All subjects of the case when absent.
    subject_ids: Option<Vec<String>>,
    institutions: Vec<InstitutionBody>,
    kinds: Vec<String>,
    reference_date: Option<String>,
    period: Option<PeriodBody>,
    legal_basis: Option<String>,
    purpose: Option<String>,
    due_date: String,
}

async fn submit_request(
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

fn inquiry_json(i: &InquiryView) -> Value {
    json!({
        "id": i.id,
        "subject_id": i.subject_id,
        "institution": i.institution,
        "branches": i.branches,
        "state": i.state,
        "overdue": i.overdue,
        "due_date": i.due_date,
        "batch_id": i.batch_id,
        "attempts": i.attempts,
        "failure_reason": i.failure_reason,
        "answer_revision": i.answer_revision,
        "created_at": rfc3339(i.created_at),
        "updated_at": rfc3339(i.updated_at),
        "history": i.history.iter().map(|(s, at)| json!({"state": s, "at": rfc3339(*at)})).collect::<Vec<_>>(),
    })
}

fn request_json(r: &RequestView) -> Value {
    json!({
        "id": r.id,
        "case_id": r.case_id,
        "kinds": r.kinds,
        "reference_date": r.reference_date,
        "period": r.period.map(|p| json!({"from": p.from, "to": p.to})),
        "legal_basis": r.legal_basis,
        "purpose": r.purpose,
        "due_date": r.due_date,
        "created_at": rfc3339(r.created_at),
        "inquiries": r.inquiries.iter().map(inquiry_json).collect::<Vec<_>>(),
    })
}

async fn get_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let id = path_id(&id, RequestId::parse)?;
    let view = casework::read_request(&state.store, &actor, &id).await?;
    Ok(HttpResponse::Ok().json(request_json(&view)))
}

fn case_file_json(f: &CaseFile) -> Value {
    let entries: Vec<Value> = f
        .entries
        .iter()
        .map(|e| {
            let (outcome, accounts, other, refusal) = match &e.outcome {
                Outcome::Found { accounts, other_holdings } => ("found", accounts.as_slice(), other_holdings.as_slice(), None),
                Outcome::NotFound => ("not_found", &[][..], &[][..], None),
                Outcome::Refused { code, reason } => ("refused", &[][..], &[][..], Some(json!({"code": code, "reason": reason}))),
            };
            json!({
                "inquiry_id": e.inquiry_id,
                "subject_id": e.subject_id,
                "institution": e.institution,
                "institution_name": e.institution_name,
                "revision": e.revision,
                "superseded": e.superseded,
                "received_at": rfc3339(e.received_at),
                "outcome": outcome,
                "refusal": refusal,
                "accounts": accounts.iter().map(|a| json!({
                    "branch": a.branch,
                    "type": a.account_type.code(),
                    "type_label": a.account_type.label_ja(),
                    "number": a.number,
                    "holder_kana": a.holder_kana,
                    "balance": a.balance,
                    "as_of": a.as_of,
                    "last_transaction": a.last_transaction,
                    "transactions": a.transactions.iter().map(|t| json!({
                        "date": t.date, "description": t.description, "debit": t.debit,
                        "credit": t.credit, "balance": t.balance,
                    })).collect::<Vec<_>>(),
                })).collect::<Vec<_>>(),
                "other_holdings": other.iter().map(|o| json!({"kind": o.kind, "description": o.description})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "case": case_json(&f.case), "entries": entries })
}

async fn get_case_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let id = path_id(&id, CaseId::parse)?;
    let file = casework::case_file(&state.store, &actor, &id).await?;
    Ok(HttpResponse::Ok().json(case_file_json(&file)))
}

fn alert_json(a: &AlertRecord) -> Value {
    json!({
        "id": a.id,
        "kind": a.kind,
        "inquiry_id": a.inquiry_id,
        "detail": a.detail,
        "created_at": rfc3339(a.created_at),
        "acknowledged_at": a.acknowledged_at.map(rfc3339),
        "acknowledged_by": a.acknowledged_by,
    })
}

async fn cancel_request(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let id = path_id(&id, RequestId::parse)?;
    let view = casework::cancel_request(&state.store, &actor, &id).await?;
    Ok(HttpResponse::Ok().json(request_json(&view)))
}

async fn cancel_inquiry(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let id = path_id(&id, InquiryId::parse)?;
    let view = casework::cancel_inquiry(&state.store, &actor, &id).await?;
    Ok(HttpResponse::Ok().json(inquiry_json(&view)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    decision_date: Option<String>,
}

async fn put_decision(
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

async fn acknowledge_alert(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let (case, alert) = path.into_inner();
    let case = path_id(&case, CaseId::parse)?;
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

async fn pause_institution(
    req: HttpRequest,
    state: web::Data<AppState>,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    switch_pause(req, state, &code, true).await
}

async fn resume_institution(
    req: HttpRequest,
    state: web::Data<AppState>,
    code: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let resp = switch_pause(req, state.clone(), &code, false).await?;
    state.wake.notify_waiters();
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchQuery {
    state: String,
    limit: Option<i64>,
}

async fn list_batches(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<BatchQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let batch_state = BatchState::parse(&query.state)?;
    let rows = casework::batches(
        &state.store,
        &actor,
        batch_state,
        query.limit.unwrap_or(100),
    )
    .await?;
    let body: Vec<Value> = rows
        .iter()
        .map(|b| {
            json!({
                "id": b.id,
                "institution": b.institution,
                "state": b.state,
                "inquiries": b.inquiry_count,
                "attempts": b.attempts,
                "next_attempt_at": rfc3339(b.next_attempt_at),
                "last_error": b.last_error,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "batches": body })))
}

async fn retry_batch(
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    case_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
    after_seq: Option<i64>,
    limit: Option<i64>,
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

async fn list_audit(
    req: HttpRequest,
    state: web::Data<AppState>,
    query: web::Query<AuditQuery>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
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
    let body: Vec<Value> = entries
        .iter()
        .map(|c| {
            let e = &c.entry;
            json!({
                "seq": c.seq,
                "at": rfc3339(e.at),
                "actor": e.actor,
                "role": e.role,
                "office": e.office,
                "action": e.action.as_str(),
                "target": e.target,
                "case_id": e.case_id,
                "purpose": e.purpose,
                "legal_basis": e.legal_basis,
                "prev_hash": c.prev_hash,
                "hash": c.hash,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "entries": body })))
}
