//! The delivery engine: the batcher seals queued inquiries into batches per
//! institution; the dispatcher claims due batches under a lease, sends them
//! over mutual TLS and records the outcome. All state is in the store, so a
//! restart resumes where the last process stopped.

pub(crate) mod client;

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, watch};
use tracing::Instrument;

use crate::domain::breaker::BreakerPolicy;
use crate::domain::ids::BatchId;
use crate::domain::retry::{FailureClass, RetryDecision, RetryPolicy};
use crate::domain::time::now_millis;
use crate::iso20022;
use crate::store::{AttemptRecord, BatchFinish, ClaimedBatch, Store, StoreError};
use crate::tls::Identity;

pub use client::{BankClients, SendError, SendOutcome};

#[derive(Clone)]
pub struct EngineConfig {
    pub lease: Duration,
    pub request_timeout: Duration,
    pub poll_interval: Duration,
    /// Batches claimed per dispatcher round.
    pub claim_limit: usize,
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
    /// How long `stop` waits for deliveries under way before abandoning
    /// them to lease expiry.
    pub shutdown_grace: Duration,
    /// The certificate the office presents to banks.
    pub client_identity: Identity,
}

/// The engine's knobs, as an operator sets them.
#[derive(Debug, Clone)]
pub struct EngineTuning {
    pub lease: Duration,
    pub request_timeout: Duration,
    pub poll_interval: Duration,
    pub claim_limit: usize,
    pub retry: RetryPolicy,
    pub breaker: BreakerPolicy,
    pub shutdown_grace: Duration,
    /// Purge personal data of cases closed this many days ago (checked
    /// hourly by a process that runs the engine); never when absent.
    pub retention_days: Option<u32>,
}

impl Default for EngineTuning {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            poll_interval: Duration::from_millis(200),
            claim_limit: 32,
            retry: RetryPolicy::default(),
            breaker: BreakerPolicy::default(),
            shutdown_grace: Duration::from_secs(30),
            retention_days: None,
        }
    }
}

impl EngineConfig {
    pub fn new(client_identity: Identity, tuning: EngineTuning) -> Self {
        Self {
            lease: tuning.lease,
            request_timeout: tuning.request_timeout,
            poll_interval: tuning.poll_interval,
            claim_limit: tuning.claim_limit,
            retry: tuning.retry,
            breaker: tuning.breaker,
            shutdown_grace: tuning.shutdown_grace,
            client_identity,
        }
    }
}

/// Handle to the running engine; dropping it does not stop it, `stop` does.
pub struct Engine {
    clients: BankClients,
    shutdown: watch::Sender<bool>,
    grace: Duration,
    wake: Arc<Notify>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Engine {
    /// `wake` is shared with whoever files work (the API), so new inquiries
    /// are batched at once instead of at the next poll.
    pub fn start(store: Store, config: EngineConfig, wake: Arc<Notify>) -> Engine {
        let (shutdown, rx) = watch::channel(false);
        let config_grace = config.shutdown_grace;
        let clients = BankClients::new(config.client_identity.clone(), config.request_timeout);
        let batcher = tokio::spawn(run_batcher(
            store.clone(),
            config.clone(),
            rx.clone(),
            wake.clone(),
        ));
        let dispatcher = tokio::spawn(run_dispatcher(
            store,
            config,
            clients.clone(),
            rx,
            wake.clone(),
        ));
        Engine {
            clients,
            shutdown,
            grace: config_grace,
            wake,
            tasks: vec![batcher, dispatcher],
        }
    }

    /// Presents a new client certificate to banks from now on.
    pub async fn set_client_identity(&self, identity: Identity) {
        self.clients.set_identity(identity).await;
    }

    /// Asks the batcher and dispatcher to look for work now.
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// Stops claiming, waits up to the grace period for deliveries under
    /// way, then abandons the rest: their leases expire and another process
    /// (or this one, restarted) reclaims them.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + self.grace;
        for mut t in self.tasks {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                tracing::warn!(
                    "deliveries still under way after the grace period; leaving them to lease expiry"
                );
                t.abort();
            }
        }
    }
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>, wake: &Notify) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = wake.notified() => false,
        _ = stop.changed() => true,
    }
}

