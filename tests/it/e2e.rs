//! End to end over real mutual TLS on loopback: the gateway in process, the
//! mock banks as a separate process, requests through the staff API.

use std::time::Duration;

use serde_json::{Value, json};
use shokai::admin;
use shokai::casework::Role;
use shokai::gateway::Gateway;
use shokai::pki::{self, PkiLayout};
use shokai::tls::{Identity, load_certs, mtls_client_config};

use crate::db_test;
use crate::support::{code, eventually, import_small_directory, start_mock_banks};

const BANKS: &[&str] = &["0001", "0005", "0009"];

struct Env {
    gateway: Gateway,
    pki: PkiLayout,
    token: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
    _banks: crate::support::MockBanks,
}

async fn setup(url: &str) -> Env {
    shokai::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let codes: Vec<String> = BANKS.iter().map(|s| (*s).to_owned()).collect();
    pki::init(&pki_dir, &codes).unwrap();
    let gateway = Gateway::start(crate::support::gateway_config(url, &pki_dir))
        .await
        .unwrap();
    import_small_directory(&gateway.store).await;
    let banks = start_mock_banks(&pki_dir, &gateway.answers_url(), BANKS).await;
    let pki = PkiLayout::new(&pki_dir);
    let _ca = std::fs::read_to_string(pki.ca_cert()).unwrap();
    crate::support::connect_mock_banks(&gateway.store, &pki_dir, &banks.endpoints, (5, 2, 100))
        .await;
    let token = admin::create_token(&gateway.store, Role::Caseworker, "131016", "e2e")
        .await
        .unwrap();
    Env {
        gateway,
        pki,
        token,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        _dir: dir,
        _banks: banks,
    }
}

impl Env {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.gateway.api_url()))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        if let Some(k) = key {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A client to the bank API presenting `bank`'s client certificate.
    fn bank_client(&self, bank: Option<&str>) -> reqwest::Client {
        let ca = load_certs(&self.pki.ca_cert()).unwrap();
        let builder = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10));
        let builder = match bank {
            Some(b) => {
                let (cert, key) = self.pki.bank_client(b);
                let id = Identity::load(&cert, &key).unwrap();
                builder.tls_backend_preconfigured(
                    mtls_client_config(&ca, id.chain.clone(), id.key()).unwrap(),
                )
            }
            None => {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(ca[0].clone()).unwrap();
                let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth();
                builder.tls_backend_preconfigured(cfg)
            }
        };
        builder.build().unwrap()
    }
}

fn case_body() -> Value {
    json!({
        "case_number": "E2E-0001",
        "subjects": [
            {"kana_name": "やまだ たろう", "kanji_name": "山田 太郎", "birth_date": "1961-04-02", "address": "東京都新宿区西新宿2-8-1"},
            {"kana_name": "ヤマダ ハナコ", "kanji_name": "山田 花子", "birth_date": "1964-09-30"},
        ]
    })
}

