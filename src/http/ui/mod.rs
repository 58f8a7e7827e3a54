//! The web UI: server-rendered pages in Japanese (askama templates under
//! `templates/`, escaped by default), usable without JavaScript. Sessions
//! are a random cookie (HttpOnly, SameSite=Strict, Secure behind TLS) whose
//! hash the store keeps; every form carries the session's CSRF token.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use serde::Deserialize;

mod admin;
mod forms;
mod paper;
mod settings;

use super::AppState;
use crate::accounts::{self, AccountError};
use crate::casework::{self, Actor, CaseworkError, FullCaseFile, Role};
use crate::domain::answer::Outcome;
use crate::domain::department::{Department, FetchStatus};
use crate::domain::ids::{CaseId, InquiryId};
use crate::domain::state::InquiryState;
use crate::domain::time::{jst, to_utc, wareki};
use crate::store::UserRecord;

const COOKIE: &str = "shokai_session";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(|| async { redirect("/ui") }))
        .service(
            web::scope("/ui")
                .route("", web::get().to(home))
                .route("/login", web::get().to(login_page))
                .route("/login", web::post().to(login_submit))
                .route("/logout", web::post().to(logout))
                .route("/cases/new", web::get().to(forms::new_case_page))
                .route("/cases/new", web::post().to(forms::new_case_submit))
                .route("/cases/{id}", web::get().to(case_page))
                .route(
                    "/cases/{id}/requests/new",
                    web::get().to(forms::new_request_page),
                )
                .route(
                    "/cases/{id}/requests/new",
                    web::post().to(forms::new_request_submit),
                )
                .route("/admin/queue", web::get().to(admin::queue_page))
                // Before `{code}/{action}`, which would take it otherwise.
                .route(
                    "/admin/institutions/{code}/certificates",
                    web::post().to(settings::add_certificate),
                )
                .route(
                    "/admin/institutions/{code}/{action}",
                    web::post().to(admin::set_paused),
                )
                .route(
                    "/admin/batches/{id}/retry",
                    web::post().to(admin::retry_batch),
                )
                .route("/admin/letters", web::get().to(paper::letters_page))
                .route("/admin/letters/{id}", web::get().to(paper::letter_page))
                .route(
                    "/admin/letters/{id}/mailed",
                    web::post().to(paper::mark_mailed),
                )
                // Uploads are larger than forms: their own cap (the handler checks it too).
                .service(
                    web::resource("/admin/letters/{id}/answers")
                        .app_data(web::PayloadConfig::new(paper::MAX_UPLOAD_BYTES))
                        .route(web::post().to(paper::upload_answers)),
                )
                .route(
                    "/admin/letters/{id}/inquiries/{inquiry}/answer",
                    web::get().to(paper::answer_form),
                )
                .route(
                    "/admin/letters/{id}/inquiries/{inquiry}/answer",
                    web::post().to(paper::answer_submit),
                )
                .route(
                    "/admin/institutions",
                    web::get().to(settings::institutions_page),
                )
                .route(
                    "/admin/institutions/{code}",
                    web::get().to(settings::institution_form),
                )
                .route(
                    "/admin/institutions/{code}",
                    web::post().to(settings::institution_submit),
                )
                .route("/admin/users", web::get().to(settings::users_page))
                .route("/admin/users", web::post().to(settings::create_user))
                .route(
                    "/admin/users/{username}/{action}",
                    web::post().to(settings::set_user_disabled),
                )
                .route("/admin/standing-list", web::get().to(admin::standing_page))
                .route(
                    "/admin/standing-list/{action}",
                    web::post().to(admin::standing_edit),
                )
                .route(
                    "/cases/{id}/department-inquiry",
                    web::post().to(department_inquiry),
                )
                .route(
                    "/cases/{id}/inquiries/{inquiry}/cancel",
                    web::post().to(cancel_inquiry),
                )
                .route(
                    "/cases/{id}/alerts/{alert}/acknowledge",
                    web::post().to(acknowledge_alert),
                ),
        );
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther()
        .insert_header(("location", to))
        .finish()
}

