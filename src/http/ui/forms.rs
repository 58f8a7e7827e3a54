//! The caseworker's forms: a new case with its household, and a new
//! request to banks. Each field is checked with the domain's own rules and
//! a refusal shows its message next to the field; nothing is written until
//! the whole form is valid.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use chrono::NaiveDate;
use rand::Rng;
use sha2::{Digest, Sha256};

use super::{
    AppState, Chrome, FormData, UiError, case_not_found, chrome, ja, posted_form, redirect, render,
    session,
};
use crate::casework::{self, CaseworkError, today};
use crate::domain::ids::{CaseId, SubjectId};
use crate::domain::request::{Period, RequestInput, Subject, SubjectInput, Target};
use crate::domain::state::InquiryKind;
use crate::domain::time::parse_date;
use crate::domain::zengin::InstitutionCode;
use crate::store::InstitutionRef;

/// Rows of people on the new-case form; empty rows are ignored.
const SUBJECT_ROWS: usize = 4;

#[derive(Default)]
struct SubjectRow {
    i: usize,
    n: usize,
    kana: String,
    kanji: String,
    birth: String,
    address: String,
    kana_error: Option<String>,
    kanji_error: Option<String>,
    birth_error: Option<String>,
    address_error: Option<String>,
}

#[derive(Template)]
#[template(path = "case_new.html")]
struct NewCasePage {
    chrome: Chrome,
    form_key: String,
    form_error: Option<String>,
    case_number: String,
    case_number_error: Option<String>,
    rows: Vec<SubjectRow>,
    declared: String,
    declared_error: Option<String>,
}

fn empty_rows() -> Vec<SubjectRow> {
    (0..SUBJECT_ROWS)
        .map(|i| SubjectRow {
            i,
            n: i + 1,
            ..Default::default()
        })
        .collect()
}

pub(super) async fn new_case_page(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    Ok(render(
        StatusCode::OK,
        &NewCasePage {
            form_key: hex::encode(rand::rng().random::<[u8; 16]>()),
            chrome: chrome(&s, &req),
            form_error: None,
            case_number: String::new(),
            case_number_error: None,
            rows: empty_rows(),
            declared: String::new(),
            declared_error: None,
        },
    ))
}

/// Four-digit codes separated by commas, spaces or 、.
fn parse_codes(raw: &str) -> Result<Vec<InstitutionCode>, String> {
    raw.split([',', ' ', '、', '　'])
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            InstitutionCode::parse(c.trim())
                .map_err(|_| format!("「{}」は4桁の金融機関コードではありません", c.trim()))
        })
        .collect()
}

fn optional(v: String) -> Option<String> {
    (!v.is_empty()).then_some(v)
}

/// Which field of a subject row a domain refusal is about.
fn subject_field(message: &str) -> &'static str {
    if message.contains("birth_date") {
        "birth"
    } else if message.contains("kanji") {
        "kanji"
    } else if message.contains("address") || message.contains("postal") {
        "address"
    } else {
        "kana"
    }
}

