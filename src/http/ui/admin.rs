//! The admin pages: the delivery queue per institution (refreshing itself),
//! pause and resume, dead batches sent again, and the office's standing
//! list of institutions to ask.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;

use super::{
    AppState, Chrome, UiError, chrome, jst_time, posted_form, redirect, refuse, render, session,
};
use crate::casework;
use crate::domain::ids::BatchId;
use crate::domain::state::BatchState;
use crate::domain::time::now_millis;
use crate::domain::zengin::InstitutionCode;

struct QueueLine {
    code: String,
    name: String,
    channel: &'static str,
    paused: bool,
    queued: i64,
    in_flight: i64,
    awaiting: i64,
    answered: i64,
    failed: i64,
    overdue: i64,
    oldest: String,
    breaker_open: bool,
    failures: i64,
    answer_times: String,
    response_rate: String,
    last_error: String,
}

struct DeadLine {
    id: String,
    institution: String,
    inquiries: i64,
    attempts: i64,
    error: String,
}

#[derive(Template)]
#[template(path = "queue.html")]
struct QueuePage {
    chrome: Chrome,
    /// `?refresh=off` stops the page reloading itself (for printing, or a
    /// test reading it).
    refresh: bool,
    now: String,
    rows: Vec<QueueLine>,
    dead: Vec<DeadLine>,
}

/// `3日 4時間`, `25分`, `12秒`.
fn age(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}秒"),
        60..3600 => format!("{}分", s / 60),
        3600..86_400 => format!("{}時間{}分", s / 3600, s % 3600 / 60),
        _ => format!("{}日{}時間", s / 86_400, s % 86_400 / 3600),
    }
}

fn channel_label(channel: &str) -> &'static str {
    match channel {
        "push" => "送信（push）",
        "pull" => "取得（pull）",
        _ => "紙",
    }
}

pub(super) async fn queue_page(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    let rows = casework::queue_overview(&state.store, &s.actor).await?;
    let dead = casework::batches(&state.store, &s.actor, BatchState::Dead, 100).await?;
    Ok(render(
        StatusCode::OK,
        &QueuePage {
            refresh: !req.query_string().contains("refresh=off"),
            chrome: chrome(&s, &req),
            now: jst_time(now_millis()),
            rows: rows
                .into_iter()
                .map(|q| QueueLine {
                    channel: channel_label(&q.channel),
                    oldest: q
                        .oldest_waiting_ms
                        .map(age)
                        .unwrap_or_else(|| "—".to_owned()),
                    answer_times: match (q.answer_p50_ms, q.answer_p95_ms) {
                        (Some(p50), Some(p95)) => format!("{} / {}", age(p50), age(p95)),
                        _ => "—".to_owned(),
                    },
                    response_rate: q
                        .response_rate
                        .map(|r| format!("{:.0}%", r * 100.0))
                        .unwrap_or_else(|| "—".to_owned()),
                    last_error: q.last_error.unwrap_or_default(),
                    code: q.code,
                    name: q.name,
                    paused: q.paused,
                    queued: q.queued,
                    in_flight: q.in_flight,
                    awaiting: q.awaiting,
                    answered: q.answered,
                    failed: q.failed,
                    overdue: q.overdue,
                    breaker_open: q.breaker_open,
                    failures: q.consecutive_failures,
                })
                .collect(),
            dead: dead
                .into_iter()
                .map(|b| DeadLine {
                    id: b.id.to_string(),
                    institution: b.institution.to_string(),
                    inquiries: b.inquiry_count,
                    attempts: b.attempts,
                    error: b.last_error.unwrap_or_default(),
                })
                .collect(),
        },
    ))
}

pub(super) async fn set_paused(
    req: HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let (s, _) = posted_form(&req, &state, &body).await?;
    let code = InstitutionCode::parse(&path.0)
        .map_err(|_| refuse(StatusCode::NOT_FOUND, "その金融機関は見つかりません。"))?;
    let paused = match path.1.as_str() {
        "pause" => true,
        "resume" => false,
        _ => return Err(refuse(StatusCode::NOT_FOUND, "その操作はありません。")),
    };
    casework::set_paused(&state.store, &s.actor, &code, paused).await?;
    state.wake.notify_one();
    Ok(redirect(if paused {
        "/ui/admin/queue?done=paused"
    } else {
        "/ui/admin/queue?done=resumed"
    }))
}

pub(super) async fn retry_batch(
    req: HttpRequest,
    state: web::Data<AppState>,
    id: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let (s, _) = posted_form(&req, &state, &body).await?;
    let id = BatchId::parse(&id)
        .map_err(|_| refuse(StatusCode::NOT_FOUND, "そのバッチは見つかりません。"))?;
    casework::retry_dead_batch(&state.store, &s.actor, &id).await?;
    state.wake.notify_one();
    Ok(redirect("/ui/admin/queue?done=retried"))
}

struct StandingLine {
    code: String,
    name: String,
    kana: String,
}

#[derive(Template)]
#[template(path = "standing.html")]
struct StandingPage {
    chrome: Chrome,
    items: Vec<StandingLine>,
    code: String,
    code_error: Option<String>,
}

async fn standing(
    state: &AppState,
    s: &super::Session,
    req: &HttpRequest,
    code: String,
    code_error: Option<String>,
) -> Result<StandingPage, UiError> {
    if s.actor.role != crate::casework::Role::Admin {
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "管理者のみが使えるページです。",
        ));
    }
    let items = casework::office_institutions(&state.store, &s.actor)
        .await?
        .into_iter()
        .map(|i| StandingLine {
            code: i.code.to_string(),
            name: i.name,
            kana: i.kana,
        })
        .collect();
    Ok(StandingPage {
        chrome: chrome(s, req),
        items,
        code,
        code_error,
    })
}

pub(super) async fn standing_page(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, UiError> {
    let s = session(&req, &state).await?;
    let page = standing(&state, &s, &req, String::new(), None).await?;
    Ok(render(StatusCode::OK, &page))
}

pub(super) async fn standing_edit(
    req: HttpRequest,
    state: web::Data<AppState>,
    action: web::Path<String>,
    body: web::Bytes,
) -> Result<HttpResponse, UiError> {
    let (s, form) = posted_form(&req, &state, &body).await?;
    let add = match action.as_str() {
        "add" => true,
        "remove" => false,
        _ => return Err(refuse(StatusCode::NOT_FOUND, "その操作はありません。")),
    };
    let raw = form.get("code");
    let refused = |message: String| async {
        let page = standing(&state, &s, &req, raw.clone(), Some(message)).await?;
        Ok::<_, UiError>(render(StatusCode::UNPROCESSABLE_ENTITY, &page))
    };
    let Ok(code) = InstitutionCode::parse(&raw) else {
        return refused("4桁の金融機関コードを入力してください".to_owned()).await;
    };
    match casework::edit_office_institutions(&state.store, &s.actor, &code, add).await {
        Ok(()) => Ok(redirect("/ui/admin/standing-list?done=saved")),
        Err(casework::CaseworkError::Invalid(_)) => {
            refused(format!("{code} は全銀の金融機関一覧にありません")).await
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::age;

    #[test]
    fn ages_read_naturally() {
        assert_eq!(age(12_000), "12秒");
        assert_eq!(age(25 * 60_000), "25分");
        assert_eq!(age(3 * 3_600_000 + 5 * 60_000), "3時間5分");
        assert_eq!(age(2 * 86_400_000 + 4 * 3_600_000), "2日4時間");
    }
}
