//! What the city's own departments hold about a person, as normalised
//! records, and the pure change detection between two snapshots of them.
//!
//! A record is identified by its department and the source's own record id
//! (`source_id`), which the department keeps stable across extracts. Amounts
//! are integer yen; attributes are short texts. Both are flat maps so that
//! every department's data fits one shape and one diff.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::NaiveDate;
use sha2::{Digest, Sha256};

use super::DomainError;
use super::ids::SubjectId;
use super::kana::KanaName;

/// The seven departments a welfare office checks (DOMAIN.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Department {
    /// 住民基本台帳: household members, moves, births, deaths.
    ResidentRegistry,
    /// 課税: assessed and declared income per year.
    Tax,
    /// 児童手当.
    ChildAllowance,
    /// 児童扶養手当 and 特別児童扶養手当.
    ChildRearingAllowance,
    /// 国民健康保険.
    NationalHealthInsurance,
    /// 介護保険.
    LongTermCare,
    /// 年金, as received through the information-exchange network.
    Pension,
}

impl Department {
    pub const ALL: [Department; 7] = [
        Self::ResidentRegistry,
        Self::Tax,
        Self::ChildAllowance,
        Self::ChildRearingAllowance,
        Self::NationalHealthInsurance,
        Self::LongTermCare,
        Self::Pension,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ResidentRegistry => "resident_registry",
            Self::Tax => "tax",
            Self::ChildAllowance => "child_allowance",
            Self::ChildRearingAllowance => "child_rearing_allowance",
            Self::NationalHealthInsurance => "national_health_insurance",
            Self::LongTermCare => "long_term_care",
            Self::Pension => "pension",
        }
    }

    pub fn label_ja(self) -> &'static str {
        match self {
            Self::ResidentRegistry => "住民基本台帳",
            Self::Tax => "課税",
            Self::ChildAllowance => "児童手当",
            Self::ChildRearingAllowance => "児童扶養手当・特別児童扶養手当",
            Self::NationalHealthInsurance => "国民健康保険",
            Self::LongTermCare => "介護保険",
            Self::Pension => "年金",
        }
    }

    pub fn parse(raw: &str) -> Result<Department, DomainError> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == raw)
            .ok_or_else(|| {
                DomainError::new(
                    "unknown_department",
                    format!(
                        "'{raw}' is not a department; use one of {}",
                        Self::ALL.map(|d| d.as_str()).join(", ")
                    ),
                )
            })
    }
}

/// What a record is about. Each kind belongs to one department; the names
/// are stable (stored, and on the wire of both transports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    /// A person's registration: `status` (resident, moved_out, deceased),
    /// `household_id`, `relationship` (続柄), `address`.
    Residence,
    /// A household: `member_count` and `members` (the source's person ids).
    Household,
    /// 課税所得: `annual_income` for `fiscal_year`.
    AssessedIncome,
    /// 申告所得: `annual_income` for `fiscal_year`, `income_type`.
    DeclaredIncome,
    /// 児童手当: `monthly_amount`, `status`, `children`.
    ChildAllowance,
    /// 児童扶養手当: `monthly_amount`, `status`.
    ChildRearingAllowance,
    /// 特別児童扶養手当: `monthly_amount`, `status`, `grade`.
    SpecialChildRearingAllowance,
    /// 国民健康保険の資格: `status` (enrolled, withdrawn), `annual_premium`.
    HealthInsurance,
    /// 要介護認定: `care_level`, `valid_until`.
    CareCertification,
    /// 介護保険料: `annual_premium`, `status`.
    CarePremium,
    /// 年金の受給: `annual_amount`, `pension_type`, `payer`.
    PensionBenefit,
}

