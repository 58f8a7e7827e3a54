//! The bank client: one keep-alive HTTPS client per institution, presenting
//! the office's certificate and trusting only that institution's CA.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::store::ClaimedBatch;
use crate::tls::{Identity, mtls_client_config, parse_certs};

#[derive(Debug)]
pub struct SendOutcome {
    pub status: u16,
    pub body: Vec<u8>,
    pub retry_after: Option<Duration>,
}

#[derive(Debug)]
pub enum SendError {
    /// Connect errors, timeouts, TLS failures: worth another try.
    Transport(String),
    /// The institution cannot be reached as configured: no retry helps.
    Configuration(String),
}

#[derive(Clone)]
pub struct BankClients {
    /// Replaced by `set_identity` when certificates are reloaded.
    identity: Arc<std::sync::RwLock<Identity>>,
    timeout: Duration,
    /// Keyed by institution and its CA, so a changed CA builds a new client.
    clients: Arc<Mutex<HashMap<(String, String), reqwest::Client>>>,
}

/// The largest receipt we read: receipts are a few hundred bytes.
const MAX_RECEIPT_BYTES: usize = 64 * 1024;

impl BankClients {
    pub fn new(identity: Identity, timeout: Duration) -> Self {
        Self {
            identity: Arc::new(std::sync::RwLock::new(identity)),
            timeout,
            clients: Arc::default(),
        }
    }

    /// Presents a new client certificate from the next connection on: the
    /// cached clients (and their pooled connections) are dropped.
    pub async fn set_identity(&self, identity: Identity) {
        *self.identity.write().expect("identity lock") = identity;
        self.clients.lock().await.clear();
    }

    async fn client(&self, institution: &str, ca_pem: &str) -> Result<reqwest::Client, SendError> {
        let key = (institution.to_owned(), ca_pem.to_owned());
        let mut clients = self.clients.lock().await;
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let cas = parse_certs(ca_pem, "institution server CA")
            .map_err(|e| SendError::Configuration(e.to_string()))?;
        let identity = self.identity.read().expect("identity lock").clone();
        let tls = mtls_client_config(&cas, identity.chain.clone(), identity.key())
            .map_err(|e| SendError::Configuration(e.to_string()))?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(self.timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .no_proxy()
            .build()
            .map_err(|e| SendError::Configuration(format!("HTTP client: {e}")))?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    pub async fn send(&self, batch: &ClaimedBatch) -> Result<SendOutcome, SendError> {
        let (Some(url), Some(ca)) = (&batch.endpoint_url, &batch.server_ca_pem) else {
            return Err(SendError::Configuration(format!(
                "institution {} has no endpoint URL or server CA configured",
                batch.institution
            )));
        };
        let client = self.client(batch.institution.as_str(), ca).await?;
        let response = client
            .post(url)
            .header("content-type", "application/xml")
            .header("x-shokai-batch-id", batch.id.as_str())
            .body(batch.payload.clone())
            .send()
            .await
            .map_err(|e| SendError::Transport(describe(&e)))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        let mut body = Vec::new();
        let mut response = response;
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| SendError::Transport(describe(&e)))?
        {
            if body.len() + chunk.len() > MAX_RECEIPT_BYTES {
                return Err(SendError::Transport(
                    "the receipt is larger than 64 KiB".into(),
                ));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(SendOutcome {
            status,
            body,
            retry_after,
        })
    }
}

/// The whole error chain: reqwest's top line alone hides TLS causes.
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    format!("{kind}: {}", error_chain(e))
}

/// An error with its causes: reqwest's top-level message hides the one
/// that matters (TLS, refused, reset).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// `Retry-After` is seconds or an HTTP date (RFC 9110 §10.2.3).
fn parse_retry_after(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    // A week at most: a bank asking for longer has made a mistake, and an
    // unbounded value would overflow the schedule.
    const MAX: u64 = 7 * 24 * 3600;
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs.min(MAX)));
    }
    let at = chrono::DateTime::parse_from_rfc2822(raw).ok()?;
    let wait = at.timestamp_millis() - crate::domain::time::now_millis();
    Some(Duration::from_millis((wait.max(0) as u64).min(MAX * 1000)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc2822();
        let d = parse_retry_after(&soon).unwrap();
        assert!(
            d > Duration::from_secs(50) && d <= Duration::from_secs(60),
            "{d:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