async fn run_batcher(
    store: Store,
    config: EngineConfig,
    mut stop: watch::Receiver<bool>,
    wake: Arc<Notify>,
) {
    loop {
        match seal_due_batches(&store, now_millis()).await {
            Ok(0) => {}
            Ok(n) => {
                tracing::debug!(batches = n, "sealed batches");
                wake.notify_waiters();
            }
            Err(e) => tracing::warn!(error = %e, code = e.code(), "batcher round failed"),
        }
        if *stop.borrow() || sleep_or_stop(config.poll_interval, &mut stop, &wake).await {
            return;
        }
    }
}

/// One batcher round: for every institution with queued inquiries, seals
/// full batches, and a last partial one once its oldest inquiry is old enough.
pub async fn seal_due_batches(store: &Store, now: i64) -> Result<usize, StoreError> {
    let mut sealed = 0;
    for inst in store.queued_institutions().await? {
        let size = inst.max_batch_size.max(1);
        // Not a full batch yet, nor old enough: nothing to read.
        if inst.queued < size && now - inst.oldest_created_at < inst.batch_max_age_ms {
            continue;
        }
        // Another gateway's batcher has this queue: reading it too would
        // only race for the same inquiries.
        let Some(turn) = store.seal_turn(&inst.code).await? else {
            continue;
        };
        loop {
            let items = store.queued_for_batch(&inst.code, size).await?;
            let Some(oldest) = items.first() else { break };
            // A partial batch waits until its own oldest inquiry is old enough.
            if (items.len() as i64) < size && now - oldest.queued_at < inst.batch_max_age_ms {
                break;
            }
            let id = BatchId::generate();
            let payload = iso20022::encode_inquiry_batch(&id, &inst.code, now, &items);
            let ids: Vec<_> = items.iter().map(|i| i.id.clone()).collect();
            match store
                .create_batch(&id, &inst.code, &ids, &payload, now)
                .await
            {
                Ok(()) => sealed += 1,
                // Another batcher took some of them; the next round retries.
                Err(StoreError::Conflict(why)) => {
                    tracing::debug!(institution = %inst.code, why, "batch not sealed");
                    break;
                }
                Err(e) => return Err(e),
            }
            if (ids.len() as i64) < size {
                break;
            }
        }
        turn.end().await?;
    }
    Ok(sealed)
}