pub(super) async fn new_case_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let (s, form) = posted_form(&req, &state, &body).await?;
    let mut page = NewCasePage {
        form_key: form.get("form_key"),
        chrome: chrome(&s, &req),
        form_error: None,
        case_number: form.get("case_number"),
        case_number_error: None,
        rows: empty_rows(),
        declared: form.get("declared"),
        declared_error: None,
    };
    let mut subjects = Vec::new();
    for row in &mut page.rows {
        let i = row.i;
        row.kana = form.get(&format!("kana_{i}"));
        row.kanji = form.get(&format!("kanji_{i}"));
        row.birth = form.get(&format!("birth_{i}"));
        row.address = form.get(&format!("address_{i}"));
        if row.kana.is_empty() && row.birth.is_empty() && row.kanji.is_empty() {
            continue;
        }
        if row.kana.is_empty() {
            row.kana_error = Some("氏名（カナ）を入力してください".to_owned());
        }
        let birth = match parse_date("birth_date", &row.birth) {
            Ok(d) => Some(d),
            Err(_) => {
                row.birth_error = Some("生年月日を YYYY-MM-DD で入力してください".to_owned());
                None
            }
        };
        let (Some(birth), None) = (birth, &row.kana_error) else {
            continue;
        };
        let input = SubjectInput {
            kana_name: row.kana.clone(),
            kanji_name: optional(row.kanji.clone()),
            birth_date: birth,
            postal_code: None,
            address: optional(row.address.clone()),
            former_kana_names: Vec::new(),
        };
        match Subject::validate(input.clone(), today()) {
            Ok(_) => subjects.push(input),
            Err(e) => {
                let slot = match subject_field(&e.message) {
                    "birth" => &mut row.birth_error,
                    "kanji" => &mut row.kanji_error,
                    "address" => &mut row.address_error,
                    _ => &mut row.kana_error,
                };
                *slot = Some(ja(&e));
            }
        }
    }
    if page.case_number.is_empty() {
        page.case_number_error = Some("ケース番号を入力してください".to_owned());
    }
    let declared = match parse_codes(&page.declared) {
        Ok(codes) => codes,
        Err(e) => {
            page.declared_error = Some(e);
            Vec::new()
        }
    };
    let row_errors = page.rows.iter().any(|r| {
        r.kana_error.is_some()
            || r.kanji_error.is_some()
            || r.birth_error.is_some()
            || r.address_error.is_some()
    });
    if subjects.is_empty() && !row_errors {
        page.rows[0].kana_error = Some("世帯員を1人以上入力してください".to_owned());
    }
    if row_errors
        || subjects.is_empty()
        || page.case_number_error.is_some()
        || page.declared_error.is_some()
    {
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    let form_key = form.get("form_key");
    let created = casework::create_case_from_form(
        &state.store,
        &s.actor,
        &page.case_number,
        subjects,
        &declared,
        (!form_key.is_empty()).then_some(form_key.as_str()),
    )
    .await;
    let case = match created {
        Ok(c) => c,
        Err(CaseworkError::Invalid(e)) => {
            let slot = if e.code == "unknown_institution" {
                &mut page.declared_error
            } else if e.message.contains("case_number") {
                &mut page.case_number_error
            } else {
                &mut page.form_error
            };
            *slot = Some(ja(&e));
            return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(redirect(&format!("/ui/cases/{}?done=created", case.id)))
}

struct SubjectChoice {
    id: String,
    name: String,
    checked: bool,
}

struct InstitutionChoice {
    code: String,
    name: String,
    kana: String,
    checked: bool,
}

struct ChoiceGroup {
    title: &'static str,
    items: Vec<InstitutionChoice>,
}

#[derive(Template)]
#[template(path = "request_new.html")]
struct NewRequestPage {
    chrome: Chrome,
    case_id: String,
    case_number: String,
    form_key: String,
    query: String,
    form_error: Option<String>,
    subjects: Vec<SubjectChoice>,
    subjects_error: Option<String>,
    groups: Vec<ChoiceGroup>,
    codes: String,
    institutions_error: Option<String>,
    kind_existence: bool,
    kind_balance: bool,
    kind_transactions: bool,
    kinds_error: Option<String>,
    reference_date: String,
    reference_date_error: Option<String>,
    period_from: String,
    period_to: String,
    period_error: Option<String>,
    due_date: String,
    due_date_error: Option<String>,
    purpose: String,
    purpose_error: Option<String>,
}

fn choices(items: Vec<InstitutionRef>, checked: &[String]) -> Vec<InstitutionChoice> {
    items
        .into_iter()
        .map(|i| InstitutionChoice {
            checked: checked.contains(&i.code.to_string()),
            code: i.code.to_string(),
            name: i.name,
            kana: i.kana,
        })
        .collect()
}

/// The request form for a case, with what was entered so far.
async fn request_page(
    state: &AppState,
    s: &super::Session,
    req: &HttpRequest,
    case: &CaseId,
    query: &str,
    form: Option<&FormData>,
) -> Result<NewRequestPage, UiError> {
    // The form shows the people's names: an office-checked, recorded read.
    if !s.actor.role.can_file() {
        return Err(super::refuse(
            StatusCode::FORBIDDEN,
            "この役割では照会を作成できません。",
        ));
    }
    let record = casework::read_case(&state.store, &s.actor, case).await?;
    let declared = casework::declared_institutions(&state.store, &s.actor, case).await?;
    let standing = casework::office_institutions(&state.store, &s.actor).await?;
    let found = casework::search_institutions(&state.store, query).await?;
    let picked = form.map(|f| f.all("institution")).unwrap_or_default();
    let chosen_subjects = form.map(|f| f.all("subject"));
    let kinds = form.map(|f| f.all("kind"));
    let has_kind =
        |k: &str, default: bool| kinds.as_ref().map_or(default, |v| v.iter().any(|x| x == k));
    let field = |name: &str, default: String| form.map_or(default, |f| f.get(name));
    let mut groups = vec![
        ChoiceGroup {
            title: "申告された金融機関",
            items: choices(declared, &picked),
        },
        ChoiceGroup {
            title: "調査先リスト（事務所の標準）",
            items: choices(standing, &picked),
        },
    ];
    if !query.is_empty() {
        groups.push(ChoiceGroup {
            title: "検索結果",
            items: choices(found, &picked),
        });
    }
    // Ticked earlier (from a search) and not in the lists above: kept, so a
    // form sent back with an error loses no choice.
    let shown: Vec<String> = groups
        .iter()
        .flat_map(|g| g.items.iter().map(|i| i.code.clone()))
        .collect();
    let mut kept = Vec::new();
    for code in picked.iter().filter(|c| !shown.contains(c)) {
        if let Ok(code) = InstitutionCode::parse(code)
            && let Some(i) = state
                .store
                .institution(&code)
                .await
                .map_err(CaseworkError::from)?
        {
            kept.push(InstitutionRef {
                code: i.code,
                name: i.name,
                kana: i.kana,
            });
        }
    }
    if !kept.is_empty() {
        groups.push(ChoiceGroup {
            title: "選択中",
            items: choices(kept, &picked),
        });
    }
    Ok(NewRequestPage {
        chrome: chrome(s, req),
        case_id: case.to_string(),
        case_number: record.case_number.clone(),
        form_key: form.map_or_else(
            || hex::encode(rand::rng().random::<[u8; 16]>()),
            |f| f.get("form_key"),
        ),
        query: query.to_owned(),
        form_error: None,
        subjects: record
            .subjects
            .iter()
            .map(|sub| SubjectChoice {
                id: sub.id.to_string(),
                name: format!(
                    "{}（{}）",
                    sub.kana_name,
                    sub.kanji_name.clone().unwrap_or_default()
                ),
                checked: chosen_subjects
                    .as_ref()
                    .is_none_or(|c| c.iter().any(|x| x == sub.id.as_str())),
            })
            .collect(),
        subjects_error: None,
        groups,
        codes: field("codes", String::new()),
        institutions_error: None,
        kind_existence: has_kind("existence", true),
        kind_balance: has_kind("balance", true),
        kind_transactions: has_kind("transactions", false),
        kinds_error: None,
        reference_date: field("reference_date", today().to_string()),
        reference_date_error: None,
        period_from: field("period_from", String::new()),
        period_to: field("period_to", String::new()),
        period_error: None,
        due_date: field("due_date", (today() + chrono::Days::new(14)).to_string()),
        due_date_error: None,
        purpose: field("purpose", "生活保護法第29条に基づく資産調査".to_owned()),
        purpose_error: None,
    })
}

pub(super) async fn new_request_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    let id = CaseId::parse(&id).map_err(|_| case_not_found())?;
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("q").cloned())
            .unwrap_or_default();
    let page = request_page(&state, &s, &req, &id, query.trim(), None).await?;
    Ok(render(StatusCode::OK, &page))
}

