//! The audit trail's rules: what an entry holds and how entries chain. Each
//! entry's hash covers its fields and the previous entry's hash, so changing
//! or removing any row breaks every hash after it.

use sha2::{Digest, Sha256};

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened. Names are stable: auditors filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum AuditAction {
    CaseCreate,
    CaseRead,
    CaseFileRead,
    CaseDecide,
    CaseClose,
    RequestCreate,
    RequestRead,
    RequestCancel,
    InquiryCancel,
    AnswerReceive,
    AlertAcknowledge,
    BatchRetry,
    InstitutionPause,
    InstitutionResume,
    AuditRead,
    Purge,
    DepartmentInquiry,
    LetterRead,
    LetterMailed,
    InstitutionUpdate,
    UserChange,
}

impl AuditAction {
    pub const ALL: &'static [AuditAction] = &[
        Self::CaseCreate,
        Self::CaseRead,
        Self::CaseFileRead,
        Self::CaseDecide,
        Self::CaseClose,
        Self::RequestCreate,
        Self::RequestRead,
        Self::RequestCancel,
        Self::InquiryCancel,
        Self::AnswerReceive,
        Self::AlertAcknowledge,
        Self::BatchRetry,
        Self::InstitutionPause,
        Self::InstitutionResume,
        Self::AuditRead,
        Self::Purge,
        Self::DepartmentInquiry,
        Self::LetterRead,
        Self::LetterMailed,
        Self::InstitutionUpdate,
        Self::UserChange,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CaseCreate => "case.create",
            Self::CaseRead => "case.read",
            Self::CaseFileRead => "case_file.read",
            Self::CaseDecide => "case.decide",
            Self::CaseClose => "case.close",
            Self::RequestCreate => "request.create",
            Self::RequestRead => "request.read",
            Self::RequestCancel => "request.cancel",
            Self::InquiryCancel => "inquiry.cancel",
            Self::AnswerReceive => "answer.receive",
            Self::AlertAcknowledge => "alert.acknowledge",
            Self::BatchRetry => "batch.retry",
            Self::InstitutionPause => "institution.pause",
            Self::InstitutionResume => "institution.resume",
            Self::AuditRead => "audit.read",
            Self::Purge => "retention.purge",
            Self::DepartmentInquiry => "department.inquiry",
            Self::LetterRead => "letter.read",
            Self::LetterMailed => "letter.mailed",
            Self::InstitutionUpdate => "institution.update",
            Self::UserChange => "user.change",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|a| a.as_str() == raw)
    }
}

/// One access, as recorded. It names people only by ids (the case), never
/// by name, birth date or account number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at: i64,
    pub actor: String,
    pub role: String,
    pub office: String,
    pub action: AuditAction,
    /// What was touched: `case:<id>`, `request:<id>`, `inquiry:<id>`…
    pub target: String,
    /// About whom: the case id, when the target concerns one.
    pub case_id: Option<String>,
    pub purpose: Option<String>,
    pub legal_basis: Option<String>,
}

/// A stored entry with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainedEntry {
    pub seq: i64,
    pub entry: AuditEntry,
    pub prev_hash: String,
    pub hash: String,
}

pub fn chain_hash(prev_hash: &str, seq: i64, e: &AuditEntry) -> String {
    let mut h = Sha256::new();
    for field in [
        prev_hash,
        &seq.to_string(),
        &e.at.to_string(),
        &e.actor,
        &e.role,
        &e.office,
        e.action.as_str(),
        &e.target,
        e.case_id.as_deref().unwrap_or(""),
        e.purpose.as_deref().unwrap_or(""),
        e.legal_basis.as_deref().unwrap_or(""),
    ] {
        // Length-prefixed, so that moving text between fields changes the hash.
        h.update((field.len() as u64).to_be_bytes());
        h.update(field.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainBreak {
    pub seq: i64,
    pub reason: String,
}

/// Checks a run of entries that follows the entry with hash `prev_hash` and
/// number `prev_seq`: numbers without gaps, links and hashes intact.
pub fn verify_run(
    prev_seq: i64,
    prev_hash: &str,
    entries: &[ChainedEntry],
) -> Result<(), ChainBreak> {
    let (mut seq, mut prev) = (prev_seq, prev_hash.to_owned());
    for c in entries {
        let brk = |reason: String| Err(ChainBreak { seq: c.seq, reason });
        if c.seq != seq + 1 {
            return brk(format!(
                "entry {} follows entry {seq}: entries are missing",
                c.seq
            ));
        }
        if c.prev_hash != prev {
            return brk("its link to the previous entry does not match".into());
        }
        if chain_hash(&c.prev_hash, c.seq, &c.entry) != c.hash {
            return brk("its content does not match its hash".into());
        }
        seq = c.seq;
        prev = c.hash.clone();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: i64) -> AuditEntry {
        AuditEntry {
            at: 1_000 + i,
            actor: "token:abc".into(),
            role: "caseworker".into(),
            office: "131016".into(),
            action: AuditAction::CaseRead,
            target: format!("case:{i}"),
            case_id: Some(format!("{i}")),
            purpose: None,
            legal_basis: Some("生活保護法第29条".into()),
        }
    }

    fn chain(n: i64) -> Vec<ChainedEntry> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let e = entry(seq);
                let hash = chain_hash(&prev, seq, &e);
                let c = ChainedEntry {
                    seq,
                    entry: e,
                    prev_hash: prev.clone(),
                    hash: hash.clone(),
                };
                prev = hash;
                c
            })
            .collect()
    }

    #[test]
    fn an_intact_chain_verifies() {
        assert_eq!(verify_run(0, GENESIS, &chain(5)), Ok(()));
    }

    #[test]
    fn tampering_names_the_first_broken_entry() {
        let mut c = chain(5);
        c[2].entry.actor = "token:someone-else".into();
        assert_eq!(verify_run(0, GENESIS, &c).unwrap_err().seq, 3);
        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify_run(0, GENESIS, &c).unwrap_err().seq, 3);
        let mut c = chain(5);
        // Rewriting an entry and its own hash still breaks the next link.
        c[1].entry.target = "case:x".into();
        c[1].hash = chain_hash(&c[1].prev_hash, 2, &c[1].entry);
        assert_eq!(verify_run(0, GENESIS, &c).unwrap_err().seq, 3);
    }

    #[test]
    fn field_boundaries_matter() {
        let mut a = entry(1);
        let mut b = entry(1);
        a.actor = "ab".into();
        a.role = "c".into();
        b.actor = "a".into();
        b.role = "bc".into();
        assert_ne!(chain_hash(GENESIS, 1, &a), chain_hash(GENESIS, 1, &b));
    }

    #[test]
    fn action_names_round_trip() {
        for a in AuditAction::ALL {
            assert_eq!(AuditAction::parse(a.as_str()), Some(*a));
        }
    }
}
