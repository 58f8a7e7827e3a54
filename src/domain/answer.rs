//! What a bank answers about one inquiry, independent of the wire format.

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use super::DomainError;
use super::ids::InquiryId;
use super::state::InquiryState;
use super::zengin::BranchCode;

/// 預金種目. Time deposits (定期) are reported as their own type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountType {
    Ordinary,
    Current,
    Savings,
    Other,
    Time,
}

impl AccountType {
    pub fn code(self) -> &'static str {
        match self {
            Self::Ordinary => "1",
            Self::Current => "2",
            Self::Savings => "4",
            Self::Other => "9",
            Self::Time => "T",
        }
    }

    pub fn parse(code: &str) -> Result<Self, DomainError> {
        Ok(match code {
            "1" => Self::Ordinary,
            "2" => Self::Current,
            "4" => Self::Savings,
            "9" => Self::Other,
            "T" => Self::Time,
            _ => {
                return Err(DomainError::new(
                    "invalid_account_type",
                    format!("account type '{code}' is not one of 1, 2, 4, 9, T"),
                ));
            }
        })
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::Ordinary => "普通",
            Self::Current => "当座",
            Self::Savings => "貯蓄",
            Self::Other => "その他",
            Self::Time => "定期",
        }
    }
}

/// A 7-digit account number, zero-padded.
pub fn parse_account_number(raw: &str) -> Result<String, DomainError> {
    if raw.len() == 7 && raw.bytes().all(|b| b.is_ascii_digit()) {
        Ok(raw.to_owned())
    } else {
        Err(DomainError::new(
            "invalid_account_number",
            "an account number is exactly 7 digits",
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transaction {
    pub date: NaiveDate,
    pub description: Option<String>,
    pub debit: Option<i64>,
    pub credit: Option<i64>,
    pub balance: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub branch: BranchCode,
    pub account_type: AccountType,
    pub number: String,
    pub holder_kana: String,
    pub balance: Option<i64>,
    pub as_of: Option<NaiveDate>,
    pub last_transaction: Option<NaiveDate>,
    pub transactions: Vec<Transaction>,
}

impl Account {
    /// An account entered by hand from a bank's paper reply, checked with
    /// the rules the electronic answers follow.
    pub fn from_paper(
        branch: &str,
        account_type: &str,
        number: &str,
        holder_kana: &str,
        balance: i64,
        as_of: NaiveDate,
    ) -> Result<Account, DomainError> {
        let holder = holder_kana.trim();
        if holder.is_empty() || holder.chars().count() > super::kana::MAX_ZENGIN_LEN {
            return Err(DomainError::new(
                "invalid_holder",
                format!(
                    "the holder's name is 1 to {} characters",
                    super::kana::MAX_ZENGIN_LEN
                ),
            ));
        }
        Ok(Account {
            branch: BranchCode::parse(branch.trim())?,
            account_type: AccountType::parse(account_type.trim())?,
            number: parse_account_number(number.trim())?,
            holder_kana: holder.to_owned(),
            balance: Some(balance),
            as_of: Some(as_of),
            last_transaction: None,
            transactions: Vec::new(),
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherHolding {
    /// `COLL` (collateral) or `SAFE` (safekeeping).
    pub kind: String,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Found {
        accounts: Vec<Account>,
        other_holdings: Vec<OtherHolding>,
    },
    NotFound,
    Refused {
        code: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub inquiry_id: InquiryId,
    /// The bank's own id for this answer.
    pub response_id: String,
    pub outcome: Outcome,
}

impl Outcome {
    pub fn state(&self) -> InquiryState {
        match self {
            Self::Found { .. } => InquiryState::Answered,
            Self::NotFound => InquiryState::NotFound,
            Self::Refused { .. } => InquiryState::Refused,
        }
    }

    /// A digest of the content alone (not the bank's message ids), so that a
    /// resent identical answer is recognised and a correction is not.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        let mut put = |s: &str| {
            h.update(s.as_bytes());
            h.update([0x1f]);
        };
        let opt_i = |v: Option<i64>| v.map(|x| x.to_string()).unwrap_or_default();
        let opt_d = |v: Option<NaiveDate>| v.map(|x| x.to_string()).unwrap_or_default();
        match self {
            Self::NotFound => put("not_found"),
            Self::Refused { code, reason } => {
                put("refused");
                put(code);
                put(reason);
            }
            Self::Found {
                accounts,
                other_holdings,
            } => {
                put("found");
                for a in accounts {
                    put("acct");
                    put(a.branch.as_str());
                    put(a.account_type.code());
                    put(&a.number);
                    put(&a.holder_kana);
                    put(&opt_i(a.balance));
                    put(&opt_d(a.as_of));
                    put(&opt_d(a.last_transaction));
                    for t in &a.transactions {
                        put("tx");
                        put(&t.date.to_string());
                        put(t.description.as_deref().unwrap_or(""));
                        put(&opt_i(t.debit));
                        put(&opt_i(t.credit));
                        put(&t.balance.to_string());
                    }
                }
                for o in other_holdings {
                    put("other");
                    put(&o.kind);
                    put(&o.description);
                }
            }
        }
        hex::encode(h.finalize())
    }
}

/// One answer revision already on file for an inquiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRevision {
    pub revision: i64,
    pub response_id: String,
    pub content_hash: String,
}

/// An inquiry as an arriving answer meets it: its state, its current
/// answer revision (0 before the first) and every revision on file.
#[derive(Debug, Clone)]
pub struct AnswerTarget {
    pub state: InquiryState,
    pub revision: i64,
    pub stored: Vec<StoredRevision>,
}

/// What becomes of one answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// File it as `revision`; the inquiry moves `from` → `to`.
    Accept {
        revision: i64,
        from: InquiryState,
        to: InquiryState,
    },
    /// Already on file: acknowledge it and write nothing.
    Duplicate,
    Reject {
        code: &'static str,
        reason: String,
    },
}

impl AnswerTarget {
    /// Judges one answer. An accepted answer moves the target on, so a
    /// second answer for the same inquiry in the same batch (a resend or a
    /// correction) is judged against the first, as if it came later.
    pub fn judge(&mut self, response_id: &str, outcome: &Outcome, content_hash: &str) -> Verdict {
        match self.state {
            InquiryState::Cancelled => {
                return Verdict::Reject {
                    code: "inquiry_cancelled",
                    reason: "the inquiry was cancelled by the office".into(),
                };
            }
            InquiryState::Queued => {
                return Verdict::Reject {
                    code: "not_delivered",
                    reason: "the inquiry has not been sent yet".into(),
                };
            }
            _ => {}
        }
        // A resend of any answer already stored (the bank's same message,
        // same content) is a duplicate, even after a later correction: an
        // old answer arriving late must not undo the correction.
        if self.stored.iter().any(|s| {
            s.content_hash == content_hash
                && (s.response_id == response_id || s.revision == self.revision)
        }) {
            return Verdict::Duplicate;
        }
        let to = match self.state.transition(outcome.state()) {
            Ok(to) => to,
            Err(e) => {
                return Verdict::Reject {
                    code: "illegal_transition",
                    reason: e.message,
                };
            }
        };
        let from = self.state;
        self.state = to;
        self.revision += 1;
        self.stored.push(StoredRevision {
            revision: self.revision,
            response_id: response_id.to_owned(),
            content_hash: content_hash.to_owned(),
        });
        Verdict::Accept {
            revision: self.revision,
            from,
            to,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(balance: i64) -> Account {
        Account {
            branch: BranchCode::parse("001").unwrap(),
            account_type: AccountType::Ordinary,
            number: "1234567".into(),
            holder_kana: "ﾔﾏﾀﾞ ﾀﾛｳ".into(),
            balance: Some(balance),
            as_of: NaiveDate::from_ymd_opt(2026, 11, 1),
            last_transaction: None,
            transactions: vec![],
        }
    }

    #[test]
    fn content_hash_sees_corrections_only() {
        let a = Outcome::Found {
            accounts: vec![account(100)],
            other_holdings: vec![],
        };
        let b = Outcome::Found {
            accounts: vec![account(100)],
            other_holdings: vec![],
        };
        let c = Outcome::Found {
            accounts: vec![account(101)],
            other_holdings: vec![],
        };
        assert_eq!(a.content_hash(), b.content_hash());
        assert_ne!(a.content_hash(), c.content_hash());
        assert_ne!(Outcome::NotFound.content_hash(), a.content_hash());
    }

    #[test]
    fn account_types() {
        for t in [
            AccountType::Ordinary,
            AccountType::Current,
            AccountType::Savings,
            AccountType::Other,
            AccountType::Time,
        ] {
            assert_eq!(AccountType::parse(t.code()).unwrap(), t);
        }
        assert!(AccountType::parse("3").is_err());
        assert!(parse_account_number("123456").is_err());
    }

    #[test]
    fn judging_answers_in_a_row() {
        let mut t = AnswerTarget {
            state: InquiryState::Delivered,
            revision: 0,
            stored: vec![],
        };
        let found = Outcome::Found {
            accounts: vec![account(100)],
            other_holdings: vec![],
        };
        let (h1, h2) = (found.content_hash(), Outcome::NotFound.content_hash());
        assert_eq!(
            t.judge("r1", &found, &h1),
            Verdict::Accept {
                revision: 1,
                from: InquiryState::Delivered,
                to: InquiryState::Answered
            }
        );
        // The same again, under the same or another message id.
        assert_eq!(t.judge("r1", &found, &h1), Verdict::Duplicate);
        assert_eq!(t.judge("r9", &found, &h1), Verdict::Duplicate);
        // A correction, then the old answer arriving late.
        assert!(matches!(
            t.judge("r2", &Outcome::NotFound, &h2),
            Verdict::Accept { revision: 2, .. }
        ));
        assert_eq!(t.judge("r1", &found, &h1), Verdict::Duplicate);
        assert_eq!(t.state, InquiryState::NotFound);
        // The first answer's content under a new message id is a correction.
        assert!(matches!(
            t.judge("r3", &found, &h1),
            Verdict::Accept { revision: 3, .. }
        ));
        for (state, code) in [
            (InquiryState::Cancelled, "inquiry_cancelled"),
            (InquiryState::Queued, "not_delivered"),
        ] {
            let mut t = AnswerTarget {
                state,
                revision: 0,
                stored: vec![],
            };
            assert!(
                matches!(t.judge("r", &found, &h1), Verdict::Reject { code: c, .. } if c == code)
            );
            assert_eq!(t.revision, 0);
        }
    }
}
