//! Department data: each case's last snapshot per department, the fetch
//! log, file-linkage imports, and change alerts (with their feed events)
//! written in the transaction that finds them.

use std::collections::HashSet;

use chrono::NaiveDate;
use sqlx::any::AnyRow;

use super::{
    Priority, Result, Store, StoreError, get_i64, get_opt_str, get_str, parse_date, placeholders, q,
};
use crate::domain::department::{
    Change, Comparison, Department, DepartmentRecord, FetchStatus, FetchTrigger, PersonRecord,
    RecordKind, decode_amounts, decode_fields, detect_changes, encode_fields,
};
use crate::domain::feed::FeedKind;
use crate::domain::ids::{CaseId, FetchRunId, SubjectId};
use crate::domain::kana::KanaName;

/// One connector's result, as the store records it.
#[derive(Debug, Clone)]
pub struct FetchApply<'a> {
    pub case: &'a CaseId,
    pub run: &'a FetchRunId,
    pub trigger: FetchTrigger,
    pub department: Department,
    pub status: FetchStatus,
    pub records: &'a [DepartmentRecord],
    /// Every subject the department was asked about.
    pub asked: &'a [SubjectId],
    /// Subjects the department failed for: their records stay as they were.
    pub unanswered: &'a HashSet<SubjectId>,
    pub error: Option<&'a str>,
    pub started_at: i64,
    pub duration_ms: i64,
}

/// A change alert that was raised (not a repeat of one already raised).
#[derive(Debug, Clone)]
pub struct RaisedChange {
    pub alert_id: i64,
    pub change: Change,
}

/// A department record in a case file, with when it was fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDepartmentRecord {
    pub record: DepartmentRecord,
    pub fetched_at: i64,
}

/// One row of the fetch log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchLogEntry {
    pub run: FetchRunId,
    pub trigger: FetchTrigger,
    pub department: Department,
    pub status: FetchStatus,
    pub records: i64,
    pub changes: i64,
    pub error: Option<String>,
    pub started_at: i64,
    pub duration_ms: i64,
}

/// One linkage file to load.
#[derive(Debug, Clone, Copy)]
pub struct LinkageImport<'a> {
    pub department: Department,
    pub file_name: &'a str,
    pub sha256: &'a str,
    pub rows: &'a [PersonRecord],
    /// `line N: reason` for each refused line.
    pub errors: &'a [String],
    /// A full extract: the department's earlier records are replaced.
    pub replace: bool,
}

/// A file picked up by file linkage, with the lines it refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkageFileRecord {
    pub id: i64,
    pub department: Department,
    pub file_name: String,
    pub sha256: String,
    pub loaded_rows: i64,
    /// `line N: reason`, one per refused line.
    pub errors: Vec<String>,
    pub imported_at: i64,
}

fn record_from_row(
    row: &AnyRow,
    department: Department,
    subject: SubjectId,
) -> Result<DepartmentRecord> {
    Ok(DepartmentRecord {
        department,
        kind: RecordKind::parse(department, &get_str(row, "kind")?)?,
        subject,
        source_id: get_str(row, "source_id")?,
        effective_date: parse_date(&get_str(row, "effective_date")?)?,
        amounts: decode_amounts(&get_str(row, "amounts")?)?,
        attributes: decode_fields(&get_str(row, "attributes")?)?,
    })
}

