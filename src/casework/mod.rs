//! Casework services: filing cases and inquiry requests, and reading them
//! back with least privilege (an office sees only its own cases).

mod departments;
mod paper;

pub use departments::{
    DepartmentRun, FullCaseFile, RequerySummary, TimelineEntry, department_inquiry, full_case_file,
    linkage_files, requery_open_cases,
};
pub use paper::{
    ANSWER_CSV_HEADER, AccountFields, PaperAnswer, enter_answers, mark_letter_mailed,
    paper_letters, paper_outcome, parse_answer_csv, read_letter,
};

use std::sync::Arc;

use chrono::NaiveDate;

use crate::domain::DomainError;
use crate::domain::answer::Answer;
use crate::domain::audit::{AuditAction, AuditEntry, ChainedEntry};
use crate::domain::ids::{BatchId, CaseId, InquiryId, RequestId};
use crate::domain::request::DEFAULT_LEGAL_BASIS;
use crate::domain::request::{NewCase, Request, RequestInput, SubjectInput};
use crate::domain::state::BatchState;
use crate::domain::time::{jst_date, now_millis};
use crate::domain::zengin::InstitutionCode;
use crate::store::{
    AlertRecord, ApplyOutcome, AuditFilter, BatchRow, CaseRecord, InquiryView, RequestInsert,
    RequestView, Store, StoreError,
};

/// Who is acting: from an API token now, a session later.
#[derive(Debug, Clone)]
pub struct Actor {
    pub id: String,
    pub role: Role,
    pub office: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Caseworker,
    Supervisor,
    Admin,
    Auditor,
}