impl RecordKind {
    pub const ALL: [RecordKind; 11] = [
        Self::Residence,
        Self::Household,
        Self::AssessedIncome,
        Self::DeclaredIncome,
        Self::ChildAllowance,
        Self::ChildRearingAllowance,
        Self::SpecialChildRearingAllowance,
        Self::HealthInsurance,
        Self::CareCertification,
        Self::CarePremium,
        Self::PensionBenefit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Residence => "residence",
            Self::Household => "household",
            Self::AssessedIncome => "assessed_income",
            Self::DeclaredIncome => "declared_income",
            Self::ChildAllowance => "child_allowance",
            Self::ChildRearingAllowance => "child_rearing_allowance",
            Self::SpecialChildRearingAllowance => "special_child_rearing_allowance",
            Self::HealthInsurance => "health_insurance",
            Self::CareCertification => "care_certification",
            Self::CarePremium => "care_premium",
            Self::PensionBenefit => "pension_benefit",
        }
    }

    pub fn department(self) -> Department {
        match self {
            Self::Residence | Self::Household => Department::ResidentRegistry,
            Self::AssessedIncome | Self::DeclaredIncome => Department::Tax,
            Self::ChildAllowance => Department::ChildAllowance,
            Self::ChildRearingAllowance | Self::SpecialChildRearingAllowance => {
                Department::ChildRearingAllowance
            }
            Self::HealthInsurance => Department::NationalHealthInsurance,
            Self::CareCertification | Self::CarePremium => Department::LongTermCare,
            Self::PensionBenefit => Department::Pension,
        }
    }

    /// Parses a kind that `department` may report.
    pub fn parse(department: Department, raw: &str) -> Result<RecordKind, DomainError> {
        match Self::ALL.into_iter().find(|k| k.as_str() == raw) {
            Some(k) if k.department() == department => Ok(k),
            Some(_) => Err(DomainError::new(
                "invalid_record",
                format!(
                    "record kind '{raw}' does not belong to {}",
                    department.as_str()
                ),
            )),
            None => Err(DomainError::new(
                "invalid_record",
                format!("unknown record kind '{raw}'"),
            )),
        }
    }
}

/// Who a connector is asked about. Departments match people on the
/// normalised kana name and the birth date; `subject` only ties the answer
/// back to the case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectQuery {
    pub subject: SubjectId,
    pub kana_name: KanaName,
    pub kanji_name: Option<String>,
    pub birth_date: NaiveDate,
    pub address: Option<String>,
}

pub type Amounts = BTreeMap<String, i64>;
pub type Attributes = BTreeMap<String, String>;

/// One normalised record from a department.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepartmentRecord {
    pub department: Department,
    pub kind: RecordKind,
    pub subject: SubjectId,
    /// The department's own id for the record, stable across extracts.
    pub source_id: String,
    pub effective_date: NaiveDate,
    /// Integer yen, by name (`annual_income`, `monthly_amount`, …).
    pub amounts: Amounts,
    pub attributes: Attributes,
}

/// A record as a department's file holds it: about a person (kana name and
/// birth date), not yet tied to a case's subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonRecord {
    pub department: Department,
    pub kind: RecordKind,
    pub source_id: String,
    pub kana_name: KanaName,
    pub birth_date: NaiveDate,
    pub effective_date: NaiveDate,
    pub amounts: Amounts,
    pub attributes: Attributes,
}

impl PersonRecord {
    pub fn for_subject(self, subject: SubjectId) -> DepartmentRecord {
        DepartmentRecord {
            department: self.department,
            kind: self.kind,
            subject,
            source_id: self.source_id,
            effective_date: self.effective_date,
            amounts: self.amounts,
            attributes: self.attributes,
        }
    }
}

/// How one connector's fetch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchStatus {
    /// Every subject was answered.
    Complete,
    /// Some subjects were answered; the others are named with the reason.
    Partial,
    /// Nothing usable came back (timeout, transport error, bad response).
    Failed,
}

impl FetchStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Partial => "partial",
            Self::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> Result<FetchStatus, DomainError> {
        match raw {
            "complete" => Ok(Self::Complete),
            "partial" => Ok(Self::Partial),
            "failed" => Ok(Self::Failed),
            _ => Err(DomainError::new(
                "invalid_fetch_status",
                format!("unknown fetch status '{raw}'"),
            )),
        }
    }
}

