//! Applying bank answers (once, with revisions) and reading the case file.

use std::collections::HashMap;
use std::sync::Arc;

use super::cases::CaseRecord;
use chrono::NaiveDate;

use super::script::{Done, Script};
use super::{
    Priority, Result, Store, StoreError, get_i64, get_opt_date, get_opt_i64, get_opt_str, get_str,
    parse_date, placeholders, q,
};
use crate::domain::answer::{
    Account, AccountType, Answer, AnswerTarget, OtherHolding, Outcome, StoredRevision, Transaction,
    Verdict,
};
use crate::domain::audit::AuditEntry;
use crate::domain::feed::FeedKind;
use crate::domain::ids::{CaseId, InquiryId, SubjectId};
use crate::domain::state::InquiryState;
use crate::domain::time::jst_date;
use crate::domain::zengin::{BranchCode, InstitutionCode};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// Filed as this revision (1 for the first answer, more for corrections).
    Accepted {
        revision: i64,
        /// How long the inquiry waited from filing to this answer (ms).
        waited_ms: i64,
    },
    /// The same content as the current revision: acknowledged and ignored.
    Duplicate,
    Rejected {
        code: &'static str,
        reason: String,
    },
}

pub type StoredAccount = Account;

#[derive(Debug, Clone)]
pub struct CaseFileEntry {
    pub inquiry_id: InquiryId,
    pub subject_id: SubjectId,
    pub institution: InstitutionCode,
    pub institution_name: String,
    pub revision: i64,
    /// A later revision of the same inquiry's answer replaced this one.
    pub superseded: bool,
    pub response_id: String,
    pub received_at: i64,
    pub outcome: Outcome,
}

#[derive(Debug, Clone)]
pub struct CaseFile {
    pub case: CaseRecord,
    /// Every inquiry of the case with its state and overdue flag, answered
    /// or not, so the file shows what is still outstanding.
    pub inquiries: Vec<super::InquiryView>,
    pub entries: Vec<CaseFileEntry>,
}

/// What the current answers report for one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTotal {
    pub subject: SubjectId,
    pub accounts: usize,
    /// Yen; accounts without a balance count as 0.
    pub balance: i64,
}

impl CaseFile {
    /// Accounts and balance per subject, in the case's order, over the
    /// answers that are not superseded.
    pub fn balance_totals(&self) -> Vec<SubjectTotal> {
        let mut totals: Vec<SubjectTotal> = self
            .case
            .subjects
            .iter()
            .map(|s| SubjectTotal {
                subject: s.id.clone(),
                accounts: 0,
                balance: 0,
            })
            .collect();
        for e in self.entries.iter().filter(|e| !e.superseded) {
            if let (Outcome::Found { accounts, .. }, Some(t)) = (
                &e.outcome,
                totals.iter_mut().find(|t| t.subject == e.subject_id),
            ) {
                t.accounts += accounts.len();
                t.balance += accounts.iter().filter_map(|a| a.balance).sum::<i64>();
            }
        }
        totals
    }
}

/// Makes the audit entry of an accepted answer (its revision given).
/// Owned, so that the filing can run on the writer's thread.
pub type AnswerAudit = Arc<AnswerTrail>;
/// The function an `AnswerAudit` shares.
pub type AnswerTrail = dyn Fn(&Answer, i64) -> AuditEntry + Send + Sync;

/// An inquiry named by an answer batch, as read under the lock.
struct Target {
    institution: String,
    case_id: String,
    filed_at: i64,
    decision: Option<NaiveDate>,
    /// The revision read, which the final update is fenced on.
    read_revision: i64,
    on_file: AnswerTarget,
}

/// What an answer batch's first script read under the write lock, beside
/// its targets: the audit chain's head (`read_audit_head_early`) and where
/// the new answers' and accounts' ids start (`Store::read_id_floor`), each
/// on SQLite only.
struct EarlyReads {
    audit_head: Option<Done>,
    answer_ids: Option<Done>,
    account_ids: Option<Done>,
}

/// An answer accepted for filing.
struct Filed<'a> {
    answer: &'a Answer,
    hash: String,
    revision: i64,
    to: InquiryState,
    case_id: String,
    decision: Option<NaiveDate>,
    /// The inquiry's revision as read under the lock.
    read_revision: i64,
}

