//! The pull transport: `POST {endpoint}/records/search` with every subject of
//! the case in one JSON body; the department answers per subject. The wire
//! types are public so that the mock departments speak the same JSON. The
//! profile is in docs/departments.md.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use chrono::NaiveDate;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

use super::{Connector, ConnectorError, Fetched, Transport};
use crate::domain::department::{Department, DepartmentRecord, RecordKind, SubjectQuery};
use crate::domain::ids::SubjectId;

/// The largest answer read: a household's records are a few kilobytes.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Serialize, Deserialize)]
pub struct SearchRequest {
    pub department: String,
    pub subjects: Vec<WireSubject>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireSubject {
    /// Ties the answer to the subject; opaque to the department.
    #[serde(rename = "ref")]
    pub reference: String,
    pub kana_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kanji_name: Option<String>,
    pub birth_date: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct SearchResponse {
    pub results: Vec<WireResult>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireStatus {
    Found,
    NotFound,
    Error,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct WireResult {
    #[serde(rename = "ref")]
    pub reference: String,
    pub status: WireStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default)]
    pub records: Vec<WireRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WireRecord {
    pub record_id: String,
    pub kind: String,
    pub effective_date: NaiveDate,
    #[serde(default)]
    pub amounts: BTreeMap<String, i64>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// The HTTPS client for every pull connector: trusts the configured CA (or
/// the CA bundle of `--department-ca`) and presents no certificate.
pub fn client(ca: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(90))
        .no_proxy();
    if let Some(ca) = ca {
        let cas = crate::tls::load_certs(ca)?;
        builder = builder.tls_backend_preconfigured(crate::tls::client_config(&cas)?);
    } else {
        anyhow::bail!("pull connectors need --department-ca (the CA of the departments' servers)");
    }
    Ok(builder.build()?)
}

pub struct PullConnector {
    department: Department,
    url: String,
    client: reqwest::Client,
}

impl PullConnector {
    pub fn new(department: Department, base_url: String, client: reqwest::Client) -> Self {
        Self {
            department,
            url: format!("{base_url}/records/search"),
            client,
        }
    }

    async fn search(&self, subjects: &[SubjectQuery]) -> Result<Fetched, ConnectorError> {
        let body = SearchRequest {
            department: self.department.as_str().to_owned(),
            subjects: subjects
                .iter()
                .map(|s| WireSubject {
                    reference: s.subject.as_str().to_owned(),
                    kana_name: s.kana_name.as_str().to_owned(),
                    kanji_name: s.kanji_name.clone(),
                    birth_date: s.birth_date,
                    address: s.address.clone(),
                })
                .collect(),
        };
        let mut response = self
            .client
            .post(&self.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&body).expect("plain structs serialise"))
            .send()
            .await
            .map_err(|e| ConnectorError::Transport(transport_text(&e)))?;
        if !response.status().is_success() {
            return Err(ConnectorError::Status(response.status().as_u16()));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ConnectorError::Transport(transport_text(&e)))?
        {
            if bytes.len() + chunk.len() > MAX_RESPONSE_BYTES {
                return Err(ConnectorError::BadResponse(format!(
                    "larger than {MAX_RESPONSE_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        // serde's message can quote the department's data: only the place.
        let parsed: SearchResponse = serde_json::from_slice(&bytes).map_err(|e| {
            ConnectorError::BadResponse(format!(
                "not a search response ({:?} error at line {}, column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        Ok(normalise(self.department, subjects, parsed))
    }
}

fn transport_text(e: &reqwest::Error) -> String {
    crate::delivery::client::error_chain(e)
}

/// Turns the department's answer into records, subject by subject: a
/// subject missing from the answer, answered with an error, or with a
/// record that does not validate counts as failed, never as "no records".
pub fn normalise(
    department: Department,
    subjects: &[SubjectQuery],
    response: SearchResponse,
) -> Fetched {
    let mut fetched = Fetched::default();
    let mut by_ref: BTreeMap<String, WireResult> = BTreeMap::new();
    for r in response.results {
        by_ref.insert(r.reference.clone(), r);
    }
    for s in subjects {
        let Some(result) = by_ref.remove(s.subject.as_str()) else {
            fetched
                .failed
                .push((s.subject.clone(), "missing from the answer".to_owned()));
            continue;
        };
        match result.status {
            WireStatus::NotFound => {}
            WireStatus::Error => fetched.failed.push((
                s.subject.clone(),
                result
                    .message
                    .unwrap_or_else(|| "the department reported an error".to_owned()),
            )),
            WireStatus::Found => match records(department, &s.subject, result.records) {
                Ok(mut records) => fetched.records.append(&mut records),
                Err(why) => fetched.failed.push((s.subject.clone(), why)),
            },
        }
    }
    fetched
}

fn records(
    department: Department,
    subject: &SubjectId,
    wire: Vec<WireRecord>,
) -> Result<Vec<DepartmentRecord>, String> {
    wire.into_iter()
        .map(|w| {
            DepartmentRecord {
                department,
                kind: RecordKind::parse(department, &w.kind).map_err(|e| e.message)?,
                subject: subject.clone(),
                source_id: w.record_id,
                effective_date: w.effective_date,
                amounts: w.amounts,
                attributes: w.attributes,
            }
            .validate()
            .map_err(|e| e.message)
        })
        .collect()
}

impl Connector for PullConnector {
    fn department(&self) -> Department {
        self.department
    }

    fn transport(&self) -> Transport {
        Transport::Pull
    }

    fn fetch<'a>(
        &'a self,
        subjects: &'a [SubjectQuery],
    ) -> BoxFuture<'a, Result<Fetched, ConnectorError>> {
        Box::pin(self.search(subjects))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::kana::KanaName;

    fn subject() -> SubjectQuery {
        SubjectQuery {
            subject: SubjectId::generate(),
            kana_name: KanaName::parse("ヤマダ タロウ").unwrap(),
            kanji_name: None,
            birth_date: NaiveDate::from_ymd_opt(1980, 1, 1).unwrap(),
            address: None,
        }
    }

    fn record(kind: &str) -> WireRecord {
        WireRecord {
            record_id: "T-1".to_owned(),
            kind: kind.to_owned(),
            effective_date: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            amounts: [("annual_income".to_owned(), 1_800_000)].into(),
            attributes: BTreeMap::new(),
        }
    }

    #[test]
    fn every_subject_is_answered_or_named_as_failed() {
        let (a, b, c, d) = (subject(), subject(), subject(), subject());
        let response = SearchResponse {
            results: vec![
                WireResult {
                    reference: a.subject.to_string(),
                    status: WireStatus::Found,
                    message: None,
                    records: vec![record("assessed_income")],
                },
                WireResult {
                    reference: b.subject.to_string(),
                    status: WireStatus::NotFound,
                    message: None,
                    records: vec![],
                },
                WireResult {
                    reference: c.subject.to_string(),
                    status: WireStatus::Found,
                    message: None,
                    // Another department's kind: refused, not filed.
                    records: vec![record("residence")],
                },
            ],
        };
        let subjects = [a.clone(), b, c.clone(), d.clone()];
        let fetched = normalise(Department::Tax, &subjects, response);
        assert_eq!(fetched.records.len(), 1);
        assert_eq!(fetched.records[0].subject, a.subject);
        let failed: Vec<_> = fetched.failed.iter().map(|(s, _)| s.clone()).collect();
        assert_eq!(failed, vec![c.subject, d.subject]);
    }
}