/// Why departments were asked: a caseworker's comprehensive inquiry
/// (総合照会) or the scheduled re-query that looks for changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchTrigger {
    Inquiry,
    Requery,
}

impl FetchTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inquiry => "inquiry",
            Self::Requery => "requery",
        }
    }

    pub fn parse(raw: &str) -> Result<FetchTrigger, DomainError> {
        match raw {
            "inquiry" => Ok(Self::Inquiry),
            "requery" => Ok(Self::Requery),
            _ => Err(DomainError::new(
                "invalid_fetch_trigger",
                format!("unknown fetch trigger '{raw}'"),
            )),
        }
    }
}

const MAX_SOURCE_ID: usize = 64;
const MAX_KEY: usize = 40;
const MAX_VALUE: usize = 200;
const MAX_FIELDS: usize = 32;

fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::new("invalid_record", message)
}

impl DepartmentRecord {
    /// Checks what came from a department before anything is stored: a
    /// bounded source id, short snake_case keys and printable values.
    pub fn validate(self) -> Result<DepartmentRecord, DomainError> {
        check_record(
            self.department,
            self.kind,
            &self.source_id,
            &self.amounts,
            &self.attributes,
        )?;
        Ok(self)
    }
}

impl PersonRecord {
    /// The same checks as [`DepartmentRecord::validate`].
    pub fn validate(self) -> Result<PersonRecord, DomainError> {
        check_record(
            self.department,
            self.kind,
            &self.source_id,
            &self.amounts,
            &self.attributes,
        )?;
        Ok(self)
    }
}

fn check_record(
    department: Department,
    kind: RecordKind,
    id: &str,
    amounts: &Amounts,
    attributes: &Attributes,
) -> Result<(), DomainError> {
    if kind.department() != department {
        return Err(invalid(format!(
            "record kind '{}' does not belong to {}",
            kind.as_str(),
            department.as_str()
        )));
    }
    if id.is_empty()
        || id.chars().count() > MAX_SOURCE_ID
        || id.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(invalid(format!(
            "record id must be 1 to {MAX_SOURCE_ID} characters without spaces"
        )));
    }
    if amounts.len() + attributes.len() > MAX_FIELDS {
        return Err(invalid(format!(
            "a record has at most {MAX_FIELDS} amounts and attributes"
        )));
    }
    for key in amounts.keys().chain(attributes.keys()) {
        check_key(key)?;
    }
    for (key, value) in attributes {
        if value.chars().count() > MAX_VALUE || value.chars().any(char::is_control) {
            return Err(invalid(format!(
                "attribute '{key}' must be at most {MAX_VALUE} printable characters"
            )));
        }
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), DomainError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        // The name is not echoed: in a garbled file it may be anything.
        Err(invalid(format!(
            "a field name must be 1 to {MAX_KEY} characters of a-z, 0-9 and _"
        )))
    }
}

/// Flat maps as one line of text: `key=value;key=value`, with `%`, `;`,
/// `=` and control characters percent-escaped. The store keeps amounts and
/// attributes this way, and the linkage CSV carries them in one column.
pub fn encode_fields<V: ToString>(fields: &BTreeMap<String, V>) -> String {
    let mut out = String::new();
    for (i, (k, v)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(';');
        }
        escape_into(&mut out, k);
        out.push('=');
        escape_into(&mut out, &v.to_string());
    }
    out
}

