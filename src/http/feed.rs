//! The case-file feed: signed webhooks to the welfare case-management
//! system. Events come from the store's outbox (written in the transaction
//! of what they tell), are claimed under a lease with a fencing token, sent,
//! and finished with the same durable retry schedule as bank batches. The
//! receiver gets each event at least once and de-duplicates on its id.
//!
//! Each POST carries:
//! - `Shokai-Event-Id` and `Shokai-Event-Type`;
//! - `Shokai-Timestamp`: Unix seconds when this attempt was signed;
//! - `Shokai-Signature: v1=<hex>`: HMAC-SHA256 with the shared secret over
//!   `"{timestamp}.{body}"`. The body is the same on every attempt; the
//!   timestamp is new, so a receiver can refuse replays of old requests.

use std::path::PathBuf;
use std::time::Duration;

use ring::hmac;
use serde::Serialize;

use crate::delivery::after_retryable_failure;
use crate::domain::feed::FeedEvent;
use crate::domain::retry::{FailureClass, RetryPolicy};
use crate::domain::time::{now_millis, rfc3339};
use crate::store::{BatchFinish, ClaimedEvent, Store, StoreError};

pub const EVENT_ID_HEADER: &str = "shokai-event-id";
pub const EVENT_TYPE_HEADER: &str = "shokai-event-type";
pub const TIMESTAMP_HEADER: &str = "shokai-timestamp";
pub const SIGNATURE_HEADER: &str = "shokai-signature";

#[derive(Debug, Clone)]
pub struct FeedConfig {
    /// Where events are POSTed.
    pub url: String,
    /// The shared HMAC secret.
    pub secret: Vec<u8>,
    /// CA bundle of the receiver's server certificate (for https).
    pub ca: Option<PathBuf>,
    pub retry: RetryPolicy,
    pub lease: Duration,
    pub request_timeout: Duration,
    pub poll_interval: Duration,
}

#[derive(Serialize)]
struct EventBody<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    occurred_at: String,
    case_id: &'a str,
    /// The id the event is about: an alert, an inquiry revision, a run.
    #[serde(rename = "ref")]
    reference: &'a str,
    /// Where the receiver reads the details (with its API token).
    case_file: String,
}

/// The event's body: the same bytes on every attempt.
pub fn encode_event(e: &FeedEvent) -> Vec<u8> {
    serde_json::to_vec(&EventBody {
        id: e.id.as_str(),
        kind: e.kind.as_str(),
        occurred_at: rfc3339(e.occurred_at),
        case_id: e.case.as_str(),
        reference: &e.subject_ref,
        case_file: format!("/api/v1/cases/{}/file", e.case),
    })
    .expect("plain structs serialise")
}

/// `v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1={}", hex::encode(ctx.sign().as_ref()))
}

/// What a receiver checks: the signature (in constant time) and that the
/// timestamp is within `tolerance` of `now` (Unix seconds).
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now: i64,
    tolerance: i64,
) -> Result<(), &'static str> {
    let ts: i64 = timestamp.trim().parse().map_err(|_| "bad timestamp")?;
    if now.abs_diff(ts) > tolerance.unsigned_abs() {
        return Err("timestamp outside the tolerance");
    }
    let given = signature
        .trim()
        .strip_prefix("v1=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or("bad signature format")?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut message = ts.to_string().into_bytes();
    message.push(b'.');
    message.extend_from_slice(body);
    hmac::verify(&key, &message, &given).map_err(|_| "signature mismatch")
}

/// The running sender; dropped or stopped, it stops claiming.
pub struct FeedSender {
    task: tokio::task::JoinHandle<()>,
}

