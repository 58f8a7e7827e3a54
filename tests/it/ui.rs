//! The web UI in a real headless Chromium (Debian's, through chromedriver):
//! log in, see a case's inquiries answered by the mock banks and the
//! balances in the case file; another office's caseworker is refused; and,
//! over plain HTTP, the session, CSRF and login-throttle rules. Screenshots
//! of the main pages go to `target/ui-screenshots/`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};
use shokai::accounts::{self, NewUser};
use shokai::admin;
use shokai::casework::Role;
use shokai::gateway::Gateway;
use shokai::pki;

use crate::support::{eventually, import_small_directory, start_mock_banks};
use crate::webdriver::Driver;

const BANKS: &[&str] = &["0001", "0005", "0009"];
const PASSWORD: &str = "correct horse battery staple";

fn screenshots() -> PathBuf {
    crate::support::repo_path("target/ui-screenshots")
}

struct Env {
    gateway: Gateway,
    case_id: String,
    _banks: crate::support::MockBanks,
    _dir: tempfile::TempDir,
}

async fn user(gateway: &Gateway, username: &str, name: &str, role: Role, office: &str) {
    accounts::create_user(
        &gateway.store,
        NewUser {
            username: username.to_owned(),
            display_name: name.to_owned(),
            password: PASSWORD.to_owned(),
            role,
            office: office.to_owned(),
        },
    )
    .await
    .unwrap();
}

