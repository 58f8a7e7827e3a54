//! The delivery queue: sealing batches, claiming them under a lease with a
//! fencing token, recording attempts and finishing batches.
//!
//! Claims commit before any network IO. Every update after a claim names
//! the claim token (`WHERE claim_token = $n`); zero rows changed means the
//! lease was lost to another worker, reported as [`StoreError::LostLease`].

use super::cases::branches_from_text;
use super::script::Script;
use super::{
    Dialect, Priority, Query, Result, Store, StoreError, get_i64, get_opt_date, get_opt_i64,
    get_opt_str, get_str, parse_date, placeholders, q,
};
use crate::domain::breaker::{Admission, BreakerPolicy, BreakerState};
use crate::domain::ids::{BatchId, ClaimToken, InquiryId, SubjectId};
use crate::domain::kana::KanaName;
use crate::domain::request::{InquiryForBatch, Period, Subject, kinds_from_text};
use crate::domain::state::{BatchState, Channel, InquiryState};
use crate::domain::window::DeliveryWindow;
use crate::domain::zengin::InstitutionCode;

#[derive(Debug, Clone)]
pub struct QueuedInstitution {
    pub code: InstitutionCode,
    pub queued: i64,
    pub oldest_created_at: i64,
    pub max_batch_size: i64,
    pub batch_max_age_ms: i64,
}

#[derive(Debug, Clone)]
pub struct ClaimedBatch {
    pub id: BatchId,
    pub institution: InstitutionCode,
    pub token: ClaimToken,
    /// 1 for the first try.
    pub attempt: i64,
    pub first_attempt_at: i64,
    pub payload: Vec<u8>,
    pub endpoint_url: Option<String>,
    pub server_ca_pem: Option<String>,
}

#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub batch_id: BatchId,
    pub attempt_no: i64,
    pub token: ClaimToken,
    pub started_at: i64,
    pub ended_at: i64,
    /// `acknowledged`, `rejected`, `retryable`, `permanent`.
    pub outcome: String,
    pub http_status: Option<i64>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchFinish {
    Acknowledged,
    RetryAt { at: i64, error: String },
    Dead { reason: String },
}

#[derive(Debug, Clone)]
pub struct BatchRow {
    pub id: BatchId,
    pub institution: InstitutionCode,
    pub state: BatchState,
    pub inquiry_count: i64,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    pub batches_by_state: Vec<(BatchState, i64)>,
}

/// Batches ready to send at the instant bound to placeholder `now`: due for
/// a (re)try, or in flight under an expired lease (reclaimed after a crash).
fn due(now: &str) -> String {
    format!(
        "((b.state IN ('sealed', 'retry_wait') AND b.next_attempt_at <= {now}) \
         OR (b.state = 'in_flight' AND b.lease_until < {now}))"
    )
}

fn push_attempt<'a>(script: &mut Script<'a>, a: &'a AttemptRecord) {
    script.push(
        "INSERT INTO delivery_attempts (batch_id, attempt_no, claim_token, started_at, ended_at, \
         duration_ms, outcome, http_status, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        move |query| {
            query
                .bind(a.batch_id.as_str().to_owned())
                .bind(a.attempt_no)
                .bind(a.token.as_str().to_owned())
                .bind(a.started_at)
                .bind(a.ended_at)
                .bind(a.ended_at - a.started_at)
                .bind(a.outcome.clone())
                .bind(a.http_status)
                .bind(a.error.clone())
        },
    );
}

/// The inquiries of the batch bound to `placeholder` (migration 0015). The
/// placeholder is the caller's, so that its statement keeps its `$n` in
/// order (SQLite's scripts share a query only then).
fn members_of(placeholder: &str) -> String {
    format!("SELECT inquiry_id FROM batch_inquiries WHERE batch_id = {placeholder}")
}

/// One move of a batch's inquiries (see `push_batch_move`).
struct Move<'a> {
    from: InquiryState,
    to: InquiryState,
    failure: Option<&'a str>,
    detail: Option<&'a str>,
}

