//! Department connectors end to end: a comprehensive inquiry for a
//! 4-person household across all seven departments (five over the pull API
//! on loopback HTTPS, two by CSV file linkage), change detection by
//! re-query, a connector timeout, malformed linkage rows, and the signed
//! case-file feed with retries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::NaiveDate;
use serde_json::{Value, json};
use shokai::admin;
use shokai::casework::{self, Role};
use shokai::connectors::{ConnectorSpec, ConnectorsConfig, Source};
use shokai::domain::department::Department;
use shokai::gateway::{FeedSettings, Gateway};
use shokai::mockdept::{Change, MockDepartments, Person};
use shokai::pki::{self, PkiLayout};

use crate::support::eventually;

const OFFICE: &str = "131016";
const FILE_DEPARTMENTS: [Department; 2] =
    [Department::NationalHealthInsurance, Department::Pension];

fn household() -> Vec<Person> {
    [
        ("ヤマダ ハナコ", "山田 花子", (1985, 5, 10), "世帯主"),
        ("ヤマダ タロウ", "山田 太郎", (2012, 8, 1), "子"),
        ("ヤマダ ジロウ", "山田 次郎", (2016, 2, 29), "子"),
        ("ヤマダ トメ", "山田 とめ", (1948, 1, 3), "母"),
    ]
    .into_iter()
    .map(|(kana, kanji, (y, m, d), rel)| Person {
        kana_name: kana.to_owned(),
        kanji_name: Some(kanji.to_owned()),
        birth_date: NaiveDate::from_ymd_opt(y, m, d).unwrap(),
        household: "H-1".to_owned(),
        relationship: rel.to_owned(),
        address: Some("東京都千代田区霞が関1-1".to_owned()),
    })
    .collect()
}

