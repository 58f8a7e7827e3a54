//! Cases, subjects, requests, inquiries as filed, and API tokens.

use chrono::NaiveDate;
use sqlx::any::AnyRow;

use super::script::Script;
use super::{
    Dialect, Priority, Query, Result, Store, StoreError, get_i64, get_opt_date, get_opt_i64,
    get_opt_str, get_str, parse_date, q,
};
use crate::domain::audit::AuditEntry;
use crate::domain::department::{Department, RecordKind, SuggestedAction};
use crate::domain::feed::FeedKind;
use crate::domain::ids::{BatchId, CaseId, InquiryId, RequestId, SubjectId};
use crate::domain::kana::KanaName;
use crate::domain::request::{
    NewCase, Period, PlannedInquiry, Request, Subject, kinds_from_text, kinds_to_text,
};
use crate::domain::state::{InquiryKind, InquiryState};
use crate::domain::time::{jst_date, now_millis};
use crate::domain::zengin::{BranchCode, InstitutionCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub label: String,
    pub role: String,
    pub office: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseRecord {
    pub id: CaseId,
    pub office: String,
    pub case_number: String,
    pub decision_date: Option<NaiveDate>,
    pub created_at: i64,
    pub closed_at: Option<i64>,
    pub subjects: Vec<Subject>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRecord {
    pub id: i64,
    /// `reopen`: an answer came after the case's decision date.
    pub kind: String,
    pub inquiry_id: Option<InquiryId>,
    pub detail: String,
    pub created_at: i64,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<String>,
    /// What changed, for a `department_change` alert.
    pub change: Option<AlertChange>,
}

/// What [`Store::insert_case_with`] writes.
#[derive(Debug, Clone, Copy)]
pub struct CaseInsert<'a> {
    pub case: &'a NewCase,
    pub actor: &'a str,
    /// The new-case form's key, so a double submit files one case.
    pub form_key: Option<&'a str>,
    /// Institutions the applicant declared (a quick pick later).
    pub declared: &'a [InstitutionCode],
    pub audit: &'a [AuditEntry],
}

/// A case as the caseworker's list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseSummary {
    pub id: CaseId,
    pub case_number: String,
    pub office: String,
    pub created_at: i64,
    pub subjects: i64,
    /// Inquiries not answered yet.
    pub waiting: i64,
    /// Of those, past their due date.
    pub overdue: i64,
    pub open_alerts: i64,
}

/// A department change as its alert keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertChange {
    pub department: Department,
    pub subject: SubjectId,
    pub record_kind: RecordKind,
    /// The changed fields' names, comma-separated.
    pub fields: String,
    /// `field=value;…` before and after (see `encode_fields`).
    pub before: String,
    pub after: String,
    pub effective_date: NaiveDate,
    pub suggested_action: SuggestedAction,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    pub id: RequestId,
    pub case_id: CaseId,
    pub kinds: Vec<InquiryKind>,
    pub reference_date: NaiveDate,
    pub period: Option<Period>,
    pub legal_basis: String,
    pub purpose: Option<String>,
    pub due_date: NaiveDate,
    pub created_at: i64,
    pub inquiries: Vec<InquiryView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InquiryView {
    pub id: InquiryId,
    pub subject_id: SubjectId,
    pub institution: InstitutionCode,
    pub branches: Vec<BranchCode>,
    pub state: InquiryState,
    pub batch_id: Option<BatchId>,
    pub due_date: NaiveDate,
    pub overdue: bool,
    pub failure_reason: Option<String>,
    pub answer_revision: i64,
    pub attempts: i64,
    pub created_at: i64,
    pub updated_at: i64,
    /// (state, at) for every transition, oldest first.
    pub history: Vec<(InquiryState, i64)>,
}

