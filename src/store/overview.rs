//! What the web UI's pickers and the admin queue page read: institution
//! search over the zengin directory, the quick-pick lists, and the delivery
//! queue per institution.

use std::collections::BTreeMap;

use super::{Result, Store, StoreError, get_i64, get_opt_i64, get_opt_str, get_str, q};
use crate::domain::ids::CaseId;
use crate::domain::zengin::InstitutionCode;

/// An institution as a picker shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstitutionRef {
    pub code: InstitutionCode,
    pub name: String,
    pub kana: String,
}

fn refs(rows: &[sqlx::any::AnyRow]) -> Result<Vec<InstitutionRef>> {
    rows.iter()
        .map(|r| {
            Ok(InstitutionRef {
                code: InstitutionCode::parse(&get_str(r, "code")?)?,
                name: get_str(r, "name")?,
                kana: get_str(r, "kana")?,
            })
        })
        .collect()
}

/// One institution's line on the queue page.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InstitutionQueue {
    pub code: String,
    pub name: String,
    pub channel: String,
    pub paused: bool,
    pub queued: i64,
    /// Sealed into a batch, not yet acknowledged by the bank.
    pub in_flight: i64,
    /// Delivered, waiting for the answer.
    pub awaiting: i64,
    pub answered: i64,
    pub failed: i64,
    pub overdue: i64,
    /// Age of the oldest inquiry without an answer.
    pub oldest_waiting_ms: Option<i64>,
    pub breaker_open: bool,
    pub consecutive_failures: i64,
    pub dead_batches: i64,
    pub last_error: Option<String>,
    /// From filing to the first answer, over the last 30 days.
    pub answer_p50_ms: Option<i64>,
    pub answer_p95_ms: Option<i64>,
    /// Of the inquiries filed in the last 30 days that are finished or past
    /// due, the share that has an answer (any outcome).
    pub response_rate: Option<f64>,
}

