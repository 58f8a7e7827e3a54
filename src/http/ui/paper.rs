//! The paper channel's pages: the letters to print and mail, a printable
//! A4 letter (照会書), marking it mailed, and the answers staff enter by
//! hand or upload as CSV.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::{
    AppState, Chrome, UiError, check_form, chrome, ja, jst_time, posted_form, redirect, refuse,
    render, session,
};
use crate::casework::{self, AccountFields, CaseworkError, PaperAnswer};
use crate::domain::answer::Outcome;
use crate::domain::ids::{BatchId, InquiryId};
use crate::domain::state::{BatchState, InquiryKind, InquiryState};
use crate::domain::time::{now_millis, wareki};
use crate::store::{ApplyOutcome, Letter};

fn letter_not_found() -> UiError {
    refuse(StatusCode::NOT_FOUND, "その照会書は見つかりません。")
}

struct LetterRow {
    id: String,
    institution: String,
    state: &'static str,
    state_class: &'static str,
    inquiries: i64,
    waiting: i64,
    created: String,
    mailed: String,
}

#[derive(Template)]
#[template(path = "letters.html")]
struct LettersPage {
    chrome: Chrome,
    letters: Vec<LetterRow>,
}

pub(super) async fn letters_page(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    let letters = casework::paper_letters(&state.store, &s.actor).await?;
    Ok(render(
        StatusCode::OK,
        &LettersPage {
            chrome: chrome(&s, &req),
            letters: letters
                .into_iter()
                .map(|l| {
                    let mailed = l.state == BatchState::Acknowledged;
                    LetterRow {
                        id: l.batch.to_string(),
                        institution: format!("{} {}", l.institution, l.institution_name),
                        state: if mailed {
                            "郵送済・回答待ち"
                        } else {
                            "印刷・郵送待ち"
                        },
                        state_class: if mailed { "ok" } else { "warn" },
                        inquiries: l.inquiries,
                        waiting: l.waiting,
                        created: jst_time(l.created_at),
                        mailed: l.mailed_at.map(jst_time).unwrap_or_default(),
                    }
                })
                .collect(),
        },
    ))
}

struct LetterLineView {
    n: usize,
    inquiry: String,
    kana: String,
    kanji: String,
    birth: String,
    address: String,
    asked: String,
    due: String,
    answerable: bool,
    state: &'static str,
}

#[derive(Template)]
#[template(path = "letter.html")]
struct LetterPage {
    chrome: Chrome,
    batch_id: String,
    institution_name: String,
    letter_no: String,
    dated: String,
    letterhead: String,
    office: String,
    legal_basis: String,
    due: String,
    can_mail: bool,
    mailed: String,
    csv_header: &'static str,
    upload_error: Option<String>,
    lines: Vec<LetterLineView>,
}

fn asked(
    kinds: &[InquiryKind],
    reference: chrono::NaiveDate,
    period: Option<crate::domain::request::Period>,
) -> String {
    let mut parts = Vec::new();
    for k in kinds {
        parts.push(match k {
            InquiryKind::Existence => "口座の有無".to_owned(),
            InquiryKind::Balance => format!("{}現在の残高", wareki(reference)),
            InquiryKind::Transactions => match period {
                Some(p) => format!("{}から{}までの取引履歴", wareki(p.from), wareki(p.to)),
                None => "取引履歴".to_owned(),
            },
        });
    }
    parts.join("、")
}