/// Renders a page with the headers every page gets: no caching of personal
/// data, no framing, and only this origin's resources.
fn render<T: Template>(status: StatusCode, page: &T) -> HttpResponse {
    match page.render() {
        Ok(body) => HttpResponse::build(status)
            .content_type("text/html; charset=utf-8")
            .insert_header(("cache-control", "no-store"))
            .insert_header(("x-frame-options", "DENY"))
            .insert_header(("referrer-policy", "same-origin"))
            .insert_header((
                "content-security-policy",
                "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
            ))
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "template failed");
            HttpResponse::InternalServerError().finish()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    title: &'static str,
    message: String,
}

fn error_page(status: StatusCode, message: impl Into<String>) -> HttpResponse {
    let title = match status {
        StatusCode::FORBIDDEN => "権限がありません",
        StatusCode::NOT_FOUND => "見つかりません",
        StatusCode::CONFLICT => "この操作はできません",
        StatusCode::UNPROCESSABLE_ENTITY | StatusCode::BAD_REQUEST => "入力に誤りがあります",
        StatusCode::TOO_MANY_REQUESTS => "しばらくお待ちください",
        _ => "エラーが発生しました",
    };
    render(
        status,
        &ErrorPage {
            title,
            message: message.into(),
        },
    )
}

/// Why a page is not shown: the login page, or an error page.
#[derive(Debug)]
enum UiError {
    Login,
    Page(StatusCode, String),
}

impl std::fmt::Display for UiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Login => f.write_str("login required"),
            Self::Page(status, message) => write!(f, "{status}: {message}"),
        }
    }
}

impl actix_web::ResponseError for UiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Login => StatusCode::SEE_OTHER,
            Self::Page(status, _) => *status,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Login => redirect("/ui/login"),
            Self::Page(status, message) => error_page(*status, message.clone()),
        }
    }
}

fn refuse(status: StatusCode, message: impl Into<String>) -> UiError {
    UiError::Page(status, message.into())
}

const TRY_AGAIN: &str = "時間をおいてやり直してください。";

impl From<CaseworkError> for UiError {
    fn from(e: CaseworkError) -> Self {
        match e {
            CaseworkError::NotFound(what) => {
                refuse(StatusCode::NOT_FOUND, format!("{what} は見つかりません。"))
            }
            CaseworkError::Forbidden(_) => refuse(
                StatusCode::FORBIDDEN,
                "このケースは他の事務所のものです。閲覧・操作はできません。",
            ),
            CaseworkError::Conflict(why) | CaseworkError::IdempotencyConflict(why) => {
                refuse(StatusCode::CONFLICT, why)
            }
            CaseworkError::Invalid(e) => refuse(StatusCode::UNPROCESSABLE_ENTITY, e.message),
            CaseworkError::Store(e) => {
                tracing::error!(error = %e, "ui: store error");
                refuse(StatusCode::INTERNAL_SERVER_ERROR, TRY_AGAIN)
            }
        }
    }
}

/// The logged-in user behind a request.
struct Session {
    actor: Actor,
    csrf: String,
    user: UserRecord,
    token: String,
}

fn cookie(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all("cookie")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// The session, or a redirect to the login page.
async fn session(req: &HttpRequest, state: &AppState) -> Result<Session, UiError> {
    let Some(token) = cookie(req, COOKIE).filter(|t| !t.is_empty()) else {
        return Err(UiError::Login);
    };
    match accounts::session_actor(&state.store, &token).await {
        Ok(Some((actor, csrf, user))) => Ok(Session {
            actor,
            csrf,
            user,
            token,
        }),
        Ok(None) => Err(UiError::Login),
        Err(e) => {
            tracing::error!(error = %e, "ui: session lookup failed");
            Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, TRY_AGAIN))
        }
    }
}

/// The session and the form of a POST, its CSRF token checked: what every
/// form handler starts with, before it reads or changes anything.
async fn posted_form(
    req: &HttpRequest,
    state: &AppState,
    body: &[u8],
) -> Result<(Session, FormData), UiError> {
    let s = session(req, state).await?;
    let form = FormData::parse(body)?;
    check_form(req, &s, &form.get("csrf"))?;
    Ok((s, form))
}

/// When the browser says where a form came from, it must be this site.
fn same_origin(req: &HttpRequest) -> bool {
    match req.headers().get("origin").and_then(|o| o.to_str().ok()) {
        None => true,
        Some(origin) => {
            let info = req.connection_info();
            origin == format!("{}://{}", info.scheme(), info.host())
        }
    }
}

