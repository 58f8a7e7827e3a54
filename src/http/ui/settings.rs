//! Admin settings pages: institutions (channel, endpoint, server CA,
//! limits, delivery window, pause, client certificates) and users. Each
//! field is checked on its own and refused next to it; nothing is stored
//! until the whole form passes.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::{
    AppState, Chrome, UiError, chrome, jst_time, posted_form, redirect, refuse, render, role_label,
    session,
};
use crate::accounts::{AccountError, NewUser};
use crate::casework::{self, CaseworkError, Role};
use crate::domain::state::Channel;
use crate::domain::window::DeliveryWindow;
use crate::domain::zengin::InstitutionCode;
use crate::store::InstitutionSettings;

struct Choice {
    code: &'static str,
    label: &'static str,
}

struct InstitutionLine {
    code: String,
    name: String,
    kana: String,
}

#[derive(Template)]
#[template(path = "institutions.html")]
struct InstitutionsPage {
    chrome: Chrome,
    query: String,
    items: Vec<InstitutionLine>,
}

pub(super) async fn institutions_page(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    if s.actor.role != Role::Admin {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "管理者のみが使えるページです。",
        ));
    }
    let query =
        web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
            .ok()
            .and_then(|q| q.get("q").cloned())
            .unwrap_or_default();
    let items = if query.trim().is_empty() {
        // Without a search: the institutions that are set up (not paper).
        casework::queue_overview(&state.store, &s.actor)
            .await?
            .into_iter()
            .map(|q| InstitutionLine {
                code: q.code,
                name: q.name,
                kana: String::new(),
            })
            .collect()
    } else {
        casework::search_institutions(&state.store, &query)
            .await?
            .into_iter()
            .map(|i| InstitutionLine {
                code: i.code.to_string(),
                name: i.name,
                kana: i.kana,
            })
            .collect()
    };
    Ok(render(
        StatusCode::OK,
        &InstitutionsPage {
            chrome: chrome(&s, &req),
            query,
            items,
        },
    ))
}

struct CertificateLine {
    fingerprint: String,
    added: String,
}

#[derive(Template)]
#[template(path = "institution.html")]
struct InstitutionPage {
    chrome: Chrome,
    code: String,
    name: String,
    kana: String,
    form_error: Option<String>,
    channels: Vec<Choice>,
    channel: String,
    channel_error: Option<String>,
    endpoint: String,
    endpoint_error: Option<String>,
    server_ca: String,
    server_ca_error: Option<String>,
    max_batch_size: String,
    max_batch_size_error: Option<String>,
    max_in_flight: String,
    max_in_flight_error: Option<String>,
    batch_max_age_ms: String,
    batch_max_age_error: Option<String>,
    window: String,
    window_error: Option<String>,
    paused: bool,
    certificates: Vec<CertificateLine>,
    certificate: String,
    certificate_error: Option<String>,
}

fn institution_code(raw: &str) -> Result<InstitutionCode, UiError> {
    InstitutionCode::parse(raw)
        .map_err(|_| refuse(StatusCode::NOT_FOUND, "その金融機関は見つかりません。"))
}

async fn institution_page(
    state: &AppState,
    s: &super::Session,
    req: &HttpRequest,
    code: &InstitutionCode,
) -> Result<InstitutionPage, UiError> {
    let (inst, certs) = casework::institution_settings(&state.store, &s.actor, code).await?;
    let st = &inst.settings;
    Ok(InstitutionPage {
        chrome: chrome(s, req),
        code: inst.code.to_string(),
        name: inst.name.clone(),
        kana: inst.kana.clone(),
        form_error: None,
        channels: vec![
            Choice {
                code: "push",
                label: "送信（push: Shokai が銀行へ送る）",
            },
            Choice {
                code: "pull",
                label: "取得（pull: 銀行が Shokai から取りに来る）",
            },
            Choice {
                code: "paper",
                label: "紙（照会書を郵送する）",
            },
        ],
        channel: st.channel.as_str().to_owned(),
        channel_error: None,
        endpoint: st.endpoint_url.clone().unwrap_or_default(),
        endpoint_error: None,
        server_ca: st.server_ca_pem.clone().unwrap_or_default(),
        server_ca_error: None,
        max_batch_size: st.max_batch_size.to_string(),
        max_batch_size_error: None,
        max_in_flight: st.max_in_flight.to_string(),
        max_in_flight_error: None,
        batch_max_age_ms: st.batch_max_age_ms.to_string(),
        batch_max_age_error: None,
        window: st.delivery_window.clone().unwrap_or_default(),
        window_error: None,
        paused: st.paused,
        certificates: certs
            .into_iter()
            .map(|(fingerprint, at)| CertificateLine {
                fingerprint,
                added: jst_time(at),
            })
            .collect(),
        certificate: String::new(),
        certificate_error: None,
    })
}

