//! The city's departments in casework: the comprehensive inquiry (総合照会)
//! a caseworker starts, the scheduled re-query that turns changes into
//! alerts, and the one case file that brings bank and department findings,
//! alerts and a timeline together.

use std::time::{Duration, Instant};

use super::{Actor, CaseworkError, audit, check_can_file, checked_case, entry};
use crate::connectors::{Connectors, FetchOutcome};
use crate::domain::audit::{AuditAction, AuditEntry};
use crate::domain::department::{Department, FetchStatus, FetchTrigger, SubjectQuery};
use crate::domain::ids::{CaseId, FetchRunId};
use crate::domain::request::DEFAULT_LEGAL_BASIS;
use crate::domain::time::now_millis;
use crate::store::{
    AlertRecord, CaseFile, CaseRecord, FetchApply, FetchLogEntry, RaisedChange, RequestView, Store,
    StoredDepartmentRecord,
};

/// What one run over a case's departments did.
#[derive(Debug)]
pub struct DepartmentRun {
    pub run: FetchRunId,
    pub case: CaseId,
    pub trigger: FetchTrigger,
    /// One per connector, in configuration order.
    pub outcomes: Vec<FetchOutcome>,
    /// Alerts raised by this run (changes seen before are not repeated).
    pub raised: Vec<RaisedChange>,
    pub duration: Duration,
}

impl DepartmentRun {
    /// True when a connector failed or answered for only some subjects.
    pub fn partial(&self) -> bool {
        self.outcomes
            .iter()
            .any(|o| o.status != FetchStatus::Complete)
    }
}

const INQUIRY_PURPOSE: &str = "総合照会";
const REQUERY_PURPOSE: &str = "変更確認 (定期再照会)";

/// Asks every connector about every subject of the case, in parallel, and
/// files the results (a caseworker's 総合照会).
pub async fn department_inquiry(
    store: &Store,
    connectors: &Connectors,
    actor: &Actor,
    id: &CaseId,
) -> Result<DepartmentRun, CaseworkError> {
    check_can_file(actor)?;
    let case = checked_case(store, actor, id).await?;
    if case.closed_at.is_some() {
        return Err(CaseworkError::Conflict(format!("case {id} is closed")));
    }
    if connectors.is_empty() {
        return Err(CaseworkError::Conflict(
            "no department connectors are configured (--department)".to_owned(),
        ));
    }
    // The trace comes first: departments are asked only once it is written.
    audit(
        store,
        actor,
        AuditAction::DepartmentInquiry,
        format!("case:{id}"),
        Some(id),
        Some(INQUIRY_PURPOSE),
    )
    .await?;
    run(store, connectors, &case, FetchTrigger::Inquiry).await
}

/// What a re-query round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RequerySummary {
    pub cases: usize,
    pub alerts: usize,
    /// Connector fetches that were not complete (the next round tries again).
    pub incomplete: usize,
    /// Cases whose round failed in the store; logged, retried next round.
    pub errors: usize,
}

/// Re-queries every open case whose departments were asked before and
/// raises an alert for each change since the last snapshot.
pub async fn requery_open_cases(
    store: &Store,
    connectors: &Connectors,
) -> Result<RequerySummary, CaseworkError> {
    let mut summary = RequerySummary::default();
    if connectors.is_empty() {
        return Ok(summary);
    }
    for id in store.cases_to_requery().await? {
        let Some(case) = store.case(&id).await? else {
            continue;
        };
        let trace = AuditEntry {
            at: now_millis(),
            actor: "system:requery".to_owned(),
            role: "system".to_owned(),
            office: case.office.clone(),
            action: AuditAction::DepartmentInquiry,
            target: format!("case:{id}"),
            case_id: Some(id.to_string()),
            purpose: Some(REQUERY_PURPOSE.to_owned()),
            legal_basis: Some(DEFAULT_LEGAL_BASIS.to_owned()),
        };
        store.append_audit(std::slice::from_ref(&trace)).await?;
        match run(store, connectors, &case, FetchTrigger::Requery).await {
            Ok(r) => {
                summary.cases += 1;
                summary.alerts += r.raised.len();
                summary.incomplete += r
                    .outcomes
                    .iter()
                    .filter(|o| o.status != FetchStatus::Complete)
                    .count();
            }
            Err(e) => {
                tracing::error!(case = %id, error = %e, "re-query of a case failed");
                summary.errors += 1;
            }
        }
    }
    Ok(summary)
}

fn subject_queries(case: &CaseRecord) -> Vec<SubjectQuery> {
    case.subjects
        .iter()
        .map(|s| SubjectQuery {
            subject: s.id.clone(),
            kana_name: s.kana_name.clone(),
            kanji_name: s.kanji_name.clone(),
            birth_date: s.birth_date,
            address: s.address.clone(),
        })
        .collect()
}