/// Form posts must carry the session's CSRF token and, when the browser
/// says where the form came from, come from this site.
fn check_form(req: &HttpRequest, session: &Session, csrf: &str) -> Result<(), UiError> {
    let token_ok = csrf.len() == session.csrf.len()
        && csrf
            .bytes()
            .zip(session.csrf.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if token_ok && same_origin(req) {
        Ok(())
    } else {
        Err(refuse(
            StatusCode::FORBIDDEN,
            "フォームの有効期限が切れています。ページを読み込み直してから操作してください。",
        ))
    }
}

fn role_label(role: Role) -> &'static str {
    match role {
        Role::Caseworker => "ケースワーカー",
        Role::Supervisor => "査察指導員",
        Role::Admin => "管理者",
        Role::Auditor => "監査担当",
    }
}

/// What every page's header shows.
struct Chrome {
    can_file: bool,
    is_admin: bool,
    display_name: String,
    role_label: &'static str,
    office: String,
    csrf: String,
    flash: Option<&'static str>,
}

fn chrome(s: &Session, req: &HttpRequest) -> Chrome {
    let flash = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .ok()
        .and_then(|q| q.get("done").map(|d| flash_text(d)))
        .flatten();
    Chrome {
        can_file: s.actor.role.can_file(),
        is_admin: s.actor.role == Role::Admin,
        display_name: s.user.display_name.clone(),
        role_label: role_label(s.actor.role),
        office: s.actor.office.clone(),
        csrf: s.csrf.clone(),
        flash,
    }
}

/// Messages after a redirect, by code: the URL never carries text.
fn flash_text(code: &str) -> Option<&'static str> {
    Some(match code {
        "cancelled" => "照会を取り消しました。",
        "acknowledged" => "アラートを確認済にしました。",
        "inquired" => "庁内総合照会が完了しました。",
        "inquired_partial" => {
            "庁内総合照会を実行しましたが、一部の部署から回答がありませんでした。"
        }
        "created" => "ケースを登録しました。",
        "requested" => "照会を登録しました。順次、金融機関へ送信されます。",
        "paused" => "送信を停止しました。",
        "resumed" => "送信を再開しました。",
        "retried" => "バッチを再送します。",
        "saved" => "保存しました。",
        "mailed" => "郵送済にしました。照会は回答待ちになりました。",
        "answered" => "回答を登録しました。",
        _ => return None,
    })
}

/// The domain's refusal in Japanese, for the message next to a field. The
/// domain speaks English with stable codes; the page translates the ones a
/// form can meet and shows any other as it is.
fn ja(e: &crate::domain::DomainError) -> String {
    let m = e.message.as_str();
    let fixed = [
        ("birth_date is in the future", "生年月日が未来の日付です"),
        ("birth_date is before 1900", "生年月日が1900年より前です"),
        ("reference_date is in the future", "基準日が未来の日付です"),
        (
            "a period is only for transactions",
            "期間は取引履歴を照会するときだけ入力してください",
        ),
        (
            "the period's from is after its to",
            "期間の開始が終了より後です",
        ),
        (
            "the period ends in the future",
            "期間の終了が未来の日付です",
        ),
        (
            "the period is longer than ten years",
            "期間が10年を超えています",
        ),
        ("due_date is in the past", "回答期限が過去の日付です"),
        (
            "due_date is more than a year ahead",
            "回答期限が1年より先です",
        ),
    ];
    if let Some((_, ja)) = fixed.iter().find(|(en, _)| m.ends_with(en)) {
        return (*ja).to_owned();
    }
    match e.code {
        "unknown_institution" => match m.split_whitespace().nth(1) {
            Some(code) => format!("{code} は全銀の金融機関一覧にありません"),
            None => "全銀の金融機関一覧にない金融機関です".to_owned(),
        },
        "invalid_kana" => "カナ（ひらがな・カタカナ）で入力してください".to_owned(),
        "invalid_text" if m.contains("must not be empty") => "入力してください".to_owned(),
        "invalid_text" if m.contains("control characters") => {
            "使えない文字が含まれています".to_owned()
        }
        "invalid_text" => match m.rsplit_once("at most ") {
            Some((_, rest)) => format!(
                "{}文字以内で入力してください",
                rest.split_whitespace().next().unwrap_or("")
            ),
            None => m.to_owned(),
        },
        _ => m.to_owned(),
    }
}

