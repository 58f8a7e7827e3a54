//! Shared helpers: per-test databases, a dev PKI, a running gateway and the
//! mock banks as a separate process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use shokai::domain::zengin::{BranchCode, BranchRecord, InstitutionCode, InstitutionRecord};
use shokai::store::{Store, StoreConfig};
use sqlx::Connection;
use tokio::process::{Child, Command};

/// Declares a module NAME with tests `sqlite` and `postgres`, each running
/// `body(url)` on a fresh database of that kind (shown as NAME::sqlite and
/// NAME::postgres in the output). The PostgreSQL one passes with a note when
/// no server is configured.
#[macro_export]
macro_rules! db_test {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = $crate::support::sqlite_db();
                $body(db.url.clone()).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                match $crate::support::postgres_db().await {
                    Some(db) => {
                        $body(db.url.clone()).await;
                        db.drop_postgres().await;
                    }
                    None => eprintln!("skipped: SHOKAI_TEST_DATABASE_URL is not set"),
                }
            }
        }
    };
}

pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// Drops a passed test's PostgreSQL database; a failed test's stays for
    /// a look.
    pub async fn drop_postgres(&self) {
        let (Ok(base), Some((_, name))) = (
            std::env::var("SHOKAI_TEST_DATABASE_URL"),
            self.url.rsplit_once('/'),
        ) else {
            return;
        };
        if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut conn)
            .await;
        }
    }
}

pub fn sqlite_db() -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    TestDb {
        url,
        _dir: Some(dir),
    }
}