pub(super) fn branches_to_text(branches: &[BranchCode]) -> String {
    branches
        .iter()
        .map(|b| b.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub(super) fn branches_from_text(raw: &str) -> Vec<BranchCode> {
    raw.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| BranchCode::from_trusted(s.to_owned()))
        .collect()
}

pub(super) fn subject_from_row(row: &AnyRow) -> Result<Subject> {
    let former = get_str(row, "former_kana_names")?;
    Ok(Subject {
        id: SubjectId::from_trusted(get_str(row, "id")?),
        kana_name: KanaName::from_trusted(get_str(row, "kana_name")?),
        kanji_name: get_opt_str(row, "kanji_name")?,
        birth_date: parse_date(&get_str(row, "birth_date")?)?,
        postal_code: get_opt_str(row, "postal_code")?,
        address: get_opt_str(row, "address")?,
        former_kana_names: former
            .split('|')
            .filter(|s| !s.is_empty())
            .map(|s| KanaName::from_trusted(s.to_owned()))
            .collect(),
    })
}

pub enum RequestInsert {
    /// Written as this view shows it: every inquiry queued. Built from what
    /// was written rather than read back, which would cost the single
    /// SQLite writer's reads of a hundred rows or more per request.
    Created(RequestView),
    /// The same idempotency key was used before with the same body.
    Replayed(RequestId),
}

impl Store {
    pub async fn insert_token(
        &self,
        hash: &str,
        label: &str,
        role: &str,
        office: &str,
    ) -> Result<()> {
        q("INSERT INTO api_tokens (token_hash, label, role, office, created_at) VALUES ($1, $2, $3, $4, $5)"
            .to_owned())
        .bind(hash.to_owned())
        .bind(label.to_owned())
        .bind(role.to_owned())
        .bind(office.to_owned())
        .bind(now_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn token(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = q(
            "SELECT label, role, office FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
                .to_owned(),
        )
        .bind(hash.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TokenRecord {
                label: get_str(&r, "label")?,
                role: get_str(&r, "role")?,
                office: get_str(&r, "office")?,
            })
        })
        .transpose()
    }

    /// Writes the case, its subjects and `audit` (the trace of the writing)
    /// in one transaction.
    pub async fn insert_case(
        &self,
        case: &NewCase,
        actor: &str,
        audit: &[AuditEntry],
    ) -> Result<()> {
        self.insert_case_with(&CaseInsert {
            case,
            actor,
            form_key: None,
            declared: &[],
            audit,
        })
        .await
    }

    /// Writes a case, its people, the institutions its applicant declared
    /// and its audit entries in one transaction. A form key used before by
    /// the same actor is a unique violation: the form was sent twice.
    pub async fn insert_case_with(&self, c: &CaseInsert<'_>) -> Result<()> {
        let (case, actor, audit) = (c.case.clone(), c.actor.to_owned(), c.audit.to_vec());
        let (form_key, declared) = (c.form_key.map(str::to_owned), c.declared.to_vec());
        self.on_writer(move |store| async move {
            store
                .write_case(&CaseInsert {
                    case: &case,
                    actor: &actor,
                    form_key: form_key.as_deref(),
                    declared: &declared,
                    audit: &audit,
                })
                .await
        })
        .await
    }

    async fn write_case(&self, c: &CaseInsert<'_>) -> Result<()> {
        let (case, actor, audit) = (c.case, c.actor, c.audit);
        let now = now_millis();
        let mut read = Script::new(self.dialect);
        let head = if audit.is_empty() {
            None
        } else {
            self.read_audit_head_early(&mut read)
        };
        // Empty on PostgreSQL or without audit entries: just the BEGIN.
        let (mut tx, read) = self.begin_with(Priority::Interactive, read).await?;
        let mut write = Script::new(self.dialect);
        write.push(
            "INSERT INTO cases (id, office, case_number, created_by, created_at, form_key) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            move |query| {
                query
                    .bind(case.id.as_str().to_owned())
                    .bind(case.office.clone())
                    .bind(case.case_number.clone())
                    .bind(actor.to_owned())
                    .bind(now)
                    .bind(c.form_key.map(str::to_owned))
            },
        );
        for code in c.declared {
            write.push(
                "INSERT INTO case_declared_institutions (case_id, institution_code) \
                 VALUES ($1, $2) ON CONFLICT DO NOTHING",
                move |query| {
                    query
                        .bind(case.id.as_str().to_owned())
                        .bind(code.as_str().to_owned())
                },
            );
        }
        let subjects: Vec<_> = case.subjects.iter().enumerate().collect();
        write.insert_owned_rows(
            "INSERT INTO subjects (id, case_id, position, kana_name, kanji_name, birth_date, \
               postal_code, address, former_kana_names)",
            9,
            subjects,
            "",
            move |query, (i, s)| {
                query
                    .bind(s.id.as_str().to_owned())
                    .bind(case.id.as_str().to_owned())
                    .bind(*i as i64)
                    .bind(s.kana_name.as_str().to_owned())
                    .bind(s.kanji_name.clone())
                    .bind(s.birth_date.to_string())
                    .bind(s.postal_code.clone())
                    .bind(s.address.clone())
                    .bind(
                        s.former_kana_names
                            .iter()
                            .map(|n| n.as_str())
                            .collect::<Vec<_>>()
                            .join("|"),
                    )
            },
        );
        // No statement reads another's rows: on PostgreSQL, one round trip.
        write.fuse_writes();
        write.then_commit();
        self.run_audited(&mut tx, write, head.map(|h| &read[h]), audit)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn case(&self, id: &CaseId) -> Result<Option<CaseRecord>> {
        // The case and its subjects in one read, a row per subject: every
        // read is a round trip, and a submit starts with this one.
        let rows = q("SELECT c.office, c.case_number, c.decision_date, c.created_at AS case_created_at, \
             c.closed_at, s.id, s.kana_name, s.kanji_name, s.birth_date, s.postal_code, s.address, \
             s.former_kana_names \
             FROM cases c LEFT JOIN subjects s ON s.case_id = c.id WHERE c.id = $1 ORDER BY s.position"
            .to_owned())
        .bind(id.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let mut subjects = Vec::with_capacity(rows.len());
        for row in &rows {
            // A case has subjects; the join's one row without is no subject.
            if get_opt_str(row, "id")?.is_some() {
                subjects.push(subject_from_row(row)?);
            }
        }
        Ok(Some(CaseRecord {
            id: id.clone(),
            office: get_str(row, "office")?,
            case_number: get_str(row, "case_number")?,
            decision_date: get_opt_date(row, "decision_date")?,
            created_at: get_i64(row, "case_created_at")?,
            closed_at: get_opt_i64(row, "closed_at")?,
            subjects,
        }))
    }

    pub async fn set_decision_date(&self, id: &CaseId, date: Option<NaiveDate>) -> Result<()> {
        let done = q("UPDATE cases SET decision_date = $1 WHERE id = $2".to_owned())
            .bind(date.map(|d| d.to_string()))
            .bind(id.as_str().to_owned())
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("case {id}")));
        }
        Ok(())
    }

    /// The request an actor filed earlier under this idempotency key, with
    /// the hash of the body it was filed with.
    pub async fn request_by_idempotency_key(
        &self,
        actor: &str,
        key: &str,
    ) -> Result<Option<(RequestId, String)>> {
        let row = q(
            "SELECT id, body_hash FROM requests WHERE actor = $1 AND idempotency_key = $2"
                .to_owned(),
        )
        .bind(actor.to_owned())
        .bind(key.to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok((
                RequestId::from_trusted(get_str(&r, "id")?),
                get_opt_str(&r, "body_hash")?.unwrap_or_default(),
            ))
        })
        .transpose()
    }

    /// Writes the request, its inquiries and their places in the queue in
    /// one transaction: once this returns, nothing is lost.
    /// `audit` is written in the same transaction as the request: a request
    /// is never queued without its trace.
    pub async fn insert_request(
        &self,
        request: &Request,
        actor: &str,
        idempotency: Option<(&str, &str)>,
        audit: &[AuditEntry],
    ) -> Result<RequestInsert> {
        let (request, actor, audit) = (request.clone(), actor.to_owned(), audit.to_vec());
        let idempotency = idempotency.map(|(key, hash)| (key.to_owned(), hash.to_owned()));
        self.on_writer(move |store| async move {
            let idempotency = idempotency.as_ref().map(|(k, h)| (k.as_str(), h.as_str()));
            store
                .write_request(&request, &actor, idempotency, &audit)
                .await
        })
        .await
    }

    async fn write_request(
        &self,
        request: &Request,
        actor: &str,
        idempotency: Option<(&str, &str)>,
        audit: &[AuditEntry],
    ) -> Result<RequestInsert> {
        let now = now_millis();
        // What decides whether the request is written: an earlier use of
        // the idempotency key and the case, with the lock close_case takes,
        // so that it cannot close between this check and the insert.
        let key = idempotency.map(|(key, _)| key.to_owned());
        let bind_decider = |query: Query| {
            query
                .bind(actor.to_owned())
                .bind(key)
                .bind(request.case_id.as_str().to_owned())
        };
        let decider = |admits: &str| {
            format!(
                "SELECT c.closed_at, r.id AS replayed_id, r.body_hash{admits} \
                 FROM cases c LEFT JOIN requests r ON r.actor = $1 AND r.idempotency_key = $2 \
                 WHERE c.id = $3{}",
                self.dialect.for_update_of("c")
            )
        };
        if self.dialect == Dialect::Postgres {
            // One statement, its own transaction: the decider as the gate
            // of the writes. Three round trips fewer than BEGIN, the read,
            // the write and COMMIT, and the case stays locked for one.
            let mut write = Script::new(self.dialect);
            let gate = write.gate(
                decider(", c.closed_at IS NULL AND r.id IS NULL AS admits"),
                bind_decider,
            );
            push_request_writes(&mut write, request, actor, idempotency, now);
            self.leave_audit_pending(&mut write, audit);
            let mut conn = self.pool.acquire().await?;
            let done = write.run_alone(&mut conn).await?;
            return match refused_request(done[gate].rows.first(), request, idempotency)? {
                Some(decided) => Ok(decided),
                None => Ok(RequestInsert::Created(created_view(request, now))),
            };
        }
        // SQLite: the decider and the audit chain's head in one script, the
        // writes in a second that commits.
        let mut read = Script::new(self.dialect);
        let case = read.push(decider(""), bind_decider);
        let head = if audit.is_empty() {
            None
        } else {
            self.read_audit_head_early(&mut read)
        };
        let (mut tx, read) = self.begin_with(Priority::Interactive, read).await?;
        if let Some(decided) = refused_request(read[case].rows.first(), request, idempotency)? {
            return Ok(decided);
        }
        let mut write = Script::new(self.dialect);
        push_request_writes(&mut write, request, actor, idempotency, now);
        write.then_commit();
        self.run_audited(&mut tx, write, head.map(|h| &read[h]), audit)
            .await?;
        tx.commit().await?;
        Ok(RequestInsert::Created(created_view(request, now)))
    }

    pub async fn request(&self, id: &RequestId) -> Result<Option<RequestView>> {
        let Some(row) = q("SELECT * FROM requests WHERE id = $1".to_owned())
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let period = match (
            get_opt_date(&row, "period_from")?,
            get_opt_date(&row, "period_to")?,
        ) {
            (Some(from), Some(to)) => Some(Period { from, to }),
            _ => None,
        };
        let inquiries = self
            .inquiries_where("i.request_id = $1", id.as_str())
            .await?;
        Ok(Some(RequestView {
            id: RequestId::from_trusted(get_str(&row, "id")?),
            case_id: CaseId::from_trusted(get_str(&row, "case_id")?),
            kinds: kinds_from_text(&get_str(&row, "kinds")?)?
                .into_iter()
                .collect(),
            reference_date: parse_date(&get_str(&row, "reference_date")?)?,
            period,
            legal_basis: get_str(&row, "legal_basis")?,
            purpose: get_opt_str(&row, "purpose")?,
            due_date: parse_date(&get_str(&row, "due_date")?)?,
            created_at: get_i64(&row, "created_at")?,
            inquiries,
        }))
    }

    /// The case an actor filed with this form key, if any.
    pub async fn case_by_form_key(&self, actor: &str, key: &str) -> Result<Option<CaseId>> {
        q("SELECT id FROM cases WHERE created_by = $1 AND form_key = $2".to_owned())
            .bind(actor.to_owned())
            .bind(key.to_owned())
            .fetch_optional(&self.pool)
            .await?
            .map(|r| Ok(CaseId::from_trusted(get_str(&r, "id")?)))
            .transpose()
    }

    /// Open cases, newest first, of one office or of all.
    pub async fn case_summaries(
        &self,
        office: Option<&str>,
        today: NaiveDate,
        limit: i64,
    ) -> Result<Vec<CaseSummary>> {
        let waiting = "i.state IN ('queued', 'batched', 'delivered')";
        let filter = if office.is_some() {
            "AND c.office = $3"
        } else {
            ""
        };
        let mut query = q(format!(
            "SELECT c.id, c.case_number, c.office, c.created_at, \
               (SELECT COUNT(*) FROM subjects s WHERE s.case_id = c.id) AS subjects, \
               (SELECT COUNT(*) FROM inquiries i WHERE i.case_id = c.id AND {waiting}) AS waiting, \
               (SELECT COUNT(*) FROM inquiries i WHERE i.case_id = c.id AND {waiting} \
                  AND i.due_date < $1) AS overdue, \
               (SELECT COUNT(*) FROM case_alerts a WHERE a.case_id = c.id \
                  AND a.acknowledged_at IS NULL) AS open_alerts \
             FROM cases c WHERE c.closed_at IS NULL {filter} \
             ORDER BY c.created_at DESC, c.id DESC LIMIT $2"
        ))
        .bind(today.to_string())
        .bind(limit);
        if let Some(o) = office {
            query = query.bind(o.to_owned());
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok(CaseSummary {
                    id: CaseId::from_trusted(get_str(r, "id")?),
                    case_number: get_str(r, "case_number")?,
                    office: get_str(r, "office")?,
                    created_at: get_i64(r, "created_at")?,
                    subjects: get_i64(r, "subjects")?,
                    waiting: get_i64(r, "waiting")?,
                    overdue: get_i64(r, "overdue")?,
                    open_alerts: get_i64(r, "open_alerts")?,
                })
            })
            .collect()
    }

    /// Alerts nobody has acknowledged on open cases, newest first, of one
    /// office or of all: `(case, case number, alert)`.
    pub async fn open_alerts(
        &self,
        office: Option<&str>,
        limit: i64,
    ) -> Result<Vec<(CaseId, String, AlertRecord)>> {
        let filter = if office.is_some() {
            "AND c.office = $2"
        } else {
            ""
        };
        let mut query = q(format!(
            "SELECT a.id, a.case_id, c.case_number, a.kind, a.inquiry_id, a.detail, a.created_at, \
               a.acknowledged_at, a.acknowledged_by, a.department, a.subject_id, a.record_kind, \
               a.field, a.before_value, a.after_value, a.effective_date, a.suggested_action \
             FROM case_alerts a JOIN cases c ON c.id = a.case_id \
             WHERE a.acknowledged_at IS NULL AND c.closed_at IS NULL {filter} \
             ORDER BY a.created_at DESC, a.id DESC LIMIT $1"
        ))
        .bind(limit);
        if let Some(o) = office {
            query = query.bind(o.to_owned());
        }
        query
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    CaseId::from_trusted(get_str(r, "case_id")?),
                    get_str(r, "case_number")?,
                    alert_from_row(r)?,
                ))
            })
            .collect()
    }

    /// A case's requests with their inquiries, oldest first.
    pub async fn case_requests(&self, case: &CaseId) -> Result<Vec<RequestView>> {
        let ids =
            q("SELECT id FROM requests WHERE case_id = $1 ORDER BY created_at, id".to_owned())
                .bind(case.as_str().to_owned())
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::with_capacity(ids.len());
        for row in ids {
            let id = RequestId::from_trusted(get_str(&row, "id")?);
            if let Some(r) = self.request(&id).await? {
                out.push(r);
            }
        }
        Ok(out)
    }

    pub async fn case_inquiries(&self, case: &CaseId) -> Result<Vec<InquiryView>> {
        self.inquiries_where("i.case_id = $1", case.as_str()).await
    }

    pub async fn inquiry_view(&self, id: &InquiryId) -> Result<Option<InquiryView>> {
        Ok(self.inquiries_where("i.id = $1", id.as_str()).await?.pop())
    }

    async fn inquiries_where(&self, condition: &str, value: &str) -> Result<Vec<InquiryView>> {
        let rows = q(format!(
            "SELECT i.id, i.subject_id, i.institution_code, i.branches, i.state, i.batch_id, \
             i.due_date, i.failure_reason, i.answer_revision, i.created_at, i.updated_at, \
             b.attempts, b.created_at AS batched_at \
             FROM inquiries i LEFT JOIN batches b ON b.id = i.batch_id \
             WHERE {condition} ORDER BY i.created_at, i.id"
        ))
        .bind(value.to_owned())
        .fetch_all(&self.pool)
        .await?;
        // The stored steps, the delivery (0018) among them, then the
        // answers (0016), each revision one step. `phase` orders them: an
        // inquiry is delivered at most once, so the delivery comes before
        // the first stored step out of delivered; an answer state moves
        // only to another answer state, so nothing stored comes after the
        // first answer.
        let events = q(format!(
            "SELECT e.inquiry_id, e.to_state AS step, e.at, \
             CASE WHEN e.from_state = 'delivered' THEN 2 ELSE 0 END AS phase, e.id AS n \
             FROM inquiry_events e JOIN inquiries i ON i.id = e.inquiry_id WHERE {condition} \
             UNION ALL \
             SELECT i.id, 'delivered', i.delivered_at, 1, 0 FROM inquiries i \
             WHERE ({condition}) AND i.delivered_at IS NOT NULL \
             UNION ALL \
             SELECT a.inquiry_id, a.outcome, a.received_at, {ANSWER_PHASE}, a.revision \
             FROM answers a JOIN inquiries i ON i.id = a.inquiry_id \
             WHERE {condition} ORDER BY phase, n"
        ))
        .bind(value.to_owned())
        .fetch_all(&self.pool)
        .await?;
        let mut history: std::collections::HashMap<String, Vec<(InquiryState, i64)>> =
            std::collections::HashMap::new();
        for e in &events {
            let step = get_str(e, "step")?;
            let state = if get_i64(e, "phase")? == ANSWER_PHASE {
                super::answers::answer_step(&step)?
            } else {
                InquiryState::parse(&step)?
            };
            history
                .entry(get_str(e, "inquiry_id")?)
                .or_default()
                .push((state, get_i64(e, "at")?));
        }
        let today = jst_date(now_millis());
        rows.iter()
            .map(|r| {
                let id = get_str(r, "id")?;
                let state = InquiryState::parse(&get_str(r, "state")?)?;
                let due_date = parse_date(&get_str(r, "due_date")?)?;
                let created_at = get_i64(r, "created_at")?;
                // The first step, queued at the submit, is the inquiry's own
                // created_at (migration 0013), and the second, into its
                // batch, the batch's (0015): neither is stored again. A
                // batch is set once, so every stored step comes after.
                let batched = get_opt_i64(r, "batched_at")?.map(|at| (InquiryState::Batched, at));
                let history = std::iter::once((InquiryState::Queued, created_at))
                    .chain(batched)
                    .chain(history.remove(&id).unwrap_or_default())
                    .collect();
                Ok(InquiryView {
                    subject_id: SubjectId::from_trusted(get_str(r, "subject_id")?),
                    institution: InstitutionCode::from_trusted(get_str(r, "institution_code")?),
                    branches: branches_from_text(&get_str(r, "branches")?),
                    state,
                    batch_id: get_opt_str(r, "batch_id")?.map(BatchId::from_trusted),
                    due_date,
                    overdue: !state.is_final() && due_date < today,
                    failure_reason: get_opt_str(r, "failure_reason")?,
                    answer_revision: get_i64(r, "answer_revision")?,
                    attempts: get_opt_i64(r, "attempts")?.unwrap_or(0),
                    created_at,
                    updated_at: get_i64(r, "updated_at")?,
                    history,
                    id: InquiryId::from_trusted(id),
                })
            })
            .collect()
    }

    /// The case an inquiry belongs to (for office checks before acting on it).
    pub async fn inquiry_case(&self, id: &InquiryId) -> Result<Option<CaseId>> {
        let row = q("SELECT case_id FROM inquiries WHERE id = $1".to_owned())
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok(CaseId::from_trusted(get_str(&r, "case_id")?)))
            .transpose()
    }

    /// Cancels inquiries that are not final yet; returns how many changed.
    /// An answered inquiry stays answered: cancelling it is a conflict.
    pub async fn cancel_inquiries(
        &self,
        ids: &[InquiryId],
        reason: &str,
        now: i64,
    ) -> Result<usize> {
        let mut tx = self.begin(Priority::Interactive).await?;
        let mut cancelled = 0;
        for id in ids {
            let Some(row) = q(format!(
                "SELECT state FROM inquiries WHERE id = $1{}",
                self.dialect.for_update()
            ))
            .bind(id.as_str().to_owned())
            .fetch_optional(&mut *tx)
            .await?
            else {
                return Err(StoreError::NotFound(format!("inquiry {id}")));
            };
            let state = InquiryState::parse(&get_str(&row, "state")?)?;
            if state == InquiryState::Cancelled {
                continue;
            }
            state
                .transition(InquiryState::Cancelled)
                .map_err(|e| StoreError::Conflict(format!("inquiry {id}: {}", e.message)))?;
            q("UPDATE inquiries SET state = 'cancelled', failure_reason = $1, updated_at = $2 WHERE id = $3".to_owned())
                .bind(reason.to_owned())
                .bind(now)
                .bind(id.as_str().to_owned())
                .execute(&mut *tx)
                .await?;
            q("INSERT INTO inquiry_events (inquiry_id, at, from_state, to_state, detail) VALUES ($1, $2, $3, 'cancelled', $4)"
                .to_owned())
            .bind(id.as_str().to_owned())
            .bind(now)
            .bind(state.as_str())
            .bind(reason.to_owned())
            .execute(&mut *tx)
            .await?;
            if state == InquiryState::Queued {
                q("DELETE FROM inquiry_queue WHERE inquiry_id = $1".to_owned())
                    .bind(id.as_str().to_owned())
                    .execute(&mut *tx)
                    .await?;
            }
            cancelled += 1;
        }
        tx.commit().await?;
        Ok(cancelled)
    }

    pub async fn case_alerts(&self, case: &CaseId) -> Result<Vec<AlertRecord>> {
        let rows = q(
            "SELECT id, kind, inquiry_id, detail, created_at, acknowledged_at, acknowledged_by, \
               department, subject_id, record_kind, field, before_value, after_value, \
               effective_date, suggested_action FROM case_alerts WHERE case_id = $1 ORDER BY id"
                .to_owned(),
        )
        .bind(case.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert_from_row).collect()
    }

    pub async fn acknowledge_alert(
        &self,
        case: &CaseId,
        alert: i64,
        actor: &str,
        now: i64,
    ) -> Result<()> {
        let mut tx = self.begin(Priority::Interactive).await?;
        let done = q(
            "UPDATE case_alerts SET acknowledged_at = $1, acknowledged_by = $2 \
               WHERE id = $3 AND case_id = $4 AND acknowledged_at IS NULL"
                .to_owned(),
        )
        .bind(now)
        .bind(actor.to_owned())
        .bind(alert)
        .bind(case.as_str().to_owned())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!(
                "open alert {alert} on case {case}"
            )));
        }
        self.enqueue_feed_event(
            &mut tx,
            case,
            FeedKind::AlertAcknowledged,
            &alert.to_string(),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inquiry counts per state, over the given requests or all.
    pub async fn inquiry_state_counts(&self) -> Result<Vec<(InquiryState, i64)>> {
        let rows = q("SELECT state, COUNT(*) AS n FROM inquiries GROUP BY state".to_owned())
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    InquiryState::parse(&get_str(r, "state")?)?,
                    get_i64(r, "n")?,
                ))
            })
            .collect()
    }
}