/// Date and time in JST, e.g. `2026-11-24 09:05`.
pub fn jst_time(ms: i64) -> String {
    to_utc(ms)
        .with_timezone(&jst())
        .format("%Y-%m-%d %H:%M")
        .to_string()
}

/// Whole yen with thousands separators, e.g. `¥1,234,567`.
pub fn yen(amount: i64) -> String {
    let digits = amount.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    format!("{}¥{out}", if amount < 0 { "-" } else { "" })
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    username: String,
    error: Option<String>,
}

async fn login_page() -> HttpResponse {
    render(
        StatusCode::OK,
        &LoginPage {
            username: String::new(),
            error: None,
        },
    )
}

async fn login_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<LoginForm>,
) -> HttpResponse {
    // No session yet, so no CSRF token: a login posted from another site
    // (to log the victim into the attacker's account) is refused by Origin.
    if !same_origin(&req) {
        return error_page(
            StatusCode::FORBIDDEN,
            "このページからはログインできません。",
        );
    }
    let client = req
        .peer_addr()
        .map(|a| a.ip().to_string())
        .unwrap_or_default();
    match accounts::login(&state.store, &form.username, &form.password, &client).await {
        Ok(s) => {
            let secure = if req.connection_info().scheme() == "https" {
                "; Secure"
            } else {
                ""
            };
            HttpResponse::SeeOther()
                .insert_header(("location", "/ui"))
                .insert_header((
                    "set-cookie",
                    format!(
                        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
                        s.token,
                        accounts::SESSION_LENGTH.as_secs()
                    ),
                ))
                .finish()
        }
        Err(e) => {
            let status = match e {
                AccountError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
                AccountError::BadCredentials | AccountError::Invalid(..) => {
                    StatusCode::UNAUTHORIZED
                }
                AccountError::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let message = match e {
                AccountError::Throttled(d) => format!(
                    "ログインの失敗が続いたため、{} 分間ログインできません。",
                    d.as_secs().div_ceil(60)
                ),
                AccountError::Store(_) => "時間をおいてやり直してください。".to_owned(),
                _ => "ユーザー名またはパスワードが違います。".to_owned(),
            };
            render(
                status,
                &LoginPage {
                    username: form.username.chars().take(64).collect(),
                    error: Some(message),
                },
            )
        }
    }
}

/// A form body with repeated fields (checkbox lists), capped in size.
struct FormData(Vec<(String, String)>);

const MAX_FORM_BYTES: usize = 64 * 1024;

impl FormData {
    fn parse(body: &[u8]) -> Result<FormData, UiError> {
        if body.len() > MAX_FORM_BYTES {
            return Err(refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "入力が大きすぎます。",
            ));
        }
        Ok(FormData(
            form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }

    /// The field's first value, trimmed; empty when absent.
    fn get(&self, name: &str) -> String {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_default()
    }

    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim().to_owned())
            .collect()
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(
    req: HttpRequest,
    state: web::Data<AppState>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    check_form(&req, &s, &form.csrf)?;
    if let Err(e) = accounts::logout(&state.store, &s.token).await {
        tracing::error!(error = %e, "ui: logout failed");
    }
    Ok(HttpResponse::SeeOther()
        .insert_header(("location", "/ui/login"))
        .insert_header((
            "set-cookie",
            format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
        ))
        .finish())
}

struct CaseLine {
    id: String,
    case_number: String,
    office: String,
    subjects: i64,
    waiting: i64,
    overdue: i64,
    open_alerts: i64,
    created: String,
}

struct HomeAlert {
    case_id: String,
    case_number: String,
    created: String,
    detail: String,
    action: String,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    chrome: Chrome,
    alerts: Vec<HomeAlert>,
    cases: Vec<CaseLine>,
}

/// What an alert suggests, in Japanese.
fn alert_action(a: &crate::store::AlertRecord) -> String {
    a.change
        .as_ref()
        .map(|c| c.suggested_action.text_ja().to_owned())
        .unwrap_or_else(|| "決定後に回答が届きました。決定を見直してください".to_owned())
}

async fn home(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    let cases = casework::open_cases(&state.store, &s.actor, 500).await?;
    let alerts = casework::open_alerts(&state.store, &s.actor, 50).await?;
    Ok(render(
        StatusCode::OK,
        &HomePage {
            chrome: chrome(&s, &req),
            alerts: alerts
                .into_iter()
                .map(|(case, number, a)| HomeAlert {
                    case_id: case.to_string(),
                    case_number: number,
                    created: jst_time(a.created_at),
                    action: alert_action(&a),
                    detail: a.detail,
                })
                .collect(),
            cases: cases
                .into_iter()
                .map(|c| CaseLine {
                    id: c.id.to_string(),
                    case_number: c.case_number,
                    office: c.office,
                    subjects: c.subjects,
                    waiting: c.waiting,
                    overdue: c.overdue,
                    open_alerts: c.open_alerts,
                    created: jst_time(c.created_at),
                })
                .collect(),
        },
    ))
}

struct SubjectLine {
    kana: String,
    kanji: String,
    birth: String,
    address: String,
    accounts: usize,
    total: String,
}

struct InquiryLine {
    id: String,
    subject: String,
    institution: String,
    state: &'static str,
    state_label: &'static str,
    state_class: &'static str,
    due: String,
    overdue: bool,
    attempts: i64,
    updated: String,
    cancellable: bool,
}

struct AccountLine {
    branch: String,
    kind: &'static str,
    number: String,
    holder: String,
    balance: String,
    as_of: String,
}

struct FindingLine {
    subject: String,
    institution: String,
    outcome: &'static str,
    note: String,
    received: String,
    accounts: Vec<AccountLine>,
}

struct RecordLine {
    subject: String,
    kind: &'static str,
    effective: String,
    amounts: String,
    attributes: String,
}

struct DepartmentBlock {
    name: &'static str,
    label: &'static str,
    status: &'static str,
    status_class: &'static str,
    fetched: String,
    error: Option<String>,
    records: Vec<RecordLine>,
}

struct AlertLine {
    id: i64,
    created: String,
    detail: String,
    action: String,
    acknowledged: Option<String>,
}

struct TimelineLine {
    at: String,
    event: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "case.html")]
struct CasePage {
    chrome: Chrome,
    case_id: String,
    case_number: String,
    office: String,
    created: String,
    decision: Option<String>,
    can_file: bool,
    subjects: Vec<SubjectLine>,
    alerts: Vec<AlertLine>,
    inquiries: Vec<InquiryLine>,
    findings: Vec<FindingLine>,
    departments: Vec<DepartmentBlock>,
    timeline: Vec<TimelineLine>,
}

fn state_label(s: InquiryState) -> (&'static str, &'static str) {
    match s {
        InquiryState::Queued => ("送信待ち", ""),
        InquiryState::Batched => ("送信準備済", ""),
        InquiryState::Delivered => ("回答待ち", ""),
        InquiryState::Answered => ("回答あり", "ok"),
        InquiryState::NotFound => ("該当なし", "ok"),
        InquiryState::Refused => ("回答拒否", "warn"),
        InquiryState::Failed => ("送達失敗", "warn"),
        InquiryState::Cancelled => ("取消", ""),
    }
}

fn fetch_label(s: FetchStatus) -> (&'static str, &'static str) {
    match s {
        FetchStatus::Complete => ("取得済", "ok"),
        FetchStatus::Partial => ("一部未回答", "warn"),
        FetchStatus::Failed => ("取得失敗", "warn"),
    }
}

async fn case_page(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    let id = CaseId::parse(&id).map_err(|_| case_not_found())?;
    let file = casework::full_case_file(&state.store, &s.actor, &id).await?;
    let mut names = HashMap::new();
    for code in file.bank.inquiries.iter().map(|i| i.institution.clone()) {
        if let std::collections::hash_map::Entry::Vacant(slot) = names.entry(code.to_string())
            && let Ok(Some(inst)) = state.store.institution(&code).await
        {
            slot.insert(inst.name);
        }
    }
    Ok(render(StatusCode::OK, &case_view(&s, &req, &file, &names)))
}

fn case_not_found() -> UiError {
    refuse(StatusCode::NOT_FOUND, "そのケースは見つかりません。")
}

fn case_view(
    s: &Session,
    req: &HttpRequest,
    file: &FullCaseFile,
    institution_names: &HashMap<String, String>,
) -> CasePage {
    let case = &file.bank.case;
    let subject_name: HashMap<String, String> = case
        .subjects
        .iter()
        .map(|s| (s.id.to_string(), s.kana_name.to_string()))
        .collect();
    let name_of = |id: &str| subject_name.get(id).cloned().unwrap_or_default();
    let institution = |code: &str| match institution_names.get(code) {
        Some(n) => format!("{code} {n}"),
        None => code.to_owned(),
    };
    let mut findings = Vec::new();
    for e in file.bank.entries.iter().filter(|e| !e.superseded) {
        let subject = e.subject_id.to_string();
        let (outcome, note, accounts) = match &e.outcome {
            Outcome::Found { accounts, .. } => {
                let lines = accounts
                    .iter()
                    .map(|a| AccountLine {
                        branch: a.branch.to_string(),
                        kind: a.account_type.label_ja(),
                        number: a.number.clone(),
                        holder: a.holder_kana.clone(),
                        balance: a.balance.map(yen).unwrap_or_else(|| "—".to_owned()),
                        as_of: a.as_of.map(wareki).unwrap_or_default(),
                    })
                    .collect();
                ("口座あり", String::new(), lines)
            }
            Outcome::NotFound => ("該当なし", "口座はありません".to_owned(), Vec::new()),
            Outcome::Refused { code, reason } => {
                ("回答拒否", format!("{code} {reason}"), Vec::new())
            }
        };
        findings.push(FindingLine {
            subject: name_of(&subject),
            institution: format!("{} {}", e.institution, e.institution_name),
            outcome,
            note,
            received: jst_time(e.received_at),
            accounts,
        });
    }
    let subjects = case
        .subjects
        .iter()
        .zip(file.bank.balance_totals())
        .map(|(sub, t)| {
            let (n, total) = (t.accounts, t.balance);
            SubjectLine {
                kana: sub.kana_name.to_string(),
                kanji: sub.kanji_name.clone().unwrap_or_default(),
                birth: wareki(sub.birth_date),
                address: sub.address.clone().unwrap_or_default(),
                accounts: n,
                total: yen(total),
            }
        })
        .collect();
    let inquiries = file
        .bank
        .inquiries
        .iter()
        .map(|i| {
            let (label, class) = state_label(i.state);
            InquiryLine {
                id: i.id.to_string(),
                subject: name_of(i.subject_id.as_str()),
                institution: institution(i.institution.as_str()),
                state: i.state.as_str(),
                state_label: label,
                state_class: class,
                due: wareki(i.due_date),
                overdue: i.overdue,
                attempts: i.attempts,
                updated: jst_time(i.updated_at),
                cancellable: !i.state.is_final(),
            }
        })
        .collect();
    let departments = Department::ALL
        .into_iter()
        .filter_map(|d| {
            let fetch = file.last_fetch(d)?;
            let (status, status_class) = fetch_label(fetch.status);
            let records = file
                .departments
                .iter()
                .filter(|r| r.record.department == d)
                .map(|r| RecordLine {
                    subject: name_of(r.record.subject.as_str()),
                    kind: record_kind_label(r.record.kind),
                    effective: wareki(r.record.effective_date),
                    amounts: r
                        .record
                        .amounts
                        .iter()
                        .map(|(k, v)| format!("{} {}", field_label(k), yen(*v)))
                        .collect::<Vec<_>>()
                        .join("、"),
                    attributes: r
                        .record
                        .attributes
                        .iter()
                        .map(|(k, v)| format!("{}: {v}", field_label(k)))
                        .collect::<Vec<_>>()
                        .join("、"),
                })
                .collect();
            Some(DepartmentBlock {
                name: d.as_str(),
                label: d.label_ja(),
                status,
                status_class,
                fetched: jst_time(fetch.started_at),
                error: fetch.error.clone(),
                records,
            })
        })
        .collect();
    let alerts = file
        .alerts
        .iter()
        .map(|a| AlertLine {
            id: a.id,
            created: jst_time(a.created_at),
            detail: a.detail.clone(),
            action: alert_action(a),
            acknowledged: a
                .acknowledged_at
                .map(|at| format!("確認済 {}", jst_time(at))),
        })
        .collect();
    CasePage {
        chrome: chrome(s, req),
        case_id: case.id.to_string(),
        case_number: case.case_number.clone(),
        office: case.office.clone(),
        created: jst_time(case.created_at),
        decision: case.decision_date.map(wareki),
        can_file: s.actor.role.can_file(),
        subjects,
        alerts,
        inquiries,
        findings,
        departments,
        timeline: file
            .timeline
            .iter()
            .map(|t| TimelineLine {
                at: jst_time(t.at),
                event: t.event.clone(),
                detail: t.detail.clone(),
            })
            .collect(),
    }
}

fn record_kind_label(k: crate::domain::department::RecordKind) -> &'static str {
    use crate::domain::department::RecordKind as K;
    match k {
        K::Residence => "住民登録",
        K::Household => "世帯",
        K::AssessedIncome => "課税所得",
        K::DeclaredIncome => "申告所得",
        K::ChildAllowance => "児童手当",
        K::ChildRearingAllowance => "児童扶養手当",
        K::SpecialChildRearingAllowance => "特別児童扶養手当",
        K::HealthInsurance => "国民健康保険",
        K::CareCertification => "要介護認定",
        K::CarePremium => "介護保険料",
        K::PensionBenefit => "年金",
    }
}