/// A fresh PostgreSQL database, or None when no server is configured.
pub async fn postgres_db() -> Option<TestDb> {
    let base = std::env::var("SHOKAI_TEST_DATABASE_URL").ok()?;
    let name = format!("shokai_test_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::PgConnection::connect(&base)
        .await
        .expect("connect to SHOKAI_TEST_DATABASE_URL");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let (prefix, _) = base.rsplit_once('/').expect("URL has a database name");
    Some(TestDb {
        url: format!("{prefix}/{name}"),
        _dir: None,
    })
}

pub async fn open(url: &str) -> Store {
    shokai::tls::install_crypto_provider();
    let mut cfg = StoreConfig::new(url);
    cfg.max_connections = 4;
    Store::open(&cfg).await.expect("open store")
}

/// Runs statements on a connection of its own, behind the store's back:
/// for a test that sets up what the store would never write.
pub async fn execute_behind_the_store(url: &str, statements: &[&str]) {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    for sql in statements {
        sqlx::query(sqlx::AssertSqlSafe(*sql))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
}

/// One number read past the store, for rows it has no reader for.
pub async fn count_behind_the_store(url: &str, sql: &str) -> i64 {
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    let (n,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    n
}

pub fn code(c: &str) -> InstitutionCode {
    InstitutionCode::parse(c).unwrap()
}

/// A small directory: three banks, a few branches.
pub async fn import_small_directory(store: &Store) {
    let banks = [
        ("0001", "みずほ", "ミズホ"),
        ("0005", "三菱ＵＦＪ", "ミツビシユ－エフジエイ"),
        ("0009", "三井住友", "ミツイスミトモ"),
    ]
    .iter()
    .map(|(c, n, k)| InstitutionRecord {
        code: code(c),
        name: (*n).into(),
        kana: (*k).into(),
    })
    .collect::<Vec<_>>();
    let branches = ["001", "110", "251"]
        .iter()
        .flat_map(|b| {
            banks.iter().map(move |bank| BranchRecord {
                institution: bank.code.clone(),
                code: BranchCode::parse(b).unwrap(),
                name: format!("支店{b}"),
                kana: "シテン".into(),
            })
        })
        .collect::<Vec<_>>();
    store.import_directory(&banks, &branches).await.unwrap();
}

pub struct MockBanks {
    _child: Child,
    pub endpoints: Vec<(String, String)>,
}

impl MockBanks {
    pub fn from_parts(child: Child, endpoints: Vec<(String, String)>) -> Self {
        Self {
            _child: child,
            endpoints,
        }
    }
}

pub async fn start_mock_banks(pki: &Path, gateway_url: &str, banks: &[&str]) -> MockBanks {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mock-banks"));
    cmd.arg("--pki-dir")
        .arg(pki)
        .arg("--gateway-url")
        .arg(gateway_url)
        .arg("--answer-delay-ms")
        .arg("100");
    for b in banks {
        cmd.arg("--bank").arg(format!("{b}=127.0.0.1:0"));
    }
    let (child, endpoints) = shokai::mockbank::spawn(cmd)
        .await
        .expect("mock banks ready");
    MockBanks {
        _child: child,
        endpoints,
    }
}

pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Polls `check` until it returns true or the time runs out.
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Engine settings for tests: short leases and quick retries.
pub fn fast_engine() -> shokai::delivery::EngineTuning {
    shokai::delivery::EngineTuning {
        lease: Duration::from_secs(10),
        poll_interval: Duration::from_millis(50),
        request_timeout: Duration::from_secs(5),
        retry: shokai::domain::retry::RetryPolicy {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(2),
            max_attempts: 50,
            deadline: None,
        },
        breaker: shokai::domain::breaker::BreakerPolicy {
            failure_threshold: 5,
            cool_down: Duration::from_millis(500),
        },
        shutdown_grace: Duration::from_secs(5),
        ..Default::default()
    }
}

/// Files one case with `subjects` people at `banks`, straight into the store.
pub async fn file_request_for(
    store: &Store,
    subjects: usize,
    banks: &[&str],
) -> shokai::domain::request::Request {
    let today = shokai::casework::today();
    let case = shokai::domain::request::NewCase::validate(
        "131016",
        "CASE-1",
        (0..subjects)
            .map(|i| shokai::domain::request::SubjectInput {
                kana_name: format!("ヤマダ タロウ{}", "ア".repeat(i)),
                kanji_name: Some("山田 太郎".into()),
                birth_date: chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap(),
                postal_code: None,
                address: None,
                former_kana_names: vec![],
            })
            .collect(),
        today,
    )
    .unwrap();
    store.insert_case(&case, "test", &[]).await.unwrap();
    let ids: Vec<_> = case.subjects.iter().map(|s| s.id.clone()).collect();
    let request = shokai::domain::request::Request::validate(
        &case.id,
        &ids,
        shokai::domain::request::RequestInput {
            subject_ids: ids.clone(),
            targets: banks
                .iter()
                .map(|b| shokai::domain::request::Target {
                    institution: code(b),
                    branches: vec![],
                })
                .collect(),
            kinds: vec![
                shokai::domain::state::InquiryKind::Existence,
                shokai::domain::state::InquiryKind::Balance,
            ],
            reference_date: None,
            period: None,
            legal_basis: None,
            purpose: None,
            due_date: today + chrono::Days::new(14),
        },
        today,
    )
    .unwrap();
    store
        .insert_request(&request, "test", None, &[])
        .await
        .unwrap();
    request
}

/// A gateway on loopback ports chosen by the OS, with the engine on and
/// test-speed settings; tests change fields with struct update syntax.
pub fn gateway_config(url: &str, pki_dir: &Path) -> shokai::gateway::GatewayConfig {
    shokai::gateway::GatewayConfig {
        database: StoreConfig::new(url),
        staff_listen: "127.0.0.1:0".parse().unwrap(),
        bank_listen: "127.0.0.1:0".parse().unwrap(),
        tls: shokai::gateway::TlsFiles::from_pki_dir(pki_dir),
        workers: 1,
        run_engine: true,
        serve_api: true,
        engine: fast_engine(),
        connectors: Default::default(),
        feed: None,
    }
}

/// Onboards each running mock bank as a push institution, with its client
/// certificate, as an operator would.
pub async fn connect_mock_banks(
    store: &Store,
    pki_dir: &Path,
    endpoints: &[(String, String)],
    limits: (i64, i64, i64),
) {
    let layout = shokai::pki::PkiLayout::new(pki_dir);
    let ca = std::fs::read_to_string(layout.ca_cert()).unwrap();
    for (c, endpoint) in endpoints {
        let c = code(c);
        shokai::admin::connect_push_institution(
            store,
            &c,
            endpoint,
            &ca,
            &layout.bank_client(c.as_str()).0,
            limits,
        )
        .await
        .unwrap();
    }
}

/// One staff API call with a bearer token: the status and the JSON body
/// (Null when the body is not JSON).
pub async fn api_call(
    http: &reqwest::Client,
    token: &str,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