async fn inquiries_are_delivered_answered_and_filed(url: String) {
    let env = setup(&url).await;
    let (status, case) = env
        .call(reqwest::Method::POST, "/cases", Some(&case_body()), None)
        .await;
    assert_eq!(status, 201, "{case}");
    let due = (shokai::casework::today() + chrono::Days::new(14)).to_string();
    let request = json!({
        "case_id": case["id"],
        "institutions": [{"code": "0001"}, {"code": "0005", "branches": ["110"]}, {"code": "0009"}],
        "kinds": ["existence", "balance"],
        "due_date": due,
    });
    let (status, first) = env
        .call(
            reqwest::Method::POST,
            "/requests",
            Some(&request),
            Some("key-1"),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["inquiries"].as_array().unwrap().len(), 6);

    // The same key and body give back the first result; another body is refused.
    let (status, replay) = env
        .call(
            reqwest::Method::POST,
            "/requests",
            Some(&request),
            Some("key-1"),
        )
        .await;
    assert_eq!((status, &replay["id"]), (201, &first["id"]));
    let mut other = request.clone();
    other["kinds"] = json!(["existence"]);
    let (status, problem) = env
        .call(
            reqwest::Method::POST,
            "/requests",
            Some(&other),
            Some("key-1"),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (422, Some("idempotency_key_reused"))
    );

    let id = first["id"].as_str().unwrap().to_owned();
    eventually(
        "every inquiry to be final",
        Duration::from_secs(60),
        || async {
            let (_, r) = env
                .call(reqwest::Method::GET, &format!("/requests/{id}"), None, None)
                .await;
            r["inquiries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| matches!(i["state"].as_str(), Some("answered" | "not_found")))
        },
    )
    .await;
    let (status, file) = env
        .call(
            reqwest::Method::GET,
            &format!("/cases/{}/file", case["id"].as_str().unwrap()),
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let entries = file["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 6, "one case-file entry per inquiry: {file}");
    let accounts: Vec<&Value> = entries
        .iter()
        .flat_map(|e| e["accounts"].as_array().unwrap())
        .collect();
    assert!(!accounts.is_empty(), "the mock banks report some accounts");
    for a in &accounts {
        assert!(a["balance"].is_i64() && a["number"].as_str().unwrap().len() == 7);
    }
    for e in entries
        .iter()
        .filter(|e| e["institution"] == "0005" && e["outcome"] == "found")
    {
        assert!(
            e["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["branch"] == "110"),
            "named branch only"
        );
    }
    assert_eq!(
        env.gateway
            .store
            .duplicate_case_file_entries()
            .await
            .unwrap(),
        0
    );

    // The bank API: no client certificate, no connection.
    let anonymous = env
        .bank_client(None)
        .post(env.gateway.answers_url())
        .body("<x/>")
        .send()
        .await;
    assert!(
        anonymous.is_err(),
        "a connection without a client certificate must be refused"
    );

    // Bank 0005 cannot answer 0001's inquiry: same reply as for an unknown id,
    // and nothing changes.
    let inquiry = first["inquiries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["institution"] == "0001")
        .unwrap();
    let inquiry_id = inquiry["id"].as_str().unwrap();
    let before = env
        .call(reqwest::Method::GET, &format!("/requests/{id}"), None, None)
        .await
        .1;
    let forged = shokai::iso20022::encode_answer_batch(
        "FORGED-1",
        &code("0005"),
        "131016",
        shokai::domain::time::now_millis(),
        &[shokai::iso20022::OutgoingAnswer {
            answer: shokai::domain::answer::Answer {
                inquiry_id: shokai::domain::ids::InquiryId::parse(inquiry_id).unwrap(),
                response_id: "X1".into(),
                outcome: shokai::domain::answer::Outcome::NotFound,
            },
            kinds: vec![shokai::domain::state::InquiryKind::Existence],
            zengin_name: "ﾔﾏﾀﾞ ﾀﾛｳ".into(),
        }],
    );
    let resp = env
        .bank_client(Some("0005"))
        .post(env.gateway.answers_url())
        .body(forged.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let receipt =
        shokai::iso20022::decode_answer_batch_receipt(&resp.bytes().await.unwrap()).unwrap();
    match &receipt.results[0].status {
        shokai::iso20022::AnswerStatus::Rejected { reason_code, .. } => {
            assert_eq!(reason_code, "UNKN")
        }
        other => panic!("a foreign answer was {other:?}"),
    }
    // Claiming to be 0001 in the envelope while holding 0005's certificate.
    let text = String::from_utf8(forged).unwrap().replacen(
        "<b:InstnCd>0005</b:InstnCd>",
        "<b:InstnCd>0001</b:InstnCd>",
        1,
    );
    let resp = env
        .bank_client(Some("0005"))
        .post(env.gateway.answers_url())
        .body(text)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let after = env
        .call(reqwest::Method::GET, &format!("/requests/{id}"), None, None)
        .await
        .1;
    assert_eq!(before, after, "refused answers change nothing");

    env.gateway.stop().await;
}
db_test!(
    inquiries_are_delivered_answered_and_filed,
    super::inquiries_are_delivered_answered_and_filed
);

async fn bad_requests_get_problems_and_change_nothing(url: String) {
    let env = setup(&url).await;
    let (_, case) = env
        .call(reqwest::Method::POST, "/cases", Some(&case_body()), None)
        .await;
    let (_, other_case) = env
        .call(reqwest::Method::POST, "/cases", Some(&case_body()), None)
        .await;
    let due = (shokai::casework::today() + chrono::Days::new(14)).to_string();
    let base = json!({"case_id": case["id"], "institutions": [{"code": "0001"}], "kinds": ["balance"], "due_date": due});
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"nonsense": true}), 400, "invalid_json"),
        (
            {
                // On PostgreSQL no foreign key would stop it (0017).
                let mut b = base.clone();
                b["subject_ids"] = json!([other_case["subjects"][0]["id"]]);
                b
            },
            422,
            "unknown_subject",
        ),
        (
            {
                let mut b = base.clone();
                b["institutions"] = json!([{"code": "12"}]);
                b
            },
            422,
            "invalid_institution_code",
        ),
        (
            {
                let mut b = base.clone();
                b["institutions"] = json!([{"code": "7777"}]);
                b
            },
            422,
            "unknown_institution",
        ),
        (
            {
                let mut b = base.clone();
                b["institutions"] = json!([{"code": "0001", "branches": ["999"]}]);
                b
            },
            422,
            "unknown_branch",
        ),
        (
            {
                let mut b = base.clone();
                b["due_date"] = json!("2026-02-30");
                b
            },
            422,
            "invalid_date",
        ),
        (
            {
                let mut b = base.clone();
                b["kinds"] = json!(["transactions"]);
                b
            },
            422,
            "missing_period",
        ),
    ];
    for (body, status, code_) in cases {
        let (s, p) = env
            .call(reqwest::Method::POST, "/requests", Some(&body), None)
            .await;
        assert_eq!(
            (s, p["code"].as_str()),
            (status, Some(code_)),
            "{body} -> {p}"
        );
    }
    let counts = env.gateway.store.inquiry_state_counts().await.unwrap();
    assert!(counts.is_empty(), "no inquiry was filed: {counts:?}");
    let (s, p) = env.call(reqwest::Method::POST, "/cases", Some(&json!({"case_number": "X", "subjects": [{"kana_name": "山田", "birth_date": "1960-01-01"}]})), None).await;
    assert_eq!((s, p["code"].as_str()), (422, Some("invalid_kana")));
    let resp = env
        .http
        .get(format!("{}/requests/abc", env.gateway.api_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    env.gateway.stop().await;
}
db_test!(
    bad_requests_get_problems_and_change_nothing,
    super::bad_requests_get_problems_and_change_nothing
);

/// The demo as a user runs it: the real binary, mock banks as children.
#[tokio::test]
async fn demo_runs_to_its_summary_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shokai"))
        .args(["demo", "--exit", "--subjects", "34"])
        .arg("--work-dir")
        .arg(dir.path().join("demo"))
        .arg("--directory")
        .arg(crate::support::repo_path("data/zengin"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap();
    assert!(
        last.starts_with("demo: 102 inquiries, ")
            && last.contains(", 0 failed; departments asked for ")
            && last.ends_with(", 1 change alert raised"),
        "{last}"
    );
}
