//! The paper channel in casework: inquiry letters (照会書) for institutions
//! reached on paper, marking them mailed, and filing the answers staff
//! enter by hand or upload as CSV, with the electronic answers' rules.

use std::sync::Arc;

use chrono::NaiveDate;

use super::{Actor, CaseworkError, audit, require_admin};
use crate::domain::DomainError;
use crate::domain::answer::{Account, Answer, Outcome};
use crate::domain::audit::{AuditAction, AuditEntry};
use crate::domain::ids::{BatchId, InquiryId};
use crate::domain::request::DEFAULT_LEGAL_BASIS;
use crate::domain::state::InquiryState;
use crate::domain::time::{now_millis, parse_date};
use crate::store::{ApplyOutcome, Letter, LetterSummary, Store};

/// Letters to print and mail, and mailed ones awaiting answers.
pub async fn paper_letters(
    store: &Store,
    actor: &Actor,
) -> Result<Vec<LetterSummary>, CaseworkError> {
    require_admin(actor)?;
    Ok(store.paper_letters(200).await?)
}

/// A letter with the people it asks about; reading it is recorded.
pub async fn read_letter(
    store: &Store,
    actor: &Actor,
    id: &BatchId,
) -> Result<Letter, CaseworkError> {
    require_admin(actor)?;
    let letter = store
        .letter(id)
        .await?
        .ok_or_else(|| CaseworkError::NotFound(format!("letter {id}")))?;
    audit(
        store,
        actor,
        AuditAction::LetterRead,
        format!("batch:{id}"),
        None,
        None,
    )
    .await?;
    Ok(letter)
}

/// The letter went out: its inquiries are delivered from now on.
pub async fn mark_letter_mailed(
    store: &Store,
    actor: &Actor,
    id: &BatchId,
) -> Result<(), CaseworkError> {
    require_admin(actor)?;
    let letter = store
        .letter(id)
        .await?
        .ok_or_else(|| CaseworkError::NotFound(format!("letter {id}")))?;
    audit(
        store,
        actor,
        AuditAction::LetterMailed,
        format!("batch:{id}"),
        None,
        None,
    )
    .await?;
    store
        .mark_letter_mailed(&letter.summary.institution, id, now_millis())
        .await?;
    Ok(())
}

/// One answer as staff enter it from the bank's reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaperAnswer {
    pub inquiry: InquiryId,
    pub outcome: Outcome,
}

/// Files answers typed or uploaded for one letter. Every answer must be
/// about one of the letter's inquiries; then they are applied as a bank's
/// would be (a repeat is a duplicate, a change a new revision), and each
/// accepted one is recorded with the staff member as the actor.
pub async fn enter_answers(
    store: &Store,
    actor: &Actor,
    letter: &BatchId,
    answers: Vec<PaperAnswer>,
) -> Result<Vec<(InquiryId, ApplyOutcome)>, CaseworkError> {
    require_admin(actor)?;
    let found = store
        .letter(letter)
        .await?
        .ok_or_else(|| CaseworkError::NotFound(format!("letter {letter}")))?;
    // A letter that was not mailed has not asked anybody yet.
    if found.summary.state != crate::domain::state::BatchState::Acknowledged {
        return Err(CaseworkError::Conflict(format!(
            "letter {letter} is not marked mailed yet"
        )));
    }
    // Everything is checked before anything is filed, so a bad upload
    // changes nothing.
    for a in &answers {
        let Some(line) = found.lines.iter().find(|l| l.inquiry == a.inquiry) else {
            return Err(DomainError::new(
                "unknown_inquiry",
                format!("inquiry {} is not in this letter", a.inquiry),
            )
            .into());
        };
        if !matches!(
            line.state,
            InquiryState::Delivered
                | InquiryState::Answered
                | InquiryState::NotFound
                | InquiryState::Refused
        ) {
            return Err(DomainError::new(
                "not_answerable",
                format!("inquiry {} is {}", a.inquiry, line.state.as_str()),
            )
            .into());
        }
    }
    let now = now_millis();
    let answers: Vec<Answer> = answers
        .into_iter()
        .enumerate()
        .map(|(i, a)| Answer {
            inquiry_id: a.inquiry,
            response_id: format!("paper-{now}-{i}"),
            outcome: a.outcome,
        })
        .collect();
    let institution = &found.summary.institution;
    let (by, purpose) = (actor.clone(), format!("paper reply from {institution}"));
    let trail = move |answer: &Answer, revision: i64| AuditEntry {
        at: now,
        actor: by.id.clone(),
        role: by.role.as_str().to_owned(),
        office: by.office.clone(),
        action: AuditAction::AnswerReceive,
        target: format!("inquiry:{}#{revision}", answer.inquiry_id),
        case_id: None,
        purpose: Some(purpose.clone()),
        legal_basis: Some(DEFAULT_LEGAL_BASIS.to_owned()),
    };
    let applied = store
        .apply_answers(institution, &answers, now, Some(Arc::new(trail)))
        .await?;
    Ok(answers
        .iter()
        .map(|a| a.inquiry_id.clone())
        .zip(applied)
        .collect())
}

pub const ANSWER_CSV_HEADER: &str =
    "inquiry_id,outcome,branch,account_type,number,holder_kana,balance,as_of,reason";