fn field_label(name: &str) -> String {
    match name {
        "annual_income" => "年間所得",
        "monthly_amount" => "月額",
        "annual_premium" => "年間保険料",
        "annual_amount" => "年額",
        "status" => "状態",
        "fiscal_year" => "年度",
        "income_type" => "所得の種類",
        "household_id" => "世帯番号",
        "relationship" => "続柄",
        "address" => "住所",
        "member_count" => "世帯人数",
        "members" => "世帯員",
        "children" => "対象児童数",
        "grade" => "等級",
        "care_level" => "要介護度",
        "valid_until" => "有効期限",
        "pension_type" => "年金の種類",
        "payer" => "支払者",
        other => other,
    }
    .to_owned()
}

async fn department_inquiry(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    check_form(&req, &s, &form.csrf)?;
    let id = CaseId::parse(&id).map_err(|_| case_not_found())?;
    let run = casework::department_inquiry(&state.store, &state.connectors, &s.actor, &id).await?;
    let done = if run.partial() {
        "inquired_partial"
    } else {
        "inquired"
    };
    Ok(redirect(&format!("/ui/cases/{id}?done={done}")))
}

async fn cancel_inquiry(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    check_form(&req, &s, &form.csrf)?;
    let (Ok(case), Ok(inquiry)) = (CaseId::parse(&path.0), InquiryId::parse(&path.1)) else {
        return Err(refuse(StatusCode::NOT_FOUND, "その照会は見つかりません。"));
    };
    casework::cancel_inquiry(&state.store, &s.actor, &inquiry).await?;
    Ok(redirect(&format!("/ui/cases/{case}?done=cancelled")))
}

async fn acknowledge_alert(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, i64)>,
    form: web::Form<CsrfForm>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    check_form(&req, &s, &form.csrf)?;
    let case = CaseId::parse(&path.0).map_err(|_| case_not_found())?;
    casework::acknowledge_alert(&state.store, &s.actor, &case, path.1).await?;
    Ok(redirect(&format!("/ui/cases/{case}?done=acknowledged")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_refusals_read_in_japanese() {
        use crate::domain::DomainError;
        let e = |code, m: &str| ja(&DomainError::new(code, m));
        assert_eq!(
            e("invalid_date", "birth_date is in the future"),
            "生年月日が未来の日付です"
        );
        assert_eq!(
            e(
                "invalid_text",
                "kanji_name is 40 characters; at most 35 are allowed"
            ),
            "35文字以内で入力してください"
        );
        assert_eq!(e("other", "as it is"), "as it is");
    }

    #[test]
    fn yen_has_separators() {
        assert_eq!(yen(0), "¥0");
        assert_eq!(yen(1_234_567), "¥1,234,567");
        assert_eq!(yen(-1000), "-¥1,000");
        assert_eq!(yen(999), "¥999");
    }
}