/// The `p`-th percentile (0–100) of sorted values, nearest rank.
pub fn percentile(sorted: &[i64], p: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

impl Store {
    /// Institutions whose code starts with, or whose name or kana contains,
    /// the query; `kana` is the query normalised to full-width katakana.
    pub async fn search_institutions(
        &self,
        query: &str,
        kana: Option<&str>,
        limit: i64,
    ) -> Result<Vec<InstitutionRef>> {
        // The query is text, not a pattern: its % and _ match themselves.
        let escape = |t: &str| t.replace('!', "!!").replace('%', "!%").replace('_', "!_");
        let rows = q("SELECT code, name, kana FROM institutions \
             WHERE code LIKE $1 || '%' ESCAPE '!' \
             OR lower(name) LIKE '%' || lower($1) || '%' ESCAPE '!' \
             OR kana LIKE '%' || $2 || '%' ESCAPE '!' ORDER BY code LIMIT $3"
            .to_owned())
        .bind(escape(query))
        .bind(escape(kana.unwrap_or(query)))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        refs(&rows)
    }

    pub async fn declared_institutions(&self, case: &CaseId) -> Result<Vec<InstitutionRef>> {
        let rows = q("SELECT i.code, i.name, i.kana FROM case_declared_institutions d \
             JOIN institutions i ON i.code = d.institution_code WHERE d.case_id = $1 ORDER BY i.code"
            .to_owned())
        .bind(case.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        refs(&rows)
    }

    /// The office's standing list of institutions to ask (調査先リスト).
    pub async fn office_institutions(&self, office: &str) -> Result<Vec<InstitutionRef>> {
        let rows = q("SELECT i.code, i.name, i.kana FROM office_institutions o \
             JOIN institutions i ON i.code = o.institution_code WHERE o.office = $1 ORDER BY i.code"
            .to_owned())
        .bind(office.to_owned())
        .fetch_all(&self.pool)
        .await?;
        refs(&rows)
    }

    pub async fn add_office_institution(&self, office: &str, code: &InstitutionCode) -> Result<()> {
        if self.institution(code).await?.is_none() {
            return Err(StoreError::NotFound(format!("institution {code}")));
        }
        q(
            "INSERT INTO office_institutions (office, institution_code) VALUES ($1, $2) \
             ON CONFLICT DO NOTHING"
                .to_owned(),
        )
        .bind(office.to_owned())
        .bind(code.as_str().to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn remove_office_institution(
        &self,
        office: &str,
        code: &InstitutionCode,
    ) -> Result<()> {
        q(
            "DELETE FROM office_institutions WHERE office = $1 AND institution_code = $2"
                .to_owned(),
        )
        .bind(office.to_owned())
        .bind(code.as_str().to_owned())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The delivery queue per institution: every institution that is not on
    /// the default paper channel untouched, or that has inquiries.
    pub async fn queue_overview(
        &self,
        now: i64,
        today: chrono::NaiveDate,
    ) -> Result<Vec<InstitutionQueue>> {
        let mut by_code: BTreeMap<String, InstitutionQueue> = BTreeMap::new();
        let institutions = q("SELECT code, name, channel, paused, consecutive_failures, \
             breaker_open_until FROM institutions \
             WHERE channel <> 'paper' OR code IN (SELECT institution_code FROM inquiries)"
            .to_owned())
        .fetch_all(&self.pool)
        .await?;
        for r in &institutions {
            let code = get_str(r, "code")?;
            by_code.insert(
                code.clone(),
                InstitutionQueue {
                    code,
                    name: get_str(r, "name")?,
                    channel: get_str(r, "channel")?,
                    paused: get_i64(r, "paused")? != 0,
                    consecutive_failures: get_i64(r, "consecutive_failures")?,
                    breaker_open: get_opt_i64(r, "breaker_open_until")?.is_some_and(|t| t > now),
                    ..Default::default()
                },
            );
        }
        let states = q("SELECT institution_code, state, COUNT(*) AS n, \
             SUM(CASE WHEN due_date < $1 THEN 1 ELSE 0 END) AS overdue, MIN(created_at) AS oldest \
             FROM inquiries GROUP BY institution_code, state"
            .to_owned())
        .bind(today.to_string())
        .fetch_all(&self.pool)
        .await?;
        for r in &states {
            let Some(line) = by_code.get_mut(&get_str(r, "institution_code")?) else {
                continue;
            };
            let n = get_i64(r, "n")?;
            let waiting = match get_str(r, "state")?.as_str() {
                "queued" => {
                    line.queued += n;
                    true
                }
                "batched" => {
                    line.in_flight += n;
                    true
                }
                "delivered" => {
                    line.awaiting += n;
                    true
                }
                "answered" | "not_found" | "refused" => {
                    line.answered += n;
                    false
                }
                "failed" => {
                    line.failed += n;
                    false
                }
                _ => false,
            };
            if waiting {
                line.overdue += get_i64(r, "overdue")?;
                let age = now - get_i64(r, "oldest")?;
                line.oldest_waiting_ms = Some(line.oldest_waiting_ms.map_or(age, |a| a.max(age)));
            }
        }
        let dead = q("SELECT institution_code, COUNT(*) AS dead FROM batches \
             WHERE state = 'dead' GROUP BY institution_code"
            .to_owned())
        .fetch_all(&self.pool)
        .await?;
        for r in &dead {
            if let Some(line) = by_code.get_mut(&get_str(r, "institution_code")?) {
                line.dead_batches = get_i64(r, "dead")?;
            }
        }
        // Oldest first, so the newest error is the one that stays.
        let errors = q("SELECT institution_code, last_error FROM batches \
             WHERE last_error IS NOT NULL AND state IN ('dead', 'retry_wait', 'in_flight') \
             ORDER BY updated_at"
            .to_owned())
        .fetch_all(&self.pool)
        .await?;
        for r in &errors {
            if let Some(line) = by_code.get_mut(&get_str(r, "institution_code")?) {
                line.last_error = get_opt_str(r, "last_error")?;
            }
        }
        // Answer times and response rate over the last 30 days.
        let since = now - 30 * 86_400_000;
        let answered = q(
            "SELECT i.institution_code, a.received_at - i.created_at AS waited \
             FROM answers a JOIN inquiries i ON i.id = a.inquiry_id \
             WHERE a.revision = 1 AND a.received_at >= $1"
                .to_owned(),
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        let mut waits: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for r in &answered {
            waits
                .entry(get_str(r, "institution_code")?)
                .or_default()
                .push(get_i64(r, "waited")?);
        }
        // Of the inquiries filed in the window that should have an answer by
        // now (finished, or past their due date), the share that has one.
        let delivered = q("SELECT institution_code, COUNT(*) AS n, \
             SUM(CASE WHEN state IN ('answered', 'not_found', 'refused') THEN 1 ELSE 0 END) AS done \
             FROM inquiries WHERE created_at >= $1 \
             AND (state IN ('answered', 'not_found', 'refused', 'failed') \
                  OR (state IN ('batched', 'delivered') AND due_date < $2)) \
             GROUP BY institution_code"
            .to_owned())
        .bind(since)
        .bind(today.to_string())
        .fetch_all(&self.pool)
        .await?;
        for r in &delivered {
            if let Some(line) = by_code.get_mut(&get_str(r, "institution_code")?) {
                let n = get_i64(r, "n")?;
                if n > 0 {
                    line.response_rate = Some(get_i64(r, "done")? as f64 / n as f64);
                }
            }
        }
        for (code, mut w) in waits {
            if let Some(line) = by_code.get_mut(&code) {
                w.sort_unstable();
                line.answer_p50_ms = percentile(&w, 50.0);
                line.answer_p95_ms = percentile(&w, 95.0);
            }
        }
        Ok(by_code.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentiles() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7], 95.0), Some(7));
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 95.0), Some(95));
    }
}