/// The state an answer row's stored `outcome` moved its inquiry to: the
/// history's step for that answer (migration 0016).
pub(super) fn answer_step(outcome: &str) -> Result<InquiryState> {
    match outcome {
        "found" => Ok(InquiryState::Answered),
        "not_found" => Ok(InquiryState::NotFound),
        "refused" => Ok(InquiryState::Refused),
        other => Err(StoreError::Corrupt(format!("answer outcome '{other}'"))),
    }
}

fn reject(code: &'static str, reason: impl Into<String>) -> ApplyOutcome {
    ApplyOutcome::Rejected {
        code,
        reason: reason.into(),
    }
}

impl Store {
    /// Applies one answer from `institution`, without an audit entry (the
    /// tests' and tools' entry point; banks go through `apply_answers`).
    pub async fn apply_answer(
        &self,
        institution: &InstitutionCode,
        answer: &Answer,
        now: i64,
    ) -> Result<ApplyOutcome> {
        Ok(self
            .apply_answers(institution, std::slice::from_ref(answer), now, None)
            .await?
            .remove(0))
    }

    /// Applies a bank's answers in one transaction with a fixed number of
    /// statements per batch, whatever its size: one read of the inquiries
    /// and one of their stored revisions, then multi-row inserts and one
    /// update. A bank can only answer its own inquiries; an identical
    /// repeat is a no-op; a changed answer becomes a new revision with its
    /// one case-file entry. `audit` makes the trail entry of each accepted
    /// answer, written in the same transaction, so an answer is never filed
    /// without its trace. If anything fails, nothing is filed.
    pub async fn apply_answers(
        &self,
        institution: &InstitutionCode,
        answers: &[Answer],
        now: i64,
        audit: Option<AnswerAudit>,
    ) -> Result<Vec<ApplyOutcome>> {
        if answers.is_empty() {
            return Ok(Vec::new());
        }
        let (institution, answers) = (institution.clone(), answers.to_vec());
        self.on_writer(move |store| async move {
            let audit = audit.as_deref();
            store
                .retrying(|| store.apply_answers_once(&institution, &answers, now, audit))
                .await
        })
        .await
    }