fn alert_from_row(r: &AnyRow) -> Result<AlertRecord> {
    Ok(AlertRecord {
        id: get_i64(r, "id")?,
        kind: get_str(r, "kind")?,
        inquiry_id: get_opt_str(r, "inquiry_id")?.map(InquiryId::from_trusted),
        detail: get_str(r, "detail")?,
        created_at: get_i64(r, "created_at")?,
        acknowledged_at: get_opt_i64(r, "acknowledged_at")?,
        acknowledged_by: get_opt_str(r, "acknowledged_by")?,
        change: alert_change(r)?,
    })
}

fn alert_change(r: &AnyRow) -> Result<Option<AlertChange>> {
    let Some(department) = get_opt_str(r, "department")? else {
        return Ok(None);
    };
    let department = Department::parse(&department)?;
    let text = |col: &str| -> Result<String> { Ok(get_opt_str(r, col)?.unwrap_or_default()) };
    let action = text("suggested_action")?;
    Ok(Some(AlertChange {
        department,
        subject: SubjectId::from_trusted(text("subject_id")?),
        record_kind: RecordKind::parse(department, &text("record_kind")?)?,
        fields: text("field")?,
        before: text("before_value")?,
        after: text("after_value")?,
        effective_date: parse_date(&text("effective_date")?)?,
        suggested_action: SuggestedAction::parse(&action)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown suggested action '{action}'")))?,
    }))
}