fn escape_into(out: &mut String, raw: &str) {
    for c in raw.chars() {
        if matches!(c, '%' | ';' | '=') || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
}

fn unescape(raw: &str) -> Result<String, DomainError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = raw
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid("a field has a bad %-escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid("a field has a bad %-escape"))
}

/// The inverse of [`encode_fields`]; an empty text is an empty map.
pub fn decode_fields(raw: &str) -> Result<Attributes, DomainError> {
    let mut out = Attributes::new();
    if raw.trim().is_empty() {
        return Ok(out);
    }
    for pair in raw.split(';') {
        let (k, v) = pair
            .split_once('=')
            .ok_or_else(|| invalid("fields must be name=value pairs joined by ';'"))?;
        let key = unescape(k.trim())?;
        check_key(&key)?;
        if out.insert(key.clone(), unescape(v)?).is_some() {
            return Err(invalid(format!("field '{key}' appears twice")));
        }
    }
    Ok(out)
}

/// Amounts are whole yen: digits with an optional minus sign.
pub fn decode_amounts(raw: &str) -> Result<Amounts, DomainError> {
    decode_fields(raw)?
        .into_iter()
        .map(|(k, v)| {
            let yen = v
                .trim()
                .parse::<i64>()
                .map_err(|_| invalid(format!("amount '{k}' must be whole yen")))?;
            Ok((k, yen))
        })
        .collect()
}

/// What an alert suggests the caseworker does. The code is stable; the
/// text is the label the UI shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SuggestedAction {
    /// 世帯認定の見直し: someone moved in or out, was born or died.
    ReviewHousehold,
    /// 収入認定の見直しと過払いの確認: income rose or fell.
    ReviewIncome,
    /// 手当の収入認定: an allowance started, changed or ended.
    ReviewAllowance,
    /// 医療扶助との関係を確認: health insurance enrolment changed.
    ReviewMedicalAid,
    /// 介護扶助・加算の見直し: care level or premium changed.
    ReviewCareAid,
    /// 年金の収入認定: a pension started, changed or ended.
    ReviewPension,
}

impl SuggestedAction {
    pub const ALL: [SuggestedAction; 6] = [
        Self::ReviewHousehold,
        Self::ReviewIncome,
        Self::ReviewAllowance,
        Self::ReviewMedicalAid,
        Self::ReviewCareAid,
        Self::ReviewPension,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Self::ReviewHousehold => "review_household",
            Self::ReviewIncome => "review_income",
            Self::ReviewAllowance => "review_allowance",
            Self::ReviewMedicalAid => "review_medical_aid",
            Self::ReviewCareAid => "review_care_aid",
            Self::ReviewPension => "review_pension",
        }
    }

    pub fn text_ja(self) -> &'static str {
        match self {
            Self::ReviewHousehold => "世帯認定を見直し、保護費の変更を検討してください",
            Self::ReviewIncome => "収入認定を見直し、過払いの有無を確認してください",
            Self::ReviewAllowance => "手当を収入として認定し直してください",
            Self::ReviewMedicalAid => "医療扶助との関係を確認してください",
            Self::ReviewCareAid => "介護扶助と加算を見直してください",
            Self::ReviewPension => "年金を収入として認定し直してください",
        }
    }

    pub fn parse(raw: &str) -> Option<SuggestedAction> {
        Self::ALL.into_iter().find(|a| a.code() == raw)
    }

    pub fn for_department(department: Department) -> SuggestedAction {
        match department {
            Department::ResidentRegistry => Self::ReviewHousehold,
            Department::Tax => Self::ReviewIncome,
            Department::ChildAllowance | Department::ChildRearingAllowance => Self::ReviewAllowance,
            Department::NationalHealthInsurance => Self::ReviewMedicalAid,
            Department::LongTermCare => Self::ReviewCareAid,
            Department::Pension => Self::ReviewPension,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A record the last snapshot did not have (an allowance started).
    Added,
    /// A record the department no longer reports.
    Removed,
    /// The same record with other values.
    Changed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "added",
            Self::Removed => "removed",
            Self::Changed => "changed",
        }
    }
}