fn letter_view(s: &super::Session, req: &HttpRequest, letter: &Letter) -> LetterPage {
    let first = letter.lines.first();
    let office = first.map(|l| l.office.clone()).unwrap_or_default();
    let due = letter
        .lines
        .iter()
        .map(|l| l.due_date)
        .min()
        .map(wareki)
        .unwrap_or_default();
    LetterPage {
        chrome: chrome(s, req),
        batch_id: letter.summary.batch.to_string(),
        institution_name: letter.summary.institution_name.clone(),
        // The id's random tail: its head is a timestamp, shared by batches
        // sealed in the same millisecond.
        letter_no: format!("照会第 {} 号", &letter.summary.batch.as_str()[20..]),
        dated: wareki(crate::domain::time::jst_date(
            letter.summary.mailed_at.unwrap_or_else(now_millis),
        )),
        letterhead: "福祉事務所長".to_owned(),
        office,
        legal_basis: first
            .map(|l| l.legal_basis.clone())
            .unwrap_or_else(|| crate::domain::request::DEFAULT_LEGAL_BASIS.to_owned()),
        due,
        can_mail: letter.summary.state == BatchState::Sealed,
        mailed: letter.summary.mailed_at.map(jst_time).unwrap_or_default(),
        csv_header: casework::ANSWER_CSV_HEADER,
        upload_error: None,
        lines: letter
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| LetterLineView {
                n: i + 1,
                inquiry: l.inquiry.to_string(),
                kana: l.kana_name.clone(),
                kanji: l.kanji_name.clone().unwrap_or_default(),
                birth: wareki(l.birth_date),
                address: l.address.clone().unwrap_or_default(),
                asked: asked(&l.kinds, l.reference_date, l.period),
                due: wareki(l.due_date),
                answerable: l.state == InquiryState::Delivered,
                state: super::state_label(l.state).0,
            })
            .collect(),
    }
}

pub(super) async fn letter_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    let id = BatchId::parse(&id).map_err(|_| letter_not_found())?;
    let letter = casework::read_letter(&state.store, &s.actor, &id).await?;
    Ok(render(StatusCode::OK, &letter_view(&s, &req, &letter)))
}

pub(super) async fn mark_mailed(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let (s, _) = posted_form(&req, &state, &body).await?;
    let id = BatchId::parse(&id).map_err(|_| letter_not_found())?;
    casework::mark_letter_mailed(&state.store, &s.actor, &id).await?;
    Ok(redirect(&format!("/ui/admin/letters/{id}?done=mailed")))
}

const ACCOUNT_ROWS: usize = 3;

#[derive(Default)]
struct AccountRow {
    i: usize,
    n: usize,
    branch: String,
    account_type: String,
    number: String,
    holder: String,
    balance: String,
    as_of: String,
    error: Option<String>,
}

struct AccountTypeChoice {
    code: &'static str,
    label: &'static str,
}

#[derive(Template)]
#[template(path = "paper_answer.html")]
struct AnswerPage {
    chrome: Chrome,
    batch_id: String,
    inquiry_id: String,
    institution_name: String,
    subject: String,
    form_error: Option<String>,
    outcome: String,
    outcome_error: Option<String>,
    reason: String,
    reason_error: Option<String>,
    rows: Vec<AccountRow>,
    account_types: Vec<AccountTypeChoice>,
}

async fn answer_page(
    state: &AppState,
    s: &super::Session,
    req: &HttpRequest,
    batch: &BatchId,
    inquiry: &InquiryId,
) -> Result<AnswerPage, UiError> {
    let letter = casework::read_letter(&state.store, &s.actor, batch).await?;
    let line = letter
        .lines
        .iter()
        .find(|l| &l.inquiry == inquiry)
        .ok_or_else(|| refuse(StatusCode::NOT_FOUND, "その照会はこの照会書にありません。"))?;
    Ok(AnswerPage {
        chrome: chrome(s, req),
        batch_id: batch.to_string(),
        inquiry_id: inquiry.to_string(),
        institution_name: letter.summary.institution_name.clone(),
        subject: line.kana_name.clone(),
        form_error: None,
        outcome: String::new(),
        outcome_error: None,
        reason: String::new(),
        reason_error: None,
        rows: (0..ACCOUNT_ROWS)
            .map(|i| AccountRow {
                i,
                n: i + 1,
                as_of: line.reference_date.to_string(),
                ..Default::default()
            })
            .collect(),
        account_types: [
            ("1", "普通"),
            ("2", "当座"),
            ("4", "貯蓄"),
            ("T", "定期"),
            ("9", "その他"),
        ]
        .into_iter()
        .map(|(code, label)| AccountTypeChoice { code, label })
        .collect(),
    })
}

