//! The one case file over HTTP: `GET /api/v1/cases/{id}/file` as JSON or
//! CSV, the comprehensive inquiry (`POST …/department-inquiry`) and the
//! file-linkage pickup log for admins.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::openapi::{BadQuery, Conflict, Forbidden, Internal, NotFound, Unauthorized};
use super::staff::{
    AlertJson, CaseFileJson, actor, alert_json, case_file_json, parse_query, path_id,
};
use super::{ApiError, AppState};
use crate::casework::{self, FullCaseFile, TimelineEntry};
use crate::domain::answer::Outcome;
use crate::domain::department::decode_fields;
use crate::domain::ids::{CaseId, SubjectId};
use crate::domain::time::rfc3339;
use crate::store::{AlertChange, CaseFile};

/// A department change as its alert tells it.
#[derive(Serialize, ToSchema)]
#[schema(as = AlertChange)]
pub(super) struct AlertChangeJson {
    /// `resident_registry`, `tax`, `child_allowance`,
    /// `child_rearing_allowance`, `national_health_insurance`,
    /// `long_term_care` or `pension`.
    department: String,
    subject_id: SubjectId,
    record_kind: String,
    /// Each changed field with its value before and after (absent: null).
    fields: Vec<FieldChangeJson>,
    #[schema(value_type = String, format = Date)]
    effective_date: NaiveDate,
    /// Stable code, e.g. `review_income`.
    suggested_action: String,
    /// The suggestion in Japanese, for people.
    suggested_action_text: String,
}

/// One field of a changed record.
#[derive(Serialize, ToSchema)]
#[schema(as = FieldChange)]
pub(super) struct FieldChangeJson {
    field: String,
    before: Option<String>,
    after: Option<String>,
}

pub(super) fn alert_change_json(c: &AlertChange) -> AlertChangeJson {
    let before = decode_fields(&c.before).unwrap_or_default();
    let after = decode_fields(&c.after).unwrap_or_default();
    AlertChangeJson {
        department: c.department.as_str().to_owned(),
        subject_id: c.subject.clone(),
        record_kind: c.record_kind.as_str().to_owned(),
        fields: c
            .fields
            .split(',')
            .filter(|f| !f.is_empty())
            .map(|f| FieldChangeJson {
                field: f.to_owned(),
                before: before.get(f).cloned(),
                after: after.get(f).cloned(),
            })
            .collect(),
        effective_date: c.effective_date,
        suggested_action: c.suggested_action.code().to_owned(),
        suggested_action_text: c.suggested_action.text_ja().to_owned(),
    }
}

/// The balances the current bank answers report for one subject.
#[derive(Serialize, ToSchema)]
#[schema(as = SubjectTotal)]
pub(super) struct SubjectTotalJson {
    subject_id: SubjectId,
    accounts: usize,
    /// Yen; accounts without a balance count as 0.
    total_balance: i64,
}

pub(super) fn bank_totals(f: &CaseFile) -> Vec<SubjectTotalJson> {
    f.balance_totals()
        .into_iter()
        .map(|t| SubjectTotalJson {
            subject_id: t.subject,
            accounts: t.accounts,
            total_balance: t.balance,
        })
        .collect()
}

/// One record a department holds about a subject.
#[derive(Serialize, ToSchema)]
#[schema(as = DepartmentRecord)]
pub(super) struct DepartmentRecordJson {
    subject_id: SubjectId,
    /// e.g. `assessed_income`, `residence`, `pension_benefit`.
    kind: String,
    /// The department's own record id.
    record_id: String,
    #[schema(value_type = String, format = Date)]
    effective_date: NaiveDate,
    /// Integer yen by name.
    amounts: BTreeMap<String, i64>,
    attributes: BTreeMap<String, String>,
    #[schema(format = DateTime)]
    fetched_at: String,
}

/// One connector's last fetch for the case.
#[derive(Serialize, ToSchema)]
#[schema(as = DepartmentFetch)]
pub(super) struct FetchJson {
    run_id: String,
    /// `inquiry` (a caseworker's 総合照会) or `requery` (the scheduled check).
    trigger: String,
    /// `complete`, `partial` or `failed`.
    status: String,
    records: i64,
    /// Alerts this fetch raised.
    changes: i64,
    error: Option<String>,
    #[schema(format = DateTime)]
    started_at: String,
    duration_ms: i64,
}