/// One field that differs; `None` is "absent".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldChange {
    pub field: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// A difference between two snapshots of one record: what an alert tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub department: Department,
    pub kind: RecordKind,
    pub subject: SubjectId,
    pub source_id: String,
    pub change: ChangeKind,
    pub fields: Vec<FieldChange>,
    pub effective_date: NaiveDate,
    pub suggested_action: SuggestedAction,
    /// Same change seen again (say, by two re-queries racing) → same key.
    pub dedup_key: String,
}

impl Change {
    /// `field: before → after; …`, for the alert's detail line.
    pub fn describe(&self) -> String {
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".to_owned());
        let fields = self
            .fields
            .iter()
            .map(|f| format!("{}: {} → {}", f.field, show(&f.before), show(&f.after)))
            .collect::<Vec<_>>()
            .join("; ");
        format!(
            "{} {} {} {}: {fields}",
            self.department.as_str(),
            self.kind.as_str(),
            self.source_id,
            self.change.as_str()
        )
    }

    pub fn field_names(&self) -> String {
        self.fields
            .iter()
            .map(|f| f.field.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn before_text(&self) -> String {
        side_text(&self.fields, |f| &f.before)
    }

    pub fn after_text(&self) -> String {
        side_text(&self.fields, |f| &f.after)
    }
}

fn side_text(fields: &[FieldChange], side: impl Fn(&FieldChange) -> &Option<String>) -> String {
    let mut map = BTreeMap::new();
    for f in fields {
        if let Some(v) = side(f) {
            map.insert(f.field.clone(), v.clone());
        }
    }
    encode_fields(&map)
}

/// What [`detect_changes`] compares: one department's last snapshot for a
/// case and what it returned now.
#[derive(Debug, Clone, Copy)]
pub struct Comparison<'a> {
    pub before: &'a [DepartmentRecord],
    pub after: &'a [DepartmentRecord],
    /// Subjects the department failed for now: a missing answer is not a
    /// removed record, so their records are not compared.
    pub unanswered: &'a HashSet<SubjectId>,
    /// Subjects the department answered for the first time: what it holds
    /// about them is their baseline, not a change.
    pub first_answered: &'a HashSet<SubjectId>,
    /// The fetch the snapshot came from. Two fetches racing over the same
    /// snapshot give a change the same key; the same values changing again
    /// later (A→B, back to A, A→B) give a new one.
    pub previous_fetch: i64,
}

fn field_values(r: &DepartmentRecord) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    out.insert("effective_date".to_owned(), r.effective_date.to_string());
    for (k, v) in &r.amounts {
        out.insert(k.clone(), v.to_string());
    }
    for (k, v) in &r.attributes {
        out.insert(k.clone(), v.clone());
    }
    out
}

fn diff_fields(
    before: Option<&DepartmentRecord>,
    after: Option<&DepartmentRecord>,
) -> Vec<FieldChange> {
    let b = before.map(field_values).unwrap_or_default();
    let a = after.map(field_values).unwrap_or_default();
    let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter(|k| b.get(*k) != a.get(*k))
        .map(|k| FieldChange {
            field: k.clone(),
            before: b.get(k).cloned(),
            after: a.get(k).cloned(),
        })
        .collect()
}

/// Compares a department's last snapshot for a case with its new answer,
/// record by record id.
pub fn detect_changes(c: &Comparison<'_>) -> Vec<Change> {
    let old: HashMap<&str, &DepartmentRecord> =
        c.before.iter().map(|r| (r.source_id.as_str(), r)).collect();
    let new: HashMap<&str, &DepartmentRecord> =
        c.after.iter().map(|r| (r.source_id.as_str(), r)).collect();
    let mut changes = Vec::new();
    for r in c.after {
        let previous = old.get(r.source_id.as_str()).copied();
        if previous.is_none() && c.first_answered.contains(&r.subject) {
            continue;
        }
        let fields = diff_fields(previous, Some(r));
        if fields.is_empty() {
            continue;
        }
        let change = if previous.is_some() {
            ChangeKind::Changed
        } else {
            ChangeKind::Added
        };
        changes.push(make_change(r, change, fields, c.previous_fetch));
    }
    for r in c.before {
        if new.contains_key(r.source_id.as_str()) || c.unanswered.contains(&r.subject) {
            continue;
        }
        let fields = diff_fields(Some(r), None);
        changes.push(make_change(
            r,
            ChangeKind::Removed,
            fields,
            c.previous_fetch,
        ));
    }
    changes.sort_by(|a, b| a.source_id.cmp(&b.source_id));
    changes
}