    async fn apply_answers_once(
        &self,
        institution: &InstitutionCode,
        answers: &[Answer],
        now: i64,
        audit: Option<&AnswerTrail>,
    ) -> Result<Vec<ApplyOutcome>> {
        let (mut tx, mut targets, early) = self.answer_targets(answers, audit.is_some()).await?;
        let mut outcomes = Vec::with_capacity(answers.len());
        let mut filed: Vec<Filed<'_>> = Vec::new();
        for answer in answers {
            // Another bank's inquiry looks exactly like an unknown one: a
            // bank learns nothing about inquiries not addressed to it.
            let Some(target) = targets
                .get_mut(answer.inquiry_id.as_str())
                .filter(|t| t.institution == institution.as_str())
            else {
                outcomes.push(reject(
                    "unknown_inquiry",
                    format!(
                        "no inquiry {} was sent to institution {institution}",
                        answer.inquiry_id
                    ),
                ));
                continue;
            };
            let hash = answer.outcome.content_hash();
            outcomes.push(
                match target
                    .on_file
                    .judge(&answer.response_id, &answer.outcome, &hash)
                {
                    Verdict::Duplicate => ApplyOutcome::Duplicate,
                    Verdict::Reject { code, reason } => reject(code, reason),
                    // The step's history is the answer row itself (0016).
                    Verdict::Accept { revision, to, .. } => {
                        filed.push(Filed {
                            answer,
                            hash,
                            revision,
                            to,
                            case_id: target.case_id.clone(),
                            decision: target.decision,
                            read_revision: target.read_revision,
                        });
                        ApplyOutcome::Accepted {
                            revision,
                            waited_ms: now - target.filed_at,
                        }
                    }
                },
            );
        }
        if !filed.is_empty() {
            let entries: Vec<AuditEntry> = audit
                .map(|audit| filed.iter().map(|f| audit(f.answer, f.revision)).collect())
                .unwrap_or_default();
            self.file_answers(&mut tx, institution, &filed, now, &early, &entries)
                .await?;
        }
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Reads (and on PostgreSQL locks, in id order, as batch finishing
    /// does, so the two cannot deadlock) every inquiry the answers name,
    /// with the revisions already on file, and the `EarlyReads`, in one
    /// script (the audit head only when `audited`).
    async fn answer_targets(
        &self,
        answers: &[Answer],
        audited: bool,
    ) -> Result<(super::WriteTx, HashMap<String, Target>, EarlyReads)> {
        let mut ids: Vec<&str> = answers.iter().map(|a| a.inquiry_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut read = Script::new(self.dialect);
        let chunks: Vec<usize> = ids
            .chunks(super::ROWS_PER_STATEMENT)
            .map(|chunk| {
                read.push(
                    format!(
                        "SELECT i.id, i.state, i.institution_code, i.case_id, i.answer_revision, \
                       i.created_at, c.decision_date FROM inquiries i JOIN cases c ON c.id = i.case_id \
                       WHERE i.id IN ({}) ORDER BY i.id{}",
                        placeholders(0, chunk.len()),
                        self.dialect.for_update_of("i")
                    ),
                    move |query| {
                        chunk
                            .iter()
                            .fold(query, |query, id| query.bind((*id).to_owned()))
                    },
                )
            })
            .collect();
        let head = if audited {
            self.read_audit_head_early(&mut read)
        } else {
            None
        };
        let answer_ids = self.read_id_floor(&mut read, "answers");
        let account_ids = self.read_id_floor(&mut read, "answer_accounts");
        let (mut tx, mut read) = self.begin_with(Priority::Background, read).await?;
        let mut take = |i: Option<usize>| i.map(|i| std::mem::take(&mut read[i]));
        let early = EarlyReads {
            audit_head: take(head),
            answer_ids: take(answer_ids),
            account_ids: take(account_ids),
        };
        let mut targets = HashMap::with_capacity(ids.len());
        let mut answered = Vec::new();
        for row in chunks.into_iter().flat_map(|c| &read[c].rows) {
            let id = get_str(row, "id")?;
            let revision = get_i64(row, "answer_revision")?;
            if revision > 0 {
                answered.push(id.clone());
            }
            targets.insert(
                id,
                Target {
                    institution: get_str(row, "institution_code")?,
                    case_id: get_str(row, "case_id")?,
                    filed_at: get_i64(row, "created_at")?,
                    decision: get_opt_date(row, "decision_date")?,
                    read_revision: revision,
                    on_file: AnswerTarget {
                        state: InquiryState::parse(&get_str(row, "state")?)?,
                        revision,
                        stored: Vec::new(),
                    },
                },
            );
        }
        for chunk in answered.chunks(super::ROWS_PER_STATEMENT) {
            let mut query = super::q_many(
                self.dialect,
                format!(
                    "SELECT inquiry_id, revision, response_id, content_hash FROM answers \
                   WHERE inquiry_id IN ({})",
                    placeholders(0, chunk.len())
                ),
            );
            for id in chunk {
                query = query.bind(id.clone());
            }
            for row in query.fetch_all(&mut *tx).await? {
                if let Some(t) = targets.get_mut(&get_str(&row, "inquiry_id")?) {
                    t.on_file.stored.push(StoredRevision {
                        revision: get_i64(&row, "revision")?,
                        response_id: get_str(&row, "response_id")?,
                        content_hash: get_str(&row, "content_hash")?,
                    });
                }
            }
        }
        Ok((tx, targets, early))
    }

    /// Writes the accepted answers: revisions, accounts, transactions and
    /// other holdings, case-file entries, history, reopen alerts, feed
    /// events, the inquiries' new state, fenced on the revision read, and
    /// the audit entries of `trail` (`run_audited`).
    /// The new rows' ids are reserved first (`Store::reserve_ids`), so on
    /// SQLite everything is one script, with no `RETURNING` round trips.
    async fn file_answers(
        &self,
        tx: &mut super::WriteTx,
        institution: &InstitutionCode,
        filed: &[Filed<'_>],
        now: i64,
        early: &EarlyReads,
        trail: &[AuditEntry],
    ) -> Result<()> {
        let answer_ids = self
            .reserve_ids(tx, "answers", early.answer_ids.as_ref(), filed.len())
            .await?;
        let filed_ids: Vec<(&Filed<'_>, i64)> =
            filed.iter().zip(answer_ids.iter().copied()).collect();
        let mut accounts = Vec::new();
        let mut holdings = Vec::new();
        for &(f, id) in &filed_ids {
            if let Outcome::Found {
                accounts: a,
                other_holdings: o,
            } = &f.answer.outcome
            {
                accounts.extend(a.iter().enumerate().map(|(pos, a)| (id, pos as i64, a)));
                holdings.extend(o.iter().enumerate().map(|(pos, o)| (id, pos as i64, o)));
            }
        }
        let account_ids = self
            .reserve_ids(
                tx,
                "answer_accounts",
                early.account_ids.as_ref(),
                accounts.len(),
            )
            .await?;
        let accounts: Vec<(i64, i64, i64, &Account)> = accounts
            .into_iter()
            .zip(account_ids)
            .map(|((answer_id, pos, a), id)| (id, answer_id, pos, a))
            .collect();
        let transactions: Vec<(i64, i64, &Transaction)> = accounts
            .iter()
            .flat_map(|&(account_id, _, _, a)| {
                a.transactions
                    .iter()
                    .enumerate()
                    .map(move |(tpos, t)| (account_id, tpos as i64, t))
            })
            .collect();
        let mut write = Script::new(self.dialect);
        write.insert_rows(
            "INSERT INTO answers (id, inquiry_id, revision, institution_code, response_id, \
               outcome, refusal_code, refusal_reason, content_hash, received_at, case_id)",
            11,
            &filed_ids,
            "",
            move |query, &(f, id)| {
                let (outcome, code, reason) = match &f.answer.outcome {
                    Outcome::Refused { code, reason } => {
                        ("refused", Some(code.clone()), Some(reason.clone()))
                    }
                    Outcome::NotFound => ("not_found", None, None),
                    Outcome::Found { .. } => ("found", None, None),
                };
                query
                    .bind(id)
                    .bind(f.answer.inquiry_id.as_str().to_owned())
                    .bind(f.revision)
                    .bind(institution.as_str().to_owned())
                    .bind(f.answer.response_id.clone())
                    .bind(outcome)
                    .bind(code)
                    .bind(reason)
                    .bind(f.hash.clone())
                    .bind(now)
                    .bind(f.case_id.clone())
            },
        );
        write.insert_owned_rows(
            "INSERT INTO answer_accounts (id, answer_id, position, branch_code, account_type, \
               number, holder_kana, balance, as_of, last_tx_date)",
            10,
            accounts,
            "",
            |query, &(id, answer_id, pos, a)| {
                query
                    .bind(id)
                    .bind(answer_id)
                    .bind(pos)
                    .bind(a.branch.as_str().to_owned())
                    .bind(a.account_type.code())
                    .bind(a.number.clone())
                    .bind(a.holder_kana.clone())
                    .bind(a.balance)
                    .bind(a.as_of.map(|d| d.to_string()))
                    .bind(a.last_transaction.map(|d| d.to_string()))
            },
        );
        write.insert_owned_rows(
            "INSERT INTO answer_transactions (account_id, position, date, description, debit, \
               credit, balance)",
            7,
            transactions,
            "",
            |query, (account_id, pos, t)| {
                query
                    .bind(*account_id)
                    .bind(*pos)
                    .bind(t.date.to_string())
                    .bind(t.description.clone())
                    .bind(t.debit)
                    .bind(t.credit)
                    .bind(t.balance)
            },
        );
        write.insert_owned_rows(
            "INSERT INTO answer_other_holdings (answer_id, position, kind, description)",
            4,
            holdings,
            "",
            |query, (answer_id, pos, o)| {
                query
                    .bind(*answer_id)
                    .bind(*pos)
                    .bind(o.kind.clone())
                    .bind(o.description.clone())
            },
        );
        let mut feed: Vec<(String, FeedKind, String)> = Vec::new();
        // An answer after the case was decided does not change the decision
        // silently: it raises a reopen alert for the caseworker. Rare, so
        // one statement each, ahead of the script: the feed event names the
        // alert's generated id.
        for f in filed {
            let Some(decision) = f.decision.filter(|d| jst_date(now) > *d) else {
                continue;
            };
            let alert = q(
                "INSERT INTO case_alerts (case_id, kind, inquiry_id, detail, created_at) \
                   VALUES ($1, 'reopen', $2, $3, $4) RETURNING id"
                    .to_owned(),
            )
            .bind(f.case_id.clone())
            .bind(f.answer.inquiry_id.as_str().to_owned())
            .bind(format!(
                "institution {institution} answered ({}) after the decision of {decision}",
                f.to.as_str()
            ))
            .bind(now)
            .fetch_one(&mut **tx)
            .await?;
            feed.push((
                f.case_id.clone(),
                FeedKind::AlertRaised,
                get_i64(&alert, "id")?.to_string(),
            ));
        }
        // One update per batch: each inquiry's last accepted revision,
        // fenced on the revision read under the lock.
        let last: HashMap<&str, &Filed<'_>> = filed
            .iter()
            .map(|f| (f.answer.inquiry_id.as_str(), f))
            .collect();
        let last: Vec<&Filed<'_>> = last.into_values().collect();
        let fenced: Vec<(usize, usize)> = last
            .chunks(super::ROWS_PER_STATEMENT)
            .map(|chunk| {
                let values = super::value_rows(1, chunk.len(), 4);
                let chunk = chunk.to_vec();
                let len = chunk.len();
                let update = write.push(
                    format!(
                        "UPDATE inquiries SET state = v.column2, answer_revision = v.column3, \
                         updated_at = $1 FROM (VALUES {values}) AS v \
                         WHERE inquiries.id = v.column1 AND inquiries.answer_revision = v.column4"
                    ),
                    move |query| {
                        chunk.iter().fold(query.bind(now), |query, f| {
                            query
                                .bind(f.answer.inquiry_id.as_str().to_owned())
                                .bind(f.to.as_str())
                                .bind(f.revision)
                                .bind(f.read_revision)
                        })
                    },
                );
                (update, len)
            })
            .collect();
        feed.extend(filed.iter().map(|f| {
            (
                f.case_id.clone(),
                FeedKind::AnswerFiled,
                format!("{}:{}", f.answer.inquiry_id, f.revision),
            )
        }));
        self.push_feed_events(&mut write, feed, now);
        let done = self
            .run_audited(tx, write, early.audit_head.as_ref(), trail)
            .await?;
        if fenced
            .iter()
            .any(|&(update, len)| done[update].rows_affected != len as u64)
        {
            return Err(StoreError::Conflict(
                "an answered inquiry changed concurrently".into(),
            ));
        }
        Ok(())
    }

    pub async fn case_file(&self, id: &CaseId) -> Result<Option<CaseFile>> {
        let Some(case) = self.case(id).await? else {
            return Ok(None);
        };
        let rows = q(
            "SELECT a.id AS answer_id, a.inquiry_id, i.subject_id, i.institution_code, \
               s.name AS institution_name, a.revision, i.answer_revision AS current_revision, \
               a.response_id, a.received_at, a.outcome, a.refusal_code, a.refusal_reason \
               FROM answers a JOIN inquiries i ON i.id = a.inquiry_id \
               JOIN institutions s ON s.code = i.institution_code \
               WHERE a.case_id = $1 ORDER BY a.id"
                .to_owned(),
        )
        .bind(id.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        let accounts = q(
            "SELECT c.id, c.answer_id, c.branch_code, c.account_type, c.number, c.holder_kana, \
               c.balance, c.as_of, c.last_tx_date FROM answer_accounts c \
               JOIN answers a ON a.id = c.answer_id \
               WHERE a.case_id = $1 ORDER BY c.answer_id, c.position"
                .to_owned(),
        )
        .bind(id.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        let transactions = q(
            "SELECT t.account_id, t.date, t.description, t.debit, t.credit, t.balance \
               FROM answer_transactions t JOIN answer_accounts c ON c.id = t.account_id \
               JOIN answers a ON a.id = c.answer_id \
               WHERE a.case_id = $1 ORDER BY t.account_id, t.position"
                .to_owned(),
        )
        .bind(id.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        let holdings = q(
            "SELECT h.answer_id, h.kind, h.description FROM answer_other_holdings h \
               JOIN answers a ON a.id = h.answer_id \
               WHERE a.case_id = $1 ORDER BY h.answer_id, h.position"
                .to_owned(),
        )
        .bind(id.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;

        let mut txs_by_account: HashMap<i64, Vec<Transaction>> = HashMap::new();
        for t in &transactions {
            txs_by_account
                .entry(get_i64(t, "account_id")?)
                .or_default()
                .push(Transaction {
                    date: parse_date(&get_str(t, "date")?)?,
                    description: get_opt_str(t, "description")?,
                    debit: get_opt_i64(t, "debit")?,
                    credit: get_opt_i64(t, "credit")?,
                    balance: get_i64(t, "balance")?,
                });
        }
        let mut accounts_by_answer: HashMap<i64, Vec<Account>> = HashMap::new();
        for a in &accounts {
            accounts_by_answer
                .entry(get_i64(a, "answer_id")?)
                .or_default()
                .push(Account {
                    branch: BranchCode::from_trusted(get_str(a, "branch_code")?),
                    account_type: AccountType::parse(&get_str(a, "account_type")?)?,
                    number: get_str(a, "number")?,
                    holder_kana: get_str(a, "holder_kana")?,
                    balance: get_opt_i64(a, "balance")?,
                    as_of: get_opt_date(a, "as_of")?,
                    last_transaction: get_opt_date(a, "last_tx_date")?,
                    transactions: txs_by_account
                        .remove(&get_i64(a, "id")?)
                        .unwrap_or_default(),
                });
        }
        let mut holdings_by_answer: HashMap<i64, Vec<OtherHolding>> = HashMap::new();
        for h in &holdings {
            holdings_by_answer
                .entry(get_i64(h, "answer_id")?)
                .or_default()
                .push(OtherHolding {
                    kind: get_str(h, "kind")?,
                    description: get_str(h, "description")?,
                });
        }
        let entries = rows
            .iter()
            .map(|r| {
                let answer_id = get_i64(r, "answer_id")?;
                let outcome = match get_str(r, "outcome")?.as_str() {
                    "found" => Outcome::Found {
                        accounts: accounts_by_answer.remove(&answer_id).unwrap_or_default(),
                        other_holdings: holdings_by_answer.remove(&answer_id).unwrap_or_default(),
                    },
                    "not_found" => Outcome::NotFound,
                    "refused" => Outcome::Refused {
                        code: get_opt_str(r, "refusal_code")?.unwrap_or_default(),
                        reason: get_opt_str(r, "refusal_reason")?.unwrap_or_default(),
                    },
                    other => return Err(StoreError::Corrupt(format!("answer outcome '{other}'"))),
                };
                let revision = get_i64(r, "revision")?;
                Ok(CaseFileEntry {
                    inquiry_id: InquiryId::from_trusted(get_str(r, "inquiry_id")?),
                    subject_id: SubjectId::from_trusted(get_str(r, "subject_id")?),
                    institution: InstitutionCode::from_trusted(get_str(r, "institution_code")?),
                    institution_name: get_str(r, "institution_name")?,
                    revision,
                    superseded: revision < get_i64(r, "current_revision")?,
                    response_id: get_str(r, "response_id")?,
                    received_at: get_i64(r, "received_at")?,
                    outcome,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let inquiries = self.case_inquiries(id).await?;
        Ok(Some(CaseFile {
            case,
            inquiries,
            entries,
        }))
    }

    /// Answers filed twice with the same content for one inquiry, plus
    /// answers filed in another case's file than their inquiry's: both
    /// break the exactly-once promise (a consistency check for tests and
    /// operators). An answer revision is its case-file entry.
    pub async fn duplicate_case_file_entries(&self) -> Result<i64> {
        let row = q(
            "SELECT (SELECT COUNT(*) FROM (SELECT inquiry_id, content_hash FROM answers \
               GROUP BY inquiry_id, content_hash HAVING COUNT(*) > 1) d) \
               + (SELECT COUNT(*) FROM answers a JOIN inquiries i ON i.id = a.inquiry_id \
               WHERE a.case_id <> i.case_id) AS n"
                .to_owned(),
        )
        .fetch_one(&self.pool)
        .await?;
        get_i64(&row, "n")
    }
}
