//! Connectors to the city's own departments. Each one answers "what does
//! this department hold about these people" with normalised records, over
//! one of the two transports of the national standardisation of municipal
//! systems: a pull API (REST/JSON over HTTPS, `pull.rs`) or file linkage
//! (CSV files dropped in a folder, `file.rs`).
//!
//! [`Connectors::fetch_all`] asks every connector at once, each under its
//! own timeout, and reports per connector: complete, partial (some subjects
//! failed, named with the reason) or failed. Nothing is hidden: an error
//! or a timeout is a result too.

pub mod file;
pub mod pull;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use crate::domain::DomainError;
use crate::domain::department::{Department, DepartmentRecord, FetchStatus, SubjectQuery};
use crate::domain::ids::SubjectId;
use crate::domain::time::now_millis;
use crate::store::{Store, StoreError};

/// Why a connector gave nothing usable, with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("no answer within {0} ms")]
    Timeout(u64),
    #[error("transport: {0}")]
    Transport(String),
    #[error("the department answered HTTP {0}")]
    Status(u16),
    #[error("bad response: {0}")]
    BadResponse(String),
    #[error("linkage folder: {0}")]
    Io(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ConnectorError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::Transport(_) => "transport_error",
            Self::Status(_) => "http_status",
            Self::BadResponse(_) => "bad_response",
            Self::Io(_) => "io_error",
            Self::Store(_) => "store_error",
        }
    }
}

/// What one connector returned.
#[derive(Debug, Default)]
pub struct Fetched {
    pub records: Vec<DepartmentRecord>,
    /// Subjects the department could not answer for, with the reason.
    pub failed: Vec<(SubjectId, String)>,
    /// Things an operator should see that did not stop the fetch (a linkage
    /// file's refused lines).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Pull,
    File,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pull => "pull",
            Self::File => "file",
        }
    }
}

/// One department's connector. Implementations must be cheap to call
/// concurrently; `fetch` is bounded by the caller's timeout.
pub trait Connector: Send + Sync {
    fn department(&self) -> Department;
    fn transport(&self) -> Transport;
    fn fetch<'a>(
        &'a self,
        subjects: &'a [SubjectQuery],
    ) -> BoxFuture<'a, Result<Fetched, ConnectorError>>;
}

/// One connector's result within a comprehensive inquiry.
#[derive(Debug)]
pub struct FetchOutcome {
    pub department: Department,
    pub transport: Transport,
    pub status: FetchStatus,
    /// De-duplicated by the source's record id.
    pub records: Vec<DepartmentRecord>,
    pub failures: Vec<(SubjectId, String)>,
    /// Set when the whole fetch failed: `(code, message)`.
    pub error: Option<(&'static str, String)>,
    pub warnings: Vec<String>,
    pub started_at: i64,
    pub duration: Duration,
}

impl FetchOutcome {
    /// Subjects whose records were not (all) seen: their snapshot stays.
    pub fn unanswered(&self, subjects: &[SubjectQuery]) -> HashSet<SubjectId> {
        if self.status == FetchStatus::Failed {
            return subjects.iter().map(|s| s.subject.clone()).collect();
        }
        self.failures.iter().map(|(s, _)| s.clone()).collect()
    }