fn make_change(
    r: &DepartmentRecord,
    change: ChangeKind,
    fields: Vec<FieldChange>,
    previous_fetch: i64,
) -> Change {
    let mut h = Sha256::new();
    for part in [
        r.department.as_str(),
        &r.source_id,
        change.as_str(),
        &previous_fetch.to_string(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    for f in &fields {
        for part in [Some(&f.field), f.before.as_ref(), f.after.as_ref()] {
            let part = part.map(String::as_str).unwrap_or("\u{0}");
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    Change {
        department: r.department,
        kind: r.kind,
        subject: r.subject.clone(),
        source_id: r.source_id.clone(),
        change,
        fields,
        effective_date: r.effective_date,
        suggested_action: SuggestedAction::for_department(r.department),
        dedup_key: hex::encode(h.finalize()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(source_id: &str, income: i64) -> DepartmentRecord {
        DepartmentRecord {
            department: Department::Tax,
            kind: RecordKind::AssessedIncome,
            subject: SubjectId::generate(),
            source_id: source_id.to_owned(),
            effective_date: NaiveDate::from_ymd_opt(2026, 6, 1).unwrap(),
            amounts: [("annual_income".to_owned(), income)].into(),
            attributes: [("fiscal_year".to_owned(), "2026".to_owned())].into(),
        }
    }

    fn compare(
        before: &[DepartmentRecord],
        after: &[DepartmentRecord],
        unanswered: &HashSet<SubjectId>,
        previous_fetch: i64,
    ) -> Vec<Change> {
        detect_changes(&Comparison {
            before,
            after,
            unanswered,
            first_answered: &HashSet::new(),
            previous_fetch,
        })
    }

    #[test]
    fn an_unchanged_snapshot_has_no_changes() {
        let r = record("T1", 1_800_000);
        assert!(
            compare(
                std::slice::from_ref(&r),
                std::slice::from_ref(&r),
                &HashSet::new(),
                1
            )
            .is_empty()
        );
    }

    #[test]
    fn a_rise_in_income_is_one_change_with_before_and_after() {
        let before = record("T1", 1_800_000);
        let mut after = before.clone();
        after.amounts.insert("annual_income".to_owned(), 3_000_000);
        let changes = compare(&[before], &[after], &HashSet::new(), 1);
        assert_eq!(changes.len(), 1);
        let c = &changes[0];
        assert_eq!(c.change, ChangeKind::Changed);
        assert_eq!(c.suggested_action, SuggestedAction::ReviewIncome);
        assert_eq!(
            c.fields,
            vec![FieldChange {
                field: "annual_income".to_owned(),
                before: Some("1800000".to_owned()),
                after: Some("3000000".to_owned()),
            }]
        );
        assert!(c.describe().contains("1800000 → 3000000"));
    }

    #[test]
    fn added_and_removed_records_are_changes_unless_the_subject_went_unanswered() {
        let old = record("T1", 1);
        let new = record("T2", 2);
        let changes = compare(
            std::slice::from_ref(&old),
            std::slice::from_ref(&new),
            &HashSet::new(),
            1,
        );
        let kinds: Vec<_> = changes.iter().map(|c| c.change).collect();
        assert_eq!(kinds, vec![ChangeKind::Removed, ChangeKind::Added]);
        let unanswered: HashSet<_> = [old.subject.clone()].into();
        let changes = compare(&[old], &[new], &unanswered, 1);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].change, ChangeKind::Added);
    }

    #[test]
    fn a_subject_answered_for_the_first_time_is_a_baseline() {
        let r = record("T1", 1);
        let first: HashSet<_> = [r.subject.clone()].into();
        let changes = detect_changes(&Comparison {
            before: &[],
            after: std::slice::from_ref(&r),
            unanswered: &HashSet::new(),
            first_answered: &first,
            previous_fetch: 1,
        });
        assert!(changes.is_empty());
    }

    #[test]
    fn the_same_change_has_the_same_key_and_a_later_repeat_another() {
        let before = record("T1", 1);
        let after = record("T1", 2);
        let once = |previous_fetch| {
            compare(
                std::slice::from_ref(&before),
                std::slice::from_ref(&after),
                &HashSet::new(),
                previous_fetch,
            )[0]
            .dedup_key
            .clone()
        };
        assert_eq!(once(7), once(7));
        assert_ne!(once(7), once(9));
        // A record that comes back after a removal is a new change too.
        let back = |previous_fetch| {
            compare(
                &[],
                std::slice::from_ref(&after),
                &HashSet::new(),
                previous_fetch,
            )[0]
            .dedup_key
            .clone()
        };
        assert_ne!(back(3), back(11));
    }

    #[test]
    fn kinds_belong_to_their_department() {
        assert!(RecordKind::parse(Department::Tax, "assessed_income").is_ok());
        assert_eq!(
            RecordKind::parse(Department::Tax, "residence")
                .unwrap_err()
                .code,
            "invalid_record"
        );
        for k in RecordKind::ALL {
            assert_eq!(RecordKind::parse(k.department(), k.as_str()), Ok(k));
        }
        for d in Department::ALL {
            assert_eq!(Department::parse(d.as_str()), Ok(d));
            assert!(RecordKind::ALL.iter().any(|k| k.department() == d));
        }
    }

    #[test]
    fn validation_refuses_bad_keys_and_ids() {
        let mut r = record("T1", 1);
        r.attributes.insert("Bad Key".to_owned(), "x".to_owned());
        assert!(r.validate().is_err());
        assert!(record("has space", 1).validate().is_err());
        assert!(record("", 1).validate().is_err());
        assert!(record("T1", 1).validate().is_ok());
    }

    #[test]
    fn field_lines_escape_separators() {
        let m: Attributes = [
            ("address".to_owned(), "東京都;1=2%".to_owned()),
            ("status".to_owned(), "resident".to_owned()),
        ]
        .into();
        let line = encode_fields(&m);
        assert_eq!(line, "address=東京都%3B1%3D2%25;status=resident");
        assert_eq!(decode_fields(&line).unwrap(), m);
        assert!(decode_fields("a=1;a=2").is_err());
        assert!(decode_fields("novalue").is_err());
        assert!(decode_amounts("annual_income=12.5").is_err());
        assert_eq!(
            decode_amounts("annual_income=-5").unwrap()["annual_income"],
            -5
        );
    }

    proptest! {
        #[test]
        fn fields_round_trip(m in proptest::collection::btree_map("[a-z_][a-z0-9_]{0,10}", "\\PC{0,20}|[;=%\\n]{0,5}", 0..6)) {
            prop_assert_eq!(decode_fields(&encode_fields(&m)).unwrap(), m);
        }

        #[test]
        fn decoding_any_text_never_panics(raw in "\\PC{0,60}") {
            let _ = decode_fields(&raw);
            let _ = decode_amounts(&raw);
        }

        #[test]
        fn a_snapshot_compared_with_itself_never_changes(incomes in proptest::collection::vec(0i64..10_000_000, 0..8)) {
            let records: Vec<_> = incomes.iter().enumerate().map(|(i, n)| record(&format!("T{i}"), *n)).collect();
            prop_assert!(compare(&records, &records, &HashSet::new(), 1).is_empty());
            // Everything removed: one change per record.
            prop_assert_eq!(compare(&records, &[], &HashSet::new(), 1).len(), records.len());
        }
    }
}