/// A gateway with three mock banks, three accounts, and one case whose two
/// people are asked about at the three banks.
async fn setup() -> Env {
    shokai::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let codes: Vec<String> = BANKS.iter().map(|s| (*s).to_owned()).collect();
    pki::init(&pki_dir, &codes).unwrap();
    let url = format!("sqlite://{}", dir.path().join("ui.db").display());
    let gateway = Gateway::start(crate::support::gateway_config(&url, &pki_dir))
        .await
        .unwrap();
    import_small_directory(&gateway.store).await;
    let banks = start_mock_banks(&pki_dir, &gateway.answers_url(), BANKS).await;
    crate::support::connect_mock_banks(&gateway.store, &pki_dir, &banks.endpoints, (5, 2, 100))
        .await;
    user(&gateway, "sato", "佐藤 一郎", Role::Caseworker, "131016").await;
    user(&gateway, "tanaka", "田中 花子", Role::Caseworker, "999999").await;
    user(&gateway, "kanri", "管理 太郎", Role::Admin, "131016").await;

    let token = admin::create_token(&gateway.store, Role::Caseworker, "131016", "ui")
        .await
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let api = gateway.api_url();
    let (s, case) = crate::support::api_call(
        &http,
        &token,
        reqwest::Method::POST,
        format!("{api}/cases"),
        Some(json!({"case_number": "R8-UI-0001", "subjects": [
            {"kana_name": "ヤマダ タロウ", "kanji_name": "山田 太郎", "birth_date": "1961-04-02",
             "address": "東京都新宿区西新宿2-8-1"},
            {"kana_name": "ヤマダ ハナコ", "kanji_name": "山田 花子", "birth_date": "1964-09-30"}]})),
    )
    .await;
    assert_eq!(s, 201, "{case}");
    let due = (shokai::casework::today() + chrono::Days::new(14)).to_string();
    let resp = http
        .post(format!("{api}/requests"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("idempotency-key", "ui-1")
        .body(
            json!({"case_id": case["id"],
                   "institutions": BANKS.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
                   "kinds": ["existence", "balance"], "due_date": due})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    Env {
        case_id: case["id"].as_str().unwrap().to_owned(),
        gateway,
        _banks: banks,
        _dir: dir,
    }
}

fn base(env: &Env) -> String {
    format!("http://{}", env.gateway.staff_addr.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caseworker_follows_a_case_in_the_browser() {
    let env = setup().await;
    let base = base(&env);
    let driver = Driver::start().await;
    let b = driver.browser().await;

    // Not logged in: the login page.
    b.goto(&format!("{base}/ui")).await;
    assert!(b.url().await.ends_with("/ui/login"));
    b.screenshot(&screenshots().join("login.png")).await;

    // A wrong password is refused with a message.
    b.fill("#username", "sato").await;
    b.fill("#password", "wrong password here").await;
    b.click("#login").await;
    b.wait_for("#login-error").await;
    assert!(
        b.text("#login-error")
            .await
            .contains("パスワードが違います")
    );

    b.fill("#username", "sato").await;
    b.fill("#password", PASSWORD).await;
    b.click("#login").await;
    b.wait_for("#cases").await;
    let title = b.title().await;
    assert!(
        title.starts_with("担当ケース"),
        "{title} at {}",
        b.url().await
    );
    assert!(b.text("#cases").await.contains("R8-UI-0001"));
    b.screenshot(&screenshots().join("home.png")).await;

    // The case page: the six inquiries, then the banks' answers and totals.
    let case_url = format!("{base}/ui/cases/{}", env.case_id);
    b.goto(&case_url).await;
    assert_eq!(b.count("#inquiries tbody tr").await, 6);
    let browser = &b;
    let case_url_ref = &case_url;
    eventually(
        "every inquiry answered on the page",
        Duration::from_secs(60),
        || async move {
            browser.goto(case_url_ref).await;
            browser
                .count(
                    "#inquiries tr[data-state='answered'], #inquiries tr[data-state='not_found']",
                )
                .await
                == 6
        },
    )
    .await;
    let findings = b.text("#findings").await;
    assert!(findings.contains('¥'), "balances are shown: {findings}");
    let subjects = b.text("#subjects").await;
    assert!(subjects.contains("ヤマダ タロウ") && subjects.contains("昭和36年4月2日"));
    assert!(subjects.contains('¥'));
    b.screenshot(&screenshots().join("case.png")).await;

    // Logging out ends the session: the case page asks for a login again.
    b.click("header form button").await;
    b.wait_for("#login").await;
    b.goto(&case_url).await;
    assert!(b.url().await.ends_with("/ui/login"));

    // A caseworker of another office is refused the case.
    b.fill("#username", "tanaka").await;
    b.fill("#password", PASSWORD).await;
    b.click("#login").await;
    b.wait_for("header .who").await;
    b.goto(&case_url).await;
    assert_eq!(b.text("#error-title").await, "権限がありません");
    b.screenshot(&screenshots().join("forbidden.png")).await;
    b.quit().await;
    env.gateway.stop().await;
}

/// The session's cookie from a login over plain HTTP.
async fn login(
    http: &reqwest::Client,
    base: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    http.post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "username={username}&password={}",
            password.replace(' ', "+")
        ))
        .send()
        .await
        .unwrap()
}

fn session_cookie(resp: &reqwest::Response) -> String {
    let set = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    set.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_forms_and_logins_follow_the_rules() {
    let env = setup().await;
    let base = base(&env);
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let resp = login(&http, &base, "sato", PASSWORD).await;
    assert_eq!(resp.status(), 303);
    let cookie = session_cookie(&resp);
    let page = http
        .get(format!("{base}/ui/cases/{}", env.case_id))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["cache-control"], "no-store");
    let html = page.text().await.unwrap();
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();

    // A form without the session's token, or from another site, changes nothing.
    let inquiry: Value = {
        let store = &env.gateway.store;
        let id = shokai::domain::ids::CaseId::parse(&env.case_id).unwrap();
        let i = &store.case_inquiries(&id).await.unwrap()[0];
        json!({"id": i.id.to_string(), "state": i.state.as_str()})
    };
    let cancel = format!(
        "{base}/ui/cases/{}/inquiries/{}/cancel",
        env.case_id,
        inquiry["id"].as_str().unwrap()
    );
    for (token, origin) in [
        ("forged", None),
        (csrf.as_str(), Some("http://evil.example")),
    ] {
        let mut req = http
            .post(&cancel)
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={token}"));
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        assert_eq!(req.send().await.unwrap().status(), 403);
    }
    let id = shokai::domain::ids::CaseId::parse(&env.case_id).unwrap();
    let after = &env.gateway.store.case_inquiries(&id).await.unwrap()[0];
    assert_ne!(after.state.as_str(), "cancelled");

    // Without a session, pages send the browser to the login page.
    let anon = http.get(format!("{base}/ui")).send().await.unwrap();
    assert_eq!(anon.status(), 303);
    assert_eq!(anon.headers()["location"], "/ui/login");

    // Five wrong passwords lock the username for the window, even for the
    // right password.
    for _ in 0..accounts::MAX_FAILURES {
        assert_eq!(
            login(&http, &base, "kanri", "not the password!")
                .await
                .status(),
            401
        );
    }
    assert_eq!(login(&http, &base, "kanri", PASSWORD).await.status(), 429);
    env.gateway.stop().await;
}