fn ids(path: &(String, String)) -> Result<(BatchId, InquiryId), UiError> {
    match (BatchId::parse(&path.0), InquiryId::parse(&path.1)) {
        (Ok(b), Ok(i)) => Ok((b, i)),
        _ => Err(letter_not_found()),
    }
}

pub(super) async fn answer_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    let (batch, inquiry) = ids(&path)?;
    let page = answer_page(&state, &s, &req, &batch, &inquiry).await?;
    Ok(render(StatusCode::OK, &page))
}

/// What an application of answers said, for a page: `None` when filed.
fn refusal_text(results: &[(InquiryId, ApplyOutcome)]) -> Option<String> {
    results.iter().find_map(|(id, r)| match r {
        ApplyOutcome::Rejected { reason, .. } => Some(format!("照会 {id}: {reason}")),
        _ => None,
    })
}

pub(super) async fn answer_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let (s, form) = posted_form(&req, &state, &body).await?;
    let (batch, inquiry) = ids(&path)?;
    let mut page = answer_page(&state, &s, &req, &batch, &inquiry).await?;
    page.outcome = form.get("outcome");
    page.reason = form.get("reason");
    let mut accounts = Vec::new();
    for row in &mut page.rows {
        let i = row.i;
        row.branch = form.get(&format!("branch_{i}"));
        row.account_type = form.get(&format!("type_{i}"));
        row.number = form.get(&format!("number_{i}"));
        row.holder = form.get(&format!("holder_{i}"));
        row.balance = form.get(&format!("balance_{i}"));
        row.as_of = form.get(&format!("as_of_{i}"));
        let fields = AccountFields {
            branch: &row.branch,
            account_type: &row.account_type,
            number: &row.number,
            holder_kana: &row.holder,
            balance: &row.balance,
            as_of: &row.as_of,
        };
        // An untouched row keeps only its prefilled date.
        if page.outcome != "found"
            || (fields.branch.is_empty()
                && fields.number.is_empty()
                && fields.holder_kana.is_empty())
        {
            continue;
        }
        match fields.account() {
            Ok(a) => accounts.push(a),
            Err(e) => row.error = Some(ja(&e)),
        }
    }
    let empty = AccountFields {
        branch: "",
        account_type: "",
        number: "",
        holder_kana: "",
        balance: "",
        as_of: "",
    };
    let outcome = match page.outcome.as_str() {
        "found" if accounts.is_empty() && page.rows.iter().all(|r| r.error.is_none()) => {
            page.rows[0].error = Some("口座を1つ以上入力してください".to_owned());
            None
        }
        "found" => Some(Outcome::Found {
            accounts,
            other_holdings: Vec::new(),
        }),
        "" => {
            page.outcome_error = Some("回答の種類を選んでください".to_owned());
            None
        }
        other => match casework::paper_outcome(other, &empty, &page.reason) {
            Ok(o) => Some(o),
            Err(e) if e.code == "invalid_reason" => {
                page.reason_error =
                    Some("回答拒否の理由を入力してください（105文字以内）".to_owned());
                None
            }
            Err(e) => {
                page.outcome_error = Some(ja(&e));
                None
            }
        },
    };
    let Some(outcome) = outcome.filter(|_| page.rows.iter().all(|r| r.error.is_none())) else {
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    };
    let results = casework::enter_answers(
        &state.store,
        &s.actor,
        &batch,
        vec![PaperAnswer { inquiry, outcome }],
    )
    .await?;
    if let Some(why) = refusal_text(&results) {
        page.form_error = Some(why);
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    }
    Ok(redirect(&format!(
        "/ui/admin/letters/{batch}?done=answered"
    )))
}

/// A `multipart/form-data` body with one file and a few text fields.
#[derive(Debug, PartialEq, Eq)]
struct Upload {
    fields: Vec<(String, String)>,
    file: Vec<u8>,
}