    /// One line for the fetch log: the error, or the failed subjects.
    pub fn error_text(&self) -> Option<String> {
        if let Some((code, message)) = &self.error {
            return Some(format!("{code}: {message}"));
        }
        if self.failures.is_empty() {
            return None;
        }
        Some(
            self.failures
                .iter()
                .map(|(s, why)| format!("subject {s}: {why}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

/// Where a department's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The base URL of the department's pull API.
    Pull(String),
    /// The folder the department drops its CSV files in.
    Files(PathBuf),
}

/// One configured connector: `NAME=https://…` or `NAME=file:/folder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorSpec {
    pub department: Department,
    pub source: Source,
}

impl ConnectorSpec {
    pub fn parse(raw: &str) -> Result<ConnectorSpec, DomainError> {
        let bad = |why: String| DomainError::new("invalid_connector", why);
        let (name, source) = raw.split_once('=').ok_or_else(|| {
            bad(format!(
                "'{raw}' is not NAME=https://… or NAME=file:/folder"
            ))
        })?;
        let department = Department::parse(name.trim())?;
        let source = source.trim();
        let source = if let Some(dir) = source.strip_prefix("file:") {
            if dir.is_empty() {
                return Err(bad(format!("{name}: file: needs a folder")));
            }
            Source::Files(PathBuf::from(dir))
        } else if source.starts_with("https://") || is_loopback_http(source) {
            Source::Pull(source.trim_end_matches('/').to_owned())
        } else if source.starts_with("http://") {
            return Err(bad(format!(
                "{name}: plain http would send names and birth dates in clear; use https \
                 (http is allowed on loopback only)"
            )));
        } else {
            return Err(bad(format!(
                "{name}: '{source}' is neither an http(s) URL nor file:/folder"
            )));
        };
        Ok(ConnectorSpec { department, source })
    }
}

/// `http://` to this machine (a local proxy or a test double).
fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The operator's connector settings.
#[derive(Debug, Clone)]
pub struct ConnectorsConfig {
    pub specs: Vec<ConnectorSpec>,
    /// CA bundle that issues the departments' server certificates.
    pub ca: Option<PathBuf>,
    /// How long one connector may take; per department when set there.
    pub timeout: Duration,
    pub timeouts: HashMap<Department, Duration>,
    /// How often the open cases are re-queried for changes; None: never.
    pub requery_every: Option<Duration>,
}

impl Default for ConnectorsConfig {
    fn default() -> Self {
        Self {
            specs: Vec::new(),
            ca: None,
            timeout: Duration::from_secs(10),
            timeouts: HashMap::new(),
            requery_every: None,
        }
    }
}

/// The connectors of this gateway, asked together.
#[derive(Clone, Default)]
pub struct Connectors {
    list: Vec<(Arc<dyn Connector>, Duration)>,
}

impl Connectors {
    /// Builds the configured connectors. A department configured twice is
    /// refused: the case file would not know which one to believe.
    pub fn build(config: &ConnectorsConfig, store: &Store) -> anyhow::Result<Connectors> {
        let mut seen = HashSet::new();
        let client = if config
            .specs
            .iter()
            .any(|s| matches!(s.source, Source::Pull(_)))
        {
            Some(pull::client(config.ca.as_deref())?)
        } else {
            None
        };
        let mut list: Vec<(Arc<dyn Connector>, Duration)> = Vec::new();
        for spec in &config.specs {
            if !seen.insert(spec.department) {
                anyhow::bail!(
                    "department {} is configured twice",
                    spec.department.as_str()
                );
            }
            let timeout = config
                .timeouts
                .get(&spec.department)
                .copied()
                .unwrap_or(config.timeout);
            let connector: Arc<dyn Connector> = match &spec.source {
                Source::Pull(url) => Arc::new(pull::PullConnector::new(
                    spec.department,
                    url.clone(),
                    client.clone().expect("built above"),
                )),
                Source::Files(dir) => Arc::new(file::FileConnector::new(
                    spec.department,
                    dir.clone(),
                    store.clone(),
                )),
            };
            list.push((connector, timeout));
        }
        Ok(Connectors { list })
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Asks every connector about every subject, all at once, each under its
    /// own timeout.
    pub async fn fetch_all(&self, subjects: &[SubjectQuery]) -> Vec<FetchOutcome> {
        let asks = self.list.iter().map(|(c, timeout)| {
            let c = c.clone();
            let timeout = *timeout;
            async move {
                let started_at = now_millis();
                let clock = Instant::now();
                let result = match tokio::time::timeout(timeout, c.fetch(subjects)).await {
                    Ok(r) => r,
                    Err(_) => Err(ConnectorError::Timeout(timeout.as_millis() as u64)),
                };
                outcome(c.as_ref(), subjects, result, started_at, clock.elapsed())
            }
        });
        futures_util::future::join_all(asks).await
    }
}

fn outcome(
    c: &dyn Connector,
    subjects: &[SubjectQuery],
    result: Result<Fetched, ConnectorError>,
    started_at: i64,
    duration: Duration,
) -> FetchOutcome {
    let department = c.department();
    match result {
        Ok(fetched) => {
            let mut seen = HashSet::new();
            let records: Vec<_> = fetched
                .records
                .into_iter()
                .filter(|r| seen.insert(r.source_id.clone()))
                .collect();
            let status = if fetched.failed.is_empty() {
                FetchStatus::Complete
            } else if fetched.failed.len() >= subjects.len() {
                FetchStatus::Failed
            } else {
                FetchStatus::Partial
            };
            for w in &fetched.warnings {
                tracing::warn!(department = department.as_str(), warning = %w, "connector warning");
            }
            FetchOutcome {
                department,
                transport: c.transport(),
                status,
                records,
                failures: fetched.failed,
                error: None,
                warnings: fetched.warnings,
                started_at,
                duration,
            }
        }
        Err(e) => {
            tracing::warn!(department = department.as_str(), code = e.code(), error = %e, "connector failed");
            FetchOutcome {
                department,
                transport: c.transport(),
                status: FetchStatus::Failed,
                records: Vec::new(),
                failures: Vec::new(),
                error: Some((e.code(), e.to_string())),
                warnings: Vec::new(),
                started_at,
                duration,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_both_transports_and_refuse_the_rest() {
        let s = ConnectorSpec::parse("tax=https://tax.city.local/api/").unwrap();
        assert_eq!(s.department, Department::Tax);
        assert_eq!(
            s.source,
            Source::Pull("https://tax.city.local/api".to_owned())
        );
        let s = ConnectorSpec::parse("pension=file:/var/lib/shokai/pension").unwrap();
        assert_eq!(s.source, Source::Files("/var/lib/shokai/pension".into()));
        assert_eq!(
            ConnectorSpec::parse("taxes=https://x").unwrap_err().code,
            "unknown_department"
        );
        assert_eq!(
            ConnectorSpec::parse("tax=ftp://x").unwrap_err().code,
            "invalid_connector"
        );
        assert!(ConnectorSpec::parse("tax=http://tax.city.local/api").is_err());
        assert!(ConnectorSpec::parse("tax=http://127.0.0.1:8080/api").is_ok());
        assert!(ConnectorSpec::parse("tax=http://[::1]:8080").is_ok());
        assert!(ConnectorSpec::parse("tax=http://localhost.evil.example/").is_err());
        assert!(ConnectorSpec::parse("tax").is_err());
        assert!(ConnectorSpec::parse("tax=file:").is_err());
    }
}