/// What one department holds about the case's subjects.
#[derive(Serialize, ToSchema)]
#[schema(as = DepartmentFindings)]
pub(super) struct DepartmentFindingsJson {
    department: String,
    /// The department's name in Japanese.
    label: String,
    last_fetch: Option<FetchJson>,
    /// From the last fetch that answered.
    records: Vec<DepartmentRecordJson>,
}

fn fetch_json(f: &crate::store::FetchLogEntry) -> FetchJson {
    FetchJson {
        run_id: f.run.to_string(),
        trigger: f.trigger.as_str().to_owned(),
        status: f.status.as_str().to_owned(),
        records: f.records,
        changes: f.changes,
        error: f.error.clone(),
        started_at: rfc3339(f.started_at),
        duration_ms: f.duration_ms,
    }
}

pub(super) fn department_findings(full: &FullCaseFile) -> Vec<DepartmentFindingsJson> {
    crate::domain::department::Department::ALL
        .into_iter()
        .filter_map(|d| {
            let records: Vec<_> = full
                .departments
                .iter()
                .filter(|r| r.record.department == d)
                .map(|r| DepartmentRecordJson {
                    subject_id: r.record.subject.clone(),
                    kind: r.record.kind.as_str().to_owned(),
                    record_id: r.record.source_id.clone(),
                    effective_date: r.record.effective_date,
                    amounts: r.record.amounts.clone(),
                    attributes: r.record.attributes.clone(),
                    fetched_at: rfc3339(r.fetched_at),
                })
                .collect();
            let last_fetch = full.last_fetch(d).map(fetch_json);
            (last_fetch.is_some() || !records.is_empty()).then(|| DepartmentFindingsJson {
                department: d.as_str().to_owned(),
                label: d.label_ja().to_owned(),
                last_fetch,
                records,
            })
        })
        .collect()
}

/// One thing that happened to the case.
#[derive(Serialize, ToSchema)]
#[schema(as = TimelineEntry)]
pub(super) struct TimelineJson {
    #[schema(format = DateTime)]
    at: String,
    /// `case.created`, `request.filed`, `inquiry.<state>`, `answer.filed`,
    /// `department.<status>`, `alert.raised`, `alert.acknowledged`.
    event: String,
    /// The id the event is about.
    reference: String,
    detail: String,
}