struct Env {
    gateway: Gateway,
    departments: MockDepartments,
    linkage: PathBuf,
    token: String,
    admin_token: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

fn linkage_dir(root: &Path, d: Department) -> PathBuf {
    root.join(d.as_str())
}

async fn setup(url: &str, feed: Option<FeedSettings>) -> Env {
    shokai::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    pki::init(&pki_dir, &[]).unwrap();
    let departments = MockDepartments::start(&pki_dir, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    departments.register(&household()).unwrap();
    let linkage = dir.path().join("linkage");
    for d in FILE_DEPARTMENTS {
        departments
            .export_csv(d, &linkage_dir(&linkage, d))
            .unwrap();
    }
    let specs = Department::ALL
        .into_iter()
        .map(|d| ConnectorSpec {
            department: d,
            source: if FILE_DEPARTMENTS.contains(&d) {
                Source::Files(linkage_dir(&linkage, d))
            } else {
                Source::Pull(departments.url(d))
            },
        })
        .collect();
    let connectors = ConnectorsConfig {
        specs,
        ca: Some(PkiLayout::new(&pki_dir).ca_cert()),
        timeout: Duration::from_secs(5),
        // The care-insurance system is the slow one in these tests.
        timeouts: [(Department::LongTermCare, Duration::from_millis(700))].into(),
        requery_every: None,
    };
    let gateway = Gateway::start(shokai::gateway::GatewayConfig {
        connectors,
        feed,
        ..crate::support::gateway_config(url, &pki_dir)
    })
    .await
    .unwrap();
    let token = admin::create_token(&gateway.store, Role::Caseworker, OFFICE, "dept")
        .await
        .unwrap();
    let admin_token = admin::create_token(&gateway.store, Role::Admin, OFFICE, "admin")
        .await
        .unwrap();
    Env {
        gateway,
        departments,
        linkage,
        token,
        admin_token,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        _dir: dir,
    }
}

impl Env {
    async fn call_as(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.gateway.api_url());
        crate::support::api_call(&self.http, token, method, url, body).await
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (u16, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    async fn create_case(&self) -> String {
        let subjects: Vec<Value> = household()
            .iter()
            .map(|p| {
                json!({
                    "kana_name": p.kana_name,
                    "kanji_name": p.kanji_name,
                    "birth_date": p.birth_date.to_string(),
                    "address": p.address,
                })
            })
            .collect();
        let (s, body) = self
            .call(
                reqwest::Method::POST,
                "/cases",
                Some(json!({"case_number": "R8-0042", "subjects": subjects})),
            )
            .await;
        assert_eq!(s, 201, "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    async fn inquire(&self, case: &str) -> Value {
        let (s, body) = self
            .call(
                reqwest::Method::POST,
                &format!("/cases/{case}/department-inquiry"),
                None,
            )
            .await;
        assert_eq!(s, 200, "{body}");
        body
    }

    async fn file(&self, case: &str) -> Value {
        let (s, body) = self
            .call(reqwest::Method::GET, &format!("/cases/{case}/file"), None)
            .await;
        assert_eq!(s, 200, "{body}");
        body
    }

    async fn requery(&self) -> casework::RequerySummary {
        casework::requery_open_cases(&self.gateway.store, &self.gateway.connectors)
            .await
            .unwrap()
    }
}

fn connector(run: &Value, d: Department) -> &Value {
    run["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["department"] == d.as_str())
        .unwrap_or_else(|| panic!("no result for {}", d.as_str()))
}

fn department_alerts(file: &Value) -> Vec<Value> {
    file["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "department_change")
        .cloned()
        .collect()
}

async fn inquiry_change_and_timeout(url: String) {
    let env = setup(&url, None).await;
    let case = env.create_case().await;

    // The comprehensive inquiry: every department, every subject.
    let run = env.inquire(&case).await;
    assert_eq!(run["partial"], false, "{run:#}");
    eprintln!(
        "comprehensive inquiry for a 4-person household over 7 connectors: {} ms",
        run["duration_ms"]
    );
    for d in Department::ALL {
        let c = connector(&run, d);
        assert_eq!(c["status"], "complete", "{c}");
        assert!(
            c["records"].as_u64().unwrap() > 0,
            "{} returned nothing",
            d.as_str()
        );
        let transport = if FILE_DEPARTMENTS.contains(&d) {
            "file"
        } else {
            "pull"
        };
        assert_eq!(c["transport"], transport);
    }
    assert!(
        run["alerts"].as_array().unwrap().is_empty(),
        "a baseline raises nothing"
    );

    let file = env.file(&case).await;
    let findings = file["departments"].as_array().unwrap();
    assert_eq!(findings.len(), 7);
    for f in findings {
        assert_eq!(f["last_fetch"]["status"], "complete", "{f}");
        assert!(!f["records"].as_array().unwrap().is_empty(), "{f}");
    }
    let mother = &file["case"]["subjects"][0]["id"];
    let tax = findings.iter().find(|f| f["department"] == "tax").unwrap();
    let assessed = tax["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["subject_id"] == *mother && r["kind"] == "assessed_income")
        .expect("the mother's assessed income");
    let before = assessed["amounts"]["annual_income"].as_i64().unwrap();
    assert!(
        file["timeline"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["event"] == "department.complete")
    );
    assert_eq!(file["requests"], json!([]));
    assert_eq!(file["bank_totals"].as_array().unwrap().len(), 4);

    // Nothing changed: the re-query raises nothing.
    let quiet = env.requery().await;
    assert_eq!((quiet.cases, quiet.alerts, quiet.incomplete), (1, 0, 0));

    // The tax office reassesses the mother's income.
    env.departments
        .change(Change {
            kana_name: "ヤマダ ハナコ".to_owned(),
            birth_date: NaiveDate::from_ymd_opt(1985, 5, 10).unwrap(),
            kind: "assessed_income".to_owned(),
            effective_date: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            amounts: [("annual_income".to_owned(), before + 1_200_000)].into(),
            attributes: Default::default(),
            remove: false,
        })
        .unwrap();
    let first = env.requery().await;
    assert_eq!(first.alerts, 1, "{first:?}");
    let again = env.requery().await;
    assert_eq!(again.alerts, 0, "the same change must not alert twice");
    let file = env.file(&case).await;
    let alerts = department_alerts(&file);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let change = &alerts[0]["change"];
    assert_eq!(change["department"], "tax");
    assert_eq!(change["record_kind"], "assessed_income");
    assert_eq!(change["subject_id"], *mother);
    assert_eq!(change["suggested_action"], "review_income");
    assert_eq!(change["effective_date"], "2026-11-01");
    let fields = change["fields"].as_array().unwrap();
    let income = fields
        .iter()
        .find(|f| f["field"] == "annual_income")
        .unwrap();
    assert_eq!(income["before"], before.to_string());
    assert_eq!(income["after"], (before + 1_200_000).to_string());

    // A caseworker acknowledges it.
    let id = alerts[0]["id"].as_i64().unwrap();
    let (s, body) = env
        .call(
            reqwest::Method::POST,
            &format!("/cases/{case}/alerts/{id}/acknowledge"),
            None,
        )
        .await;
    assert_eq!(s, 204, "{body}");

    // The care-insurance system hangs: its part fails as a timeout, the
    // rest is filed, and the result says it is partial.
    env.departments
        .set_fault(Department::LongTermCare, Duration::from_secs(3), false);
    let run = env.inquire(&case).await;
    assert_eq!(run["partial"], true);
    let ltc = connector(&run, Department::LongTermCare);
    assert_eq!(ltc["status"], "failed");
    assert_eq!(ltc["error_code"], "timeout");
    for d in Department::ALL
        .into_iter()
        .filter(|d| *d != Department::LongTermCare)
    {
        assert_eq!(connector(&run, d)["status"], "complete");
    }
    let file = env.file(&case).await;
    let ltc = file["departments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["department"] == "long_term_care")
        .unwrap();
    assert_eq!(ltc["last_fetch"]["status"], "failed");
    assert!(
        !ltc["records"].as_array().unwrap().is_empty(),
        "a timeout keeps the last snapshot"
    );
    assert_eq!(
        department_alerts(&file).len(),
        1,
        "a timeout is not a change"
    );

    // The CSV export carries the department rows and the alert.
    let resp = env
        .http
        .get(format!(
            "{}/cases/{case}/file?format=csv",
            env.gateway.api_url()
        ))
        .bearer_auth(&env.token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = resp.text().await.unwrap();
    assert!(csv.starts_with("section,subject_id,source,kind,"));
    assert!(
        csv.lines()
            .any(|l| l.starts_with("department,") && l.contains(",assessed_income,"))
    );
    assert!(
        csv.lines()
            .any(|l| l.starts_with("alert,") && l.ends_with(",acknowledged"))
    );
    let (s, _) = env
        .call(
            reqwest::Method::GET,
            &format!("/cases/{case}/file?format=xml"),
            None,
        )
        .await;
    assert_eq!(s, 400);

    // Every department inquiry left a trace in the audit log.
    let traces = env
        .gateway
        .store
        .audit_entries(&shokai::store::AuditFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.entry.action.as_str() == "department.inquiry")
        .count();
    assert_eq!(traces, 5, "2 inquiries and 3 re-queries");

    // Another office's caseworker may not ask about this case.
    let other = admin::create_token(&env.gateway.store, Role::Caseworker, "999999", "other")
        .await
        .unwrap();
    let (s, _) = env
        .call_as(
            &other,
            reqwest::Method::POST,
            &format!("/cases/{case}/department-inquiry"),
            None,
        )
        .await;
    assert_eq!(s, 403);
    env.departments.stop().await;
    env.gateway.stop().await;
}
crate::db_test!(
    comprehensive_inquiry_change_and_timeout,
    super::inquiry_change_and_timeout
);

async fn malformed_linkage_rows(url: String) {
    let env = setup(&url, None).await;
    let case = env.create_case().await;
    let dir = linkage_dir(&env.linkage, Department::Pension);
    // Today's export was picked up already; a correction file arrives with
    // one bad line among good ones.
    env.inquire(&case).await;
    let text = format!(
        "{}\n\
         NK-X1,pension_benefit,ヤマダ トメ,1948-01-03,2026-10-01,annual_amount=840000,pension_type=老齢基礎年金\n\
         NK-X2,pension_benefit,ヤマダ トメ,1948-02-30,2026-10-01,annual_amount=1,\n\
         NK-X3,pension_benefit,ヤマダ ハナコ,1985-05-10,2026-10-01,annual_amount=12.5,\n\
         NK-X4,pension_benefit,ヤマダ ハナコ,1985-05-10,2026-10-01,annual_amount=120000,pension_type=遺族基礎年金\n",
        shokai::connectors::file::HEADER
    );
    std::fs::write(dir.join("pension-correction.delta.csv"), text).unwrap();
    let run = env.inquire(&case).await;
    let pension = connector(&run, Department::Pension);
    assert_eq!(pension["status"], "complete", "{pension}");
    let warnings: Vec<&str> = pension["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(
        warnings[0].starts_with("pension-correction.delta.csv: line 3: "),
        "{warnings:?}"
    );
    assert!(
        warnings[1].starts_with("pension-correction.delta.csv: line 4: "),
        "{warnings:?}"
    );
    assert!(
        !warnings
            .iter()
            .any(|w| w.contains("1948-02-30") || w.contains("12.5")),
        "refusals name the field, never the value: {warnings:?}"
    );
    assert!(dir.join("processed/pension-correction.delta.csv").exists());
    assert!(!dir.join("pension-correction.delta.csv").exists());

    // The good rows are in the case file.
    let file = env.file(&case).await;
    let records: Vec<String> = file["departments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["department"] == "pension")
        .unwrap()["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["record_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(records.contains(&"NK-X1".to_owned()) && records.contains(&"NK-X4".to_owned()));
    assert!(
        records.iter().any(|r| r.starts_with("NK-A")),
        "a delta file keeps the extract's records: {records:?}"
    );
    assert!(!records.contains(&"NK-X2".to_owned()) && !records.contains(&"NK-X3".to_owned()));

    // The pickup log names each refused line; a caseworker may not read it.
    let (s, list) = env
        .call_as(
            &env.admin_token,
            reqwest::Method::GET,
            "/admin/linkage-files",
            None,
        )
        .await;
    assert_eq!(s, 200, "{list}");
    let files = list["files"].as_array().unwrap();
    let correction = files
        .iter()
        .find(|f| f["file_name"] == "pension-correction.delta.csv")
        .unwrap();
    assert_eq!(correction["loaded_rows"], 2);
    assert_eq!(correction["errors"].as_array().unwrap().len(), 2);
    assert_eq!(files.len(), 3, "two exports and the correction, each once");
    let (s, _) = env
        .call(reqwest::Method::GET, "/admin/linkage-files", None)
        .await;
    assert_eq!(s, 403);

    // The same content dropped again is not loaded twice.
    std::fs::copy(
        dir.join("processed/pension-correction.delta.csv"),
        dir.join("again.csv"),
    )
    .unwrap();
    env.inquire(&case).await;
    let (_, list) = env
        .call_as(
            &env.admin_token,
            reqwest::Method::GET,
            "/admin/linkage-files",
            None,
        )
        .await;
    assert_eq!(list["files"].as_array().unwrap().len(), 3);
    assert!(dir.join("processed/again.csv").exists());
    env.departments.stop().await;
    env.gateway.stop().await;
}
crate::db_test!(
    malformed_linkage_rows_are_reported_by_line,
    super::malformed_linkage_rows
);

/// The welfare case system's receiving end: checks every signature, keeps
/// each event once, fails the first requests and loses some answers (it
/// stores, then answers 503), so the gateway must retry.
#[derive(Default)]
struct Receiver {
    requests: u64,
    stored: HashMap<String, Value>,
    bad_signatures: u64,
}

async fn start_receiver(
    secret: Vec<u8>,
) -> (String, Arc<Mutex<Receiver>>, actix_web::dev::ServerHandle) {
    use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
    let state = Arc::new(Mutex::new(Receiver::default()));
    let shared = state.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        let state = shared.clone();
        let secret = secret.clone();
        App::new().route(
            "/hook",
            web::post().to(move |req: HttpRequest, body: web::Bytes| {
                let state = state.clone();
                let secret = secret.clone();
                async move {
                    let header = |name: &str| {
                        req.headers()
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned()
                    };
                    let now = chrono::Utc::now().timestamp();
                    let mut r = state.lock().unwrap();
                    r.requests += 1;
                    if shokai::http::feed::verify(
                        &secret,
                        &header("shokai-timestamp"),
                        &body,
                        &header("shokai-signature"),
                        now,
                        300,
                    )
                    .is_err()
                    {
                        r.bad_signatures += 1;
                        return HttpResponse::Unauthorized().finish();
                    }
                    if r.requests <= 3 {
                        return HttpResponse::InternalServerError().finish();
                    }
                    let event: Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(event["id"], header("shokai-event-id"));
                    assert_eq!(event["type"], header("shokai-event-type"));
                    r.stored
                        .entry(event["id"].as_str().unwrap().to_owned())
                        .or_insert(event);
                    if r.requests % 4 == 0 {
                        // Stored, but the answer is lost on the way back.
                        return HttpResponse::ServiceUnavailable().finish();
                    }
                    HttpResponse::NoContent().finish()
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (format!("http://{addr}/hook"), state, handle)
}

async fn feed_with_retries(url: String) {
    let secret = b"0123456789abcdef0123456789abcdef-test".to_vec();
    let (hook, receiver, handle) = start_receiver(secret.clone()).await;
    let env = setup(
        &url,
        Some(FeedSettings {
            url: hook,
            secret,
            ca: None,
        }),
    )
    .await;
    let case = env.create_case().await;
    env.inquire(&case).await;
    env.departments
        .change(Change {
            kana_name: "ヤマダ トメ".to_owned(),
            birth_date: NaiveDate::from_ymd_opt(1948, 1, 3).unwrap(),
            kind: "residence".to_owned(),
            effective_date: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap(),
            amounts: Default::default(),
            attributes: [("status".to_owned(), "moved_out".to_owned())].into(),
            remove: false,
        })
        .unwrap();
    assert_eq!(env.requery().await.alerts, 1);
    let file = env.file(&case).await;
    let alert = department_alerts(&file)[0]["id"].as_i64().unwrap();
    assert_eq!(
        department_alerts(&file)[0]["change"]["suggested_action"],
        "review_household"
    );
    let (s, _) = env
        .call(
            reqwest::Method::POST,
            &format!("/cases/{case}/alerts/{alert}/acknowledge"),
            None,
        )
        .await;
    assert_eq!(s, 204);

    let case_id = shokai::domain::ids::CaseId::parse(&case).unwrap();
    let events = env.gateway.store.feed_events(&case_id).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "department_inquiry.completed",
            "alert.raised",
            "department_inquiry.completed",
            "alert.acknowledged"
        ]
    );
    let store = env.gateway.store.clone();
    eventually(
        "every feed event delivered",
        Duration::from_secs(30),
        || {
            let store = store.clone();
            async move {
                let c = store.feed_counts().await.unwrap();
                c.pending == 0 && c.dead == 0
            }
        },
    )
    .await;
    {
        let r = receiver.lock().unwrap();
        assert_eq!(r.bad_signatures, 0);
        let mut got: Vec<&String> = r.stored.keys().collect();
        got.sort();
        let mut sent: Vec<String> = events.iter().map(|e| e.id.to_string()).collect();
        sent.sort();
        assert_eq!(
            got,
            sent.iter().collect::<Vec<_>>(),
            "each event stored once"
        );
        assert!(
            r.requests > events.len() as u64,
            "the failures must have caused retries ({} requests)",
            r.requests
        );
        let raised = r
            .stored
            .values()
            .find(|e| e["type"] == "alert.raised")
            .unwrap();
        assert_eq!(raised["case_id"], case);
        assert_eq!(raised["ref"], alert.to_string());
    }
    let metrics = env
        .http
        .get(format!(
            "http://{}/metrics",
            env.gateway.staff_addr.unwrap()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("shokai_feed_events{state=\"delivered\"} 4")
            && metrics.contains("shokai_feed_events{state=\"dead\"} 0"),
        "{metrics}"
    );
    handle.stop(false).await;
    env.departments.stop().await;
    env.gateway.stop().await;
}
crate::db_test!(
    case_file_feed_is_signed_and_retried,
    super::feed_with_retries
);

// --- The store's rules for snapshots, alerts, the outbox and task leases ---

mod rules {
    use std::collections::HashSet;

    use chrono::NaiveDate;
    use shokai::domain::department::{
        Department, DepartmentRecord, FetchStatus, FetchTrigger, RecordKind,
    };
    use shokai::domain::ids::{CaseId, FetchRunId, SubjectId};
    use shokai::store::{BatchFinish, FetchApply, Store, StoreError};

    use crate::support::open;

    /// A case with `n` people and no request, straight into the store.
    async fn new_case(store: &Store, n: usize) -> CaseId {
        let case = shokai::domain::request::NewCase::validate(
            "131016",
            "R8-0001",
            (0..n)
                .map(|i| shokai::domain::request::SubjectInput {
                    kana_name: format!("サトウ {}", ["イチロウ", "ジロウ", "サブロウ"][i]),
                    kanji_name: None,
                    birth_date: NaiveDate::from_ymd_opt(1980 + i as i32, 1, 1).unwrap(),
                    postal_code: None,
                    address: None,
                    former_kana_names: vec![],
                })
                .collect(),
            shokai::casework::today(),
        )
        .unwrap();
        store.insert_case(&case, "test", &[]).await.unwrap();
        case.id
    }

    fn allowance(subject: &SubjectId, id: &str, monthly: i64) -> DepartmentRecord {
        DepartmentRecord {
            department: Department::ChildAllowance,
            kind: RecordKind::ChildAllowance,
            subject: subject.clone(),
            source_id: id.to_owned(),
            effective_date: NaiveDate::from_ymd_opt(2024, 10, 1).unwrap(),
            amounts: [("monthly_amount".to_owned(), monthly)].into(),
            attributes: [("status".to_owned(), "active".to_owned())].into(),
        }
    }

    struct Fetch<'a> {
        store: &'a Store,
        case: &'a CaseId,
        asked: &'a [SubjectId],
    }

    impl Fetch<'_> {
        /// Applies one fetch that started at `started_at` and returns how
        /// many alerts it raised.
        async fn apply(
            &self,
            started_at: i64,
            records: &[DepartmentRecord],
            unanswered: &[&SubjectId],
        ) -> usize {
            let unanswered: HashSet<SubjectId> = unanswered.iter().map(|s| (*s).clone()).collect();
            let status = if unanswered.is_empty() {
                FetchStatus::Complete
            } else {
                FetchStatus::Partial
            };
            self.store
                .apply_department_fetch(
                    &FetchApply {
                        case: self.case,
                        run: &FetchRunId::generate(),
                        trigger: FetchTrigger::Requery,
                        department: Department::ChildAllowance,
                        status,
                        records,
                        asked: self.asked,
                        unanswered: &unanswered,
                        error: None,
                        started_at,
                        duration_ms: 1,
                    },
                    started_at + 1,
                )
                .await
                .unwrap()
                .len()
        }

        async fn snapshot(&self) -> Vec<String> {
            self.store
                .department_records(self.case)
                .await
                .unwrap()
                .into_iter()
                .map(|r| {
                    format!(
                        "{}={}",
                        r.record.source_id, r.record.amounts["monthly_amount"]
                    )
                })
                .collect()
        }
    }

    async fn snapshots_and_alerts(url: String) {
        let store = open(&url).await;
        let case = new_case(&store, 2).await;
        let case_record = store.case(&case).await.unwrap().unwrap();
        let asked: Vec<SubjectId> = case_record.subjects.iter().map(|s| s.id.clone()).collect();
        let (a, b) = (&asked[0], &asked[1]);
        let f = Fetch {
            store: &store,
            case: &case,
            asked: &asked,
        };

        // A partial first fetch: only A is answered; A's data is its baseline.
        assert_eq!(f.apply(100, &[allowance(a, "JA-A", 10_000)], &[b]).await, 0);
        // B answered for the first time later: also a baseline, not "added".
        let both = [allowance(a, "JA-A", 10_000), allowance(b, "JA-B", 10_000)];
        assert_eq!(f.apply(200, &both, &[]).await, 0);
        // B unanswered now: B's record stays and is not "removed".
        assert_eq!(f.apply(300, &[allowance(a, "JA-A", 10_000)], &[b]).await, 0);
        assert_eq!(f.snapshot().await, ["JA-A=10000", "JA-B=10000"]);

        // A's allowance ends (removed), then starts again: two alerts.
        assert_eq!(f.apply(400, &[allowance(b, "JA-B", 10_000)], &[]).await, 1);
        assert_eq!(f.apply(500, &both, &[]).await, 1);
        assert_eq!(f.apply(600, &both, &[]).await, 0, "nothing new");

        // A fetch that started before the snapshot's is logged, not applied.
        let old = [allowance(a, "JA-A", 5_000), allowance(b, "JA-B", 10_000)];
        assert_eq!(f.apply(550, &old, &[]).await, 0);
        assert_eq!(f.snapshot().await, ["JA-A=10000", "JA-B=10000"]);
        let log = store.department_fetches(&case).await.unwrap();
        assert!(
            log.last()
                .unwrap()
                .error
                .as_deref()
                .unwrap()
                .contains("not applied")
        );

        // Two fetches of the same change racing: one alert, one snapshot.
        let raised = [allowance(a, "JA-A", 20_000), allowance(b, "JA-B", 10_000)];
        let (x, y) = tokio::join!(f.apply(700, &raised, &[]), f.apply(701, &raised, &[]));
        assert_eq!(x + y, 1, "the same change raises one alert");
        assert_eq!(f.snapshot().await, ["JA-A=20000", "JA-B=10000"]);
        let alerts = store.case_alerts(&case).await.unwrap();
        assert_eq!(alerts.len(), 3);

        // Retention removes the case's department data and feed events.
        store.close_case(&case, 1_000).await.unwrap();
        store.purge_closed_cases(2_000, 1).await.unwrap();
        assert!(store.department_records(&case).await.unwrap().is_empty());
        assert!(store.department_fetches(&case).await.unwrap().is_empty());
        assert!(store.case_alerts(&case).await.unwrap().is_empty());
    }
    crate::db_test!(snapshots_alerts_and_races, super::snapshots_and_alerts);

    async fn outbox_and_task_leases(url: String) {
        let mut config = shokai::store::StoreConfig::new(&url);
        config.feed_events = true;
        let store = Store::open(&config).await.unwrap();
        let case = new_case(&store, 1).await;
        let subject = store.case(&case).await.unwrap().unwrap().subjects[0]
            .id
            .clone();
        let asked = [subject.clone()];
        let f = Fetch {
            store: &store,
            case: &case,
            asked: &asked,
        };
        f.apply(100, &[allowance(&subject, "JA-A", 1)], &[]).await;
        f.apply(200, &[allowance(&subject, "JA-A", 2)], &[]).await;
        // One alert.raised event (the fetches alone write none here: the
        // run's completion event is the caller's).
        let events = store.feed_events(&case).await.unwrap();
        assert_eq!(events.len(), 1);

        // Claimed under a short lease; another worker takes it once the
        // lease ran out, and the first one's verdict is refused.
        let first = store.claim_feed_events(1_000, 10, 8).await.unwrap();
        assert_eq!(first.len(), 1);
        assert!(
            store
                .claim_feed_events(1_005, 10, 8)
                .await
                .unwrap()
                .is_empty()
        );
        let second = store.claim_feed_events(1_020, 10_000, 8).await.unwrap();
        assert_eq!((second.len(), second[0].attempt), (1, 2));
        assert!(matches!(
            store
                .finish_feed_event(&first[0], &BatchFinish::Acknowledged, 1_021)
                .await,
            Err(StoreError::LostLease(_))
        ));
        let dead = BatchFinish::Dead {
            reason: "HTTP 410".to_owned(),
        };
        store
            .finish_feed_event(&second[0], &dead, 1_022)
            .await
            .unwrap();
        assert_eq!(store.feed_counts().await.unwrap().dead, 1);
        assert_eq!(store.retry_dead_feed_events(1_030).await.unwrap(), 1);
        let third = store.claim_feed_events(1_040, 10_000, 8).await.unwrap();
        assert_eq!(
            third[0].attempt, 1,
            "a retried event starts its schedule again"
        );
        store
            .finish_feed_event(&third[0], &BatchFinish::Acknowledged, 1_041)
            .await
            .unwrap();
        let c = store.feed_counts().await.unwrap();
        assert_eq!((c.pending, c.delivered, c.dead), (0, 1, 0));

        // One re-query runner among many.
        assert!(store.take_task_lease("t", "p1", 1_000, 0).await.unwrap());
        assert!(!store.take_task_lease("t", "p2", 1_000, 500).await.unwrap());
        assert!(store.take_task_lease("t", "p1", 1_000, 900).await.unwrap());
        assert!(
            !store
                .take_task_lease("t", "p2", 1_000, 1_500)
                .await
                .unwrap()
        );
        assert!(
            store
                .take_task_lease("t", "p2", 1_000, 2_000)
                .await
                .unwrap()
        );
    }
    crate::db_test!(feed_outbox_and_task_leases, super::outbox_and_task_leases);
}