async fn run(
    store: &Store,
    connectors: &Connectors,
    case: &CaseRecord,
    trigger: FetchTrigger,
) -> Result<DepartmentRun, CaseworkError> {
    let clock = Instant::now();
    let run = FetchRunId::generate();
    let subjects = subject_queries(case);
    let asked: Vec<_> = subjects.iter().map(|s| s.subject.clone()).collect();
    let outcomes = connectors.fetch_all(&subjects).await;
    let mut raised = Vec::new();
    for o in &outcomes {
        let unanswered = o.unanswered(&subjects);
        let error = o.error_text();
        let mut changes = store
            .apply_department_fetch(
                &FetchApply {
                    case: &case.id,
                    run: &run,
                    trigger,
                    department: o.department,
                    status: o.status,
                    records: &o.records,
                    asked: &asked,
                    unanswered: &unanswered,
                    error: error.as_deref(),
                    started_at: o.started_at,
                    duration_ms: o.duration.as_millis() as i64,
                },
                now_millis(),
            )
            .await?;
        raised.append(&mut changes);
    }
    store
        .record_department_run(&case.id, &run, now_millis())
        .await?;
    let duration = clock.elapsed();
    tracing::info!(
        case = %case.id,
        run = %run,
        trigger = trigger.as_str(),
        subjects = subjects.len(),
        connectors = outcomes.len(),
        incomplete = outcomes.iter().filter(|o| o.status != FetchStatus::Complete).count(),
        alerts = raised.len(),
        duration_ms = duration.as_millis() as u64,
        "departments asked"
    );
    Ok(DepartmentRun {
        run,
        case: case.id.clone(),
        trigger,
        outcomes,
        raised,
        duration,
    })
}

/// The linkage files picked up, for admins (their refused lines name fields
/// and line numbers, not people).
pub async fn linkage_files(
    store: &Store,
    actor: &Actor,
) -> Result<Vec<crate::store::LinkageFileRecord>, CaseworkError> {
    super::require_admin(actor)?;
    Ok(store.linkage_files().await?)
}

/// One thing that happened to a case, for the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimelineEntry {
    pub at: i64,
    /// `case.created`, `request.filed`, `inquiry.<state>`, `answer.filed`,
    /// `department.<status>`, `alert.raised`, `alert.acknowledged`.
    pub event: String,
    /// The id the event is about.
    pub reference: String,
    pub detail: String,
}

/// Everything Shokai knows about a case, in one piece.
#[derive(Debug, Clone)]
pub struct FullCaseFile {
    /// The case, its inquiries and the bank answers filed.
    pub bank: CaseFile,
    pub requests: Vec<RequestView>,
    pub departments: Vec<StoredDepartmentRecord>,
    pub fetches: Vec<FetchLogEntry>,
    pub alerts: Vec<AlertRecord>,
    /// Oldest first.
    pub timeline: Vec<TimelineEntry>,
}

impl FullCaseFile {
    /// The department's most recent fetch for the case.
    pub fn last_fetch(&self, department: Department) -> Option<&FetchLogEntry> {
        self.fetches
            .iter()
            .rev()
            .find(|f| f.department == department)
    }
}

/// Reads the whole case file, and records the read.
pub async fn full_case_file(
    store: &Store,
    actor: &Actor,
    id: &CaseId,
) -> Result<FullCaseFile, CaseworkError> {
    checked_case(store, actor, id).await?;
    let trace = entry(
        actor,
        AuditAction::CaseFileRead,
        format!("case:{id}"),
        Some(id),
        None,
    );
    store.append_audit(std::slice::from_ref(&trace)).await?;
    let bank = store
        .case_file(id)
        .await?
        .ok_or_else(|| CaseworkError::NotFound(format!("case {id}")))?;
    let requests = store.case_requests(id).await?;
    let departments = store.department_records(id).await?;
    let fetches = store.department_fetches(id).await?;
    let alerts = store.case_alerts(id).await?;
    let timeline = timeline(&bank, &requests, &fetches, &alerts);
    Ok(FullCaseFile {
        bank,
        requests,
        departments,
        fetches,
        alerts,
        timeline,
    })
}

fn timeline(
    bank: &CaseFile,
    requests: &[RequestView],
    fetches: &[FetchLogEntry],
    alerts: &[AlertRecord],
) -> Vec<TimelineEntry> {
    let mut t = vec![TimelineEntry {
        at: bank.case.created_at,
        event: "case.created".to_owned(),
        reference: bank.case.id.to_string(),
        detail: format!("case {} opened", bank.case.case_number),
    }];
    for r in requests {
        t.push(TimelineEntry {
            at: r.created_at,
            event: "request.filed".to_owned(),
            reference: r.id.to_string(),
            detail: format!("{} inquiries, due {}", r.inquiries.len(), r.due_date),
        });
    }
    for i in &bank.inquiries {
        for (state, at) in &i.history {
            t.push(TimelineEntry {
                at: *at,
                event: format!("inquiry.{}", state.as_str()),
                reference: i.id.to_string(),
                detail: format!("institution {}", i.institution),
            });
        }
    }
    for e in &bank.entries {
        t.push(TimelineEntry {
            at: e.received_at,
            event: "answer.filed".to_owned(),
            reference: e.inquiry_id.to_string(),
            detail: format!(
                "{} {} answered (revision {})",
                e.institution, e.institution_name, e.revision
            ),
        });
    }
    for f in fetches {
        t.push(TimelineEntry {
            at: f.started_at,
            event: format!("department.{}", f.status.as_str()),
            reference: f.run.to_string(),
            detail: format!(
                "{} ({}): {} records, {} changes{}",
                f.department.as_str(),
                f.trigger.as_str(),
                f.records,
                f.changes,
                f.error
                    .as_deref()
                    .map(|e| format!("; {e}"))
                    .unwrap_or_default()
            ),
        });
    }
    for a in alerts {
        t.push(TimelineEntry {
            at: a.created_at,
            event: "alert.raised".to_owned(),
            reference: a.id.to_string(),
            detail: a.detail.clone(),
        });
        if let (Some(at), Some(by)) = (a.acknowledged_at, &a.acknowledged_by) {
            t.push(TimelineEntry {
                at,
                event: "alert.acknowledged".to_owned(),
                reference: a.id.to_string(),
                detail: format!("by {by}"),
            });
        }
    }
    // A stable order: by time, then as listed above.
    t.sort_by_key(|e| e.at);
    t
}