pub(super) fn timeline_json(t: &TimelineEntry) -> TimelineJson {
    TimelineJson {
        at: rfc3339(t.at),
        event: t.event.clone(),
        reference: t.reference.clone(),
        detail: t.detail.clone(),
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct FileQuery {
    /// `json` (the default) or `csv`: one row per finding.
    format: Option<String>,
}

/// Read a case file
///
/// Everything about the case in one piece: subjects, requests and inquiry
/// statuses, bank findings (every answer revision, superseded ones
/// flagged, and balance totals per subject), department findings, alerts
/// and a timeline. `?format=csv` exports the findings as CSV, one row per
/// account, department record and alert.
#[utoipa::path(
    get,
    path = "/api/v1/cases/{id}/file",
    tag = "cases",
    params(("id" = CaseId, Path, description = "The case."), FileQuery),
    responses(
        (status = 200, description = "The case file.", content(
            (CaseFileJson = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, response = BadQuery),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn get_case_file(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let query: FileQuery = parse_query(&req)?;
    let csv = match query.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("format must be json or csv, not '{other}'"),
            ));
        }
    };
    let id = path_id(&id, CaseId::parse)?;
    let file = casework::full_case_file(&state.store, &actor, &id).await?;
    if csv {
        return Ok(HttpResponse::Ok()
            .content_type("text/csv; charset=utf-8")
            .insert_header((
                "content-disposition",
                format!("attachment; filename=\"case-{id}.csv\""),
            ))
            .body(case_file_csv(&file)));
    }
    Ok(HttpResponse::Ok().json(case_file_json(&file)))
}

pub const CSV_HEADER: &str =
    "section,subject_id,source,kind,reference,date,amount_yen,amounts,attributes,status";

fn csv_field(out: &mut String, value: &str) {
    // Quote everything that could split or start a formula in a spreadsheet.
    if value.starts_with(['=', '+', '-', '@']) {
        out.push_str("\"'");
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        crate::csv::push_field(out, value);
    }
}

fn csv_row(out: &mut String, fields: [&str; 10]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push_str("\r\n");
}

/// The case file's findings as CSV (RFC 4180, CRLF): bank accounts and
/// outcomes, department records, then alerts.
pub fn case_file_csv(full: &FullCaseFile) -> String {
    use crate::domain::department::encode_fields;
    let mut out = String::new();
    out.push_str(CSV_HEADER);
    out.push_str("\r\n");
    for e in full.bank.entries.iter().filter(|e| !e.superseded) {
        let source = format!("{} {}", e.institution, e.institution_name);
        let subject = e.subject_id.to_string();
        match &e.outcome {
            Outcome::Found { accounts, .. } => {
                for a in accounts {
                    csv_row(
                        &mut out,
                        [
                            "bank",
                            &subject,
                            &source,
                            a.account_type.label_ja(),
                            &format!("{}-{}", a.branch, a.number),
                            &a.as_of.map(|d| d.to_string()).unwrap_or_default(),
                            &a.balance.map(|b| b.to_string()).unwrap_or_default(),
                            "",
                            &format!("holder_kana={}", a.holder_kana),
                            "found",
                        ],
                    );
                }
            }
            Outcome::NotFound => csv_row(
                &mut out,
                [
                    "bank",
                    &subject,
                    &source,
                    "",
                    "",
                    "",
                    "",
                    "",
                    "",
                    "not_found",
                ],
            ),
            Outcome::Refused { code, reason } => csv_row(
                &mut out,
                [
                    "bank",
                    &subject,
                    &source,
                    "",
                    "",
                    "",
                    "",
                    "",
                    &format!("{code} {reason}"),
                    "refused",
                ],
            ),
        }
    }
    for r in &full.departments {
        let rec = &r.record;
        let single = (rec.amounts.len() == 1)
            .then(|| rec.amounts.values().next().map(|v| v.to_string()))
            .flatten()
            .unwrap_or_default();
        csv_row(
            &mut out,
            [
                "department",
                rec.subject.as_str(),
                rec.department.as_str(),
                rec.kind.as_str(),
                &rec.source_id,
                &rec.effective_date.to_string(),
                &single,
                &encode_fields(&rec.amounts),
                &encode_fields(&rec.attributes),
                "current",
            ],
        );
    }
    for a in &full.alerts {
        let (subject, source, kind, date) = match &a.change {
            Some(c) => (
                c.subject.to_string(),
                c.department.as_str().to_owned(),
                c.record_kind.as_str().to_owned(),
                c.effective_date.to_string(),
            ),
            None => Default::default(),
        };
        csv_row(
            &mut out,
            [
                "alert",
                &subject,
                &source,
                &kind,
                &a.id.to_string(),
                &date,
                "",
                "",
                &a.detail,
                if a.acknowledged_at.is_some() {
                    "acknowledged"
                } else {
                    "open"
                },
            ],
        );
    }
    out
}

/// One connector's part of a comprehensive inquiry.
#[derive(Serialize, ToSchema)]
#[schema(as = ConnectorResult)]
pub(super) struct ConnectorResultJson {
    department: String,
    /// `pull` (REST/JSON) or `file` (CSV linkage).
    transport: String,
    /// `complete`, `partial` (some subjects failed) or `failed`.
    status: String,
    records: usize,
    /// Subjects the department could not answer for.
    failures: Vec<SubjectFailureJson>,
    /// Why the whole fetch failed: `timeout`, `transport_error`,
    /// `http_status`, `bad_response`, `io_error` or `store_error`.
    error_code: Option<String>,
    error: Option<String>,
    /// Refused lines of linkage files picked up on the way.
    warnings: Vec<String>,
    duration_ms: u64,
}

/// A subject a department could not answer for.
#[derive(Serialize, ToSchema)]
#[schema(as = SubjectFailure)]
pub(super) struct SubjectFailureJson {
    subject_id: SubjectId,
    reason: String,
}

/// The result of a comprehensive inquiry (総合照会).
#[derive(Serialize, ToSchema)]
#[schema(as = DepartmentInquiry)]
pub(super) struct DepartmentRunJson {
    run_id: String,
    case_id: CaseId,
    /// True when a connector failed or answered for only some subjects.
    partial: bool,
    duration_ms: u64,
    connectors: Vec<ConnectorResultJson>,
    /// Alerts raised by changes since the last fetch.
    alerts: Vec<AlertJson>,
}

/// Ask the departments (総合照会)
///
/// Queries every configured department connector for every subject of the
/// case, in parallel, each under its own timeout, and files the records in
/// the case file. A connector that fails or times out makes the result
/// `partial`; it is reported, not hidden. Changes since the last fetch
/// raise alerts.
#[utoipa::path(
    post,
    path = "/api/v1/cases/{id}/department-inquiry",
    tag = "cases",
    params(("id" = CaseId, Path, description = "The case.")),
    responses(
        (status = 200, description = "What each department returned.", body = DepartmentRunJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn department_inquiry(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let id = path_id(&id, CaseId::parse)?;
    let run = casework::department_inquiry(&state.store, &state.connectors, &actor, &id).await?;
    let alerts = state
        .store
        .case_alerts(&id)
        .await
        .map_err(casework::CaseworkError::from)?;
    let raised: Vec<i64> = run.raised.iter().map(|r| r.alert_id).collect();
    Ok(HttpResponse::Ok().json(DepartmentRunJson {
        run_id: run.run.to_string(),
        case_id: run.case.clone(),
        partial: run.partial(),
        duration_ms: run.duration.as_millis() as u64,
        connectors: run
            .outcomes
            .iter()
            .map(|o| ConnectorResultJson {
                department: o.department.as_str().to_owned(),
                transport: o.transport.as_str().to_owned(),
                status: o.status.as_str().to_owned(),
                records: o.records.len(),
                failures: o
                    .failures
                    .iter()
                    .map(|(s, why)| SubjectFailureJson {
                        subject_id: s.clone(),
                        reason: why.clone(),
                    })
                    .collect(),
                error_code: o.error.as_ref().map(|(c, _)| (*c).to_owned()),
                error: o.error.as_ref().map(|(_, m)| m.clone()),
                warnings: o.warnings.clone(),
                duration_ms: o.duration.as_millis() as u64,
            })
            .collect(),
        alerts: alerts
            .iter()
            .filter(|a| raised.contains(&a.id))
            .map(alert_json)
            .collect(),
    }))
}

/// A file picked up by file linkage.
#[derive(Serialize, ToSchema)]
#[schema(as = LinkageFile)]
pub(super) struct LinkageFileJson {
    department: String,
    file_name: String,
    sha256: String,
    loaded_rows: i64,
    /// `line N: reason` for each refused line.
    errors: Vec<String>,
    #[schema(format = DateTime)]
    imported_at: String,
}

/// Linkage files picked up.
#[derive(Serialize, ToSchema)]
#[schema(as = LinkageFileList)]
pub(super) struct LinkageFileListJson {
    files: Vec<LinkageFileJson>,
}

/// List linkage files (admin)
///
/// Every CSV file the file-linkage connectors picked up, newest first, with
/// the rows loaded and each refused line.
#[utoipa::path(
    get,
    path = "/api/v1/admin/linkage-files",
    tag = "admin",
    responses(
        (status = 200, description = "The files.", body = LinkageFileListJson),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
    )
)]
pub(super) async fn list_linkage_files(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let actor = actor(&req, &state).await?;
    let files = casework::linkage_files(&state.store, &actor).await?;
    Ok(HttpResponse::Ok().json(LinkageFileListJson {
        files: files
            .into_iter()
            .map(|f| LinkageFileJson {
                department: f.department.as_str().to_owned(),
                file_name: f.file_name,
                sha256: f.sha256,
                loaded_rows: f.loaded_rows,
                errors: f.errors,
                imported_at: rfc3339(f.imported_at),
            })
            .collect(),
    }))
}
