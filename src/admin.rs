//! Operator tasks shared by the CLI and the demo: tokens, the directory,
//! institution settings and bank certificates.

use std::path::Path;

use rand::Rng;

use crate::casework::Role;
use crate::domain::zengin::{InstitutionCode, parse_banks_csv, parse_branches_csv};
use crate::store::{InstitutionSettings, Store};
use crate::tls::{fingerprint, load_certs};

/// Creates an API token and returns it; only its hash is stored, so this is
/// the one time it can be shown.
pub async fn create_token(
    store: &Store,
    role: Role,
    office: &str,
    label: &str,
) -> anyhow::Result<String> {
    let bytes: [u8; 32] = rand::rng().random();
    let token = format!("shk_{}", hex::encode(bytes));
    store
        .insert_token(
            &crate::accounts::token_hash(&token),
            label,
            role.as_str(),
            office,
        )
        .await?;
    Ok(token)
}

pub async fn import_directory(
    store: &Store,
    banks: &Path,
    branches: Option<&Path>,
) -> anyhow::Result<(usize, usize)> {
    let read =
        |p: &Path| std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()));
    let banks = parse_banks_csv(&read(banks)?)?;
    let branches = match branches {
        Some(p) => parse_branches_csv(&read(p)?)?,
        None => Vec::new(),
    };
    Ok(store.import_directory(&banks, &branches).await?)
}

/// Registers the certificate a bank presents on the bank API.
pub async fn add_bank_certificate(
    store: &Store,
    code: &InstitutionCode,
    cert: &Path,
) -> anyhow::Result<String> {
    let der = load_certs(cert)?
        .into_iter()
        .next()
        .expect("load_certs returns at least one");
    let fp = fingerprint(der.as_ref());
    if store.institution(code).await?.is_none() {
        anyhow::bail!("institution {code} is not in the directory; import it first");
    }
    store.add_bank_certificate(&fp, code).await?;
    Ok(fp)
}

/// Checks settings before they are stored, so a bad endpoint fails here and
/// not at 3 a.m. in the dispatcher.
pub fn validate_settings(s: &InstitutionSettings) -> anyhow::Result<()> {
    use crate::domain::state::Channel;
    if s.channel == Channel::Push {
        let url = s
            .endpoint_url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("a push institution needs an endpoint URL"))?;
        if !url.starts_with("https://") {
            anyhow::bail!("the endpoint URL must be https://");
        }
        let ca = s
            .server_ca_pem
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("a push institution needs its server CA"))?;
        crate::tls::parse_certs(ca, "server CA")?;
    }
    if !(1..=10_000).contains(&s.max_batch_size) {
        anyhow::bail!("max batch size must be 1 to 10000");
    }
    if !(1..=64).contains(&s.max_in_flight) {
        anyhow::bail!("max batches in flight must be 1 to 64");
    }
    if let Some(w) = &s.delivery_window {
        crate::domain::window::DeliveryWindow::parse(w)?;
    }
    if s.batch_max_age_ms < 0 {
        anyhow::bail!("batch max age must not be negative");
    }
    Ok(())
}

pub async fn set_institution(
    store: &Store,
    code: &InstitutionCode,
    s: &InstitutionSettings,
) -> anyhow::Result<()> {
    validate_settings(s)?;
    store.update_institution_settings(code, s).await?;
    Ok(())
}

/// Points an institution at a push endpoint and registers its client
/// certificate: what onboarding a bank amounts to.
pub async fn connect_push_institution(
    store: &Store,
    code: &InstitutionCode,
    endpoint: &str,
    server_ca_pem: &str,
    bank_client_cert: &Path,
    limits: (i64, i64, i64),
) -> anyhow::Result<()> {
    let (max_batch_size, max_in_flight, batch_max_age_ms) = limits;
    set_institution(
        store,
        code,
        &InstitutionSettings {
            channel: crate::domain::state::Channel::Push,
            endpoint_url: Some(endpoint.to_owned()),
            server_ca_pem: Some(server_ca_pem.to_owned()),
            max_batch_size,
            max_in_flight,
            batch_max_age_ms,
            paused: false,
            delivery_window: None,
        },
    )
    .await?;
    add_bank_certificate(store, code, bank_client_cert).await?;
    Ok(())
}

/// What `shokai audit verify` found.
pub enum AuditVerdict {
    Intact { entries: i64, head: String },
    Broken(crate::domain::audit::ChainBreak),
}

/// Walks the whole audit trail in order, a page at a time, checking every
/// link and hash, and that the chain's recorded head is its last entry.
pub async fn verify_audit(store: &Store) -> anyhow::Result<AuditVerdict> {
    use crate::domain::audit::{ChainBreak, GENESIS, verify_run};
    use crate::store::AuditFilter;
    // The head first: entries appended while we walk are beyond it and are
    // left for the next run, instead of looking like a mismatch.
    let (head_seq, head_hash) = store.audit_head().await?;
    let (mut seq, mut hash) = (0i64, GENESIS.to_owned());
    while seq < head_seq {
        let limit = (head_seq - seq).min(10_000);
        let page = store
            .audit_entries(&AuditFilter {
                after_seq: Some(seq),
                limit,
                ..Default::default()
            })
            .await?;
        let Some(last) = page.last() else { break };
        if let Err(brk) = verify_run(seq, &hash, &page) {
            return Ok(AuditVerdict::Broken(brk));
        }
        (seq, hash) = (last.seq, last.hash.clone());
    }
    if (head_seq, head_hash.as_str()) != (seq, hash.as_str()) {
        return Ok(AuditVerdict::Broken(ChainBreak {
            seq: seq + 1,
            reason: format!(
                "the chain ends at entry {seq} but its head says {head_seq}: entries were removed"
            ),
        }));
    }
    Ok(AuditVerdict::Intact {
        entries: seq,
        head: hash,
    })
}

/// Purges personal data of cases closed more than `days` ago. Each purged
/// case leaves one audit entry with its counts (never the data), written in
/// the same transaction as the deletion.
pub async fn purge_expired(store: &Store, days: u32) -> anyhow::Result<crate::store::PurgeCounts> {
    let now = crate::domain::time::now_millis();
    let cutoff = now - i64::from(days) * 86_400_000;
    let (counts, _cases) = store.purge_closed_cases(cutoff, days).await?;
    if counts != crate::store::PurgeCounts::default() {
        let c = &counts;
        tracing::info!(
            cases = c.cases,
            inquiries = c.inquiries,
            answers = c.answers,
            payloads = c.batch_payloads,
            "retention purge"
        );
    }
    Ok(counts)
}