impl Role {
    pub fn parse(raw: &str) -> Result<Role, DomainError> {
        Ok(match raw {
            "caseworker" => Role::Caseworker,
            "supervisor" => Role::Supervisor,
            "admin" => Role::Admin,
            "auditor" => Role::Auditor,
            _ => {
                return Err(DomainError::new(
                    "invalid_role",
                    format!("role '{raw}' is not caseworker, supervisor, admin or auditor"),
                ));
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Caseworker => "caseworker",
            Role::Supervisor => "supervisor",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    pub fn can_file(self) -> bool {
        matches!(self, Role::Caseworker | Role::Supervisor | Role::Admin)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CaseworkError {
    #[error("{0}")]
    Invalid(#[from] DomainError),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    IdempotencyConflict(String),
    /// The action does not fit the current state (e.g. cancel an answer).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for CaseworkError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => CaseworkError::NotFound(what),
            StoreError::Conflict(why) | StoreError::Refused(why) => CaseworkError::Conflict(why),
            other => CaseworkError::Store(other),
        }
    }
}

pub fn today() -> NaiveDate {
    jst_date(now_millis())
}

fn check_office(actor: &Actor, office: &str, what: &str) -> Result<(), CaseworkError> {
    if actor.office == office || actor.role == Role::Admin {
        Ok(())
    } else {
        Err(CaseworkError::Forbidden(format!(
            "{what} belongs to another office"
        )))
    }
}

/// The office whose cases a list shows the actor: its own, or all (None)
/// for an admin, as `check_office` allows one case at a time.
fn office_scope(actor: &Actor) -> Option<&str> {
    (actor.role != Role::Admin).then_some(actor.office.as_str())
}

fn check_can_file(actor: &Actor) -> Result<(), CaseworkError> {
    if actor.role.can_file() {
        Ok(())
    } else {
        Err(CaseworkError::Forbidden(format!(
            "role {} cannot file cases or requests",
            actor.role.as_str()
        )))
    }
}

pub async fn create_case(
    store: &Store,
    actor: &Actor,
    case_number: &str,
    subjects: Vec<SubjectInput>,
) -> Result<CaseRecord, CaseworkError> {
    create_case_from_form(store, actor, case_number, subjects, &[], None).await
}

/// Files a case with the institutions its applicant declared, in one
/// transaction. With a form key, sending the same form again gives back the
/// case it filed instead of a second one.
pub async fn create_case_from_form(
    store: &Store,
    actor: &Actor,
    case_number: &str,
    subjects: Vec<SubjectInput>,
    declared: &[InstitutionCode],
    form_key: Option<&str>,
) -> Result<CaseRecord, CaseworkError> {
    check_can_file(actor)?;
    if let Some(key) = form_key
        && let Some(id) = store.case_by_form_key(&actor.id, key).await?
    {
        return checked_case(store, actor, &id).await;
    }
    let case = NewCase::validate(&actor.office, case_number, subjects, today())?;
    known_institutions(store, declared).await?;
    let trace = entry(
        actor,
        AuditAction::CaseCreate,
        format!("case:{}", case.id),
        Some(&case.id),
        None,
    );
    let insert = crate::store::CaseInsert {
        case: &case,
        actor: &actor.id,
        form_key,
        declared,
        audit: std::slice::from_ref(&trace),
    };
    match store.insert_case_with(&insert).await {
        Ok(()) => checked_case(store, actor, &case.id).await,
        // The same form raced itself: the other submission filed it.
        Err(e) if e.is_unique_violation() && form_key.is_some() => {
            let key = form_key.unwrap_or_default();
            let id = store
                .case_by_form_key(&actor.id, key)
                .await?
                .ok_or(CaseworkError::Store(e))?;
            checked_case(store, actor, &id).await
        }
        Err(e) => Err(e.into()),
    }
}

async fn checked_case(
    store: &Store,
    actor: &Actor,
    id: &CaseId,
) -> Result<CaseRecord, CaseworkError> {
    let case = store
        .case(id)
        .await?
        .ok_or_else(|| CaseworkError::NotFound(format!("case {id}")))?;
    check_office(actor, &case.office, "the case")?;
    Ok(case)
}

/// The audit entry for this actor's action.
fn entry(
    actor: &Actor,
    action: AuditAction,
    target: String,
    case_id: Option<&CaseId>,
    purpose: Option<&str>,
) -> AuditEntry {
    AuditEntry {
        at: now_millis(),
        actor: actor.id.clone(),
        role: actor.role.as_str().to_owned(),
        office: actor.office.clone(),
        action,
        target,
        case_id: case_id.map(|c| c.to_string()),
        purpose: purpose.map(str::to_owned),
        legal_basis: case_id.map(|_| DEFAULT_LEGAL_BASIS.to_owned()),
    }
}

/// Appends one entry to the audit trail for this actor.
async fn audit(
    store: &Store,
    actor: &Actor,
    action: AuditAction,
    target: String,
    case_id: Option<&CaseId>,
    purpose: Option<&str>,
) -> Result<(), CaseworkError> {
    let trace = entry(actor, action, target, case_id, purpose);
    store.append_audit(std::slice::from_ref(&trace)).await?;
    Ok(())
}

/// Reads a case, and records that it was read: no read of personal data
/// without a trace, so a failed audit write fails the read.
/// Directory search for the request form: by code prefix, name, or kana in
/// any width or script.
pub async fn search_institutions(
    store: &Store,
    query: &str,
) -> Result<Vec<crate::store::InstitutionRef>, CaseworkError> {
    let query = query.trim();
    if query.is_empty() {
        return Ok(Vec::new());
    }
    let kana = crate::domain::kana::KanaName::parse(query)
        .ok()
        .map(|k| k.as_str().replace(' ', ""));
    Ok(store
        .search_institutions(query, kana.as_deref(), 30)
        .await?)
}

/// Refuses codes that are not in the zengin directory.
async fn known_institutions(store: &Store, codes: &[InstitutionCode]) -> Result<(), CaseworkError> {
    if let Some(code) = store.unknown_institutions(codes).await?.first() {
        return Err(DomainError::new(
            "unknown_institution",
            format!("institution {code} is not in the zengin directory"),
        )
        .into());
    }
    Ok(())
}

pub async fn declared_institutions(
    store: &Store,
    actor: &Actor,
    case: &CaseId,
) -> Result<Vec<crate::store::InstitutionRef>, CaseworkError> {
    checked_case(store, actor, case).await?;
    Ok(store.declared_institutions(case).await?)
}

/// The actor's office's standing list of institutions to ask.
pub async fn office_institutions(
    store: &Store,
    actor: &Actor,
) -> Result<Vec<crate::store::InstitutionRef>, CaseworkError> {
    Ok(store.office_institutions(&actor.office).await?)
}

/// An admin adds to or removes from their office's standing list.
pub async fn edit_office_institutions(
    store: &Store,
    actor: &Actor,
    code: &InstitutionCode,
    add: bool,
) -> Result<(), CaseworkError> {
    require_admin(actor)?;
    audit(
        store,
        actor,
        AuditAction::InstitutionUpdate,
        format!("office:{}:institution:{code}", actor.office),
        None,
        None,
    )
    .await?;
    if add {
        known_institutions(store, std::slice::from_ref(code)).await?;
        store.add_office_institution(&actor.office, code).await?;
    } else {
        store.remove_office_institution(&actor.office, code).await?;
    }
    Ok(())
}

/// An institution's settings and the client certificates that name it.
pub async fn institution_settings(
    store: &Store,
    actor: &Actor,
    code: &InstitutionCode,
) -> Result<(crate::store::Institution, Vec<(String, i64)>), CaseworkError> {
    require_admin(actor)?;
    let inst = store
        .institution(code)
        .await?
        .ok_or_else(|| CaseworkError::NotFound(format!("institution {code}")))?;
    Ok((inst, store.bank_certificates(code).await?))
}

/// Stores an institution's delivery settings after checking them (the
/// same rules as `shokai institutions set`).
pub async fn update_institution(
    store: &Store,
    actor: &Actor,
    code: &InstitutionCode,
    settings: &crate::store::InstitutionSettings,
) -> Result<(), CaseworkError> {
    require_admin(actor)?;
    crate::admin::validate_settings(settings)
        .map_err(|e| DomainError::new("invalid_settings", e.to_string()))?;
    audit(
        store,
        actor,
        AuditAction::InstitutionUpdate,
        format!("institution:{code}"),
        None,
        None,
    )
    .await?;
    store.update_institution_settings(code, settings).await?;
    Ok(())
}

/// Registers a bank's client certificate (PEM): its fingerprint names the
/// institution on the bank API from the next connection on.
pub async fn add_institution_certificate(
    store: &Store,
    actor: &Actor,
    code: &InstitutionCode,
    pem: &str,
) -> Result<String, CaseworkError> {
    require_admin(actor)?;
    let certs = crate::tls::parse_certs(pem, "client certificate")
        .map_err(|e| DomainError::new("invalid_certificate", e.to_string()))?;
    let first = certs
        .first()
        .ok_or_else(|| DomainError::new("invalid_certificate", "the PEM holds no certificate"))?;
    let fp = crate::tls::fingerprint(first.as_ref());
    audit(
        store,
        actor,
        AuditAction::InstitutionUpdate,
        format!("institution:{code}"),
        None,
        None,
    )
    .await?;
    store.add_bank_certificate(&fp, code).await?;
    Ok(fp)
}

/// Every account, for admins.
pub async fn users(
    store: &Store,
    actor: &Actor,
) -> Result<Vec<crate::store::UserRecord>, CaseworkError> {
    require_admin(actor)?;
    Ok(store.users().await?)
}

/// An admin adds an account; the trail records who added whom.
pub async fn create_user(
    store: &Store,
    actor: &Actor,
    user: crate::accounts::NewUser,
) -> Result<Result<crate::store::UserRecord, crate::accounts::AccountError>, CaseworkError> {
    require_admin(actor)?;
    let created = crate::accounts::create_user(store, user).await;
    if let Ok(u) = &created {
        audit(
            store,
            actor,
            AuditAction::UserChange,
            format!("user:{}", u.username),
            None,
            None,
        )
        .await?;
    }
    Ok(created)
}

/// Disables or enables an account (a disabled one's sessions end at once).
pub async fn set_user_disabled(
    store: &Store,
    actor: &Actor,
    username: &str,
    disabled: bool,
) -> Result<(), CaseworkError> {
    require_admin(actor)?;
    if actor.id == format!("user:{username}") && disabled {
        return Err(CaseworkError::Conflict(
            "an admin cannot disable their own account".into(),
        ));
    }
    audit(
        store,
        actor,
        AuditAction::UserChange,
        format!("user:{username}"),
        None,
        None,
    )
    .await?;
    store
        .set_user_disabled(username, disabled.then(now_millis))
        .await?;
    Ok(())
}

/// The delivery queue per institution, for admins.
pub async fn queue_overview(
    store: &Store,
    actor: &Actor,
) -> Result<Vec<crate::store::InstitutionQueue>, CaseworkError> {
    require_admin(actor)?;
    Ok(store.queue_overview(now_millis(), today()).await?)
}

/// The open cases the actor may see: its office's, or every office's for an
/// admin. Only case numbers and counts: no personal data, so no trace.
pub async fn open_cases(
    store: &Store,
    actor: &Actor,
    limit: i64,
) -> Result<Vec<crate::store::CaseSummary>, CaseworkError> {
    let office = office_scope(actor);
    Ok(store.case_summaries(office, today(), limit).await?)
}

/// Unacknowledged alerts on the open cases the actor may see.
pub async fn open_alerts(
    store: &Store,
    actor: &Actor,
    limit: i64,
) -> Result<Vec<(CaseId, String, AlertRecord)>, CaseworkError> {
    let office = office_scope(actor);
    Ok(store.open_alerts(office, limit).await?)
}

pub async fn read_case(
    store: &Store,
    actor: &Actor,
    id: &CaseId,
) -> Result<CaseRecord, CaseworkError> {
    let case = checked_case(store, actor, id).await?;
    audit(
        store,
        actor,
        AuditAction::CaseRead,
        format!("case:{id}"),
        Some(id),
        None,
    )
    .await?;
    Ok(case)
}

pub async fn read_request(
    store: &Store,
    actor: &Actor,
    id: &RequestId,
) -> Result<RequestView, CaseworkError> {
    let view = checked_request(store, actor, id).await?;
    audit(
        store,
        actor,
        AuditAction::RequestRead,
        format!("request:{id}"),
        Some(&view.case_id),
        None,
    )
    .await?;
    Ok(view)
}

pub enum Submitted {
    Created(RequestView),
    Replayed(RequestView),
}

/// Files a request. With an idempotency key, the same key and body give
/// back the first result; the same key with another body is a conflict.
/// No subject ids means every subject of the case.
pub async fn submit_request(
    store: &Store,
    actor: &Actor,
    case_id: &CaseId,
    input: RequestInput,
    idempotency: Option<(&str, &str)>,
) -> Result<Submitted, CaseworkError> {
    check_can_file(actor)?;
    // The insert's own transaction finds an earlier use of the key, so a
    // submit that succeeds looks for none first (one round trip less). One
    // that fails does: its first try may have been filed before the case
    // closed, and a retry is owed that first answer, not the refusal.
    match file_request(store, actor, case_id, input, idempotency).await {
        Err(e) if !matches!(e, CaseworkError::IdempotencyConflict(_)) => match idempotency {
            Some((key, hash)) => Ok(replay(store, actor, key, hash).await?.ok_or(e)?),
            None => Err(e),
        },
        done => done,
    }
}

async fn file_request(
    store: &Store,
    actor: &Actor,
    case_id: &CaseId,
    input: RequestInput,
    idempotency: Option<(&str, &str)>,
) -> Result<Submitted, CaseworkError> {
    let codes: Vec<_> = input
        .targets
        .iter()
        .map(|t| t.institution.clone())
        .collect();
    // Two reads that need nothing of each other go at once: each is a
    // round trip. Their errors still come in the order of the checks.
    let (case, known) = tokio::join!(
        checked_case(store, actor, case_id),
        known_institutions(store, &codes)
    );
    let case = case?;
    if case.closed_at.is_some() {
        return Err(CaseworkError::Conflict(format!("case {case_id} is closed")));
    }
    let subject_ids: Vec<_> = case.subjects.iter().map(|s| s.id.clone()).collect();
    let mut input = input;
    if input.subject_ids.is_empty() {
        input.subject_ids = subject_ids.clone();
    }
    let request = Request::validate(case_id, &subject_ids, input, today())?;
    known?;
    let mut seen = std::collections::HashSet::new();
    for inq in &request.inquiries {
        let t = &inq.target;
        if t.branches.is_empty() || !seen.insert(t.institution.clone()) {
            continue;
        }
        if let Some(b) = store
            .unknown_branches(&t.institution, &t.branches)
            .await?
            .first()
        {
            return Err(DomainError::new(
                "unknown_branch",
                format!("institution {} has no branch {b}", t.institution),
            )
            .into());
        }
    }
    let trace = AuditEntry {
        at: now_millis(),
        actor: actor.id.clone(),
        role: actor.role.as_str().to_owned(),
        office: actor.office.clone(),
        action: AuditAction::RequestCreate,
        target: format!("request:{}", request.id),
        case_id: Some(case_id.to_string()),
        purpose: request.purpose.clone(),
        legal_basis: Some(request.legal_basis.clone()),
    };
    match store
        .insert_request(
            &request,
            &actor.id,
            idempotency,
            std::slice::from_ref(&trace),
        )
        .await
    {
        Ok(RequestInsert::Created(view)) => Ok(Submitted::Created(view)),
        Ok(RequestInsert::Replayed(id)) => Ok(Submitted::Replayed(
            checked_request(store, actor, &id).await?,
        )),
        Err(StoreError::Conflict(m)) => Err(CaseworkError::IdempotencyConflict(m)),
        // Two submissions with one key that raced fail here on the key's
        // unique index: the loser answers with the winner's result
        // (`submit_request`).
        Err(e) => Err(e.into()),
    }
}

async fn replay(
    store: &Store,
    actor: &Actor,
    key: &str,
    hash: &str,
) -> Result<Option<Submitted>, CaseworkError> {
    let Some((id, stored_hash)) = store.request_by_idempotency_key(&actor.id, key).await? else {
        return Ok(None);
    };
    if stored_hash != hash {
        return Err(CaseworkError::IdempotencyConflict(format!(
            "Idempotency-Key '{key}' was already used with a different body"
        )));
    }
    Ok(Some(Submitted::Replayed(
        checked_request(store, actor, &id).await?,
    )))
}

async fn checked_request(
    store: &Store,
    actor: &Actor,
    id: &RequestId,
) -> Result<RequestView, CaseworkError> {
    let view = store
        .request(id)
        .await?
        .ok_or_else(|| CaseworkError::NotFound(format!("request {id}")))?;
    checked_case(store, actor, &view.case_id).await?;
    Ok(view)
}

fn require_admin(actor: &Actor) -> Result<(), CaseworkError> {
    if actor.role == Role::Admin {
        Ok(())
    } else {
        Err(CaseworkError::Forbidden("this needs the admin role".into()))
    }
}

/// Cancels one inquiry of the actor's office that has no answer yet.
pub async fn cancel_inquiry(
    store: &Store,
    actor: &Actor,
    id: &InquiryId,
) -> Result<InquiryView, CaseworkError> {
    check_can_file(actor)?;
    let case = store
        .inquiry_case(id)
        .await?
        .ok_or_else(|| CaseworkError::NotFound(format!("inquiry {id}")))?;
    checked_case(store, actor, &case).await?;
    audit(
        store,
        actor,
        AuditAction::InquiryCancel,
        format!("inquiry:{id}"),
        Some(&case),
        None,
    )
    .await?;
    store
        .cancel_inquiries(
            std::slice::from_ref(id),
            &format!("cancelled by {}", actor.id),
            now_millis(),
        )
        .await?;
    store
        .inquiry_view(id)
        .await?
        .ok_or_else(|| CaseworkError::NotFound(format!("inquiry {id}")))
}

/// Cancels every inquiry of a request that is not final yet.
pub async fn cancel_request(
    store: &Store,
    actor: &Actor,
    id: &RequestId,
) -> Result<RequestView, CaseworkError> {
    check_can_file(actor)?;
    let view = checked_request(store, actor, id).await?;
    audit(
        store,
        actor,
        AuditAction::RequestCancel,
        format!("request:{id}"),
        Some(&view.case_id),
        None,
    )
    .await?;
    let open: Vec<InquiryId> = view
        .inquiries
        .iter()
        .filter(|i| !i.state.is_final())
        .map(|i| i.id.clone())
        .collect();
    store
        .cancel_inquiries(
            &open,
            &format!("request cancelled by {}", actor.id),
            now_millis(),
        )
        .await?;
    checked_request(store, actor, id).await
}

/// Records (or clears) the date the office decided the case; answers that
/// come later raise a reopen alert.
pub async fn set_decision_date(
    store: &Store,
    actor: &Actor,
    id: &CaseId,
    date: Option<NaiveDate>,
) -> Result<CaseRecord, CaseworkError> {
    check_can_file(actor)?;
    checked_case(store, actor, id).await?;
    if date.is_some_and(|d| d > today()) {
        return Err(DomainError::new("invalid_date", "decision_date is in the future").into());
    }
    audit(
        store,
        actor,
        AuditAction::CaseDecide,
        format!("case:{id}"),
        Some(id),
        None,
    )
    .await?;
    store.set_decision_date(id, date).await?;
    checked_case(store, actor, id).await
}

pub async fn alerts(
    store: &Store,
    actor: &Actor,
    id: &CaseId,
) -> Result<Vec<AlertRecord>, CaseworkError> {
    checked_case(store, actor, id).await?;
    Ok(store.case_alerts(id).await?)
}

pub async fn acknowledge_alert(
    store: &Store,
    actor: &Actor,
    case: &CaseId,
    alert: i64,
) -> Result<(), CaseworkError> {
    checked_case(store, actor, case).await?;
    audit(
        store,
        actor,
        AuditAction::AlertAcknowledge,
        format!("alert:{alert}"),
        Some(case),
        None,
    )
    .await?;
    store
        .acknowledge_alert(case, alert, &actor.id, now_millis())
        .await?;
    Ok(())
}

pub async fn set_paused(
    store: &Store,
    actor: &Actor,
    code: &InstitutionCode,
    paused: bool,
) -> Result<(), CaseworkError> {
    require_admin(actor)?;
    let action = if paused {
        AuditAction::InstitutionPause
    } else {
        AuditAction::InstitutionResume
    };
    audit(
        store,
        actor,
        action,
        format!("institution:{code}"),
        None,
        None,
    )
    .await?;
    store.set_paused(code, paused).await?;
    tracing::info!(institution = %code, paused, actor = %actor.id, "institution pause switched");
    Ok(())
}

pub async fn retry_dead_batch(
    store: &Store,
    actor: &Actor,
    id: &BatchId,
) -> Result<(), CaseworkError> {
    require_admin(actor)?;
    audit(
        store,
        actor,
        AuditAction::BatchRetry,
        format!("batch:{id}"),
        None,
        None,
    )
    .await?;
    store.retry_dead_batch(id, now_millis()).await?;
    tracing::info!(batch = %id, actor = %actor.id, "dead batch retried");
    Ok(())
}

pub async fn batches(
    store: &Store,
    actor: &Actor,
    state: BatchState,
    limit: i64,
) -> Result<Vec<BatchRow>, CaseworkError> {
    require_admin(actor)?;
    Ok(store.batches_in_state(state, limit.clamp(1, 1000)).await?)
}

/// Applies a bank's answer batch and records each accepted answer in the
/// audit trail in the same transaction (the bank is the actor). An error
/// means nothing of the batch was filed: the bank sends it again.
pub async fn receive_answers(
    store: &Store,
    institution: &InstitutionCode,
    answers: &[Answer],
) -> Result<Vec<ApplyOutcome>, StoreError> {
    let now = now_millis();
    let bank = institution.clone();
    let trail = move |answer: &Answer, revision: i64| AuditEntry {
        at: now,
        actor: format!("bank:{bank}"),
        role: "bank".into(),
        office: bank.to_string(),
        action: AuditAction::AnswerReceive,
        target: format!("inquiry:{}#{revision}", answer.inquiry_id),
        case_id: None,
        purpose: None,
        legal_basis: Some(DEFAULT_LEGAL_BASIS.to_owned()),
    };
    let applied = store
        .apply_answers(institution, answers, now, Some(Arc::new(trail)))
        .await?;
    for result in &applied {
        let label = match result {
            ApplyOutcome::Accepted { .. } => "accepted",
            ApplyOutcome::Duplicate => "duplicate",
            ApplyOutcome::Rejected { .. } => "rejected",
        };
        crate::metrics::inc(
            "shokai_answers_total",
            "Answers received from banks, by result.",
            &[("institution", institution.as_str()), ("result", label)],
        );
        if let ApplyOutcome::Accepted { waited_ms, .. } = result {
            crate::metrics::observe(
                "shokai_answer_latency_seconds",
                "From filing an inquiry to its (first or corrected) answer.",
                &[("institution", institution.as_str())],
                *waited_ms as f64 / 1000.0,
            );
        }
    }
    Ok(applied)
}

/// Auditors and admins read the trail; reading it is itself recorded.
pub async fn audit_entries(
    store: &Store,
    actor: &Actor,
    filter: &AuditFilter,
) -> Result<Vec<ChainedEntry>, CaseworkError> {
    if !matches!(actor.role, Role::Auditor | Role::Admin) {
        return Err(CaseworkError::Forbidden(
            "the audit trail is for auditors and admins".into(),
        ));
    }
    audit(
        store,
        actor,
        AuditAction::AuditRead,
        "audit".into(),
        None,
        None,
    )
    .await?;
    // Least privilege: an auditor reads the trail of their own office; the
    // city's admins read all of it.
    let mut filter = filter.clone();
    if actor.role == Role::Auditor {
        filter.office = Some(actor.office.clone());
    }
    Ok(store.audit_entries(&filter).await?)
}

/// Closes a case: its retention period starts now.
pub async fn close_case(
    store: &Store,
    actor: &Actor,
    id: &CaseId,
) -> Result<CaseRecord, CaseworkError> {
    check_can_file(actor)?;
    checked_case(store, actor, id).await?;
    audit(
        store,
        actor,
        AuditAction::CaseClose,
        format!("case:{id}"),
        Some(id),
        None,
    )
    .await?;
    store.close_case(id, now_millis()).await?;
    checked_case(store, actor, id).await
}