/// Reads an answer CSV: one row per account (`found`), or one row for
/// `not_found` or `refused` (with the reason). Any bad line refuses the
/// whole file: `line N: reason` for each.
pub fn parse_answer_csv(text: &str) -> Result<Vec<PaperAnswer>, Vec<String>> {
    let lines = crate::csv::records(text, ANSWER_CSV_HEADER).map_err(|e| vec![e])?;
    let mut answers: Vec<PaperAnswer> = Vec::new();
    let mut errors = Vec::new();
    for (n, fields) in lines {
        match fields.and_then(|f| parse_answer_row(&f)) {
            Ok((inquiry, outcome)) => {
                let last = answers.iter_mut().find(|a| a.inquiry == inquiry);
                match (last, outcome) {
                    (None, outcome) => answers.push(PaperAnswer { inquiry, outcome }),
                    (
                        Some(PaperAnswer {
                            outcome: Outcome::Found { accounts, .. },
                            ..
                        }),
                        Outcome::Found { accounts: more, .. },
                    ) => accounts.extend(more),
                    (Some(_), _) => errors.push(format!(
                        "line {n}: inquiry {inquiry} has another row that is not an account"
                    )),
                }
            }
            Err(why) => errors.push(format!("line {n}: {why}")),
        }
    }
    if errors.is_empty() {
        Ok(answers)
    } else {
        Err(errors)
    }
}

fn parse_answer_row(f: &[String]) -> Result<(InquiryId, Outcome), String> {
    if f.len() != 9 {
        return Err(format!("expected 9 fields, found {}", f.len()));
    }
    let inquiry =
        InquiryId::parse(f[0].trim()).map_err(|_| "inquiry_id is not an id".to_owned())?;
    let outcome = paper_outcome(
        f[1].trim(),
        &AccountFields {
            branch: &f[2],
            account_type: &f[3],
            number: &f[4],
            holder_kana: &f[5],
            balance: &f[6],
            as_of: &f[7],
        },
        &f[8],
    )
    .map_err(|e| e.message)?;
    Ok((inquiry, outcome))
}

/// An account's fields as typed.
#[derive(Debug, Clone, Copy)]
pub struct AccountFields<'a> {
    pub branch: &'a str,
    pub account_type: &'a str,
    pub number: &'a str,
    pub holder_kana: &'a str,
    pub balance: &'a str,
    pub as_of: &'a str,
}

impl AccountFields<'_> {
    pub fn is_blank(&self) -> bool {
        [
            self.branch,
            self.account_type,
            self.number,
            self.holder_kana,
            self.balance,
            self.as_of,
        ]
        .iter()
        .all(|f| f.trim().is_empty())
    }

    pub fn account(&self) -> Result<Account, DomainError> {
        let balance = self.balance.trim().replace([',', '¥'], "");
        let balance: i64 = balance.parse().map_err(|_| {
            DomainError::new("invalid_amount", "the balance is whole yen, e.g. 123456")
        })?;
        let as_of: NaiveDate = parse_date("as_of", self.as_of.trim())?;
        Account::from_paper(
            self.branch,
            self.account_type,
            self.number,
            self.holder_kana,
            balance,
            as_of,
        )
    }
}

/// `found` with an account, `not_found`, or `refused` with a reason.
pub fn paper_outcome(
    outcome: &str,
    account: &AccountFields<'_>,
    reason: &str,
) -> Result<Outcome, DomainError> {
    match outcome {
        "found" => Ok(Outcome::Found {
            accounts: vec![account.account()?],
            other_holdings: Vec::new(),
        }),
        "not_found" => Ok(Outcome::NotFound),
        "refused" => {
            let reason = reason.trim();
            if reason.is_empty() || reason.chars().count() > 105 {
                return Err(DomainError::new(
                    "invalid_reason",
                    "a refusal needs its reason (at most 105 characters)",
                ));
            }
            Ok(Outcome::Refused {
                code: "PAPR".to_owned(),
                reason: reason.to_owned(),
            })
        }
        other => Err(DomainError::new(
            "invalid_outcome",
            format!("outcome '{other}' is not found, not_found or refused"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rows_group_into_answers_and_bad_lines_refuse_the_file() {
        let a = InquiryId::generate();
        let b = InquiryId::generate();
        let text = format!(
            "{ANSWER_CSV_HEADER}\n\
             {a},found,001,1,1234567,ﾔﾏﾀﾞ ﾀﾛｳ,120000,2026-11-01,\n\
             {a},found,002,4,7654321,ﾔﾏﾀﾞ ﾀﾛｳ,\"1,500\",2026-11-01,\n\
             {b},refused,,,,,,,照会書の様式不備\n"
        );
        let answers = parse_answer_csv(&text).unwrap();
        assert_eq!(answers.len(), 2);
        match &answers[0].outcome {
            Outcome::Found { accounts, .. } => {
                assert_eq!(accounts.len(), 2);
                assert_eq!(accounts[1].balance, Some(1500));
            }
            other => panic!("{other:?}"),
        }
        let bad = format!(
            "{ANSWER_CSV_HEADER}\n{a},found,001,1,123,ﾔﾏﾀﾞ,1,2026-11-01,\n{b},maybe,,,,,,,\n"
        );
        let errors = parse_answer_csv(&bad).unwrap_err();
        assert_eq!(errors.len(), 2);
        assert!(errors[0].starts_with("line 2: ") && errors[1].starts_with("line 3: "));
        assert!(parse_answer_csv("nope\n").is_err());
    }

    proptest! {
        #[test]
        fn any_text_is_refused_or_read_without_panicking(body in "\\PC{0,200}") {
            let _ = parse_answer_csv(&format!("{ANSWER_CSV_HEADER}\n{body}"));
        }
    }
}
