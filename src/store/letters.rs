//! The paper channel: sealed batches of `paper` institutions are inquiry
//! letters (照会書). Staff print them, mark them mailed, and enter the
//! answers by hand.

use chrono::NaiveDate;

use super::{Result, Store, get_i64, get_opt_date, get_opt_str, get_str, parse_date, q};
use crate::domain::ids::{BatchId, CaseId, InquiryId};
use crate::domain::request::{Period, kinds_from_text};
use crate::domain::state::{BatchState, InquiryKind, InquiryState};
use crate::domain::zengin::InstitutionCode;

/// A letter in the list: one batch of a paper institution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterSummary {
    pub batch: BatchId,
    pub institution: InstitutionCode,
    pub institution_name: String,
    /// `sealed`: to print and mail; `acknowledged`: mailed.
    pub state: BatchState,
    pub inquiries: i64,
    /// Of its inquiries, those still waiting for an answer.
    pub waiting: i64,
    pub created_at: i64,
    pub mailed_at: Option<i64>,
}

/// One person asked about in a letter, with what is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LetterLine {
    pub inquiry: InquiryId,
    pub case: CaseId,
    pub office: String,
    pub kana_name: String,
    pub kanji_name: Option<String>,
    pub birth_date: NaiveDate,
    pub address: Option<String>,
    pub kinds: Vec<InquiryKind>,
    pub reference_date: NaiveDate,
    pub period: Option<Period>,
    pub due_date: NaiveDate,
    pub legal_basis: String,
    pub state: InquiryState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    pub summary: LetterSummary,
    pub lines: Vec<LetterLine>,
}

// A cancelled inquiry is not printed: the bank is not asked about it.
const SUMMARY: &str = "SELECT b.id, b.institution_code, s.name, b.state, \
     (SELECT COUNT(*) FROM batch_inquiries m JOIN inquiries i ON i.id = m.inquiry_id \
        WHERE m.batch_id = b.id AND i.state <> 'cancelled') \
       AS inquiry_count, \
     b.created_at, b.acknowledged_at, \
     (SELECT COUNT(*) FROM batch_inquiries m JOIN inquiries i ON i.id = m.inquiry_id \
        WHERE m.batch_id = b.id AND i.state IN ('batched', 'delivered')) AS waiting \
     FROM batches b JOIN institutions s ON s.code = b.institution_code \
     WHERE s.channel = 'paper'";

fn summary_from_row(r: &sqlx::any::AnyRow) -> Result<LetterSummary> {
    Ok(LetterSummary {
        batch: BatchId::from_trusted(get_str(r, "id")?),
        institution: InstitutionCode::from_trusted(get_str(r, "institution_code")?),
        institution_name: get_str(r, "name")?,
        state: BatchState::parse(&get_str(r, "state")?)?,
        inquiries: get_i64(r, "inquiry_count")?,
        waiting: get_i64(r, "waiting")?,
        created_at: get_i64(r, "created_at")?,
        mailed_at: super::get_opt_i64(r, "acknowledged_at")?,
    })
}

impl Store {
    /// Letters to mail, and mailed ones still waiting for answers, oldest
    /// first.
    pub async fn paper_letters(&self, limit: i64) -> Result<Vec<LetterSummary>> {
        q(format!(
            "{SUMMARY} AND (b.state = 'sealed' OR (b.state = 'acknowledged' AND EXISTS \
             (SELECT 1 FROM batch_inquiries m JOIN inquiries i ON i.id = m.inquiry_id \
             WHERE m.batch_id = b.id AND i.state = 'delivered'))) \
             ORDER BY b.created_at, b.id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(summary_from_row)
        .collect()
    }

    pub async fn letter(&self, id: &BatchId) -> Result<Option<Letter>> {
        let Some(row) = q(format!("{SUMMARY} AND b.id = $1"))
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let summary = summary_from_row(&row)?;
        let rows = q(
            "SELECT i.id, i.case_id, i.state, i.due_date, c.office, s.kana_name, \
             s.kanji_name, s.birth_date, s.address, r.kinds, r.reference_date, r.period_from, \
             r.period_to, r.legal_basis FROM batch_inquiries m \
             JOIN inquiries i ON i.id = m.inquiry_id JOIN subjects s ON s.id = i.subject_id JOIN requests r ON r.id = i.request_id \
             JOIN cases c ON c.id = i.case_id WHERE m.batch_id = $1 AND i.state <> 'cancelled' \
             ORDER BY s.kana_name, i.id"
                .to_owned(),
        )
        .bind(id.as_str().to_owned())
        .fetch_all(&self.pool)
        .await?;
        let lines = rows
            .iter()
            .map(|r| {
                let period = match (
                    get_opt_date(r, "period_from")?,
                    get_opt_date(r, "period_to")?,
                ) {
                    (Some(from), Some(to)) => Some(Period { from, to }),
                    _ => None,
                };
                Ok(LetterLine {
                    inquiry: InquiryId::from_trusted(get_str(r, "id")?),
                    case: CaseId::from_trusted(get_str(r, "case_id")?),
                    office: get_str(r, "office")?,
                    kana_name: get_str(r, "kana_name")?,
                    kanji_name: get_opt_str(r, "kanji_name")?,
                    birth_date: parse_date(&get_str(r, "birth_date")?)?,
                    address: get_opt_str(r, "address")?,
                    kinds: kinds_from_text(&get_str(r, "kinds")?)?
                        .into_iter()
                        .collect(),
                    reference_date: parse_date(&get_str(r, "reference_date")?)?,
                    period,
                    due_date: parse_date(&get_str(r, "due_date")?)?,
                    legal_basis: get_str(r, "legal_basis")?,
                    state: InquiryState::parse(&get_str(r, "state")?)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(Letter { summary, lines }))
    }
}