async fn run_dispatcher(
    store: Store,
    config: EngineConfig,
    clients: BankClients,
    mut stop: watch::Receiver<bool>,
    wake: Arc<Notify>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        while tasks.try_join_next().is_some() {}
        let room = config.claim_limit.saturating_sub(tasks.len());
        if room > 0 {
            match store
                .claim_due_batches(
                    now_millis(),
                    config.lease.as_millis() as i64,
                    room,
                    &config.breaker,
                )
                .await
            {
                Ok(claimed) => {
                    for batch in claimed {
                        let (store, config, clients, wake) =
                            (store.clone(), config.clone(), clients.clone(), wake.clone());
                        // A span per delivery, so every log line of it carries
                        // the batch and institution.
                        let span = tracing::info_span!(
                            "delivery",
                            batch = %batch.id,
                            institution = %batch.institution,
                            attempt = batch.attempt
                        );
                        tasks.spawn(
                            async move {
                                deliver(&store, &config, &clients, batch).await;
                                wake.notify_waiters();
                            }
                            .instrument(span),
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, code = e.code(), "claim failed"),
            }
        }
        if *stop.borrow() || sleep_or_stop(config.poll_interval, &mut stop, &wake).await {
            // Let deliveries under way finish: their outcome is recorded, and
            // anything cut short is reclaimed by lease expiry after a restart.
            while tasks.join_next().await.is_some() {}
            return;
        }
    }
}

/// Sends one claimed batch and records the attempt and its outcome.
pub async fn deliver(
    store: &Store,
    config: &EngineConfig,
    clients: &BankClients,
    batch: ClaimedBatch,
) {
    let started_at = now_millis();
    let result = clients.send(&batch).await;
    let ended_at = now_millis();
    // What the breaker counts: did the bank itself reply (even to refuse)?
    let bank_answered = matches!(&result, Ok(r) if FailureClass::of_http_status(r.status) != FailureClass::Retryable);
    let (finish, outcome, status, error) = judge(&batch, result, config, ended_at);
    let labels = [
        ("institution", batch.institution.as_str()),
        ("outcome", outcome),
    ];
    crate::metrics::inc(
        "shokai_delivery_attempts_total",
        "Delivery attempts by institution and outcome.",
        &labels,
    );
    crate::metrics::observe(
        "shokai_delivery_duration_seconds",
        "Duration of one delivery attempt.",
        &[("institution", batch.institution.as_str())],
        (ended_at - started_at) as f64 / 1000.0,
    );
    let record = AttemptRecord {
        batch_id: batch.id.clone(),
        attempt_no: batch.attempt,
        token: batch.token.clone(),
        started_at,
        ended_at,
        outcome: outcome.to_owned(),
        http_status: status.map(i64::from),
        error: error.clone(),
    };
    match store
        .finish_batch(&record, &finish, Some((&config.breaker, bank_answered)))
        .await
    {
        Ok(()) => tracing::info!(
            batch = %batch.id,
            institution = %batch.institution,
            attempt = batch.attempt,
            outcome,
            status,
            error = error.as_deref().unwrap_or(""),
            "delivery attempt"
        ),
        Err(StoreError::LostLease(_)) => {
            tracing::warn!(batch = %batch.id, "lost the lease while delivering; another worker owns the batch")
        }
        Err(e) => {
            tracing::error!(batch = %batch.id, error = %e, "could not record the batch outcome")
        }
    }
}

type Judgement = (BatchFinish, &'static str, Option<u16>, Option<String>);

/// The durable retry schedule after a retryable failure of attempt
/// `attempt`: retry at a jittered time, or give up (dead). Batches and
/// case-file feed events share it.
pub fn after_retryable_failure(
    policy: &RetryPolicy,
    attempt: u32,
    first_attempt_at: i64,
    now: i64,
    error: String,
    retry_after: Option<Duration>,
) -> BatchFinish {
    let elapsed = Duration::from_millis((now - first_attempt_at).max(0) as u64);
    let jitter: f64 = rand::rng().random();
    match policy.after_failure(attempt, jitter, retry_after, elapsed) {
        RetryDecision::RetryAfter(d) => BatchFinish::RetryAt {
            at: now.saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            error,
        },
        RetryDecision::GiveUp => BatchFinish::Dead {
            reason: format!("gave up after {attempt} attempts: {error}"),
        },
    }
}

fn judge(
    batch: &ClaimedBatch,
    result: Result<SendOutcome, SendError>,
    config: &EngineConfig,
    now: i64,
) -> Judgement {
    let retry = |error: String, retry_after: Option<Duration>, status: Option<u16>| -> Judgement {
        let finish = after_retryable_failure(
            &config.retry,
            batch.attempt as u32,
            batch.first_attempt_at,
            now,
            error.clone(),
            retry_after,
        );
        (finish, "retryable", status, Some(error))
    };
    match result {
        Err(SendError::Transport(msg)) => retry(msg, None, None),
        Err(SendError::Configuration(msg)) => (
            BatchFinish::Dead {
                reason: msg.clone(),
            },
            "permanent",
            None,
            Some(msg),
        ),
        Ok(SendOutcome {
            status,
            body,
            retry_after,
        }) => {
            if status != 200 {
                let error = format!("HTTP {status}");
                return match FailureClass::of_http_status(status) {
                    FailureClass::Retryable => retry(error, retry_after, Some(status)),
                    FailureClass::Permanent => (
                        BatchFinish::Dead {
                            reason: format!("the bank refused the batch: {error}"),
                        },
                        "permanent",
                        Some(status),
                        Some(error),
                    ),
                };
            }
            match iso20022::decode_batch_receipt(&body) {
                Ok(r) if r.batch_id != batch.id.as_str() => retry(
                    format!("receipt names batch {} instead of {}", r.batch_id, batch.id),
                    None,
                    Some(status),
                ),
                Ok(r) if r.accepted => (
                    BatchFinish::Acknowledged,
                    "acknowledged",
                    Some(status),
                    None,
                ),
                Ok(r) => {
                    let reason = format!(
                        "rejected by the bank: {} {}",
                        r.reason_code.unwrap_or_default(),
                        r.reason_text.unwrap_or_default()
                    );
                    (
                        BatchFinish::Dead {
                            reason: reason.clone(),
                        },
                        "rejected",
                        Some(status),
                        Some(reason),
                    )
                }
                // A garbled receipt is the bank's glitch: the batch is resent
                // with the same id, which the bank de-duplicates.
                Err(e) => retry(format!("unreadable receipt: {e}"), None, Some(status)),
            }
        }
    }
}