fn date_field(raw: &str, slot: &mut Option<String>, required: bool) -> Option<NaiveDate> {
    if raw.is_empty() {
        if required {
            *slot = Some("日付を入力してください".to_owned());
        }
        return None;
    }
    match parse_date("date", raw) {
        Ok(d) => Some(d),
        Err(_) => {
            *slot = Some("日付を YYYY-MM-DD で入力してください".to_owned());
            None
        }
    }
}

pub(super) async fn new_request_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let (s, form) = posted_form(&req, &state, &body).await?;
    let id = CaseId::parse(&id).map_err(|_| case_not_found())?;
    let mut page = request_page(&state, &s, &req, &id, "", Some(&form)).await?;

    let subject_ids: Vec<SubjectId> = form
        .all("subject")
        .iter()
        .filter_map(|x| SubjectId::parse(x).ok())
        .collect();
    if subject_ids.is_empty() {
        page.subjects_error = Some("対象者を1人以上選んでください".to_owned());
    }
    let mut codes: Vec<String> = form.all("institution");
    match parse_codes(&page.codes) {
        Ok(typed) => codes.extend(typed.iter().map(ToString::to_string)),
        Err(e) => page.institutions_error = Some(e),
    }
    codes.sort();
    codes.dedup();
    let targets: Vec<Target> = codes
        .iter()
        .filter_map(|c| InstitutionCode::parse(c).ok())
        .map(|institution| Target {
            institution,
            branches: Vec::new(),
        })
        .collect();
    if targets.is_empty() && page.institutions_error.is_none() {
        page.institutions_error = Some("金融機関を1つ以上選ぶか入力してください".to_owned());
    }
    let kinds: Vec<InquiryKind> = form
        .all("kind")
        .iter()
        .filter_map(|k| match k.as_str() {
            "existence" => Some(InquiryKind::Existence),
            "balance" => Some(InquiryKind::Balance),
            "transactions" => Some(InquiryKind::Transactions),
            _ => None,
        })
        .collect();
    if kinds.is_empty() {
        page.kinds_error = Some("照会内容を1つ以上選んでください".to_owned());
    }
    let reference = date_field(
        &page.reference_date.clone(),
        &mut page.reference_date_error,
        false,
    );
    let from = date_field(&page.period_from.clone(), &mut page.period_error, false);
    let to = date_field(&page.period_to.clone(), &mut page.period_error, false);
    let due = date_field(&page.due_date.clone(), &mut page.due_date_error, true);
    let period = match (from, to) {
        (Some(from), Some(to)) => Some(Period { from, to }),
        (None, None) => None,
        _ => {
            page.period_error
                .get_or_insert_with(|| "期間は開始と終了の両方を入力してください".to_owned());
            None
        }
    };
    if kinds.contains(&InquiryKind::Transactions) && period.is_none() {
        page.period_error
            .get_or_insert_with(|| "取引履歴には期間が必要です".to_owned());
    }
    let field_errors = [
        &page.subjects_error,
        &page.institutions_error,
        &page.kinds_error,
        &page.reference_date_error,
        &page.period_error,
        &page.due_date_error,
    ]
    .iter()
    .any(|e| e.is_some());
    let Some(due_date) = due.filter(|_| !field_errors) else {
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    };
    let input = RequestInput {
        subject_ids,
        targets,
        kinds,
        reference_date: reference,
        period,
        legal_basis: None,
        purpose: optional(page.purpose.clone()),
        due_date,
    };
    // A double click sends the same form twice: the form's key and body
    // make the second one a replay of the first.
    let mut fields: Vec<&(String, String)> = form.0.iter().filter(|(k, _)| k != "csrf").collect();
    fields.sort();
    let hash = hex::encode(Sha256::digest(format!("{fields:?}").as_bytes()));
    let key = format!("ui:{}", page.form_key);
    match casework::submit_request(&state.store, &s.actor, &id, input, Some((&key, &hash))).await {
        Ok(_) => Ok(redirect(&format!("/ui/cases/{id}?done=requested"))),
        Err(CaseworkError::Invalid(e)) => {
            let m = e.message.clone();
            let text = ja(&e);
            let slot = match e.code {
                "missing_subjects" | "unknown_subject" | "duplicate" => &mut page.subjects_error,
                "missing_institutions" | "unknown_institution" | "unknown_branch" => {
                    &mut page.institutions_error
                }
                "missing_kinds" => &mut page.kinds_error,
                _ if m.contains("due_date") => &mut page.due_date_error,
                _ if m.contains("reference_date") => &mut page.reference_date_error,
                _ if m.contains("period") => &mut page.period_error,
                _ if m.contains("purpose") => &mut page.purpose_error,
                _ => &mut page.form_error,
            };
            *slot = Some(text);
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(CaseworkError::IdempotencyConflict(_)) => {
            page.form_error = Some(
                "このフォームは送信済みです。照会を追加するときは、フォームを開き直してください。"
                    .to_owned(),
            );
            Ok(render(StatusCode::CONFLICT, &page))
        }
        Err(e) => Err(e.into()),
    }
}
