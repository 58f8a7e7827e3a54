//! Steering the queue and the case: pause and resume, retrying a dead
//! batch, cancelling, decision dates with reopen alerts, delivery windows
//! and the circuit breaker.

use std::time::Duration;

use chrono::Datelike;
use serde_json::{Value, json};
use shokai::admin;
use shokai::casework::Role;
use shokai::delivery::seal_due_batches;
use shokai::domain::breaker::BreakerPolicy;
use shokai::domain::state::BatchState;
use shokai::domain::time::{jst, now_millis, to_utc};
use shokai::gateway::Gateway;
use shokai::pki::{self, PkiLayout};
use shokai::store::{AttemptRecord, BatchFinish};

use crate::db_test;
use crate::support::{code, eventually, import_small_directory, start_mock_banks};

const BANKS: &[&str] = &["0001", "0005", "0009"];

struct Env {
    gateway: Gateway,
    http: reqwest::Client,
    caseworker: String,
    admin: String,
    endpoints: Vec<(String, String)>,
    ca: String,
    pki: PkiLayout,
    _banks: crate::support::MockBanks,
    _dir: tempfile::TempDir,
}

async fn setup(url: &str) -> Env {
    shokai::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    pki::init(
        &pki_dir,
        &BANKS.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
    )
    .unwrap();
    let gateway = Gateway::start(crate::support::gateway_config(url, &pki_dir))
        .await
        .unwrap();
    import_small_directory(&gateway.store).await;
    let banks = start_mock_banks(&pki_dir, &gateway.answers_url(), BANKS).await;
    let pki = PkiLayout::new(&pki_dir);
    let ca = std::fs::read_to_string(pki.ca_cert()).unwrap();
    crate::support::connect_mock_banks(&gateway.store, &pki_dir, &banks.endpoints, (50, 2, 50))
        .await;
    let caseworker = admin::create_token(&gateway.store, Role::Caseworker, "131016", "cw")
        .await
        .unwrap();
    let admin_token = admin::create_token(&gateway.store, Role::Admin, "131016", "admin")
        .await
        .unwrap();
    Env {
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        caseworker,
        admin: admin_token,
        endpoints: banks.endpoints.clone(),
        ca,
        pki,
        gateway,
        _banks: banks,
        _dir: dir,
    }
}

impl Env {
    async fn call(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.gateway.api_url());
        crate::support::api_call(&self.http, token, method, url, body).await
    }

    async fn file(&self, banks: &[&str]) -> (String, Value) {
        let (s, case) = self
            .call(
                &self.caseworker,
                reqwest::Method::POST,
                "/cases",
                Some(json!({
                    "case_number": "ADM-1",
                    "subjects": [
                        {"kana_name": "ヤマダ タロウ", "birth_date": "1961-04-02"},
                        {"kana_name": "ヤマダ ハナコ", "birth_date": "1964-09-30"},
                        {"kana_name": "ヤマダ ジロウ", "birth_date": "1990-01-15"},
                    ]
                })),
            )
            .await;
        assert_eq!(s, 201, "{case}");
        let due = (shokai::casework::today() + chrono::Days::new(14)).to_string();
        let (s, request) = self
            .call(
                &self.caseworker,
                reqwest::Method::POST,
                "/requests",
                Some(json!({
                    "case_id": case["id"],
                    "institutions": banks.iter().map(|b| json!({"code": b})).collect::<Vec<_>>(),
                    "kinds": ["existence", "balance"],
                    "due_date": due,
                })),
            )
            .await;
        assert_eq!(s, 201, "{request}");
        (case["id"].as_str().unwrap().to_owned(), request)
    }

    async fn request(&self, id: &Value) -> Value {
        self.call(
            &self.caseworker,
            reqwest::Method::GET,
            &format!("/requests/{}", id.as_str().unwrap()),
            None,
        )
        .await
        .1
    }

    fn states(request: &Value, bank: &str) -> Vec<String> {
        request["inquiries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["institution"] == bank)
            .map(|i| i["state"].as_str().unwrap().to_owned())
            .collect()
    }
}

