//! The case-file feed's outbox. Events are written in the transaction of
//! what they tell, then claimed under a lease with a fencing token and
//! finished like batches: delivered, retry at a time, or dead.

use super::script::Script;
use super::{BatchFinish, Priority, Result, Store, StoreError, get_i64, get_opt_i64, get_str, q};
use crate::domain::feed::{FeedEvent, FeedKind};
use crate::domain::ids::{CaseId, ClaimToken, EventId};

/// An event claimed for one delivery attempt.
#[derive(Debug, Clone)]
pub struct ClaimedEvent {
    pub event: FeedEvent,
    pub claim: ClaimToken,
    /// This attempt's number, 1-based.
    pub attempt: u32,
    pub first_attempt_at: i64,
}

/// Counts of the outbox by state, for `/metrics` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedCounts {
    pub pending: i64,
    pub delivered: i64,
    pub dead: i64,
}

fn event_from_row(r: &sqlx::any::AnyRow) -> Result<FeedEvent> {
    Ok(FeedEvent {
        id: EventId::from_trusted(get_str(r, "id")?),
        kind: FeedKind::parse(&get_str(r, "kind")?)?,
        case: CaseId::from_trusted(get_str(r, "case_id")?),
        subject_ref: get_str(r, "subject_ref")?,
        occurred_at: get_i64(r, "occurred_at")?,
    })
}

impl Store {
    /// Adds an event to the outbox inside the caller's transaction, when the
    /// feed is on (`StoreConfig::feed_events`).
    pub(super) async fn enqueue_feed_event(
        &self,
        tx: &mut super::WriteTx,
        case: &CaseId,
        kind: FeedKind,
        subject_ref: &str,
        now: i64,
    ) -> Result<()> {
        let mut script = Script::new(self.dialect);
        let event = (case.as_str().to_owned(), kind, subject_ref.to_owned());
        self.push_feed_events(&mut script, vec![event], now);
        script.run(tx).await?;
        Ok(())
    }

    /// Adds events, as (case, kind, subject reference), to a script of the
    /// transaction of what they tell, when the feed is on.
    pub(super) fn push_feed_events(
        &self,
        script: &mut Script<'_>,
        events: Vec<(String, FeedKind, String)>,
        now: i64,
    ) {
        if !self.feed_events {
            return;
        }
        script.insert_owned_rows(
            "INSERT INTO feed_events (id, case_id, kind, subject_ref, occurred_at, state, \
             next_attempt_at)",
            7,
            events,
            "",
            move |query, (case, kind, subject_ref)| {
                query
                    .bind(EventId::generate().as_str().to_owned())
                    .bind(case.clone())
                    .bind(kind.as_str())
                    .bind(subject_ref.clone())
                    .bind(now)
                    .bind("pending")
                    .bind(now)
            },
        );
    }

    /// Claims due events, oldest first: pending ones whose time has come, and
    /// claimed ones whose lease ran out (their worker died).
    pub async fn claim_feed_events(
        &self,
        now: i64,
        lease_ms: i64,
        limit: usize,
    ) -> Result<Vec<ClaimedEvent>> {
        let mut tx = self.begin(Priority::Background).await?;
        let rows = q(format!(
            "SELECT seq, id, case_id, kind, subject_ref, occurred_at, attempts, first_attempt_at \
             FROM feed_events WHERE (state = 'pending' AND next_attempt_at <= $1) \
             OR (state = 'sending' AND lease_until < $1) ORDER BY seq LIMIT $2{}",
            self.dialect.skip_locked()
        ))
        .bind(now)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in rows {
            let claim = ClaimToken::generate();
            let attempt = get_i64(&r, "attempts")? + 1;
            let first = get_opt_i64(&r, "first_attempt_at")?.unwrap_or(now);
            q(
                "UPDATE feed_events SET state = 'sending', claim_token = $1, lease_until = $2, \
                 attempts = $3, first_attempt_at = $4 WHERE seq = $5"
                    .to_owned(),
            )
            .bind(claim.as_str().to_owned())
            .bind(now + lease_ms)
            .bind(attempt)
            .bind(first)
            .bind(get_i64(&r, "seq")?)
            .execute(&mut *tx)
            .await?;
            claimed.push(ClaimedEvent {
                event: event_from_row(&r)?,
                claim,
                attempt: attempt as u32,
                first_attempt_at: first,
            });
        }
        tx.commit().await?;
        Ok(claimed)
    }

    /// Records how an attempt ended, fenced by the claim: a worker whose
    /// lease expired gets `LostLease` and changes nothing.
    pub async fn finish_feed_event(
        &self,
        claimed: &ClaimedEvent,
        finish: &BatchFinish,
        now: i64,
    ) -> Result<()> {
        let (state, next_at, error, delivered_at) = match finish {
            BatchFinish::Acknowledged => ("delivered", now, None, Some(now)),
            BatchFinish::RetryAt { at, error } => ("pending", *at, Some(error.clone()), None),
            BatchFinish::Dead { reason } => ("dead", now, Some(reason.clone()), None),
        };
        let done = q(
            "UPDATE feed_events SET state = $1, next_attempt_at = $2, last_error = $3, \
             delivered_at = $4, claim_token = NULL, lease_until = NULL \
             WHERE id = $5 AND claim_token = $6 AND state = 'sending'"
                .to_owned(),
        )
        .bind(state)
        .bind(next_at)
        .bind(error)
        .bind(delivered_at)
        .bind(claimed.event.id.as_str().to_owned())
        .bind(claimed.claim.as_str().to_owned())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::LostLease(claimed.event.id.to_string()));
        }
        Ok(())
    }

    /// Sets dead events back to pending (an operator fixed the receiver).
    pub async fn retry_dead_feed_events(&self, now: i64) -> Result<u64> {
        Ok(q(
            "UPDATE feed_events SET state = 'pending', attempts = 0, first_attempt_at = NULL, \
             next_attempt_at = $1 WHERE state = 'dead'"
                .to_owned(),
        )
        .bind(now)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn feed_counts(&self) -> Result<FeedCounts> {
        let rows = q("SELECT state, COUNT(*) AS n FROM feed_events GROUP BY state".to_owned())
            .fetch_all(&self.pool)
            .await?;
        let mut c = FeedCounts::default();
        for r in rows {
            let n = get_i64(&r, "n")?;
            match get_str(&r, "state")?.as_str() {
                "delivered" => c.delivered += n,
                "dead" => c.dead += n,
                _ => c.pending += n,
            }
        }
        Ok(c)
    }

    /// A case's events, oldest first.
    pub async fn feed_events(&self, case: &CaseId) -> Result<Vec<FeedEvent>> {
        let rows = q(
            "SELECT id, case_id, kind, subject_ref, occurred_at FROM feed_events \
             WHERE case_id = $1 ORDER BY seq"
                .to_owned(),
        )
        .bind(case.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }
}