/// The `phase` of an inquiry's answer steps in its history's query.
const ANSWER_PHASE: i64 = 3;

/// A request's rows: the request, its inquiries and their places in the
/// queue. No statement reads another's rows (on PostgreSQL they fuse).
fn push_request_writes<'a>(
    write: &mut Script<'a>,
    request: &'a Request,
    actor: &'a str,
    idempotency: Option<(&'a str, &'a str)>,
    now: i64,
) {
    write.insert_rows(
        "INSERT INTO requests (id, case_id, actor, idempotency_key, body_hash, kinds, \
         reference_date, period_from, period_to, legal_basis, purpose, due_date, created_at)",
        13,
        std::slice::from_ref(request),
        "",
        move |query, request| {
            query
                .bind(request.id.as_str().to_owned())
                .bind(request.case_id.as_str().to_owned())
                .bind(actor.to_owned())
                .bind(idempotency.map(|(k, _)| k.to_owned()))
                .bind(idempotency.map(|(_, h)| h.to_owned()))
                .bind(kinds_to_text(&request.kinds))
                .bind(request.reference_date.to_string())
                .bind(request.period.map(|p| p.from.to_string()))
                .bind(request.period.map(|p| p.to.to_string()))
                .bind(request.legal_basis.clone())
                .bind(request.purpose.clone())
                .bind(request.due_date.to_string())
                .bind(now)
        },
    );
    // Multi-row inserts keep a large request to a few statements. The
    // rows go in by institution: a table keeps rows in insertion order,
    // and each later step (sealing, finishing, answering) rewrites one
    // institution's inquiries at a time, so clustered they share pages.
    // A request asked at five banks rewrote five times the pages.
    let mut by_institution: Vec<&PlannedInquiry> = request.inquiries.iter().collect();
    by_institution.sort_by(|a, b| a.target.institution.cmp(&b.target.institution));
    write.insert_owned_rows(
        "INSERT INTO inquiries (id, request_id, case_id, subject_id, institution_code, branches, \
         due_date, created_at, updated_at, state)",
        10,
        by_institution,
        "",
        move |query, inq| {
            query
                .bind(inq.id.as_str().to_owned())
                .bind(request.id.as_str().to_owned())
                .bind(request.case_id.as_str().to_owned())
                .bind(inq.subject_id.as_str().to_owned())
                .bind(inq.target.institution.as_str().to_owned())
                .bind(branches_to_text(&inq.target.branches))
                .bind(request.due_date.to_string())
                .bind(now)
                .bind(now)
                .bind(InquiryState::Queued.as_str())
        },
    );
    // The delivery queue (migration 0011): left when sealed or cancelled.
    write.insert_rows(
        "INSERT INTO inquiry_queue (inquiry_id, institution_code, created_at)",
        3,
        &request.inquiries,
        "",
        move |query, inq| {
            query
                .bind(inq.id.as_str().to_owned())
                .bind(inq.target.institution.as_str().to_owned())
                .bind(now)
        },
    );
    write.fuse_writes();
}