async fn pause_cancel_retry_and_reopen(url: String) {
    let env = setup(&url).await;
    let post = reqwest::Method::POST;

    // Only admins steer the queue.
    let (s, p) = env
        .call(
            &env.caseworker,
            post.clone(),
            "/admin/institutions/0001/pause",
            None,
        )
        .await;
    assert_eq!((s, p["code"].as_str()), (403, Some("forbidden")));
    let (s, _) = env
        .call(
            &env.admin,
            post.clone(),
            "/admin/institutions/0001/pause",
            None,
        )
        .await;
    assert_eq!(s, 204);

    // Bank 0009 is pointed at bank 0001's server: it refuses the batch (INST),
    // which is permanent, so the batch dies with the reason.
    let wrong = env
        .endpoints
        .iter()
        .find(|(c, _)| c == "0001")
        .unwrap()
        .1
        .clone();
    let mut settings = env
        .gateway
        .store
        .institution(&code("0009"))
        .await
        .unwrap()
        .unwrap()
        .settings;
    let right = settings.endpoint_url.replace(wrong.clone());
    admin::set_institution(&env.gateway.store, &code("0009"), &settings)
        .await
        .unwrap();

    let (case_id, request) = env.file(&["0001", "0005", "0009"]).await;
    let rid = request["id"].clone();
    eventually(
        "0005 answered and 0009 failed",
        Duration::from_secs(60),
        || async {
            let r = env.request(&rid).await;
            Env::states(&r, "0005")
                .iter()
                .all(|s| s == "answered" || s == "not_found")
                && Env::states(&r, "0009").iter().all(|s| s == "failed")
        },
    )
    .await;
    let r = env.request(&rid).await;
    assert!(
        Env::states(&r, "0001").iter().all(|s| s == "batched"),
        "paused: nothing sent to 0001: {r}"
    );
    let failed = r["inquiries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["institution"] == "0009")
        .unwrap();
    assert!(
        failed["failure_reason"].as_str().unwrap().contains("INST"),
        "{failed}"
    );

    // A caseworker cancels one paused inquiry; it stays cancelled when the
    // bank answers it after all.
    let cancel = r["inquiries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["institution"] == "0001")
        .unwrap()["id"]
        .clone();
    let (s, c) = env
        .call(
            &env.caseworker,
            post.clone(),
            &format!("/inquiries/{}/cancel", cancel.as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!((s, c["state"].as_str()), (200, Some("cancelled")));
    // An answered inquiry cannot be cancelled.
    let answered = r["inquiries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["institution"] == "0005")
        .unwrap()["id"]
        .clone();
    let (s, p) = env
        .call(
            &env.caseworker,
            post.clone(),
            &format!("/inquiries/{}/cancel", answered.as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!((s, p["code"].as_str()), (409, Some("conflict")));

    // The case is decided before 0001 answers: its answers raise alerts.
    let yesterday = shokai::casework::today() - chrono::Days::new(1);
    let (s, _) = env
        .call(
            &env.caseworker,
            reqwest::Method::PUT,
            &format!("/cases/{case_id}/decision"),
            Some(json!({"decision_date": yesterday.to_string()})),
        )
        .await;
    assert_eq!(s, 200);

    // Fix 0009 and retry its dead batch; resume 0001.
    settings.endpoint_url = right;
    admin::set_institution(&env.gateway.store, &code("0009"), &settings)
        .await
        .unwrap();
    let (s, dead) = env
        .call(
            &env.admin,
            reqwest::Method::GET,
            "/admin/batches?state=dead",
            None,
        )
        .await;
    assert_eq!(s, 200);
    let dead = dead["batches"].as_array().unwrap().clone();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (s, _) = env
        .call(
            &env.admin,
            post.clone(),
            &format!("/admin/batches/{}/retry", dead[0]["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = env
        .call(
            &env.admin,
            post.clone(),
            "/admin/institutions/0001/resume",
            None,
        )
        .await;
    assert_eq!(s, 204);
    eventually(
        "everything but the cancelled inquiry answered",
        Duration::from_secs(60),
        || async {
            let r = env.request(&rid).await;
            r["inquiries"].as_array().unwrap().iter().all(|i| {
                let s = i["state"].as_str().unwrap();
                if i["id"] == cancel {
                    s == "cancelled"
                } else {
                    s == "answered" || s == "not_found"
                }
            })
        },
    )
    .await;
    // The bank did answer the cancelled inquiry; the answer was refused.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let r = env.request(&rid).await;
    let c = r["inquiries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == cancel)
        .unwrap();
    assert_eq!(
        (c["state"].as_str(), c["answer_revision"].as_i64()),
        (Some("cancelled"), Some(0))
    );

    let (_, case) = env
        .call(
            &env.caseworker,
            reqwest::Method::GET,
            &format!("/cases/{case_id}"),
            None,
        )
        .await;
    let alerts = case["alerts"].as_array().unwrap();
    // Two live 0001 inquiries and three 0009 ones were answered after the decision.
    assert_eq!(alerts.len(), 5, "{alerts:?}");
    assert!(
        alerts
            .iter()
            .all(|a| a["kind"] == "reopen" && a["acknowledged_at"].is_null())
    );
    let first = alerts[0]["id"].as_i64().unwrap();
    let (s, _) = env
        .call(
            &env.caseworker,
            post.clone(),
            &format!("/cases/{case_id}/alerts/{first}/acknowledge"),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, p) = env
        .call(
            &env.caseworker,
            post.clone(),
            &format!("/cases/{case_id}/alerts/{first}/acknowledge"),
            None,
        )
        .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (404, Some("not_found")),
        "acknowledged once"
    );
    // Every inquiry is final: the case can close, once.
    let (s, closed) = env
        .call(
            &env.caseworker,
            post.clone(),
            &format!("/cases/{case_id}/close"),
            None,
        )
        .await;
    assert_eq!(s, 200, "{closed}");
    assert!(closed["closed_at"].is_string(), "{closed}");
    let (s, p) = env
        .call(
            &env.caseworker,
            post.clone(),
            &format!("/cases/{case_id}/close"),
            None,
        )
        .await;
    assert_eq!((s, p["code"].as_str()), (404, Some("not_found")));
    let _ = (&env.ca, &env.pki);
    env.gateway.stop().await;
}
db_test!(
    pause_cancel_retry_and_reopen,
    super::pause_cancel_retry_and_reopen
);

fn attempt(b: &shokai::store::ClaimedBatch, at: i64) -> AttemptRecord {
    AttemptRecord {
        batch_id: b.id.clone(),
        attempt_no: b.attempt,
        token: b.token.clone(),
        started_at: at,
        ended_at: at,
        outcome: "retryable".into(),
        http_status: Some(503),
        error: Some("HTTP 503".into()),
    }
}

/// Windows and the breaker at the store level, where time is a parameter.
async fn windows_and_breaker_gate_claims(url: String) {
    let store = crate::support::open(&url).await;
    import_small_directory(&store).await;
    let ca = shokai::pki::Ca::generate("test CA").unwrap().pem;
    let mut settings = shokai::store::InstitutionSettings {
        channel: shokai::domain::state::Channel::Push,
        endpoint_url: Some("https://127.0.0.1:9/inquiries".into()),
        server_ca_pem: Some(ca),
        max_batch_size: 1,
        max_in_flight: 4,
        batch_max_age_ms: 0,
        paused: false,
        delivery_window: None,
    };
    // A window on another weekday than today (JST) sends nothing now.
    let today = to_utc(now_millis()).with_timezone(&jst()).weekday();
    let other = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        [today.succ().num_days_from_monday() as usize];
    settings.delivery_window = Some(format!("{other} 00:00-24:00"));
    admin::set_institution(&store, &code("0001"), &settings)
        .await
        .unwrap();
    crate::support::file_request_for(&store, 6, &["0001"]).await;
    seal_due_batches(&store, now_millis() + 1).await.unwrap();
    let policy = BreakerPolicy {
        failure_threshold: 3,
        cool_down: Duration::from_secs(60),
    };
    assert!(
        store
            .claim_due_batches(now_millis(), 60_000, 10, &policy)
            .await
            .unwrap()
            .is_empty(),
        "outside the window"
    );
    settings.delivery_window = Some("daily 00:00-24:00".into());
    admin::set_institution(&store, &code("0001"), &settings)
        .await
        .unwrap();

    // Three failures open the breaker: nothing more is claimed.
    let now = now_millis();
    let claimed = store
        .claim_due_batches(now, 60_000, 3, &policy)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    for b in &claimed {
        store
            .finish_batch(
                &attempt(b, now),
                &BatchFinish::RetryAt {
                    at: now,
                    error: "HTTP 503".into(),
                },
                Some((&policy, false)),
            )
            .await
            .unwrap();
    }
    assert!(
        store
            .claim_due_batches(now + 1, 60_000, 10, &policy)
            .await
            .unwrap()
            .is_empty(),
        "breaker open"
    );
    // After the cool-down, exactly one probe; while it is out, nothing else.
    let later = now + 61_000;
    let probe = store
        .claim_due_batches(later, 60_000, 10, &policy)
        .await
        .unwrap();
    assert_eq!(probe.len(), 1, "one probe");
    assert!(
        store
            .claim_due_batches(later + 1, 60_000, 10, &policy)
            .await
            .unwrap()
            .is_empty()
    );
    // The probe succeeds: the breaker closes and the rest flows again.
    store
        .finish_batch(
            &attempt(&probe[0], later + 2),
            &BatchFinish::Acknowledged,
            Some((&policy, true)),
        )
        .await
        .unwrap();
    let rest = store
        .claim_due_batches(later + 3, 60_000, 10, &policy)
        .await
        .unwrap();
    assert_eq!(rest.len(), 4, "closed again: up to the in-flight limit");
    assert_eq!(
        store.batch(&probe[0].id).await.unwrap().unwrap().state,
        BatchState::Acknowledged
    );
    store.close().await;
}
db_test!(
    windows_and_breaker_gate_claims,
    super::windows_and_breaker_gate_claims
);

/// An inquiry past its due date without an answer is flagged overdue in the
/// request and in the case file; an answered one is not.
async fn overdue_inquiries_are_flagged(url: String) {
    let store = crate::support::open(&url).await;
    import_small_directory(&store).await;
    let request = crate::support::file_request_for(&store, 2, &["0001"]).await;
    let answered = request.inquiries[0].id.clone();
    crate::support::execute_behind_the_store(
        &url,
        &[
            // Time passes: the due date is now behind us.
            "UPDATE inquiries SET due_date = '2001-01-01'",
            &format!("UPDATE inquiries SET state = 'not_found' WHERE id = '{answered}'"),
        ],
    )
    .await;
    let view = store.request(&request.id).await.unwrap().unwrap();
    let flags: Vec<(bool, bool)> = view
        .inquiries
        .iter()
        .map(|i| (i.id == answered, i.overdue))
        .collect();
    assert!(
        flags.contains(&(true, false)) && flags.contains(&(false, true)),
        "{flags:?}"
    );
    let file = store.case_file(&request.case_id).await.unwrap().unwrap();
    assert_eq!(file.inquiries.iter().filter(|i| i.overdue).count(), 1);
    store.close().await;
}
db_test!(
    overdue_inquiries_are_flagged,
    super::overdue_inquiries_are_flagged
);