impl Store {
    /// Adds to a script the move of a batch's inquiries from one state to
    /// another, with their history written with `detail`; returns the index
    /// of the result whose `rows_affected` is how many moved. `failure` is
    /// the reason stored on the inquiries (None clears it). A move to
    /// delivered writes no history row: it sets `delivered_at` (0018), and
    /// its `detail` is the batch's attempt outcome already. The history is
    /// written for the same set the update moves: on SQLite the write
    /// transaction excludes every other writer between the two statements;
    /// on PostgreSQL one statement locks the rows in id order, as
    /// `apply_answers` does, so the two cannot deadlock, moves them, and
    /// writes the history of what moved. Nothing travels back to us row by
    /// row.
    fn push_batch_move<'a>(
        &self,
        script: &mut Script<'a>,
        batch: &'a BatchId,
        m: Move<'a>,
        now: i64,
    ) -> usize {
        let Move {
            from,
            to,
            failure,
            detail,
        } = m;
        // A delivery is the inquiries' `delivered_at`, not a history row
        // (0018); no other move touches it.
        let history = to != InquiryState::Delivered;
        let delivered_at = (!history).then_some(now);
        // $1 … $6 of the update, on both databases, each once and in
        // order: on SQLite it then shares its script's round trip.
        let bind_move = move |query: Query| {
            query
                .bind(to.as_str())
                .bind(failure.map(str::to_owned))
                .bind(now)
                .bind(delivered_at)
                .bind(batch.as_str().to_owned())
                .bind(from.as_str())
        };
        let update = "UPDATE inquiries SET state = $1, failure_reason = $2, updated_at = $3, \
                      delivered_at = COALESCE($4, delivered_at)";
        if self.dialect == Dialect::Postgres {
            let locked = format!(
                "WITH locked AS MATERIALIZED (SELECT id FROM inquiries \
                 WHERE id IN ({}) AND state = $6 ORDER BY id{})",
                members_of("$5"),
                self.dialect.for_update()
            );
            let moved = format!(
                "{update} FROM locked WHERE inquiries.id = locked.id AND inquiries.state = $6"
            );
            if !history {
                return script.push(format!("{locked} {moved}"), bind_move);
            }
            return script.push(
                format!(
                    "{locked}, moved AS ({moved} RETURNING inquiries.id) \
                     INSERT INTO inquiry_events (inquiry_id, at, from_state, to_state, detail) \
                     SELECT id, $3, $6, $1, $7 FROM moved"
                ),
                move |query| bind_move(query).bind(detail.map(str::to_owned)),
            );
        }
        if history {
            script.push(
                format!(
                    "INSERT INTO inquiry_events (inquiry_id, at, from_state, to_state, detail) \
                     SELECT id, $1, $2, $3, $4 FROM inquiries WHERE id IN ({}) AND state = $6",
                    members_of("$5")
                ),
                move |query| {
                    query
                        .bind(now)
                        .bind(from.as_str())
                        .bind(to.as_str())
                        .bind(detail.map(str::to_owned))
                        .bind(batch.as_str().to_owned())
                        .bind(from.as_str())
                },
            );
        }
        script.push(
            format!("{update} WHERE id IN ({}) AND state = $6", members_of("$5")),
            bind_move,
        )
    }
}

/// Binds inquiry ids to the placeholders of an `id IN (…)` list, in order.
fn bind_ids(query: Query, ids: &[InquiryId]) -> Query {
    ids.iter()
        .fold(query, |query, i| query.bind(i.as_str().to_owned()))
}

fn batch_from_row(r: &sqlx::any::AnyRow) -> Result<BatchRow> {
    Ok(BatchRow {
        id: BatchId::from_trusted(get_str(r, "id")?),
        institution: InstitutionCode::from_trusted(get_str(r, "institution_code")?),
        state: BatchState::parse(&get_str(r, "state")?)?,
        inquiry_count: get_i64(r, "inquiry_count")?,
        attempts: get_i64(r, "attempts")?,
        next_attempt_at: get_i64(r, "next_attempt_at")?,
        last_error: get_opt_str(r, "last_error")?,
        created_at: get_i64(r, "created_at")?,
    })
}

/// The circuit's opening and closing are worth a line in the log.
fn log_breaker_change(code: &str, before: BreakerState, after: BreakerState) {
    if after.open_until.is_some() && before.open_until.is_none() {
        tracing::warn!(
            institution = code,
            failures = after.consecutive_failures,
            "circuit opened"
        );
    } else if after.open_until.is_none() && before.open_until.is_some() {
        tracing::info!(institution = code, "circuit closed");
    }
}

/// Advisory-lock keys of the batchers' turns, one per institution: this
/// base plus the four-digit code. Apart from `PG_MIGRATION_LOCK`.
const SEAL_TURN_LOCK_BASE: i64 = 0x5348_4f4b_0000_0000;