/// What the decider's row says against writing `request`: the case is
/// missing or closed (an error), or the key was used before (the earlier
/// request, or a conflict if its body differed). None: write it.
fn refused_request(
    row: Option<&AnyRow>,
    request: &Request,
    idempotency: Option<(&str, &str)>,
) -> Result<Option<RequestInsert>> {
    let Some(row) = row else {
        return Err(StoreError::NotFound(format!("case {}", request.case_id)));
    };
    // A replay first: the case may have closed since the first try.
    if let (Some((key, hash)), Some(id)) = (idempotency, get_opt_str(row, "replayed_id")?) {
        let id = RequestId::from_trusted(id);
        if get_opt_str(row, "body_hash")?.as_deref() == Some(hash) {
            return Ok(Some(RequestInsert::Replayed(id)));
        }
        return Err(StoreError::Conflict(format!(
            "idempotency key '{key}' was used for a different request ({id})"
        )));
    }
    if get_opt_i64(row, "closed_at")?.is_some() {
        return Err(StoreError::Refused(format!(
            "case {} is closed",
            request.case_id
        )));
    }
    Ok(None)
}

/// The request as a read would give it back, just written at `now`.
fn created_view(request: &Request, now: i64) -> RequestView {
    let today = jst_date(now);
    let mut inquiries: Vec<InquiryView> = request
        .inquiries
        .iter()
        .map(|inq| InquiryView {
            id: inq.id.clone(),
            subject_id: inq.subject_id.clone(),
            institution: inq.target.institution.clone(),
            branches: inq.target.branches.clone(),
            state: InquiryState::Queued,
            batch_id: None,
            due_date: request.due_date,
            overdue: request.due_date < today,
            failure_reason: None,
            answer_revision: 0,
            attempts: 0,
            created_at: now,
            updated_at: now,
            history: vec![(InquiryState::Queued, now)],
        })
        .collect();
    // The order a read gives: created_at (the same for all), then id.
    inquiries.sort_by(|a, b| a.id.as_str().cmp(b.id.as_str()));
    RequestView {
        id: request.id.clone(),
        case_id: request.case_id.clone(),
        kinds: request.kinds.iter().copied().collect(),
        reference_date: request.reference_date,
        period: request.period,
        legal_basis: request.legal_basis.clone(),
        purpose: request.purpose.clone(),
        due_date: request.due_date,
        created_at: now,
        inquiries,
    }
}
