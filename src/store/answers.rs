//! Applying bank answers (once, with revisions) and reading the case file.

use std::collections::HashMap;

use super::cases::CaseRecord;
use super::{
    Result, Store, StoreError, get_i64, get_opt_date, get_opt_i64, get_opt_str, get_str,
    parse_date, q,
};
use crate::domain::answer::{Account, AccountType, Answer, OtherHolding, Outcome, Transaction};
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

fn reject(code: &'static str, reason: impl Into<String>) -> ApplyOutcome {
    ApplyOutcome::Rejected {
        code,
        reason: reason.into(),
    }
}

impl Store {
    /// Applies one answer from `institution`. A bank can only answer its own
    /// inquiries; an identical repeat is a no-op; a changed answer becomes a
    /// new revision. The case-file entry is written in the same transaction,
    /// keyed by the answer row, so it is never written twice.
    pub async fn apply_answer(
        &self,
        institution: &InstitutionCode,
        answer: &Answer,
        now: i64,
    ) -> Result<ApplyOutcome> {
        self.apply_answers(institution, std::slice::from_ref(answer), now)
            .await?
            .remove(0)
    }

    /// Applies a bank's answers in one transaction, each under a savepoint:
    /// one commit per answer batch instead of one per answer, and an answer
    /// that fails leaves the others applied.
    pub async fn apply_answers(
        &self,
        institution: &InstitutionCode,
        answers: &[Answer],
        now: i64,
    ) -> Result<Vec<Result<ApplyOutcome>>> {
        let mut tx = self.begin().await?;
        // Lock every named inquiry up front in id order: batch finishing
        // locks in the same order, so the two cannot deadlock (PostgreSQL).
        if self.dialect == super::Dialect::Postgres && !answers.is_empty() {
            let mut ids: Vec<&str> = answers.iter().map(|a| a.inquiry_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            for chunk in ids.chunks(500) {
                let mut lock = q(format!(
                    "SELECT id FROM inquiries WHERE id IN ({}) ORDER BY id FOR UPDATE",
                    super::placeholders(0, chunk.len())
                ));
                for id in chunk {
                    lock = lock.bind((*id).to_owned());
                }
                lock.fetch_all(&mut *tx).await?;
            }
        }
        let mut out = Vec::with_capacity(answers.len());
        for answer in answers {
            let mut savepoint = sqlx::Acquire::begin(&mut *tx).await?;
            let result = self
                .apply_in(&mut savepoint, institution, answer, now)
                .await;
            if matches!(result, Ok(ApplyOutcome::Accepted { .. })) {
                savepoint.commit().await?;
            } else {
                savepoint.rollback().await?;
            }
            out.push(result);
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn apply_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        institution: &InstitutionCode,
        answer: &Answer,
        now: i64,
    ) -> Result<ApplyOutcome> {
        let row = q(format!(
            "SELECT state, institution_code, case_id, answer_revision, created_at FROM inquiries WHERE id = $1{}",
            self.dialect.for_update()
        ))
        .bind(answer.inquiry_id.as_str().to_owned())
        .fetch_optional(&mut **tx)
        .await?;
        // Another bank's inquiry looks exactly like an unknown one: a bank
        // learns nothing about inquiries not addressed to it.
        let Some(row) =
            row.filter(|r| get_str(r, "institution_code").is_ok_and(|c| c == institution.as_str()))
        else {
            return Ok(reject(
                "unknown_inquiry",
                format!(
                    "no inquiry {} was sent to institution {institution}",
                    answer.inquiry_id
                ),
            ));
        };
        let state = InquiryState::parse(&get_str(&row, "state")?)?;
        let case_id = get_str(&row, "case_id")?;
        let revision = get_i64(&row, "answer_revision")?;
        let filed_at = get_i64(&row, "created_at")?;
        match state {
            InquiryState::Cancelled => {
                return Ok(reject(
                    "inquiry_cancelled",
                    "the inquiry was cancelled by the office",
                ));
            }
            InquiryState::Queued => {
                return Ok(reject("not_delivered", "the inquiry has not been sent yet"));
            }
            _ => {}
        }
        let new_state = answer.outcome.state();
        // A resend of any answer already stored (the bank's same message,
        // same content) is a duplicate, even after a later correction: an
        // old answer arriving late must not undo the correction.
        let same = q(
            "SELECT revision FROM answers WHERE inquiry_id = $1 AND content_hash = $2 \
               AND (response_id = $3 OR revision = $4)"
                .to_owned(),
        )
        .bind(answer.inquiry_id.as_str().to_owned())
        .bind(answer.outcome.content_hash())
        .bind(answer.response_id.clone())
        .bind(revision)
        .fetch_optional(&mut **tx)
        .await?;
        if same.is_some() {
            return Ok(ApplyOutcome::Duplicate);
        }
        if let Err(e) = state.transition(new_state) {
            return Ok(reject("illegal_transition", e.message));
        }
        let new_revision = revision + 1;
        let (outcome, refusal_code, refusal_reason) = match &answer.outcome {
            Outcome::Refused { code, reason } => {
                ("refused", Some(code.clone()), Some(reason.clone()))
            }
            Outcome::NotFound => ("not_found", None, None),
            Outcome::Found { .. } => ("found", None, None),
        };
        let answer_row = q(
            "INSERT INTO answers (inquiry_id, revision, institution_code, response_id, outcome, \
               refusal_code, refusal_reason, content_hash, received_at) \
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"
                .to_owned(),
        )
        .bind(answer.inquiry_id.as_str().to_owned())
        .bind(new_revision)
        .bind(institution.as_str().to_owned())
        .bind(answer.response_id.clone())
        .bind(outcome)
        .bind(refusal_code)
        .bind(refusal_reason)
        .bind(answer.outcome.content_hash())
        .bind(now)
        .fetch_one(&mut **tx)
        .await?;
        let answer_id = get_i64(&answer_row, "id")?;
        if let Outcome::Found {
            accounts,
            other_holdings,
        } = &answer.outcome
        {
            for (pos, a) in accounts.iter().enumerate() {
                let acct = q(
                    "INSERT INTO answer_accounts (answer_id, position, branch_code, account_type, \
                       number, holder_kana, balance, as_of, last_tx_date) \
                       VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id"
                        .to_owned(),
                )
                .bind(answer_id)
                .bind(pos as i64)
                .bind(a.branch.as_str().to_owned())
                .bind(a.account_type.code())
                .bind(a.number.clone())
                .bind(a.holder_kana.clone())
                .bind(a.balance)
                .bind(a.as_of.map(|d| d.to_string()))
                .bind(a.last_transaction.map(|d| d.to_string()))
                .fetch_one(&mut **tx)
                .await?;
                let account_id = get_i64(&acct, "id")?;
                for (tpos, t) in a.transactions.iter().enumerate() {
                    q("INSERT INTO answer_transactions (account_id, position, date, description, debit, \
                       credit, balance) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                        .to_owned())
                    .bind(account_id)
                    .bind(tpos as i64)
                    .bind(t.date.to_string())
                    .bind(t.description.clone())
                    .bind(t.debit)
                    .bind(t.credit)
                    .bind(t.balance)
                    .execute(&mut **tx)
                    .await?;
                }
            }
            for (pos, o) in other_holdings.iter().enumerate() {
                q(
                    "INSERT INTO answer_other_holdings (answer_id, position, kind, description) \
                   VALUES ($1, $2, $3, $4)"
                        .to_owned(),
                )
                .bind(answer_id)
                .bind(pos as i64)
                .bind(o.kind.clone())
                .bind(o.description.clone())
                .execute(&mut **tx)
                .await?;
            }
        }
        q("INSERT INTO case_file_entries (case_id, inquiry_id, answer_id, created_at) VALUES ($1, $2, $3, $4)"
            .to_owned())
        .bind(case_id.clone())
        .bind(answer.inquiry_id.as_str().to_owned())
        .bind(answer_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        q("INSERT INTO inquiry_events (inquiry_id, at, from_state, to_state, detail) VALUES ($1, $2, $3, $4, $5)"
            .to_owned())
        .bind(answer.inquiry_id.as_str().to_owned())
        .bind(now)
        .bind(state.as_str())
        .bind(new_state.as_str())
        .bind(format!("answer revision {new_revision}"))
        .execute(&mut **tx)
        .await?;
        // An answer after the case was decided does not change the decision
        // silently: it raises a reopen alert for the caseworker.
        let decided = q("SELECT decision_date FROM cases WHERE id = $1".to_owned())
            .bind(case_id.clone())
            .fetch_one(&mut **tx)
            .await?;
        if let Some(decision) = get_opt_date(&decided, "decision_date")?
            && jst_date(now) > decision
        {
            let alert = q("INSERT INTO case_alerts (case_id, kind, inquiry_id, detail, created_at) VALUES ($1, 'reopen', $2, $3, $4) RETURNING id"
                .to_owned())
            .bind(case_id.clone())
            .bind(answer.inquiry_id.as_str().to_owned())
            .bind(format!(
                "institution {institution} answered ({}) after the decision of {decision}",
                new_state.as_str()
            ))
            .bind(now)
            .fetch_one(&mut **tx)
            .await?;
            let alert_id = get_i64(&alert, "id")?;
            self.enqueue_feed_event(
                tx,
                &CaseId::from_trusted(case_id.clone()),
                FeedKind::AlertRaised,
                &alert_id.to_string(),
                now,
            )
            .await?;
        }
        let done = q(
            "UPDATE inquiries SET state = $1, answer_revision = $2, updated_at = $3 \
               WHERE id = $4 AND answer_revision = $5"
                .to_owned(),
        )
        .bind(new_state.as_str())
        .bind(new_revision)
        .bind(now)
        .bind(answer.inquiry_id.as_str().to_owned())
        .bind(revision)
        .execute(&mut **tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Conflict(format!(
                "inquiry {} was answered concurrently",
                answer.inquiry_id
            )));
        }
        self.enqueue_feed_event(
            tx,
            &CaseId::from_trusted(case_id),
            FeedKind::AnswerFiled,
            &format!("{}:{new_revision}", answer.inquiry_id),
            now,
        )
        .await?;
        Ok(ApplyOutcome::Accepted {
            revision: new_revision,
            waited_ms: now - filed_at,
        })
    }

    /// The case with every answer filed for it, oldest first.
    pub async fn case_file(&self, id: &CaseId) -> Result<Option<CaseFile>> {
        let Some(case) = self.case(id).await? else {
            return Ok(None);
        };
        let rows = q(
            "SELECT a.id AS answer_id, e.inquiry_id, i.subject_id, i.institution_code, \
               s.name AS institution_name, a.revision, i.answer_revision AS current_revision, \
               a.response_id, a.received_at, a.outcome, a.refusal_code, a.refusal_reason \
               FROM case_file_entries e JOIN answers a ON a.id = e.answer_id \
               JOIN inquiries i ON i.id = e.inquiry_id \
               JOIN institutions s ON s.code = i.institution_code \
               WHERE e.case_id = $1 ORDER BY e.id"
                .to_owned(),
        )
        .bind(id.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        let accounts = q(
            "SELECT c.id, c.answer_id, c.branch_code, c.account_type, c.number, c.holder_kana, \
               c.balance, c.as_of, c.last_tx_date FROM answer_accounts c \
               JOIN case_file_entries e ON e.answer_id = c.answer_id \
               WHERE e.case_id = $1 ORDER BY c.answer_id, c.position"
                .to_owned(),
        )
        .bind(id.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        let transactions = q(
            "SELECT t.account_id, t.date, t.description, t.debit, t.credit, t.balance \
               FROM answer_transactions t JOIN answer_accounts c ON c.id = t.account_id \
               JOIN case_file_entries e ON e.answer_id = c.answer_id \
               WHERE e.case_id = $1 ORDER BY t.account_id, t.position"
                .to_owned(),
        )
        .bind(id.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        let holdings = q(
            "SELECT h.answer_id, h.kind, h.description FROM answer_other_holdings h \
               JOIN case_file_entries e ON e.answer_id = h.answer_id \
               WHERE e.case_id = $1 ORDER BY h.answer_id, h.position"
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
    /// answers without exactly one case-file entry: both break the
    /// exactly-once promise (a consistency check for tests and operators).
    pub async fn duplicate_case_file_entries(&self) -> Result<i64> {
        let row = q(
            "SELECT (SELECT COUNT(*) FROM (SELECT inquiry_id, content_hash FROM answers \
               GROUP BY inquiry_id, content_hash HAVING COUNT(*) > 1) d) \
               + (SELECT COUNT(*) FROM answers a WHERE (SELECT COUNT(*) FROM case_file_entries e \
               WHERE e.answer_id = a.id) <> 1) AS n"
                .to_owned(),
        )
        .fetch_one(&self.pool)
        .await?;
        get_i64(&row, "n")
    }
}