/// One batcher's turn at one institution's queue (see `Store::seal_turn`).
/// Ended by `end`, or by being dropped: the transaction holding the lock
/// is rolled back either way, and the lock goes with it.
pub struct SealTurn(Option<sqlx::Transaction<'static, sqlx::Any>>);

impl SealTurn {
    pub async fn end(self) -> Result<()> {
        if let Some(tx) = self.0 {
            tx.rollback().await?;
        }
        Ok(())
    }
}

impl Store {
    /// Takes the turn at an institution's queue, or None if another
    /// batcher has it. Without turns every gateway's batcher read the same
    /// oldest inquiries, encoded them, and all but one then waited on the
    /// winner's row locks to roll back: a third of the seals in a 200k run
    /// with two gateways on PostgreSQL. The turn is a transaction-scoped
    /// advisory lock on a connection of its own, which writes nothing.
    /// SQLite has one engine at a time, so its turn is always free.
    pub async fn seal_turn(&self, institution: &InstitutionCode) -> Result<Option<SealTurn>> {
        if self.dialect != Dialect::Postgres {
            return Ok(Some(SealTurn(None)));
        }
        let code: i64 = institution.as_str().parse().map_err(|_| {
            StoreError::Corrupt(format!("institution code {institution} is not a number"))
        })?;
        let mut tx = self.pool.begin().await?;
        let row = q(
            "SELECT CASE WHEN pg_try_advisory_xact_lock($1) THEN 1 ELSE 0 END AS mine".to_owned(),
        )
        .bind(SEAL_TURN_LOCK_BASE + code)
        .fetch_one(&mut *tx)
        .await?;
        if get_i64(&row, "mine")? == 1 {
            Ok(Some(SealTurn(Some(tx))))
        } else {
            tx.rollback().await?;
            Ok(None)
        }
    }

    /// Institutions with queued inquiries, with what the batcher needs to
    /// decide whether to seal a batch now.
    pub async fn queued_institutions(&self) -> Result<Vec<QueuedInstitution>> {
        let rows = q(
            // Grouped in the queue's own index order, then joined: grouped
            // by the settings too, SQLite sorted the whole queue first.
            "SELECT g.code, g.n, g.oldest, s.max_batch_size, s.batch_max_age_ms FROM \
               (SELECT institution_code AS code, COUNT(*) AS n, MIN(created_at) AS oldest \
                FROM inquiry_queue GROUP BY institution_code) g \
               JOIN institutions s ON s.code = g.code ORDER BY g.oldest"
                .to_owned(),
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueuedInstitution {
                    code: InstitutionCode::from_trusted(get_str(r, "code")?),
                    queued: get_i64(r, "n")?,
                    oldest_created_at: get_i64(r, "oldest")?,
                    max_batch_size: get_i64(r, "max_batch_size")?,
                    batch_max_age_ms: get_i64(r, "batch_max_age_ms")?,
                })
            })
            .collect()
    }

    /// The oldest queued inquiries of one institution, with their subjects.
    pub async fn queued_for_batch(
        &self,
        institution: &InstitutionCode,
        limit: i64,
    ) -> Result<Vec<InquiryForBatch>> {
        let rows = q("SELECT i.id, i.created_at, i.branches, i.due_date, r.kinds, r.reference_date, r.period_from, \
               r.period_to, r.legal_basis, c.office, s.id AS subject_id, s.kana_name, s.kanji_name, \
               s.birth_date, s.postal_code, s.address, s.former_kana_names \
               FROM inquiry_queue w JOIN inquiries i ON i.id = w.inquiry_id \
               JOIN requests r ON r.id = i.request_id \
               JOIN subjects s ON s.id = i.subject_id JOIN cases c ON c.id = i.case_id \
               WHERE w.institution_code = $1 \
               ORDER BY w.created_at, w.inquiry_id LIMIT $2"
            .to_owned())
        .bind(institution.as_str().to_owned())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let period = match (
                    get_opt_date(r, "period_from")?,
                    get_opt_date(r, "period_to")?,
                ) {
                    (Some(from), Some(to)) => Some(Period { from, to }),
                    _ => None,
                };
                Ok(InquiryForBatch {
                    id: InquiryId::from_trusted(get_str(r, "id")?),
                    queued_at: get_i64(r, "created_at")?,
                    office: get_str(r, "office")?,
                    subject: Subject {
                        id: SubjectId::from_trusted(get_str(r, "subject_id")?),
                        kana_name: KanaName::from_trusted(get_str(r, "kana_name")?),
                        kanji_name: get_opt_str(r, "kanji_name")?,
                        birth_date: parse_date(&get_str(r, "birth_date")?)?,
                        postal_code: get_opt_str(r, "postal_code")?,
                        address: get_opt_str(r, "address")?,
                        former_kana_names: get_str(r, "former_kana_names")?
                            .split('|')
                            .filter(|s| !s.is_empty())
                            .map(|s| KanaName::from_trusted(s.to_owned()))
                            .collect(),
                    },
                    branches: branches_from_text(&get_str(r, "branches")?),
                    kinds: kinds_from_text(&get_str(r, "kinds")?)?
                        .into_iter()
                        .collect(),
                    reference_date: parse_date(&get_str(r, "reference_date")?)?,
                    period,
                    legal_basis: get_str(r, "legal_basis")?,
                    due_date: parse_date(&get_str(r, "due_date")?)?,
                })
            })
            .collect()
    }

    /// Writes a sealed batch and moves its inquiries from queued to batched,
    /// in one transaction. If another batcher took any of them first, nothing
    /// is written and `Conflict` is returned.
    pub async fn create_batch(
        &self,
        id: &BatchId,
        institution: &InstitutionCode,
        inquiries: &[InquiryId],
        payload: &[u8],
        now: i64,
    ) -> Result<()> {
        // Deflated before the write lock is taken.
        let stored = super::payload::pack(payload);
        let (id, institution, inquiries) = (id.clone(), institution.clone(), inquiries.to_vec());
        self.on_writer(move |store| async move {
            store
                .retrying(|| store.create_batch_once(&id, &institution, &inquiries, &stored, now))
                .await
        })
        .await
    }

    async fn create_batch_once(
        &self,
        id: &BatchId,
        institution: &InstitutionCode,
        inquiries: &[InquiryId],
        (encoding, payload): &(super::payload::Encoding, Vec<u8>),
        now: i64,
    ) -> Result<()> {
        let mut write = Script::new(self.dialect);
        write.push(
            "INSERT INTO batches (id, institution_code, state, inquiry_count, next_attempt_at, \
             created_at, updated_at) VALUES ($1, $2, 'sealed', $3, $4, $5, $6)",
            move |query| {
                query
                    .bind(id.as_str().to_owned())
                    .bind(institution.as_str().to_owned())
                    .bind(inquiries.len() as i64)
                    .bind(now)
                    .bind(now)
                    .bind(now)
            },
        );
        write.push(
            "INSERT INTO batch_payloads (batch_id, payload, encoding) VALUES ($1, $2, $3)",
            move |query| {
                query
                    .bind(id.as_str().to_owned())
                    .bind(payload.clone())
                    .bind(encoding.as_str())
            },
        );
        let mut moves = Vec::new();
        for chunk in inquiries.chunks(super::ROWS_PER_STATEMENT) {
            moves.push(if self.dialect == Dialect::Postgres {
                // One statement, the ids sent and matched once. Locked in id
                // order first, as every other path that locks inquiries
                // does: the update alone takes them in whatever order its
                // plan visits them, and met a batch finishing on another
                // gateway in a deadlock. The members listed are the ones
                // moved. The history's step is the batch's created_at.
                write.push(
                    format!(
                        "WITH locked AS MATERIALIZED (SELECT id FROM inquiries WHERE id IN ({}) \
                         ORDER BY id{}), \
                         moved AS (UPDATE inquiries SET updated_at = $1, state = 'batched', \
                         batch_id = $2 FROM locked WHERE inquiries.id = locked.id \
                         AND inquiries.state = 'queued' RETURNING inquiries.id), \
                         dequeued AS (DELETE FROM inquiry_queue \
                         WHERE inquiry_id IN (SELECT id FROM moved)) \
                         INSERT INTO batch_inquiries (batch_id, inquiry_id) \
                         SELECT $2, id FROM moved",
                        placeholders(2, chunk.len()),
                        self.dialect.for_update()
                    ),
                    move |query| bind_ids(query.bind(now).bind(id.as_str().to_owned()), chunk),
                )
            } else {
                let update = write.push(
                    format!(
                        "UPDATE inquiries SET updated_at = $1, state = 'batched', batch_id = $2 \
                         WHERE state = 'queued' AND id IN ({})",
                        placeholders(2, chunk.len())
                    ),
                    move |query| bind_ids(query.bind(now).bind(id.as_str().to_owned()), chunk),
                );
                write.push(
                    format!(
                        "DELETE FROM inquiry_queue WHERE inquiry_id IN ({})",
                        placeholders(0, chunk.len())
                    ),
                    move |query| bind_ids(query, chunk),
                );
                write.insert_rows(
                    "INSERT INTO batch_inquiries (batch_id, inquiry_id)",
                    2,
                    chunk,
                    "",
                    move |query, inquiry| {
                        query
                            .bind(id.as_str().to_owned())
                            .bind(inquiry.as_str().to_owned())
                    },
                );
                update
            });
        }
        let (tx, done) = self.begin_with(Priority::Background, write).await?;
        // All or nothing, so the ids asked for are the ids moved: no need to
        // have them sent back. The members listed for ids that did not move
        // go with the rollback.
        let moved: usize = moves
            .iter()
            .map(|&update| done[update].rows_affected as usize)
            .sum();
        if moved != inquiries.len() {
            tx.rollback().await?;
            return Err(StoreError::Conflict(format!(
                "{} of {} inquiries for batch {id} were no longer queued",
                inquiries.len() - moved,
                inquiries.len()
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Claims due batches of push institutions under a lease, respecting
    /// each institution's pause and in-flight limit. Commits before
    /// returning: the caller then talks to the bank with no transaction open.
    pub async fn claim_due_batches(
        &self,
        now: i64,
        lease_ms: i64,
        limit: usize,
        breaker: &BreakerPolicy,
    ) -> Result<Vec<ClaimedBatch>> {
        let breaker = breaker.clone();
        self.on_writer(
            move |store| async move { store.claim_due(now, lease_ms, limit, &breaker).await },
        )
        .await
    }

    async fn claim_due(
        &self,
        now: i64,
        lease_ms: i64,
        limit: usize,
        breaker: &BreakerPolicy,
    ) -> Result<Vec<ClaimedBatch>> {
        let candidates = q(format!(
            "SELECT DISTINCT b.institution_code FROM batches b \
             JOIN institutions s ON s.code = b.institution_code \
             WHERE s.channel = 'push' AND s.paused = 0 AND {}",
            due("$1")
        ))
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::new();
        for c in candidates {
            if claimed.len() >= limit {
                break;
            }
            let code = get_str(&c, "institution_code")?;
            let room = (limit - claimed.len()) as i64;
            claimed.extend(
                self.claim_for_institution(&code, now, lease_ms, room, breaker)
                    .await?,
            );
        }
        Ok(claimed)
    }

    async fn claim_for_institution(
        &self,
        code: &str,
        now: i64,
        lease_ms: i64,
        room: i64,
        breaker: &BreakerPolicy,
    ) -> Result<Vec<ClaimedBatch>> {
        // Locking the institution row serialises claimers of one institution
        // on PostgreSQL, so two gateways cannot both fill its last slot. The
        // count of its batches in flight comes back in the same round trip.
        let mut read = Script::new(self.dialect);
        let inst = read.push(
            format!(
                "SELECT max_in_flight, endpoint_url, server_ca_pem, paused, channel, \
                 delivery_window, consecutive_failures, breaker_open_until \
                 FROM institutions WHERE code = $1{}",
                self.dialect.for_update()
            ),
            |query| query.bind(code.to_owned()),
        );
        let active = read.push(
            "SELECT COUNT(*) AS n FROM batches \
             WHERE institution_code = $1 AND state = 'in_flight' AND lease_until >= $2",
            |query| query.bind(code.to_owned()).bind(now),
        );
        let (mut tx, mut read) = self.begin_with(Priority::Background, read).await?;
        let Some(inst) = read[inst].rows.pop() else {
            return Ok(Vec::new());
        };
        let active = read[active]
            .rows
            .pop()
            .ok_or_else(|| StoreError::Corrupt("COUNT returned no row".into()))?;
        if get_i64(&inst, "paused")? != 0 || get_str(&inst, "channel")? != "push" {
            return Ok(Vec::new());
        }
        if let Some(window) = get_opt_str(&inst, "delivery_window")? {
            // A window that no longer parses sends nothing rather than
            // sending at the wrong hour; settings are validated on the way in.
            match DeliveryWindow::parse(&window) {
                Ok(w) if w.is_open(now) => {}
                _ => return Ok(Vec::new()),
            }
        }
        let breaker_state = BreakerState {
            consecutive_failures: get_i64(&inst, "consecutive_failures")?,
            open_until: get_opt_i64(&inst, "breaker_open_until")?,
        };
        let probing = match breaker.admission(breaker_state, now) {
            Admission::Blocked { .. } => return Ok(Vec::new()),
            Admission::Probe => true,
            Admission::Normal => false,
        };
        let mut free = (get_i64(&inst, "max_in_flight")? - get_i64(&active, "n")?).min(room);
        if probing {
            free = free.min(1);
        }
        if free <= 0 {
            return Ok(Vec::new());
        }
        let due = q(format!(
            "SELECT b.id FROM batches b WHERE b.institution_code = $1 AND {} \
             ORDER BY b.next_attempt_at, b.id LIMIT $3{}",
            due("$2"),
            self.dialect.skip_locked()
        ))
        .bind(code.to_owned())
        .bind(now)
        .bind(free)
        .fetch_all(&mut *tx)
        .await?;
        let endpoint_url = get_opt_str(&inst, "endpoint_url")?;
        let server_ca_pem = get_opt_str(&inst, "server_ca_pem")?;
        let due: Vec<(String, ClaimToken)> = due
            .iter()
            .map(|row| Ok((get_str(row, "id")?, ClaimToken::generate())))
            .collect::<Result<_>>()?;
        let mut claim = Script::new(self.dialect);
        let steps: Vec<(usize, usize)> = due
            .iter()
            .map(|(id, token)| {
                let updated = claim.push(
                    "UPDATE batches SET state = 'in_flight', claim_token = $1, lease_until = $2, \
                     attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, $3), \
                     updated_at = $4 WHERE id = $5 RETURNING attempts, first_attempt_at",
                    move |query| {
                        query
                            .bind(token.as_str().to_owned())
                            .bind(now + lease_ms)
                            .bind(now)
                            .bind(now)
                            .bind(id.clone())
                    },
                );
                let payload = claim.push(
                    "SELECT payload, encoding FROM batch_payloads WHERE batch_id = $1",
                    move |query| query.bind(id.clone()),
                );
                (updated, payload)
            })
            .collect();
        if !probing {
            claim.then_commit();
        }
        let done = claim.run(&mut tx).await?;
        let mut claimed = Vec::with_capacity(due.len());
        // Inflated once the lane is released, not while it is held.
        let mut stored = Vec::with_capacity(due.len());
        for ((id, token), (updated, payload)) in due.into_iter().zip(steps) {
            let one = |i: usize| {
                done[i]
                    .rows
                    .first()
                    .ok_or_else(|| StoreError::Corrupt(format!("batch {id} vanished mid-claim")))
            };
            let (updated, payload) = (one(updated)?, one(payload)?);
            stored.push(payload_row(payload)?);
            claimed.push(ClaimedBatch {
                institution: InstitutionCode::from_trusted(code.to_owned()),
                token,
                attempt: get_i64(updated, "attempts")?,
                first_attempt_at: get_opt_i64(updated, "first_attempt_at")?.unwrap_or(now),
                payload: Vec::new(),
                endpoint_url: endpoint_url.clone(),
                server_ca_pem: server_ca_pem.clone(),
                id: BatchId::from_trusted(id),
            });
        }
        if probing && !claimed.is_empty() {
            let shut = breaker.while_probing(now, lease_ms);
            q("UPDATE institutions SET breaker_open_until = $1 WHERE code = $2".to_owned())
                .bind(shut.open_until)
                .bind(code.to_owned())
                .execute(&mut *tx)
                .await?;
            tracing::info!(
                institution = code,
                "circuit half-open: sending one probe batch"
            );
        }
        tx.commit().await?;
        for (batch, (encoding, bytes)) in claimed.iter_mut().zip(stored) {
            batch.payload = super::payload::unpack(&encoding, bytes)?;
        }
        Ok(claimed)
    }

    /// Ends a claim and records its attempt, in one transaction. Fails with
    /// `LostLease`, changing nothing but the attempt row (a try did happen),
    /// if the token is no longer the batch's claim.
    ///
    /// `breaker` carries the policy and whether the bank itself replied (a
    /// receipt or a clear refusal) — what the circuit breaker counts — as
    /// opposed to a transport failure or a 5xx.
    pub async fn finish_batch(
        &self,
        attempt: &AttemptRecord,
        finish: &BatchFinish,
        breaker: Option<(&BreakerPolicy, bool)>,
    ) -> Result<()> {
        let (attempt, finish) = (attempt.clone(), finish.clone());
        let breaker = breaker.map(|(policy, answered)| (policy.clone(), answered));
        self.on_writer(move |store| async move {
            let breaker = breaker
                .as_ref()
                .map(|(policy, answered)| (policy, *answered));
            store
                .retrying(|| store.finish_batch_once(&attempt, &finish, breaker))
                .await
        })
        .await
    }

    async fn finish_batch_once(
        &self,
        attempt: &AttemptRecord,
        finish: &BatchFinish,
        breaker: Option<(&BreakerPolicy, bool)>,
    ) -> Result<()> {
        let (id, now) = (&attempt.batch_id, attempt.ended_at);
        let (state, next_at, error) = match finish {
            BatchFinish::Acknowledged => (BatchState::Acknowledged, None, None),
            BatchFinish::RetryAt { at, error } => (BatchState::RetryWait, Some(*at), Some(error)),
            BatchFinish::Dead { reason } => (BatchState::Dead, None, Some(reason)),
        };
        let mut first = Script::new(self.dialect);
        push_attempt(&mut first, attempt);
        let finished = first.push(
            "UPDATE batches SET state = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
             last_error = $3, acknowledged_at = $4, claim_token = NULL, lease_until = NULL, \
             updated_at = $5 WHERE id = $6 AND claim_token = $7 AND state = 'in_flight'",
            move |query| {
                query
                    .bind(state.as_str())
                    .bind(next_at)
                    .bind(error.cloned())
                    .bind((state == BatchState::Acknowledged).then_some(now))
                    .bind(now)
                    .bind(id.as_str().to_owned())
                    .bind(attempt.token.as_str().to_owned())
            },
        );
        // Read (on PostgreSQL locked) with the update, whether or not the
        // claim still held: one round trip either way.
        let breaker_read = breaker.map(|_| {
            first.push(
                format!(
                    "SELECT code, consecutive_failures, breaker_open_until FROM institutions \
                     WHERE code = (SELECT institution_code FROM batches WHERE id = $1){}",
                    self.dialect.for_update()
                ),
                move |query| query.bind(id.as_str().to_owned()),
            )
        });
        let (mut tx, done) = self.begin_with(Priority::Background, first).await?;
        if done[finished].rows_affected == 0 {
            // Keep the attempt row: the try happened, only its verdict is void.
            tx.commit().await?;
            return Err(StoreError::LostLease(id.to_string()));
        }
        let mut second = Script::new(self.dialect);
        if let (Some((policy, bank_answered)), Some(read)) = (breaker, breaker_read)
            && let Some(row) = done[read].rows.first()
        {
            let code = get_str(row, "code")?;
            let before = BreakerState {
                consecutive_failures: get_i64(row, "consecutive_failures")?,
                open_until: get_opt_i64(row, "breaker_open_until")?,
            };
            let after = policy.after_attempt(before, bank_answered, now);
            log_breaker_change(&code, before, after);
            if after != before {
                second.push(
                    "UPDATE institutions SET consecutive_failures = $1, breaker_open_until = $2 \
                     WHERE code = $3",
                    move |query| {
                        query
                            .bind(after.consecutive_failures)
                            .bind(after.open_until)
                            .bind(code)
                    },
                );
            }
        }
        let inquiry_state = match finish {
            BatchFinish::Acknowledged => Some(InquiryState::Delivered),
            BatchFinish::Dead { .. } => Some(InquiryState::Failed),
            BatchFinish::RetryAt { .. } => None,
        };
        if let Some(to) = inquiry_state {
            let reason = error.map(String::as_str);
            let m = Move {
                from: InquiryState::Batched,
                to,
                failure: reason,
                detail: reason,
            };
            self.push_batch_move(&mut second, id, m, now);
        }
        second.then_commit();
        second.run(&mut tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn batch(&self, id: &BatchId) -> Result<Option<BatchRow>> {
        let row = q(
            "SELECT id, institution_code, state, inquiry_count, attempts, next_attempt_at, \
               last_error, created_at FROM batches WHERE id = $1"
                .to_owned(),
        )
        .bind(id.as_str().to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(batch_from_row).transpose()
    }

    /// Every try of one batch, oldest first (the admin's attempt history).
    pub async fn delivery_attempts(&self, batch: &BatchId) -> Result<Vec<AttemptRecord>> {
        let rows = q("SELECT batch_id, attempt_no, claim_token, started_at, ended_at, outcome, http_status, error \
               FROM delivery_attempts WHERE batch_id = $1 ORDER BY id"
            .to_owned())
        .bind(batch.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRecord {
                    batch_id: BatchId::from_trusted(get_str(r, "batch_id")?),
                    attempt_no: get_i64(r, "attempt_no")?,
                    token: ClaimToken::from_trusted(get_str(r, "claim_token")?),
                    started_at: get_i64(r, "started_at")?,
                    ended_at: get_i64(r, "ended_at")?,
                    outcome: get_str(r, "outcome")?,
                    http_status: get_opt_i64(r, "http_status")?,
                    error: get_opt_str(r, "error")?,
                })
            })
            .collect()
    }

    /// Sends a dead batch again from scratch: its retry count restarts and
    /// its failed inquiries go back to batched. History stays.
    pub async fn retry_dead_batch(&self, id: &BatchId, now: i64) -> Result<()> {
        let mut tx = self.begin(Priority::Interactive).await?;
        let done = q("UPDATE batches SET state = 'retry_wait', next_attempt_at = $1, attempts = 0, \
               first_attempt_at = NULL, last_error = NULL, updated_at = $1 WHERE id = $2 AND state = 'dead'"
            .to_owned())
        .bind(now)
        .bind(id.as_str().to_owned())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("dead batch {id}")));
        }
        let m = Move {
            from: InquiryState::Failed,
            to: InquiryState::Batched,
            failure: None,
            detail: Some("retried by an admin"),
        };
        let mut script = Script::new(self.dialect);
        let moved = self.push_batch_move(&mut script, id, m, now);
        if script.run(&mut tx).await?[moved].rows_affected == 0 {
            // Nothing left to ask (cancelled, answered or purged): sending
            // the stored bytes again would only resend stale data.
            tx.rollback().await?;
            return Err(StoreError::Conflict(format!(
                "batch {id} has no failed inquiry left to send"
            )));
        }
        tx.commit().await?;
        Ok(())
    }

    /// Batches in one state, oldest first (the admin's view of the queue).
    pub async fn batches_in_state(&self, state: BatchState, limit: i64) -> Result<Vec<BatchRow>> {
        let rows = q(
            "SELECT id, institution_code, state, inquiry_count, attempts, next_attempt_at, \
               last_error, created_at FROM batches WHERE state = $1 ORDER BY created_at, id LIMIT $2"
                .to_owned(),
        )
        .bind(state.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(batch_from_row).collect()
    }

    pub async fn queue_stats(&self) -> Result<QueueStats> {
        let rows = q("SELECT state, COUNT(*) AS n FROM batches GROUP BY state".to_owned())
            .fetch_all(&self.pool)
            .await?;
        Ok(QueueStats {
            batches_by_state: rows
                .iter()
                .map(|r| Ok((BatchState::parse(&get_str(r, "state")?)?, get_i64(r, "n")?)))
                .collect::<Result<_>>()?,
        })
    }

    /// The time of the next scheduled attempt, so an idle dispatcher can
    /// sleep until then instead of polling.
    pub async fn next_due_at(&self) -> Result<Option<i64>> {
        let row = q("SELECT MIN(CASE WHEN state = 'in_flight' THEN lease_until ELSE next_attempt_at END) AS t \
               FROM batches WHERE state IN ('sealed', 'retry_wait', 'in_flight')"
            .to_owned())
        .fetch_one(&self.pool)
        .await?;
        get_opt_i64(&row, "t")
    }
}

/// The queue as seen by `/metrics`.
#[derive(Debug, Clone, Default)]
pub struct QueueGauges {
    /// (institution, state, count)
    pub inquiries: Vec<(String, String, i64)>,
    pub batches: Vec<(String, String, i64)>,
    /// (institution, age in ms) of the oldest inquiry without an answer.
    pub oldest_waiting: Vec<(String, i64)>,
    /// (institution, consecutive failures, open)
    pub breakers: Vec<(String, i64, bool)>,
}

impl Store {
    pub async fn queue_gauges(&self, now: i64) -> Result<QueueGauges> {
        let triples = |rows: Vec<sqlx::any::AnyRow>| -> Result<Vec<(String, String, i64)>> {
            rows.iter()
                .map(|r| {
                    Ok((
                        get_str(r, "institution_code")?,
                        get_str(r, "state")?,
                        get_i64(r, "n")?,
                    ))
                })
                .collect()
        };
        let inquiries = q(
            "SELECT institution_code, state, COUNT(*) AS n FROM inquiries \
               GROUP BY institution_code, state"
                .to_owned(),
        )
        .fetch_all(&self.pool)
        .await?;
        let batches = q(
            "SELECT institution_code, state, COUNT(*) AS n FROM batches \
               GROUP BY institution_code, state"
                .to_owned(),
        )
        .fetch_all(&self.pool)
        .await?;
        let oldest = q(
            "SELECT institution_code, MIN(created_at) AS t FROM inquiries \
               WHERE state IN ('queued', 'batched', 'delivered') GROUP BY institution_code"
                .to_owned(),
        )
        .fetch_all(&self.pool)
        .await?;
        let breakers = q(
            "SELECT code, consecutive_failures, breaker_open_until FROM institutions \
               WHERE channel = 'push'"
                .to_owned(),
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(QueueGauges {
            inquiries: triples(inquiries)?,
            batches: triples(batches)?,
            oldest_waiting: oldest
                .iter()
                .map(|r| Ok((get_str(r, "institution_code")?, now - get_i64(r, "t")?)))
                .collect::<Result<_>>()?,
            breakers: breakers
                .iter()
                .map(|r| {
                    Ok((
                        get_str(r, "code")?,
                        get_i64(r, "consecutive_failures")?,
                        get_opt_i64(r, "breaker_open_until")?.is_some_and(|t| t > now),
                    ))
                })
                .collect::<Result<_>>()?,
        })
    }
}

impl Store {
    /// Batches a pull institution has not acknowledged yet, oldest first.
    pub async fn pending_pull_batches(
        &self,
        institution: &InstitutionCode,
        limit: i64,
    ) -> Result<Vec<BatchRow>> {
        let rows = q("SELECT b.id, b.institution_code, b.state, b.inquiry_count, b.attempts, b.next_attempt_at, \
               b.last_error, b.created_at FROM batches b JOIN institutions s ON s.code = b.institution_code \
               WHERE b.institution_code = $1 AND s.channel = 'pull' AND s.paused = 0 \
               AND b.state IN ('sealed', 'retry_wait', 'in_flight') ORDER BY b.created_at, b.id LIMIT $2"
            .to_owned())
        .bind(institution.as_str().to_owned())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(batch_from_row).collect()
    }

    /// The stored bytes of one of this institution's batches. Another
    /// institution's batch is reported as absent.
    pub async fn batch_payload(
        &self,
        institution: &InstitutionCode,
        id: &BatchId,
    ) -> Result<Option<Vec<u8>>> {
        let row = q(
            "SELECT p.payload, p.encoding FROM batches b JOIN batch_payloads p ON p.batch_id = b.id \
                 WHERE b.id = $1 AND b.institution_code = $2"
                .to_owned(),
        )
        .bind(id.as_str().to_owned())
        .bind(institution.as_str().to_owned())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref()
            .map(|row| {
                let (encoding, bytes) = payload_row(row)?;
                super::payload::unpack(&encoding, bytes)
            })
            .transpose()
    }

    /// A pull bank confirms it has a batch: the same end as a push receipt
    /// (acknowledged, inquiries delivered), with an attempt row. Repeating
    /// the acknowledgement is harmless.
    pub async fn acknowledge_pulled_batch(
        &self,
        institution: &InstitutionCode,
        id: &BatchId,
        now: i64,
    ) -> Result<bool> {
        self.acknowledge_off_line(
            institution,
            id,
            Channel::Pull,
            ("pulled", "pulled by the bank"),
            now,
        )
        .await
    }

    /// Staff mailed a paper batch's letter: its inquiries are delivered, as
    /// a push receipt would make them. Repeating it is harmless.
    pub async fn mark_letter_mailed(
        &self,
        institution: &InstitutionCode,
        id: &BatchId,
        now: i64,
    ) -> Result<bool> {
        self.acknowledge_off_line(
            institution,
            id,
            Channel::Paper,
            ("mailed", "letter mailed"),
            now,
        )
        .await
    }

    /// Acknowledges a batch that no dispatcher sends (pull or paper):
    /// `how` is the attempt's outcome and the inquiries' history note.
    async fn acknowledge_off_line(
        &self,
        institution: &InstitutionCode,
        id: &BatchId,
        channel: Channel,
        how: (&str, &'static str),
        now: i64,
    ) -> Result<bool> {
        // Staff mark letters mailed; a bank pulling is a machine.
        let priority = match channel {
            Channel::Paper => Priority::Interactive,
            _ => Priority::Background,
        };
        let mut tx = self.begin(priority).await?;
        let done = q("UPDATE batches SET state = 'acknowledged', acknowledged_at = $1, updated_at = $1, \
               attempts = attempts + 1, first_attempt_at = COALESCE(first_attempt_at, $1), \
               claim_token = NULL, lease_until = NULL \
               WHERE id = $2 AND institution_code = $3 AND state IN ('sealed', 'retry_wait', 'in_flight') \
               AND institution_code IN (SELECT code FROM institutions WHERE channel = $4) \
               RETURNING attempts"
            .to_owned())
        .bind(now)
        .bind(id.as_str().to_owned())
        .bind(institution.as_str().to_owned())
        .bind(channel.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(done) = done else {
            let exists =
                q("SELECT state FROM batches WHERE id = $1 AND institution_code = $2".to_owned())
                    .bind(id.as_str().to_owned())
                    .bind(institution.as_str().to_owned())
                    .fetch_optional(&mut *tx)
                    .await?;
            return match exists {
                Some(r) if get_str(&r, "state")? == "acknowledged" => Ok(false),
                Some(r) => Err(StoreError::Conflict(format!(
                    "batch {id} is {}",
                    get_str(&r, "state")?
                ))),
                None => Err(StoreError::NotFound(format!("batch {id}"))),
            };
        };
        let attempt = AttemptRecord {
            batch_id: id.clone(),
            attempt_no: get_i64(&done, "attempts")?,
            token: ClaimToken::generate(),
            started_at: now,
            ended_at: now,
            outcome: how.0.into(),
            http_status: None,
            error: None,
        };
        let mut script = Script::new(self.dialect);
        push_attempt(&mut script, &attempt);
        let m = Move {
            from: InquiryState::Batched,
            to: InquiryState::Delivered,
            failure: None,
            detail: Some(how.1),
        };
        self.push_batch_move(&mut script, id, m, now);
        script.run(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// The encoding and stored bytes of a `batch_payloads` row
/// (`payload::unpack` turns them back into the document).
fn payload_row(row: &sqlx::any::AnyRow) -> Result<(String, Vec<u8>)> {
    Ok((
        get_str(row, "encoding")?,
        sqlx::Row::try_get::<Vec<u8>, _>(row, "payload")?,
    ))
}