impl FeedSender {
    pub fn start(store: Store, config: FeedConfig) -> anyhow::Result<FeedSender> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(config.request_timeout)
            .no_proxy();
        if let Some(ca) = &config.ca {
            let cas = crate::tls::load_certs(ca)?;
            builder = builder.tls_backend_preconfigured(crate::tls::client_config(&cas)?);
        } else if config.url.starts_with("https://") {
            anyhow::bail!("an https feed URL needs --feed-ca");
        }
        let client = builder.build()?;
        let task = tokio::spawn(async move {
            loop {
                let sent = match round(&store, &client, &config).await {
                    Ok(n) => n,
                    Err(e) => {
                        tracing::error!(error = %e, "feed round failed");
                        0
                    }
                };
                if sent == 0 {
                    tokio::time::sleep(config.poll_interval).await;
                }
            }
        });
        Ok(FeedSender { task })
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// Events claimed per round, all sent at once: each send is bounded by the
/// request timeout, which is shorter than the lease, so no claim outlives
/// its lease while it waits its turn.
const CLAIM_LIMIT: usize = 8;

async fn round(
    store: &Store,
    client: &reqwest::Client,
    config: &FeedConfig,
) -> Result<usize, StoreError> {
    let claimed = store
        .claim_feed_events(now_millis(), config.lease.as_millis() as i64, CLAIM_LIMIT)
        .await?;
    let n = claimed.len();
    let sends = claimed
        .iter()
        .map(|c| async move { (c, send(client, config, c).await) });
    for (c, finish) in futures_util::future::join_all(sends).await {
        if let BatchFinish::RetryAt { error, .. } | BatchFinish::Dead { reason: error } = &finish {
            tracing::warn!(event = %c.event.id, attempt = c.attempt, error = %error, "feed delivery failed");
        }
        match store.finish_feed_event(c, &finish, now_millis()).await {
            Ok(()) => {}
            Err(StoreError::LostLease(id)) => {
                tracing::warn!(event = %id, "feed event lease lost; another process sends it")
            }
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

async fn send(client: &reqwest::Client, config: &FeedConfig, c: &ClaimedEvent) -> BatchFinish {
    let body = encode_event(&c.event);
    let timestamp = now_millis() / 1000;
    let result = client
        .post(&config.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(EVENT_ID_HEADER, c.event.id.as_str())
        .header(EVENT_TYPE_HEADER, c.event.kind.as_str())
        .header(TIMESTAMP_HEADER, timestamp.to_string())
        .header(SIGNATURE_HEADER, sign(&config.secret, timestamp, &body))
        .body(body)
        .send()
        .await;
    let retry = |error: String, retry_after: Option<Duration>| {
        after_retryable_failure(
            &config.retry,
            c.attempt,
            c.first_attempt_at,
            now_millis(),
            error,
            retry_after,
        )
    };
    match result {
        Err(e) => retry(format!("transport: {e}"), None),
        Ok(r) if r.status().is_success() => BatchFinish::Acknowledged,
        Ok(r) => {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            match FailureClass::of_http_status(status) {
                FailureClass::Retryable => retry(format!("HTTP {status}"), retry_after),
                FailureClass::Permanent => BatchFinish::Dead {
                    reason: format!("the receiver refused the event: HTTP {status}"),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_a_changed_body_or_old_timestamp_does_not() {
        let sig = sign(b"secret", 1_700_000_000, b"{\"a\":1}");
        assert!(sig.starts_with("v1="));
        assert_eq!(
            verify(
                b"secret",
                "1700000000",
                b"{\"a\":1}",
                &sig,
                1_700_000_010,
                300
            ),
            Ok(())
        );
        assert!(
            verify(
                b"secret",
                "1700000000",
                b"{\"a\":2}",
                &sig,
                1_700_000_010,
                300
            )
            .is_err()
        );
        assert!(
            verify(
                b"other",
                "1700000000",
                b"{\"a\":1}",
                &sig,
                1_700_000_010,
                300
            )
            .is_err()
        );
        assert_eq!(
            verify(
                b"secret",
                "1700000000",
                b"{\"a\":1}",
                &sig,
                1_700_001_000,
                300
            ),
            Err("timestamp outside the tolerance")
        );
        assert!(verify(b"secret", "x", b"", &sig, 0, 300).is_err());
        // A hostile timestamp cannot overflow the check.
        assert!(verify(b"secret", &i64::MIN.to_string(), b"", &sig, i64::MAX, 300).is_err());
        assert!(verify(b"secret", "1700000000", b"", "v2=00", 1_700_000_000, 300).is_err());
    }
}