/// Reads what the upload form sends (RFC 7578, no nested parts): enough
/// for one CSV file and the CSRF field, without another dependency.
fn multipart(content_type: &str, body: &[u8]) -> Option<Upload> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"');
    // RFC 2046 boundaries are 1 to 70 characters; this also bounds the
    // cost of searching for them.
    if boundary.is_empty() || boundary.len() > 70 {
        return None;
    }
    let delimiter = format!("--{boundary}");
    let mut fields = Vec::new();
    let mut file = None;
    let mut rest = body;
    while let Some(start) = find(rest, delimiter.as_bytes()) {
        rest = &rest[start + delimiter.len()..];
        if rest.starts_with(b"--") {
            break;
        }
        let rest_part = rest.strip_prefix(b"\r\n").unwrap_or(rest);
        let end = find(rest_part, delimiter.as_bytes())?;
        let part = &rest_part[..end];
        let part = part.strip_suffix(b"\r\n").unwrap_or(part);
        let split = find(part, b"\r\n\r\n")?;
        let headers = std::str::from_utf8(&part[..split]).ok()?;
        let content = &part[split + 4..];
        let disposition = headers
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .unwrap_or("");
        let name = disposition
            .split(';')
            .find_map(|h| h.trim().strip_prefix("name="))
            .map(|n| n.trim_matches('"').to_owned())
            .unwrap_or_default();
        if disposition.contains("filename=") {
            file = Some(content.to_vec());
        } else {
            fields.push((name, String::from_utf8_lossy(content).into_owned()));
        }
        rest = rest_part;
    }
    Some(Upload {
        fields,
        file: file?,
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

pub(super) const MAX_UPLOAD_BYTES: usize = 2 * 1024 * 1024;

pub(super) async fn upload_answers(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    if body.len() > MAX_UPLOAD_BYTES {
        return Err(refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "ファイルが大きすぎます（2MBまで）。",
        ));
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(Upload { fields, file }) = multipart(content_type, &body) else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "CSVファイルを選んでください。",
        ));
    };
    let csrf = fields
        .iter()
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_default();
    check_form(&req, &s, &csrf)?;
    let id = BatchId::parse(&id).map_err(|_| letter_not_found())?;
    let letter = casework::read_letter(&state.store, &s.actor, &id).await?;
    let refused = |message: String| {
        let mut page = letter_view(&s, &req, &letter);
        page.upload_error = Some(message);
        Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
    };
    let Ok(text) = std::str::from_utf8(&file) else {
        return refused("CSVは UTF-8 で保存してください。".to_owned());
    };
    let answers = match casework::parse_answer_csv(text) {
        Ok(a) if a.is_empty() => return refused("回答の行がありません。".to_owned()),
        Ok(a) => a,
        Err(errors) => return refused(format!("登録しませんでした。{}", errors.join(" / "))),
    };
    match casework::enter_answers(&state.store, &s.actor, &id, answers).await {
        Ok(results) => match refusal_text(&results) {
            Some(why) => refused(format!("一部の回答を登録できませんでした。{why}")),
            None => Ok(redirect(&format!("/ui/admin/letters/{id}?done=answered"))),
        },
        Err(CaseworkError::Invalid(e)) => refused(format!("登録しませんでした。{}", e.message)),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_browser_upload_is_read() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n\
--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.csv\"\r\n\
Content-Type: text/csv\r\n\r\nh1,h2\r\n1,2\r\n\r\n--XyZ--\r\n";
        let up = multipart("multipart/form-data; boundary=XyZ", body).unwrap();
        assert_eq!(up.fields, vec![("csrf".to_owned(), "abc".to_owned())]);
        assert_eq!(up.file, b"h1,h2\r\n1,2\r\n");
        assert!(multipart("text/plain", body).is_none());
        assert!(multipart("multipart/form-data; boundary=XyZ", b"garbage").is_none());
        // A text part with its own Content-Type line keeps its name.
        let typed = b"--B\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\
Content-Type: text/plain\r\n\r\nabc\r\n--B\r\nContent-Disposition: form-data; \
name=\"file\"; filename=\"a.csv\"\r\n\r\nx\r\n--B--\r\n";
        let up = multipart("multipart/form-data; boundary=B", typed).unwrap();
        assert_eq!(up.fields, vec![("csrf".to_owned(), "abc".to_owned())]);
        let long = format!("multipart/form-data; boundary={}", "b".repeat(71));
        assert!(multipart(&long, typed).is_none());
    }
}
