//! The bank onboarding kit: `shokai conformance` runs a bank's inquiry
//! endpoint through scripted cases and prints a pass/fail table, so a bank
//! engineer can check an implementation before the first real batch.

use std::time::Duration;

use chrono::NaiveDate;

use crate::domain::ids::{BatchId, InquiryId, SubjectId};
use crate::domain::kana::KanaName;
use crate::domain::request::{InquiryForBatch, Subject};
use crate::domain::state::InquiryKind;
use crate::domain::time::now_millis;
use crate::domain::zengin::InstitutionCode;
use crate::iso20022::{self, BatchReceipt};
use crate::tls::{Identity, load_certs, mtls_client_config};

pub struct ConformanceConfig {
    pub bank_url: String,
    pub institution: InstitutionCode,
    /// CA that issued the bank's server certificate.
    pub ca: std::path::PathBuf,
    /// The office's client certificate and key.
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// How large the oversize case's body is.
    pub oversize_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseResult {
    pub name: &'static str,
    pub expected: &'static str,
    pub passed: bool,
    pub observed: String,
}

fn sample_inquiry() -> InquiryForBatch {
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("valid date");
    InquiryForBatch {
        id: InquiryId::generate(),
        queued_at: now_millis(),
        office: "000000".into(),
        subject: Subject {
            id: SubjectId::generate(),
            kana_name: KanaName::parse("シヨウカイ テスト").expect("valid kana"),
            kanji_name: Some("照会 試験".into()),
            birth_date: d("1970-01-01"),
            postal_code: None,
            address: None,
            former_kana_names: Vec::new(),
        },
        branches: Vec::new(),
        kinds: vec![InquiryKind::Existence, InquiryKind::Balance],
        reference_date: crate::domain::time::jst_date(now_millis()),
        period: None,
        legal_basis: crate::domain::request::DEFAULT_LEGAL_BASIS.into(),
        due_date: crate::domain::time::jst_date(now_millis()) + chrono::Days::new(14),
    }
}

/// What came back: the status and, when readable, the receipt.
struct Reply {
    status: u16,
    receipt: Option<BatchReceipt>,
}

impl Reply {
    fn describe(&self) -> String {
        match &self.receipt {
            Some(r) if r.accepted => format!("HTTP {} ACPT {}", self.status, r.batch_id),
            Some(r) => format!(
                "HTTP {} RJCT {} {}",
                self.status,
                r.reason_code.as_deref().unwrap_or("-"),
                r.reason_text.as_deref().unwrap_or("")
            ),
            None => format!("HTTP {} (no readable receipt)", self.status),
        }
    }
}

async fn post(client: &reqwest::Client, url: &str, body: Vec<u8>) -> Result<Reply, String> {
    let resp = client
        .post(url)
        .header("content-type", "application/xml")
        .body(body)
        .send()
        .await
        .map_err(|e| format!("no reply: {e}"))?;
    let status = resp.status().as_u16();
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| format!("reply cut off: {e}"))?;
    Ok(Reply {
        status,
        receipt: iso20022::decode_batch_receipt(&bytes).ok(),
    })
}

/// Runs every case and returns the results in order.
pub async fn run(config: &ConformanceConfig) -> anyhow::Result<Vec<CaseResult>> {
    crate::tls::install_crypto_provider();
    let identity = Identity::load(&config.cert, &config.key)?;
    let tls = mtls_client_config(
        &load_certs(&config.ca)?,
        identity.chain.clone(),
        identity.key(),
    )?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(60))
        .no_proxy()
        .build()?;
    let url = config.bank_url.as_str();
    let mut results = Vec::new();
    let mut record =
        |name, expected, outcome: Result<Reply, String>, check: &dyn Fn(&Reply) -> bool| {
            let (passed, observed) = match outcome {
                Ok(r) => (check(&r), r.describe()),
                Err(e) => (false, e),
            };
            results.push(CaseResult {
                name,
                expected,
                passed,
                observed,
            });
        };

    let batch_id = BatchId::generate();
    let valid = iso20022::encode_inquiry_batch(
        &batch_id,
        &config.institution,
        now_millis(),
        &[sample_inquiry()],
    );
    let id = batch_id.to_string();
    let accepted = |r: &Reply| {
        r.status == 200
            && r.receipt
                .as_ref()
                .is_some_and(|x| x.accepted && x.batch_id == id)
    };
    record(
        "valid batch",
        "200, ACPT naming the batch",
        post(&client, url, valid.clone()).await,
        &accepted,
    );
    record(
        "duplicate batch id",
        "200, ACPT again (de-duplicated on the batch id)",
        post(&client, url, valid).await,
        &accepted,
    );

    let other = if config.institution.as_str() == "0001" {
        "0005"
    } else {
        "0001"
    };
    let other = InstitutionCode::parse(other).expect("valid code");
    let foreign = iso20022::encode_inquiry_batch(
        &BatchId::generate(),
        &other,
        now_millis(),
        &[sample_inquiry()],
    );
    let rejected = |r: &Reply| r.receipt.as_ref().is_some_and(|x| !x.accepted);
    record(
        "batch for another institution",
        "RJCT (INST), nothing taken",
        post(&client, url, foreign).await,
        &|r: &Reply| {
            rejected(r) && r.receipt.as_ref().and_then(|x| x.reason_code.as_deref()) == Some("INST")
        },
    );

    let oversize = iso20022::probe_oversize_batch(config.oversize_bytes);
    record(
        "oversize body",
        "413, or 4xx RJCT (SIZE)",
        post(&client, url, oversize).await,
        &|r: &Reply| r.status == 413 || (r.status >= 400 && r.status < 500 && rejected(r)),
    );
    record(
        "malformed body",
        "4xx RJCT (FRMT)",
        post(&client, url, iso20022::probe_malformed_batch()).await,
        &|r: &Reply| r.status >= 400 && r.status < 500 && rejected(r),
    );
    Ok(results)
}

/// The table `shokai conformance` prints.
pub fn render(results: &[CaseResult]) -> String {
    let mut out = String::from(
        "case                            result  expected                                         observed\n",
    );
    for r in results {
        out.push_str(&format!(
            "{:<31} {:<7} {:<48} {}\n",
            r.name,
            if r.passed { "pass" } else { "FAIL" },
            r.expected,
            r.observed
        ));
    }
    let failed = results.iter().filter(|r| !r.passed).count();
    out.push_str(&format!(
        "{} passed, {failed} failed\n",
        results.len() - failed
    ));
    out
}
