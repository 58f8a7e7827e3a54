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
const PAPER_BANK: &str = "0017";

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
    // A bank still reached on paper.
    gateway
        .store
        .import_directory(
            &[shokai::domain::zengin::InstitutionRecord {
                code: crate::support::code(PAPER_BANK),
                name: "紙の銀行".into(),
                kana: "カミノギンコウ".into(),
            }],
            &[],
        )
        .await
        .unwrap();
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
    // Decided yesterday: every answer that comes now raises a reopen alert.
    let yesterday = (shokai::casework::today() - chrono::Days::new(1)).to_string();
    let (s, _) = crate::support::api_call(
        &http,
        &token,
        reqwest::Method::PUT,
        format!("{api}/cases/{}/decision", case["id"].as_str().unwrap()),
        Some(json!({"decision_date": yesterday})),
    )
    .await;
    assert_eq!(s, 200);
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

async fn open_cases(env: &Env) -> usize {
    env.gateway
        .store
        .case_summaries(None, shokai::casework::today(), 1000)
        .await
        .unwrap()
        .len()
}

async fn log_in(b: &crate::webdriver::Browser, base: &str, username: &str) {
    b.goto(&format!("{base}/ui/login")).await;
    b.fill("#username", username).await;
    b.fill("#password", PASSWORD).await;
    b.click("#login").await;
    b.wait_for("header .who").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caseworker_files_and_follows_a_case_in_the_browser() {
    let env = setup().await;
    let base = base(&env);
    let driver = Driver::start().await;
    let b = driver.browser().await;

    // Not logged in: the login page; a wrong password is refused.
    b.goto(&format!("{base}/ui")).await;
    assert!(b.url().await.ends_with("/ui/login"));
    b.screenshot(&screenshots().join("login.png")).await;
    b.fill("#username", "sato").await;
    b.fill("#password", "wrong password here").await;
    b.click("#login").await;
    b.wait_for("#login-error").await;
    assert!(
        b.text("#login-error")
            .await
            .contains("パスワードが違います")
    );
    log_in(&b, &base, "sato").await;
    assert!(b.title().await.starts_with("担当ケース"));
    assert!(b.text("#cases").await.contains("R8-UI-0001"));
    // The answers to the decided case raise alerts, listed on the home page.
    let home = &format!("{base}/ui");
    let browser = &b;
    eventually(
        "open alerts on the home page",
        Duration::from_secs(30),
        || async move {
            browser.goto(home).await;
            browser.count("#open-alerts tbody tr").await > 0
        },
    )
    .await;
    assert!(b.text("#open-alerts").await.contains("R8-UI-0001"));
    b.screenshot(&screenshots().join("home.png")).await;

    // A new case: a birth date in the future is refused next to its field
    // and nothing is filed; corrected, the case is created.
    let before = open_cases(&env).await;
    b.click("#nav-new-case").await;
    b.wait_for("#case_number").await;
    b.fill("#case_number", "R8-UI-0002").await;
    b.fill("#kana_0", "すずき いちろう").await;
    b.fill("#kanji_0", "鈴木 一郎").await;
    b.set_value("#birth_0", "2199-01-01").await;
    b.fill("#kana_1", "スズキ ハナコ").await;
    b.set_value("#birth_1", "1975-06-06").await;
    b.fill("#declared", "0009").await;
    b.click("#create-case").await;
    b.wait_for("#birth_0-error").await;
    assert_eq!(
        open_cases(&env).await,
        before,
        "a refused form files nothing"
    );
    b.screenshot(&screenshots().join("case-form-error.png"))
        .await;
    b.set_value("#birth_0", "1970-05-05").await;
    b.click("#create-case").await;
    b.wait_for("#new-request").await;
    assert_eq!(open_cases(&env).await, before + 1);
    assert!(b.text("#subjects").await.contains("スズキ イチロウ"));

    // A request for both people at three banks: one found by searching,
    // one declared by the applicant, one typed. Without a due date it is
    // refused next to the field.
    b.click("#new-request").await;
    b.wait_for("#q").await;
    b.fill("#q", "みずほ").await;
    b.click("#search").await;
    b.wait_for("input[name=institution][value='0001']").await;
    b.click("input[name=institution][value='0001']").await;
    b.click("input[name=institution][value='0009']").await;
    b.fill("#codes", "0005").await;
    b.set_value("#due_date", "").await;
    b.screenshot(&screenshots().join("request-form.png")).await;
    b.click("#submit-request").await;
    b.wait_for("#due_date-error").await;
    // The choices survive the refusal; with a due date the request goes.
    b.set_value(
        "#due_date",
        &(shokai::casework::today() + chrono::Days::new(10)).to_string(),
    )
    .await;
    b.click("#submit-request").await;
    b.wait_for("#inquiries").await;
    assert_eq!(b.count("#inquiries tbody tr").await, 6);
    let case_url = b.url().await.split('?').next().unwrap().to_owned();

    // The mock banks answer; the page shows the balances and totals.
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
    assert!(subjects.contains("昭和45年5月5日") && subjects.contains('¥'));
    b.screenshot(&screenshots().join("case.png")).await;

    // Logging out ends the session.
    b.click("header form button").await;
    b.wait_for("#login").await;
    b.goto(&case_url).await;
    assert!(b.url().await.ends_with("/ui/login"));

    // A caseworker of another office is refused the case.
    log_in(&b, &base, "tanaka").await;
    b.goto(&case_url).await;
    assert_eq!(b.text("#error-title").await, "権限がありません");
    b.screenshot(&screenshots().join("forbidden.png")).await;
    b.quit().await;

    // An admin pauses a bank and sees its queue grow.
    let admin = driver.browser().await;
    log_in(&admin, &base, "kanri").await;
    assert_eq!(admin.count("#nav-queue").await, 1);
    // The queue page reloads itself every 10 s; tests read it without that.
    let queue_url = &format!("{base}/ui/admin/queue?refresh=off");
    admin.goto(queue_url).await;
    admin.wait_for("#queue-0005").await;
    admin.click("#pause-0005").await;
    admin.wait_url("done=paused").await;
    admin.goto(queue_url).await;
    assert_eq!(admin.count("#queue-0005[data-paused='yes']").await, 1);
    let queued = |text: String| -> i64 {
        text.split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or(-1)
    };
    let before = queued(admin.text("#queue-0005 .queued").await);
    let token = admin::create_token(&env.gateway.store, Role::Caseworker, "131016", "more")
        .await
        .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let case_id = case_url.rsplit('/').next().unwrap();
    let resp = http
        .post(format!("{}/requests", env.gateway.api_url()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("idempotency-key", "ui-more")
        .body(
            json!({"case_id": case_id, "institutions": [{"code": "0005"}],
                   "kinds": ["balance"],
                   "due_date": (shokai::casework::today() + chrono::Days::new(7)).to_string()})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let admin_ref = &admin;
    eventually(
        "the paused bank's queue grows",
        Duration::from_secs(20),
        || async move {
            admin_ref.goto(queue_url).await;
            queued(admin_ref.text("#queue-0005 .queued").await) >= before + 2
        },
    )
    .await;
    admin.screenshot(&screenshots().join("queue.png")).await;

    // The paper channel: a request to a bank reached on paper becomes a
    // letter; the admin prints it, marks it mailed, and enters the answers
    // by hand and from a CSV file.
    let resp = http
        .post(format!("{}/requests", env.gateway.api_url()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .header("idempotency-key", "ui-paper")
        .body(
            json!({"case_id": case_id, "institutions": [{"code": PAPER_BANK}],
                   "kinds": ["existence", "balance"],
                   "due_date": (shokai::casework::today() + chrono::Days::new(21)).to_string()})
            .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let letters_url = &format!("{base}/ui/admin/letters");
    eventually(
        "the paper request becomes a letter",
        Duration::from_secs(20),
        || async move {
            admin_ref.goto(letters_url).await;
            admin_ref.count(".letter-link").await == 1
        },
    )
    .await;
    admin.click(".letter-link").await;
    admin.wait_for("#letter-subjects").await;
    assert_eq!(admin.count("#letter-subjects tbody tr").await, 2);
    let letter_text = admin.text("#letter").await;
    assert!(letter_text.contains("生活保護法第29条") && letter_text.contains("スズキ イチロウ"));
    admin.screenshot(&screenshots().join("letter.png")).await;
    admin.click("#mark-mailed").await;
    admin.wait_for(".answer-link").await;
    let letter_url = admin.url().await.split('?').next().unwrap().to_owned();

    // By hand: a 6-digit account number is refused by its field, then filed.
    admin.click(".answer-link").await;
    admin.wait_for("#outcome-found").await;
    admin.click("#outcome-found").await;
    admin.fill("#branch_0", "001").await;
    admin.set_value("#type_0", "1").await;
    admin.fill("#number_0", "123456").await;
    admin.fill("#holder_0", "ｽｽﾞｷ ｲﾁﾛｳ").await;
    admin.fill("#balance_0", "250,000").await;
    admin.click("#save-answer").await;
    admin.wait_for("#account_0-error").await;
    admin.fill("#number_0", "1234567").await;
    admin.click("#save-answer").await;
    admin.wait_url("done=answered").await;
    assert_eq!(admin.count(".answer-link").await, 1);

    // By CSV: the other person has no account at this bank.
    let letter_id = letter_url.rsplit('/').next().unwrap();
    let letter = env
        .gateway
        .store
        .letter(&shokai::domain::ids::BatchId::parse(letter_id).unwrap())
        .await
        .unwrap()
        .unwrap();
    let waiting = letter
        .lines
        .iter()
        .find(|l| l.state.as_str() == "delivered")
        .unwrap();
    let csv = env._dir.path().join("answers.csv");
    std::fs::write(
        &csv,
        format!(
            "{}\n{},not_found,,,,,,,\n",
            shokai::casework::ANSWER_CSV_HEADER,
            waiting.inquiry
        ),
    )
    .unwrap();
    // Leave the `done=answered` of the answer above behind, so the wait
    // below sees this upload's redirect and not the last one.
    admin.goto(&letter_url).await;
    admin.wait_for("#answers-csv").await;
    admin.send_keys("#answers-csv", csv.to_str().unwrap()).await;
    admin.click("#upload-answers").await;
    admin.wait_url("done=answered").await;
    assert_eq!(admin.count(".answer-link").await, 0);
    let states: Vec<String> = env
        .gateway
        .store
        .letter(&letter.summary.batch)
        .await
        .unwrap()
        .unwrap()
        .lines
        .iter()
        .map(|l| l.state.as_str().to_owned())
        .collect();
    let mut states = states;
    states.sort();
    assert_eq!(states, ["answered", "not_found"]);
    admin.quit().await;
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

    // The new-case form sent twice (a double click) files one case.
    let cases_before = open_cases(&env).await;
    let mut locations = Vec::new();
    for _ in 0..2 {
        let resp = http
            .post(format!("{base}/ui/cases/new"))
            .header("cookie", &cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs([
                        ("csrf", csrf.as_str()),
                        ("form_key", "double-click"),
                        ("case_number", "R8-UI-0003"),
                        ("kana_0", "タナカ ジロウ"),
                        ("birth_0", "1980-02-02"),
                        ("declared", "0001"),
                    ])
                    .finish(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303);
        locations.push(resp.headers()["location"].to_str().unwrap().to_owned());
    }
    assert_eq!(locations[0], locations[1]);
    assert_eq!(open_cases(&env).await, cases_before + 1);

    // A request form without institutions is refused next to the field
    // and files nothing.
    let requests_before = env.gateway.store.case_requests(&id).await.unwrap().len();
    let form = format!(
        "csrf={csrf}&form_key=k1&subject={}&kind=balance&due_date={}",
        env.gateway.store.case(&id).await.unwrap().unwrap().subjects[0].id,
        shokai::casework::today() + chrono::Days::new(5)
    );
    let resp = http
        .post(format!("{base}/ui/cases/{}/requests/new", env.case_id))
        .header("cookie", &cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains("id=\"institutions-error\"")
    );
    assert_eq!(
        env.gateway.store.case_requests(&id).await.unwrap().len(),
        requests_before
    );

    // The standing list: admins only; an unknown code is refused by the field.
    let admin = session_cookie(&login(&http, &base, "kanri", PASSWORD).await);
    let admin_page = http
        .get(format!("{base}/ui/admin/standing-list"))
        .header("cookie", &admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let admin_csrf = admin_page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let add = |code: &'static str| {
        http.post(format!("{base}/ui/admin/standing-list/add"))
            .header("cookie", &admin)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("csrf={admin_csrf}&code={code}"))
            .send()
    };
    let refused = add("1234").await.unwrap();
    assert_eq!(refused.status(), 422);
    assert!(refused.text().await.unwrap().contains("id=\"code-error\""));
    assert_eq!(add("0001").await.unwrap().status(), 303);
    let listed = env
        .gateway
        .store
        .office_institutions("131016")
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    let caseworker_view = http
        .get(format!("{base}/ui/admin/standing-list"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(caseworker_view.status(), 403);

    // Institution settings: a push endpoint must be https; a refused form
    // changes nothing, a good one is stored.
    let post_form = |url: String, cookie: String, pairs: Vec<(&'static str, String)>| {
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs)
            .finish();
        http.post(url)
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let code = crate::support::code("0001");
    let before = env.gateway.store.institution(&code).await.unwrap().unwrap();
    let settings = |endpoint: &str, in_flight: &str| {
        vec![
            ("csrf", admin_csrf.clone()),
            ("channel", "push".to_owned()),
            ("endpoint", endpoint.to_owned()),
            (
                "server_ca",
                before.settings.server_ca_pem.clone().unwrap_or_default(),
            ),
            ("max_batch_size", "5".to_owned()),
            ("max_in_flight", in_flight.to_owned()),
            ("batch_max_age_ms", "100".to_owned()),
            ("window", String::new()),
        ]
    };
    let url = format!("{base}/ui/admin/institutions/0001");
    let endpoint = before.settings.endpoint_url.clone().unwrap();
    let refused = post_form(
        url.clone(),
        admin.clone(),
        settings("http://bank.example/inquiries", "99"),
    )
    .await
    .unwrap();
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(html.contains("id=\"endpoint-error\"") && html.contains("id=\"max_in_flight-error\""));
    assert_eq!(
        env.gateway.store.institution(&code).await.unwrap().unwrap(),
        before
    );
    let saved = post_form(url, admin.clone(), settings(&endpoint, "3"))
        .await
        .unwrap();
    assert_eq!(saved.status(), 303);
    let after = env.gateway.store.institution(&code).await.unwrap().unwrap();
    assert_eq!(after.settings.max_in_flight, 3);

    // Users: a short password is refused by its field; a good account can
    // log in until an admin disables it.
    let user = |password: &str| {
        vec![
            ("csrf", admin_csrf.clone()),
            ("username", "yamamoto".to_owned()),
            ("display_name", "山本 三郎".to_owned()),
            ("role", "supervisor".to_owned()),
            ("office", "131016".to_owned()),
            ("password", password.to_owned()),
        ]
    };
    let users_url = format!("{base}/ui/admin/users");
    let short = post_form(users_url.clone(), admin.clone(), user("short"))
        .await
        .unwrap();
    assert_eq!(short.status(), 422);
    assert!(
        short
            .text()
            .await
            .unwrap()
            .contains("id=\"password-error\"")
    );
    assert!(env.gateway.store.user("yamamoto").await.unwrap().is_none());
    let created = post_form(users_url, admin.clone(), user(PASSWORD))
        .await
        .unwrap();
    assert_eq!(created.status(), 303);
    assert_eq!(
        login(&http, &base, "yamamoto", PASSWORD).await.status(),
        303
    );
    let disabled = post_form(
        format!("{base}/ui/admin/users/yamamoto/disable"),
        admin.clone(),
        vec![("csrf", admin_csrf.clone())],
    )
    .await
    .unwrap();
    assert_eq!(disabled.status(), 303);
    assert_eq!(
        login(&http, &base, "yamamoto", PASSWORD).await.status(),
        401
    );

    // Without a session, pages send the browser to the login page.
    let anon = http.get(format!("{base}/ui")).send().await.unwrap();
    assert_eq!(anon.status(), 303);
    assert_eq!(anon.headers()["location"], "/ui/login");

    // Five failed logins for a username lock it for the window, even for
    // the right password.
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