pub(super) async fn institution_form(
    req: HttpRequest,
    state: web::Data<AppState>,
    code: web::Path<String>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    let code = institution_code(&code)?;
    let page = institution_page(&state, &s, &req, &code).await?;
    Ok(render(StatusCode::OK, &page))
}

fn number(raw: &str, range: std::ops::RangeInclusive<i64>, slot: &mut Option<String>) -> i64 {
    match raw.trim().parse::<i64>() {
        Ok(n) if range.contains(&n) => n,
        _ => {
            *slot = Some(format!(
                "{}〜{} の整数で入力してください",
                range.start(),
                range.end()
            ));
            0
        }
    }
}

pub(super) async fn institution_submit(
    req: HttpRequest,
    state: web::Data<AppState>,
    code: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let (s, form) = posted_form(&req, &state, &body).await?;
    let code = institution_code(&code)?;
    let mut page = institution_page(&state, &s, &req, &code).await?;
    page.channel = form.get("channel");
    page.endpoint = form.get("endpoint");
    page.server_ca = form.get("server_ca");
    page.max_batch_size = form.get("max_batch_size");
    page.max_in_flight = form.get("max_in_flight");
    page.batch_max_age_ms = form.get("batch_max_age_ms");
    page.window = form.get("window");
    page.paused = form.get("paused") == "1";
    let channel = match Channel::parse(&page.channel) {
        Ok(c) => Some(c),
        Err(_) => {
            page.channel_error = Some("経路を選んでください".to_owned());
            None
        }
    };
    if channel == Some(Channel::Push) {
        if !page.endpoint.starts_with("https://") {
            page.endpoint_error = Some("push には https:// で始まる送信先URLが必要です".to_owned());
        }
        if crate::tls::parse_certs(&page.server_ca, "server CA").is_err() {
            page.server_ca_error = Some("push には銀行のCA証明書（PEM）が必要です".to_owned());
        }
    }
    let max_batch_size = number(
        &page.max_batch_size,
        1..=10_000,
        &mut page.max_batch_size_error,
    );
    let max_in_flight = number(&page.max_in_flight, 1..=64, &mut page.max_in_flight_error);
    let batch_max_age_ms = number(
        &page.batch_max_age_ms,
        0..=86_400_000,
        &mut page.batch_max_age_error,
    );
    if !page.window.is_empty() && DeliveryWindow::parse(&page.window).is_err() {
        page.window_error =
            Some("「weekdays 08:00-19:00」「daily 09:00-17:00」「mon,wed 08:00-12:00」の形で入力してください".to_owned());
    }
    let errors = [
        &page.channel_error,
        &page.endpoint_error,
        &page.server_ca_error,
        &page.max_batch_size_error,
        &page.max_in_flight_error,
        &page.batch_max_age_error,
        &page.window_error,
    ]
    .iter()
    .any(|e| e.is_some());
    let Some(channel) = channel.filter(|_| !errors) else {
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    };
    let settings = InstitutionSettings {
        channel,
        endpoint_url: (!page.endpoint.is_empty()).then(|| page.endpoint.clone()),
        server_ca_pem: (!page.server_ca.is_empty()).then(|| page.server_ca.clone()),
        max_batch_size,
        max_in_flight,
        batch_max_age_ms,
        paused: page.paused,
        delivery_window: (!page.window.is_empty()).then(|| page.window.clone()),
    };
    match casework::update_institution(&state.store, &s.actor, &code, &settings).await {
        Ok(()) => {
            state.wake.notify_one();
            Ok(redirect(&format!(
                "/ui/admin/institutions/{code}?done=saved"
            )))
        }
        Err(CaseworkError::Invalid(e)) => {
            page.form_error = Some(e.message);
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn add_certificate(
    req: HttpRequest,
    state: web::Data<AppState>,
    code: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let (s, form) = posted_form(&req, &state, &body).await?;
    let code = institution_code(&code)?;
    let pem = form.get("certificate");
    match casework::add_institution_certificate(&state.store, &s.actor, &code, &pem).await {
        Ok(_) => Ok(redirect(&format!(
            "/ui/admin/institutions/{code}?done=saved"
        ))),
        Err(CaseworkError::Invalid(_)) => {
            let mut page = institution_page(&state, &s, &req, &code).await?;
            page.certificate = pem;
            page.certificate_error = Some("PEM 形式の証明書を貼り付けてください".to_owned());
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(e) => Err(e.into()),
    }
}

struct UserLine {
    username: String,
    display_name: String,
    role: &'static str,
    office: String,
    created: String,
    disabled: bool,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    chrome: Chrome,
    users: Vec<UserLine>,
    roles: Vec<Choice>,
    form_error: Option<String>,
    username: String,
    username_error: Option<String>,
    display_name: String,
    display_name_error: Option<String>,
    role: String,
    office: String,
    office_error: Option<String>,
    password_error: Option<String>,
}

async fn users_page_for(
    state: &AppState,
    s: &super::Session,
    req: &HttpRequest,
) -> Result<UsersPage, UiError> {
    let users = casework::users(&state.store, &s.actor).await?;
    Ok(UsersPage {
        chrome: chrome(s, req),
        users: users
            .into_iter()
            .map(|u| UserLine {
                role: Role::parse(&u.role).map(role_label).unwrap_or("?"),
                username: u.username,
                display_name: u.display_name,
                office: u.office,
                created: jst_time(u.created_at),
                disabled: u.disabled_at.is_some(),
            })
            .collect(),
        roles: [
            Role::Caseworker,
            Role::Supervisor,
            Role::Admin,
            Role::Auditor,
        ]
        .into_iter()
        .map(|r| Choice {
            code: r.as_str(),
            label: role_label(r),
        })
        .collect(),
        form_error: None,
        username: String::new(),
        username_error: None,
        display_name: String::new(),
        display_name_error: None,
        role: "caseworker".to_owned(),
        office: s.actor.office.clone(),
        office_error: None,
        password_error: None,
    })
}

pub(super) async fn users_page(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    let page = users_page_for(&state, &s, &req).await?;
    Ok(render(StatusCode::OK, &page))
}

pub(super) async fn create_user(
    req: HttpRequest,
    state: web::Data<AppState>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let (s, form) = posted_form(&req, &state, &body).await?;
    let mut page = users_page_for(&state, &s, &req).await?;
    page.username = form.get("username");
    page.display_name = form.get("display_name");
    page.role = form.get("role");
    page.office = form.get("office");
    let Ok(role) = Role::parse(&page.role) else {
        page.form_error = Some("役割を選んでください".to_owned());
        return Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page));
    };
    let created = casework::create_user(
        &state.store,
        &s.actor,
        NewUser {
            username: page.username.clone(),
            display_name: page.display_name.clone(),
            // Passwords keep their spaces: FormData trims, so read it raw.
            password: form
                .0
                .iter()
                .find(|(k, _)| k == "password")
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
            role,
            office: page.office.clone(),
        },
    )
    .await?;
    match created {
        Ok(u) => {
            tracing::info!(user = %u.username, by = %s.actor.id, "user created");
            Ok(redirect("/ui/admin/users?done=saved"))
        }
        Err(AccountError::Invalid(code, _)) => {
            let (slot, text) = match code {
                "invalid_username" => (
                    &mut page.username_error,
                    "3〜32文字の半角英小文字・数字・. _ - で入力してください",
                ),
                "user_exists" => (&mut page.username_error, "このユーザー名は使われています"),
                "invalid_office" => (&mut page.office_error, "6桁の事務所番号を入力してください"),
                "invalid_display_name" => (
                    &mut page.display_name_error,
                    "表示名を1〜40文字で入力してください",
                ),
                "weak_password" => (
                    &mut page.password_error,
                    "パスワードは12文字以上にしてください",
                ),
                _ => (&mut page.form_error, "登録できませんでした"),
            };
            *slot = Some(text.to_owned());
            Ok(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
        }
        Err(e) => {
            tracing::error!(error = %e, "ui: user creation failed");
            Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, super::TRY_AGAIN))
        }
    }
}

pub(super) async fn set_user_disabled(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let (s, _) = posted_form(&req, &state, &body).await?;
    let disabled = match path.1.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return Err(refuse(StatusCode::NOT_FOUND, "その操作はありません。")),
    };
    casework::set_user_disabled(&state.store, &s.actor, &path.0, disabled).await?;
    Ok(redirect("/ui/admin/users?done=saved"))
}