impl Store {
    /// Records one connector's fetch for a case in one transaction: the log
    /// row; for an answered fetch, the changes against the last snapshot as
    /// alerts (a repeat of a raised change is skipped by its key), and the
    /// new snapshot. What a department first says about a subject is its
    /// baseline and raises nothing. Fetches of one case are serialised on
    /// the case row, and a fetch that started before the one the snapshot
    /// came from is logged but not applied, so a slow fetch cannot put older
    /// data back.
    pub async fn apply_department_fetch(
        &self,
        f: &FetchApply<'_>,
        now: i64,
    ) -> Result<Vec<RaisedChange>> {
        let mut tx = self.begin(Priority::Background).await?;
        let case = f.case.as_str().to_owned();
        let dept = f.department.as_str();
        q(format!(
            "SELECT id FROM cases WHERE id = $1{}",
            self.dialect.for_update()
        ))
        .bind(case.clone())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("case {case}")))?;
        let last = q("SELECT id, started_at FROM department_fetches \
             WHERE case_id = $1 AND department = $2 AND status <> 'failed' \
             ORDER BY started_at DESC, id DESC LIMIT 1"
            .to_owned())
        .bind(case.clone())
        .bind(dept)
        .fetch_optional(&mut *tx)
        .await?;
        let (previous_fetch, stale) = match &last {
            Some(row) => (
                get_i64(row, "id")?,
                f.started_at < get_i64(row, "started_at")?,
            ),
            None => (0, false),
        };
        let mut raised = Vec::new();
        if f.status != FetchStatus::Failed && !stale {
            let baselined: HashSet<SubjectId> = q("SELECT subject_id FROM department_baselines \
                 WHERE case_id = $1 AND department = $2"
                .to_owned())
            .bind(case.clone())
            .bind(dept)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| Ok(SubjectId::from_trusted(get_str(r, "subject_id")?)))
            .collect::<Result<_>>()?;
            let first_answered: HashSet<SubjectId> = f
                .asked
                .iter()
                .filter(|s| !f.unanswered.contains(*s) && !baselined.contains(*s))
                .cloned()
                .collect();
            let rows = q(
                "SELECT source_id, subject_id, kind, effective_date, amounts, attributes \
                 FROM department_records WHERE case_id = $1 AND department = $2"
                    .to_owned(),
            )
            .bind(case.clone())
            .bind(dept)
            .fetch_all(&mut *tx)
            .await?;
            let before = rows
                .iter()
                .map(|r| {
                    record_from_row(
                        r,
                        f.department,
                        SubjectId::from_trusted(get_str(r, "subject_id")?),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            let changes = detect_changes(&Comparison {
                before: &before,
                after: f.records,
                unanswered: f.unanswered,
                first_answered: &first_answered,
                previous_fetch,
            });
            for subject in &first_answered {
                q(
                    "INSERT INTO department_baselines (case_id, department, subject_id) \
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
                        .to_owned(),
                )
                .bind(case.clone())
                .bind(dept)
                .bind(subject.as_str().to_owned())
                .execute(&mut *tx)
                .await?;
            }
            // The new snapshot: everything but the unanswered subjects' rows
            // is replaced by what came back.
            let keep: Vec<String> = f.unanswered.iter().map(|s| s.as_str().to_owned()).collect();
            let mut delete =
                "DELETE FROM department_records WHERE case_id = $1 AND department = $2".to_owned();
            if !keep.is_empty() {
                delete.push_str(&format!(
                    " AND subject_id NOT IN ({})",
                    placeholders(2, keep.len())
                ));
            }
            let mut del = q(delete).bind(case.clone()).bind(dept);
            for s in keep {
                del = del.bind(s);
            }
            del.execute(&mut *tx).await?;
            for r in f.records {
                q(
                    "INSERT INTO department_records (case_id, department, source_id, subject_id, \
                     kind, effective_date, amounts, attributes, fetched_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
                     ON CONFLICT (case_id, department, source_id) DO UPDATE SET \
                     subject_id = $4, kind = $5, effective_date = $6, amounts = $7, \
                     attributes = $8, fetched_at = $9"
                        .to_owned(),
                )
                .bind(case.clone())
                .bind(dept)
                .bind(r.source_id.clone())
                .bind(r.subject.as_str().to_owned())
                .bind(r.kind.as_str())
                .bind(r.effective_date.to_string())
                .bind(encode_fields(&r.amounts))
                .bind(encode_fields(&r.attributes))
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            for change in changes {
                let id = q("INSERT INTO case_alerts (case_id, kind, detail, created_at, department, \
                     subject_id, record_kind, field, before_value, after_value, effective_date, \
                     suggested_action, dedup_key) \
                     VALUES ($1, 'department_change', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
                     ON CONFLICT (case_id, dedup_key) DO NOTHING RETURNING id"
                    .to_owned())
                .bind(case.clone())
                .bind(change.describe())
                .bind(now)
                .bind(dept)
                .bind(change.subject.as_str().to_owned())
                .bind(change.kind.as_str())
                .bind(change.field_names())
                .bind(change.before_text())
                .bind(change.after_text())
                .bind(change.effective_date.to_string())
                .bind(change.suggested_action.code())
                .bind(change.dedup_key.clone())
                .fetch_optional(&mut *tx)
                .await?;
                if let Some(row) = id {
                    let alert_id = get_i64(&row, "id")?;
                    self.enqueue_feed_event(
                        &mut tx,
                        f.case,
                        FeedKind::AlertRaised,
                        &alert_id.to_string(),
                        now,
                    )
                    .await?;
                    raised.push(RaisedChange { alert_id, change });
                }
            }
        }
        q(
            "INSERT INTO department_fetches (case_id, run_id, trigger_kind, department, status, \
             records, changes, error, started_at, duration_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                .to_owned(),
        )
        .bind(case)
        .bind(f.run.as_str().to_owned())
        .bind(f.trigger.as_str())
        .bind(dept)
        .bind(f.status.as_str())
        .bind(f.records.len() as i64)
        .bind(raised.len() as i64)
        .bind(if stale {
            Some("started before the fetch the snapshot came from: logged, not applied".to_owned())
        } else {
            f.error.map(str::to_owned)
        })
        .bind(f.started_at)
        .bind(f.duration_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(raised)
    }

    /// Tells the feed that a run over a case's departments finished.
    pub async fn record_department_run(
        &self,
        case: &CaseId,
        run: &FetchRunId,
        now: i64,
    ) -> Result<()> {
        // Without a feed there is nothing to write: no empty write transaction.
        if !self.feed_events {
            return Ok(());
        }
        let mut tx = self.begin(Priority::Background).await?;
        self.enqueue_feed_event(
            &mut tx,
            case,
            FeedKind::DepartmentInquiryCompleted,
            run.as_str(),
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The records of a case's last snapshot, by department and record id.
    pub async fn department_records(&self, case: &CaseId) -> Result<Vec<StoredDepartmentRecord>> {
        let rows = q(
            "SELECT department, source_id, subject_id, kind, effective_date, amounts, \
             attributes, fetched_at FROM department_records WHERE case_id = $1 \
             ORDER BY department, subject_id, kind, source_id"
                .to_owned(),
        )
        .bind(case.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let department = Department::parse(&get_str(r, "department")?)?;
                Ok(StoredDepartmentRecord {
                    record: record_from_row(
                        r,
                        department,
                        SubjectId::from_trusted(get_str(r, "subject_id")?),
                    )?,
                    fetched_at: get_i64(r, "fetched_at")?,
                })
            })
            .collect()
    }

    /// The fetch log of a case, oldest first.
    pub async fn department_fetches(&self, case: &CaseId) -> Result<Vec<FetchLogEntry>> {
        let rows = q(
            "SELECT run_id, trigger_kind, department, status, records, changes, error, \
             started_at, duration_ms FROM department_fetches WHERE case_id = $1 ORDER BY id"
                .to_owned(),
        )
        .bind(case.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FetchLogEntry {
                    run: FetchRunId::from_trusted(get_str(r, "run_id")?),
                    trigger: FetchTrigger::parse(&get_str(r, "trigger_kind")?)?,
                    department: Department::parse(&get_str(r, "department")?)?,
                    status: FetchStatus::parse(&get_str(r, "status")?)?,
                    records: get_i64(r, "records")?,
                    changes: get_i64(r, "changes")?,
                    error: get_opt_str(r, "error")?,
                    started_at: get_i64(r, "started_at")?,
                    duration_ms: get_i64(r, "duration_ms")?,
                })
            })
            .collect()
    }

    /// Open cases whose departments were asked at least once: the re-query
    /// watches them for changes.
    pub async fn cases_to_requery(&self) -> Result<Vec<CaseId>> {
        let rows = q(
            "SELECT c.id FROM cases c WHERE c.closed_at IS NULL AND EXISTS \
             (SELECT 1 FROM department_fetches f WHERE f.case_id = c.id) ORDER BY c.id"
                .to_owned(),
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(CaseId::from_trusted(get_str(r, "id")?)))
            .collect()
    }

    /// Takes or renews the lease on a periodic task for `holder`; false while
    /// another process holds it. One process of many runs the task.
    pub async fn take_task_lease(
        &self,
        name: &str,
        holder: &str,
        lease_ms: i64,
        now: i64,
    ) -> Result<bool> {
        let taken = q(
            "INSERT INTO task_leases (name, holder, lease_until) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = $2, lease_until = $3 \
             WHERE task_leases.lease_until < $4 OR task_leases.holder = $2"
                .to_owned(),
        )
        .bind(name.to_owned())
        .bind(holder.to_owned())
        .bind(now + lease_ms)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(taken.rows_affected() == 1)
    }

    /// True when this department's file with this content was picked up.
    pub async fn linkage_file_seen(&self, department: Department, sha256: &str) -> Result<bool> {
        Ok(
            q(
                "SELECT 1 AS one FROM linkage_files WHERE department = $1 AND sha256 = $2"
                    .to_owned(),
            )
            .bind(department.as_str())
            .bind(sha256.to_owned())
            .fetch_optional(&self.pool)
            .await?
            .is_some(),
        )
    }

    /// Loads one linkage file's good rows and notes the refused lines, in one
    /// transaction. A full extract (`replace`) first removes the department's
    /// records, so what the department no longer holds is gone; a delta only
    /// adds and updates. A file already loaded (same department and content)
    /// is refused with `Conflict` and changes nothing.
    pub async fn import_linkage_file(&self, f: &LinkageImport<'_>, now: i64) -> Result<i64> {
        let dept = f.department.as_str();
        let mut tx = self.begin(Priority::Background).await?;
        let inserted = q(
            "INSERT INTO linkage_files (department, file_name, sha256, loaded_rows, \
             errors, imported_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (department, sha256) DO NOTHING RETURNING id"
                .to_owned(),
        )
        .bind(dept)
        .bind(f.file_name.to_owned())
        .bind(f.sha256.to_owned())
        .bind(f.rows.len() as i64)
        .bind(f.errors.join("\n"))
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = inserted else {
            return Err(StoreError::Conflict(format!(
                "{} was already loaded for {dept}",
                f.file_name
            )));
        };
        let file_id = get_i64(&row, "id")?;
        if f.replace {
            q("DELETE FROM linkage_records WHERE department = $1".to_owned())
                .bind(dept)
                .execute(&mut *tx)
                .await?;
        }
        // Many rows per statement: a city's extract has tens of thousands.
        super::insert_rows(
            &mut tx,
            self.dialect,
            "INSERT INTO linkage_records (department, source_id, kana_name, birth_date, kind, \
             effective_date, amounts, attributes, file_id)",
            9,
            f.rows,
            " ON CONFLICT (department, source_id) DO UPDATE SET kana_name = excluded.kana_name, \
             birth_date = excluded.birth_date, kind = excluded.kind, \
             effective_date = excluded.effective_date, amounts = excluded.amounts, \
             attributes = excluded.attributes, file_id = excluded.file_id",
            |query, r| {
                query
                    .bind(dept)
                    .bind(r.source_id.clone())
                    .bind(r.kana_name.match_key())
                    .bind(r.birth_date.to_string())
                    .bind(r.kind.as_str())
                    .bind(r.effective_date.to_string())
                    .bind(encode_fields(&r.amounts))
                    .bind(encode_fields(&r.attributes))
                    .bind(file_id)
            },
        )
        .await?;
        tx.commit().await?;
        Ok(file_id)
    }

    /// The loaded linkage records about one person.
    pub async fn linkage_records_for(
        &self,
        department: Department,
        kana_name: &KanaName,
        birth_date: NaiveDate,
        subject: &SubjectId,
    ) -> Result<Vec<DepartmentRecord>> {
        let rows = q(
            "SELECT source_id, kind, effective_date, amounts, attributes \
             FROM linkage_records WHERE department = $1 AND kana_name = $2 AND birth_date = $3 \
             ORDER BY source_id"
                .to_owned(),
        )
        .bind(department.as_str())
        .bind(kana_name.match_key())
        .bind(birth_date.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| record_from_row(r, department, subject.clone()))
            .collect()
    }

    /// Every linkage file picked up, newest first.
    pub async fn linkage_files(&self) -> Result<Vec<LinkageFileRecord>> {
        let rows = q(
            "SELECT id, department, file_name, sha256, loaded_rows, errors, imported_at \
             FROM linkage_files ORDER BY id DESC"
                .to_owned(),
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let errors = get_str(r, "errors")?;
                Ok(LinkageFileRecord {
                    id: get_i64(r, "id")?,
                    department: Department::parse(&get_str(r, "department")?)?,
                    file_name: get_str(r, "file_name")?,
                    sha256: get_str(r, "sha256")?,
                    loaded_rows: get_i64(r, "loaded_rows")?,
                    errors: errors
                        .lines()
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    imported_at: get_i64(r, "imported_at")?,
                })
            })
            .collect()
    }
}
