//! Closing cases and purging personal data past the retention period.

use super::{Priority, Result, Store, StoreError, get_i64, get_str, q};
use crate::domain::audit::{AuditAction, AuditEntry};
use crate::domain::ids::CaseId;

/// What one purge removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PurgeCounts {
    pub cases: i64,
    pub subjects: i64,
    pub requests: i64,
    pub inquiries: i64,
    pub answers: i64,
    pub batch_payloads: i64,
}

impl Store {
    /// Marks a case closed. Its open inquiries must be cancelled or answered
    /// first: a closed case asks nobody anything.
    pub async fn close_case(&self, id: &CaseId, now: i64) -> Result<()> {
        // A caseworker closes the case and waits for it.
        let mut tx = self.begin(Priority::Interactive).await?;
        // Lock the case first: a request being filed for it waits, or sees it
        // closed (insert_request takes the same lock).
        q(format!(
            "SELECT id FROM cases WHERE id = $1{}",
            self.dialect.for_update()
        ))
        .bind(id.as_str().to_owned())
        .fetch_optional(&mut *tx)
        .await?;
        let open = q("SELECT COUNT(*) AS n FROM inquiries WHERE case_id = $1 \
               AND state IN ('queued', 'batched', 'delivered')"
            .to_owned())
        .bind(id.as_str().to_owned())
        .fetch_one(&mut *tx)
        .await?;
        let n = get_i64(&open, "n")?;
        if n > 0 {
            return Err(StoreError::Conflict(format!(
                "case {id} has {n} inquiries without an answer; cancel them first"
            )));
        }
        let done =
            q("UPDATE cases SET closed_at = $1 WHERE id = $2 AND closed_at IS NULL".to_owned())
                .bind(now)
                .bind(id.as_str().to_owned())
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("open case {id}")));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes every row holding personal data of cases closed before
    /// `cutoff`, and blanks the payloads of finished batches last touched
    /// before it. One transaction per case, so a purge can stop anywhere.
    pub async fn purge_closed_cases(
        &self,
        cutoff: i64,
        retention_days: u32,
    ) -> Result<(PurgeCounts, Vec<CaseId>)> {
        let rows = q("SELECT id FROM cases WHERE closed_at IS NOT NULL AND closed_at < $1 ORDER BY closed_at".to_owned())
            .bind(cutoff)
            .fetch_all(&self.pool)
            .await?;
        let mut counts = PurgeCounts::default();
        let mut purged = Vec::new();
        for row in rows {
            let id = get_str(&row, "id")?;
            let mut tx = self.begin(Priority::Background).await?;
            let mut case_counts = PurgeCounts::default();
            let answers = "SELECT id FROM answers WHERE case_id = $1";
            let steps: [(&str, String); 16] = [
                ("", format!("DELETE FROM answer_transactions WHERE account_id IN \
                     (SELECT c.id FROM answer_accounts c WHERE c.answer_id IN ({answers}))")),
                ("", format!("DELETE FROM answer_accounts WHERE answer_id IN ({answers})")),
                ("", format!("DELETE FROM answer_other_holdings WHERE answer_id IN ({answers})")),
                ("answers", "DELETE FROM answers WHERE case_id = $1".to_owned()),
                ("", "DELETE FROM inquiry_events WHERE inquiry_id IN (SELECT id FROM inquiries WHERE case_id = $1)".to_owned()),
                // By the batch first, the key's leading column, then the case's ids.
                ("", "DELETE FROM batch_inquiries WHERE batch_id IN (SELECT batch_id FROM inquiries \
                     WHERE case_id = $1 AND batch_id IS NOT NULL) \
                     AND inquiry_id IN (SELECT id FROM inquiries WHERE case_id = $1)".to_owned()),
                ("", "DELETE FROM case_alerts WHERE case_id = $1".to_owned()),
                ("", "DELETE FROM department_records WHERE case_id = $1".to_owned()),
                ("", "DELETE FROM department_baselines WHERE case_id = $1".to_owned()),
                ("", "DELETE FROM case_declared_institutions WHERE case_id = $1".to_owned()),
                ("", "DELETE FROM department_fetches WHERE case_id = $1".to_owned()),
                ("", "DELETE FROM feed_events WHERE case_id = $1".to_owned()),
                ("inquiries", "DELETE FROM inquiries WHERE case_id = $1".to_owned()),
                ("requests", "DELETE FROM requests WHERE case_id = $1".to_owned()),
                ("subjects", "DELETE FROM subjects WHERE case_id = $1".to_owned()),
                ("cases", "DELETE FROM cases WHERE id = $1".to_owned()),
            ];
            for (counted, sql) in steps {
                let n = q(sql)
                    .bind(id.clone())
                    .execute(&mut *tx)
                    .await?
                    .rows_affected() as i64;
                match counted {
                    "answers" => case_counts.answers += n,
                    "inquiries" => case_counts.inquiries += n,
                    "requests" => case_counts.requests += n,
                    "subjects" => case_counts.subjects += n,
                    "cases" => case_counts.cases += n,
                    _ => {}
                }
            }
            if case_counts.cases == 0 {
                // Another process purged it first.
                tx.rollback().await?;
                continue;
            }
            // The trace commits with the deletion, or neither does.
            let c = &case_counts;
            let entry = AuditEntry {
                at: crate::domain::time::now_millis(),
                actor: "system:retention".into(),
                role: "system".into(),
                office: String::new(),
                action: AuditAction::Purge,
                target: format!(
                    "case:{id}: {} subjects, {} requests, {} inquiries, {} answers (retention {retention_days} days)",
                    c.subjects, c.requests, c.inquiries, c.answers
                ),
                case_id: Some(id.clone()),
                purpose: None,
                legal_basis: None,
            };
            self.append_audit_in(&mut tx, std::slice::from_ref(&entry))
                .await?;
            tx.commit().await?;
            counts.cases += c.cases;
            counts.subjects += c.subjects;
            counts.requests += c.requests;
            counts.inquiries += c.inquiries;
            counts.answers += c.answers;
            purged.push(CaseId::from_trusted(id));
        }
        // A batch left with no inquiry (all purged) is never sent again: it
        // is closed as dead, and its payload goes with the rest.
        q(
            "UPDATE batches SET state = 'dead', last_error = 'all of its inquiries were purged', \
           claim_token = NULL, lease_until = NULL WHERE state IN ('sealed', 'retry_wait') \
           AND NOT EXISTS (SELECT 1 FROM batch_inquiries m WHERE m.batch_id = batches.id)"
                .to_owned(),
        )
        .execute(&self.pool)
        .await?;
        // A blanked payload is empty bytes, stored as they are.
        let identity = super::payload::Encoding::Identity.as_str();
        let orphans = q("UPDATE batch_payloads SET payload = $1, encoding = $2 WHERE payload <> $1 \
               AND batch_id IN (SELECT b.id FROM batches b WHERE b.state IN ('acknowledged', 'dead') \
               AND NOT EXISTS (SELECT 1 FROM batch_inquiries m WHERE m.batch_id = b.id))"
            .to_owned())
        .bind(Vec::<u8>::new())
        .bind(identity)
        .execute(&self.pool)
        .await?;
        // Payloads carry names and birth dates of many cases at once: blank
        // those of delivered batches older than the cutoff. (Dead ones stay:
        // an admin may still send them again.)
        let blanked = q(
            "UPDATE batch_payloads SET payload = $1, encoding = $2 WHERE payload <> $1 AND batch_id IN \
               (SELECT id FROM batches WHERE state = 'acknowledged' AND updated_at < $3)"
                .to_owned(),
        )
        .bind(Vec::<u8>::new())
        .bind(identity)
        .bind(cutoff)
        .execute(&self.pool)
        .await?;
        counts.batch_payloads = blanked.rows_affected() as i64 + orphans.rows_affected() as i64;
        Ok((counts, purged))
    }
}
