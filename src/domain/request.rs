//! Cases, subjects and inquiry requests: validation and fan-out. The checks
//! that need the directory (does institution 0001 exist?) are the caller's;
//! everything decidable from the request alone is here.

use std::collections::BTreeSet;

use chrono::NaiveDate;

use super::DomainError;
use super::ids::{CaseId, InquiryId, RequestId, SubjectId};
use super::kana::KanaName;
use super::state::InquiryKind;
use super::zengin::{BranchCode, InstitutionCode};

pub const DEFAULT_LEGAL_BASIS: &str = "生活保護法第29条";
pub const MAX_SUBJECTS_PER_CASE: usize = 20;
pub const MAX_TARGETS_PER_REQUEST: usize = 200;
pub const MAX_INQUIRIES_PER_REQUEST: usize = 1000;
/// Transaction history further back than this is not asked in one inquiry.
pub const MAX_PERIOD_DAYS: i64 = 3660;

fn bad(code: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::new(code, message)
}

/// Text limited in characters (not bytes), as ISO 20022 MaxNText counts.
pub fn bounded_text(field: &str, raw: &str, max_chars: usize) -> Result<String, DomainError> {
    let trimmed = raw.trim();
    let n = trimmed.chars().count();
    if n == 0 {
        return Err(bad("invalid_text", format!("{field} must not be empty")));
    }
    if n > max_chars {
        return Err(bad(
            "invalid_text",
            format!("{field} is {n} characters; at most {max_chars} are allowed"),
        ));
    }
    if trimmed.chars().any(|c| c.is_control()) {
        return Err(bad(
            "invalid_text",
            format!("{field} contains control characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectInput {
    pub kana_name: String,
    pub kanji_name: Option<String>,
    pub birth_date: NaiveDate,
    pub postal_code: Option<String>,
    pub address: Option<String>,
    pub former_kana_names: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub id: SubjectId,
    pub kana_name: KanaName,
    pub kanji_name: Option<String>,
    pub birth_date: NaiveDate,
    pub postal_code: Option<String>,
    pub address: Option<String>,
    pub former_kana_names: Vec<KanaName>,
}

impl Subject {
    pub fn validate(input: SubjectInput, today: NaiveDate) -> Result<Subject, DomainError> {
        let kana_name = KanaName::parse(&input.kana_name)?;
        let kanji_name = input
            .kanji_name
            .as_deref()
            .map(|k| bounded_text("kanji_name", k, 35))
            .transpose()?;
        if input.birth_date > today {
            return Err(bad("invalid_date", "birth_date is in the future"));
        }
        if input.birth_date < NaiveDate::from_ymd_opt(1900, 1, 1).expect("valid date") {
            return Err(bad("invalid_date", "birth_date is before 1900"));
        }
        let postal_code = input
            .postal_code
            .as_deref()
            .map(|p| {
                let digits: String = p.chars().filter(|c| *c != '-').collect();
                if digits.len() == 7 && digits.bytes().all(|b| b.is_ascii_digit()) {
                    Ok(format!("{}-{}", &digits[..3], &digits[3..]))
                } else {
                    Err(bad(
                        "invalid_postal_code",
                        format!("postal_code '{p}' must be 7 digits, e.g. 100-0001"),
                    ))
                }
            })
            .transpose()?;
        let address = input
            .address
            .as_deref()
            .map(|a| bounded_text("address", a, 70))
            .transpose()?;
        let former_kana_names = input
            .former_kana_names
            .iter()
            .map(|n| KanaName::parse(n))
            .collect::<Result<Vec<_>, _>>()?;
        if former_kana_names.len() > 5 {
            return Err(bad("too_many", "at most 5 former names per subject"));
        }
        Ok(Subject {
            id: SubjectId::generate(),
            kana_name,
            kanji_name,
            birth_date: input.birth_date,
            postal_code,
            address,
            former_kana_names,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCase {
    pub id: CaseId,
    pub office: String,
    pub case_number: String,
    pub subjects: Vec<Subject>,
}

impl NewCase {
    pub fn validate(
        office: &str,
        case_number: &str,
        subjects: Vec<SubjectInput>,
        today: NaiveDate,
    ) -> Result<NewCase, DomainError> {
        let case_number = bounded_text("case_number", case_number, 35)?;
        if subjects.is_empty() {
            return Err(bad("missing_subjects", "a case needs at least one subject"));
        }
        if subjects.len() > MAX_SUBJECTS_PER_CASE {
            return Err(bad(
                "too_many",
                format!("at most {MAX_SUBJECTS_PER_CASE} subjects per case"),
            ));
        }
        let subjects = subjects
            .into_iter()
            .enumerate()
            .map(|(i, s)| {
                Subject::validate(s, today)
                    .map_err(|e| DomainError::new(e.code, format!("subjects[{i}]: {}", e.message)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(NewCase {
            id: CaseId::generate(),
            office: office.to_owned(),
            case_number,
            subjects,
        })
    }
}

/// Which branches of one institution to ask: all (全店照会) or named ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub institution: InstitutionCode,
    /// Empty means all branches.
    pub branches: Vec<BranchCode>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInput {
    pub subject_ids: Vec<SubjectId>,
    pub targets: Vec<Target>,
    pub kinds: Vec<InquiryKind>,
    pub reference_date: Option<NaiveDate>,
    pub period: Option<Period>,
    pub legal_basis: Option<String>,
    pub purpose: Option<String>,
    pub due_date: NaiveDate,
}

/// A validated request and the inquiries it fans out into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: RequestId,
    pub case_id: CaseId,
    pub kinds: BTreeSet<InquiryKind>,
    pub reference_date: NaiveDate,
    pub period: Option<Period>,
    pub legal_basis: String,
    pub purpose: Option<String>,
    pub due_date: NaiveDate,
    pub inquiries: Vec<PlannedInquiry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedInquiry {
    pub id: InquiryId,
    pub subject_id: SubjectId,
    pub target: Target,
}

/// Everything the encoder needs about one queued inquiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InquiryForBatch {
    pub id: InquiryId,
    /// When it was filed (ms): how long it has waited for a batch.
    pub queued_at: i64,
    pub office: String,
    pub subject: Subject,
    pub branches: Vec<BranchCode>,
    pub kinds: Vec<InquiryKind>,
    pub reference_date: NaiveDate,
    pub period: Option<Period>,
    pub legal_basis: String,
    pub due_date: NaiveDate,
}

pub fn kinds_to_text(kinds: &BTreeSet<InquiryKind>) -> String {
    kinds
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn kinds_from_text(raw: &str) -> Result<BTreeSet<InquiryKind>, DomainError> {
    raw.split(',')
        .filter(|s| !s.is_empty())
        .map(InquiryKind::parse)
        .collect()
}

impl Request {
    /// `case_subjects` are the subjects the case holds: a request may only
    /// name those.
    pub fn validate(
        case_id: &CaseId,
        case_subjects: &[SubjectId],
        input: RequestInput,
        today: NaiveDate,
    ) -> Result<Request, DomainError> {
        if input.subject_ids.is_empty() {
            return Err(bad("missing_subjects", "name at least one subject"));
        }
        let mut seen = BTreeSet::new();
        for s in &input.subject_ids {
            if !case_subjects.contains(s) {
                return Err(bad(
                    "unknown_subject",
                    format!("subject {s} is not in this case"),
                ));
            }
            if !seen.insert(s) {
                return Err(bad("duplicate", format!("subject {s} is named twice")));
            }
        }
        if input.targets.is_empty() {
            return Err(bad("missing_institutions", "name at least one institution"));
        }
        if input.targets.len() > MAX_TARGETS_PER_REQUEST {
            return Err(bad(
                "too_many",
                format!("at most {MAX_TARGETS_PER_REQUEST} institutions per request"),
            ));
        }
        let mut codes = BTreeSet::new();
        for t in &input.targets {
            if !codes.insert(&t.institution) {
                return Err(bad(
                    "duplicate",
                    format!("institution {} is named twice", t.institution),
                ));
            }
            let unique: BTreeSet<_> = t.branches.iter().collect();
            if unique.len() != t.branches.len() {
                return Err(bad(
                    "duplicate",
                    format!("a branch of institution {} is named twice", t.institution),
                ));
            }
        }
        let kinds: BTreeSet<InquiryKind> = input.kinds.iter().copied().collect();
        if kinds.is_empty() {
            return Err(bad(
                "missing_kinds",
                "ask for at least one of existence, balance, transactions",
            ));
        }
        let reference_date = input.reference_date.unwrap_or(today);
        if reference_date > today {
            return Err(bad("invalid_date", "reference_date is in the future"));
        }
        let period = match (kinds.contains(&InquiryKind::Transactions), input.period) {
            (true, None) => {
                return Err(bad(
                    "missing_period",
                    "transactions need a period (from, to)",
                ));
            }
            (false, Some(_)) => {
                return Err(bad("invalid_period", "a period is only for transactions"));
            }
            (true, Some(p)) => {
                if p.from > p.to {
                    return Err(bad("invalid_period", "the period's from is after its to"));
                }
                if p.to > today {
                    return Err(bad("invalid_period", "the period ends in the future"));
                }
                if (p.to - p.from).num_days() > MAX_PERIOD_DAYS {
                    return Err(bad("invalid_period", "the period is longer than ten years"));
                }
                Some(p)
            }
            (false, None) => None,
        };
        if input.due_date < today {
            return Err(bad("invalid_date", "due_date is in the past"));
        }
        if (input.due_date - today).num_days() > 366 {
            return Err(bad("invalid_date", "due_date is more than a year ahead"));
        }
        let legal_basis = bounded_text(
            "legal_basis",
            input.legal_basis.as_deref().unwrap_or(DEFAULT_LEGAL_BASIS),
            35,
        )?;
        let purpose = input
            .purpose
            .as_deref()
            .map(|p| bounded_text("purpose", p, 140))
            .transpose()?;
        let total = input.subject_ids.len() * input.targets.len();
        if total > MAX_INQUIRIES_PER_REQUEST {
            return Err(bad(
                "too_many",
                format!("{total} inquiries; at most {MAX_INQUIRIES_PER_REQUEST} per request"),
            ));
        }
        let inquiries = input
            .subject_ids
            .iter()
            .flat_map(|s| {
                input.targets.iter().map(move |t| PlannedInquiry {
                    id: InquiryId::generate(),
                    subject_id: s.clone(),
                    target: t.clone(),
                })
            })
            .collect();
        Ok(Request {
            id: RequestId::generate(),
            case_id: case_id.clone(),
            kinds,
            reference_date,
            period,
            legal_basis,
            purpose,
            due_date: input.due_date,
            inquiries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn input(subjects: Vec<SubjectId>) -> RequestInput {
        RequestInput {
            subject_ids: subjects,
            targets: vec![
                Target {
                    institution: InstitutionCode::parse("0001").unwrap(),
                    branches: vec![],
                },
                Target {
                    institution: InstitutionCode::parse("0005").unwrap(),
                    branches: vec![BranchCode::parse("001").unwrap()],
                },
            ],
            kinds: vec![InquiryKind::Existence, InquiryKind::Balance],
            reference_date: None,
            period: None,
            legal_basis: None,
            purpose: None,
            due_date: d("2026-12-07"),
        }
    }

    #[test]
    fn fans_out_subjects_times_institutions() {
        let case = CaseId::generate();
        let subjects = vec![SubjectId::generate(), SubjectId::generate()];
        let r =
            Request::validate(&case, &subjects, input(subjects.clone()), d("2026-11-23")).unwrap();
        assert_eq!(r.inquiries.len(), 4);
        assert_eq!(r.reference_date, d("2026-11-23"));
        assert_eq!(r.legal_basis, DEFAULT_LEGAL_BASIS);
    }

    #[test]
    fn rejects_bad_requests() {
        let case = CaseId::generate();
        let subjects = vec![SubjectId::generate()];
        let today = d("2026-11-23");
        let check = |f: &dyn Fn(&mut RequestInput), code: &str| {
            let mut i = input(subjects.clone());
            f(&mut i);
            let e = Request::validate(&case, &subjects, i, today).unwrap_err();
            assert_eq!(e.code, code, "{e}");
        };
        check(
            &|i| i.subject_ids = vec![SubjectId::generate()],
            "unknown_subject",
        );
        check(&|i| i.targets.clear(), "missing_institutions");
        check(&|i| i.kinds.clear(), "missing_kinds");
        check(
            &|i| i.kinds.push(InquiryKind::Transactions),
            "missing_period",
        );
        check(
            &|i| {
                i.period = Some(Period {
                    from: d("2026-01-01"),
                    to: d("2026-02-01"),
                })
            },
            "invalid_period",
        );
        check(
            &|i| {
                i.kinds.push(InquiryKind::Transactions);
                i.period = Some(Period {
                    from: d("2026-03-01"),
                    to: d("2026-02-01"),
                });
            },
            "invalid_period",
        );
        check(&|i| i.due_date = d("2026-11-01"), "invalid_date");
        check(
            &|i| i.reference_date = Some(d("2027-01-01")),
            "invalid_date",
        );
        check(&|i| i.targets.push(i.targets[0].clone()), "duplicate");
    }

    #[test]
    fn validates_subjects() {
        let today = d("2026-11-23");
        let s = SubjectInput {
            kana_name: "やまだ たろう".into(),
            kanji_name: Some("山田 太郎".into()),
            birth_date: d("1960-04-01"),
            postal_code: Some("1000001".into()),
            address: Some("東京都千代田区千代田1-1".into()),
            former_kana_names: vec![],
        };
        let v = Subject::validate(s.clone(), today).unwrap();
        assert_eq!(v.kana_name.as_str(), "ヤマダ タロウ");
        assert_eq!(v.postal_code.as_deref(), Some("100-0001"));
        let e = Subject::validate(
            SubjectInput {
                birth_date: d("2030-01-01"),
                ..s.clone()
            },
            today,
        )
        .unwrap_err();
        assert_eq!(e.code, "invalid_date");
        let e = Subject::validate(
            SubjectInput {
                postal_code: Some("12".into()),
                ..s
            },
            today,
        )
        .unwrap_err();
        assert_eq!(e.code, "invalid_postal_code");
    }
}
