//! Delivery that survives crashes and misbehaving banks: the gateway as a
//! child process killed with SIGKILL again and again, banks with faults
//! switched on, one bank down for a while, and two gateways on one queue.
//!
//! Sizes default to the suite's (5,000 inquiries, 10 kills); the long
//! variant is `SHOKAI_CHAOS_INQUIRIES=200000 SHOKAI_CHAOS_KILLS=50 cargo test
//! --release --test it chaos -- --nocapture`.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rand::Rng;
use serde_json::{Value, json};
use shokai::admin;
use shokai::casework::Role;
use shokai::domain::state::{BatchState, InquiryState};
use shokai::pki::{self, PkiLayout};
use shokai::store::Store;
use tokio::process::{Child, Command};

use crate::db_test;
use crate::support::{code, eventually, import_small_directory, open};

const BANKS: &[&str] = &["0001", "0005", "0009"];
const SUBJECTS_PER_CASE: usize = 20;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `shokai serve` child process that can be killed and restarted.
pub(crate) struct GatewayProcess {
    args: Vec<String>,
    staff_port: u16,
    child: Option<Child>,
    pub(crate) log: PathBuf,
    env: Vec<(String, String)>,
}

impl GatewayProcess {
    pub(crate) fn new(
        url: &str,
        pki: &Path,
        staff_port: u16,
        bank_port: u16,
        role: &str,
        log: PathBuf,
    ) -> Self {
        let args = [
            "serve",
            "--database-url",
            url,
            "--pki-dir",
            &pki.display().to_string(),
            "--staff-listen",
            &format!("127.0.0.1:{staff_port}"),
            "--bank-listen",
            &format!("127.0.0.1:{bank_port}"),
            "--role",
            role,
            "--lease-ms",
            "3000",
            "--request-timeout-ms",
            "2000",
            "--poll-ms",
            "50",
            "--retry-base-ms",
            "100",
            "--retry-cap-ms",
            "1000",
            "--retry-max-attempts",
            "100000",
            "--retry-deadline-secs",
            "0",
            "--breaker-threshold",
            "5",
            "--breaker-cooldown-ms",
            "1000",
            "--grace-secs",
            "1",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        Self {
            args,
            staff_port,
            child: None,
            log,
            env: vec![("SHOKAI_LOG".into(), "shokai=info".into())],
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().and_then(|c| c.id()).expect("running")
    }

    /// Extra `serve` arguments (before start).
    pub(crate) fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_owned());
        self
    }

    /// Logs everything, every crate, at debug level.
    pub(crate) fn verbose(mut self) -> Self {
        self.env = vec![("SHOKAI_LOG".into(), "debug".into())];
        self
    }

    pub(crate) async fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_shokai"))
            .args(&self.args)
            .envs(self.env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .expect("start shokai serve");
        self.child = Some(child);
        let url = format!("http://127.0.0.1:{}/healthz", self.staff_port);
        if self.args.iter().any(|a| a == "dispatcher") {
            return;
        }
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        eventually(
            "the gateway to answer /healthz",
            Duration::from_secs(30),
            || {
                let (http, url) = (http.clone(), url.clone());
                async move {
                    http.get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                }
            },
        )
        .await;
    }

    pub(crate) async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.start_kill().unwrap();
            child.wait().await.unwrap();
        }
    }

    fn delivery_lines(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("delivery attempt"))
            .count()
    }
}

pub(crate) struct Setup {
    _dir: tempfile::TempDir,
    pub(crate) pki: PathBuf,
    bank_log: PathBuf,
    pub(crate) store: Store,
    pub(crate) token: String,
    pub(crate) bank_port: u16,
    _banks: crate::support::MockBanks,
}

pub(crate) async fn setup(url: &str, faults: &[&str]) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    pki::init(
        &pki_dir,
        &BANKS.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
    )
    .unwrap();
    let store = open(url).await;
    import_small_directory(&store).await;
    let bank_port = free_port();
    let bank_log = dir.path().join("banks.log");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mock-banks"));
    cmd.arg("--pki-dir")
        .arg(&pki_dir)
        .arg("--gateway-url")
        .arg(format!("https://127.0.0.1:{bank_port}/bank/v1/answers"))
        .arg("--answer-delay-ms")
        .arg("100")
        .arg("--log")
        .arg(&bank_log);
    for b in BANKS {
        cmd.arg("--bank").arg(format!("{b}=127.0.0.1:0"));
    }
    for f in faults {
        cmd.arg("--fault").arg(f);
    }
    let (child, endpoints) = shokai::mockbank::spawn(cmd).await.expect("mock banks");
    let layout = PkiLayout::new(&pki_dir);
    let _ca = std::fs::read_to_string(layout.ca_cert()).unwrap();
    crate::support::connect_mock_banks(&store, &pki_dir, &endpoints, (100, 2, 200)).await;
    let token = admin::create_token(&store, Role::Caseworker, "131016", "chaos")
        .await
        .unwrap();
    Setup {
        pki: pki_dir,
        bank_log,
        store,
        token,
        bank_port,
        _banks: crate::support::MockBanks::from_parts(child, endpoints),
        _dir: dir,
    }
}

/// Files `cases` cases of 20 people at the three banks through the staff
/// API, retrying each call until it goes through (the gateway may be dead
/// at any moment). Requests carry an Idempotency-Key, so a retry after a
/// lost reply cannot file twice. Returns the request ids.
pub(crate) async fn file_cases(
    staff_port: u16,
    token: &str,
    cases: usize,
    tag: &str,
) -> Vec<String> {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{staff_port}/api/v1");
    let due = (shokai::casework::today() + chrono::Days::new(14)).to_string();
    let call = |path: String, body: Value, key: Option<String>| {
        let (http, token, base) = (http.clone(), token.to_owned(), base.clone());
        async move {
            loop {
                let mut req = http
                    .post(format!("{base}{path}"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body.to_string());
                if let Some(k) = &key {
                    req = req.header("idempotency-key", k);
                }
                if let Ok(resp) = req.send().await {
                    let status = resp.status();
                    if let Ok(bytes) = resp.bytes().await {
                        assert!(
                            status.as_u16() < 500 || status.as_u16() == 503,
                            "{path}: {status} {}",
                            String::from_utf8_lossy(&bytes)
                        );
                        if status.is_success() {
                            return serde_json::from_slice::<Value>(&bytes).unwrap();
                        }
                        assert!(
                            !status.is_client_error(),
                            "{path}: {status} {}",
                            String::from_utf8_lossy(&bytes)
                        );
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let mut requests = Vec::new();
    for c in 0..cases {
        let subjects: Vec<Value> = (0..SUBJECTS_PER_CASE)
            .map(|i| {
                let n = c * SUBJECTS_PER_CASE + i;
                json!({
                    "kana_name": format!("テスト {}", kana_number(n)),
                    "birth_date": format!("{}-{:02}-{:02}", 1940 + n % 60, 1 + n % 12, 1 + n % 28),
                })
            })
            .collect();
        let case = call(
            "/cases".into(),
            json!({"case_number": format!("{tag}-{c}"), "subjects": subjects}),
            None,
        )
        .await;
        let request = json!({
            "case_id": case["id"],
            "institutions": BANKS.iter().map(|b| json!({"code": b})).collect::<Vec<_>>(),
            "kinds": ["existence", "balance"],
            "due_date": due,
        });
        let r = call(
            "/requests".into(),
            request,
            Some(format!("{tag}-request-{c}")),
        )
        .await;
        requests.push(r["id"].as_str().unwrap().to_owned());
    }
    requests
}

/// A distinct kana word for a number (names must be kana).
fn kana_number(mut n: usize) -> String {
    const SYL: [&str; 10] = ["ア", "カ", "サ", "タ", "ナ", "ハ", "マ", "ヤ", "ラ", "ワ"];
    let mut out = String::new();
    loop {
        out.push_str(SYL[n % 10]);
        n /= 10;
        if n == 0 {
            return out;
        }
    }
}

/// Waits until every inquiry is final, then checks nothing was lost,
/// nothing filed twice, and every batch reached its bank.
pub(crate) async fn assert_all_delivered(
    s: &Setup,
    requests: &[String],
    timeout: Duration,
) -> usize {
    let expected = requests.len() * SUBJECTS_PER_CASE * BANKS.len();
    eventually("every inquiry to reach a final state", timeout, || async {
        let counts = s.store.inquiry_state_counts().await.unwrap();
        counts.iter().all(|(state, _)| state.is_final())
    })
    .await;
    let counts = s.store.inquiry_state_counts().await.unwrap();
    let total: i64 = counts.iter().map(|(_, n)| n).sum();
    assert_eq!(
        total as usize, expected,
        "no inquiry lost or added: {counts:?}"
    );
    for (state, n) in &counts {
        assert!(
            matches!(state, InquiryState::Answered | InquiryState::NotFound),
            "{n} inquiries ended {state}"
        );
    }
    for id in requests {
        let view = s
            .store
            .request(&shokai::domain::ids::RequestId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(view.inquiries.len(), SUBJECTS_PER_CASE * BANKS.len());
    }
    assert_eq!(
        s.store.duplicate_case_file_entries().await.unwrap(),
        0,
        "an answer was filed twice"
    );
    let seen: HashSet<String> = std::fs::read_to_string(&s.bank_log)
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(1).map(str::to_owned))
        .collect();
    let batches = s
        .store
        .batches_in_state(BatchState::Acknowledged, 1_000_000)
        .await
        .unwrap();
    assert!(!batches.is_empty());
    for b in &batches {
        if !seen.contains(b.id.as_str()) {
            // Enough to explain a failure after the fact.
            let attempts = s.store.delivery_attempts(&b.id).await.unwrap();
            panic!(
                "batch {} never reached bank {}: {} batches in the bank log, attempts {attempts:?}",
                b.id,
                b.institution,
                seen.len()
            );
        }
    }
    assert!(
        s.store
            .batches_in_state(BatchState::Dead, 10)
            .await
            .unwrap()
            .is_empty(),
        "no batch may die: every fault here is retryable"
    );
    batches.len()
}

const FAULTS: &[&str] = &[
    "0001:error_rate=0.1,throttle_rate=0.05,reset_rate=0.05,malformed_rate=0.05,wrong_receipt_rate=0.05,duplicate_rate=0.1,correction_rate=0.05",
    "0005:slow_ms=30,hang_rate=0.02,late_rate=0.2,late_ms=500,duplicate_rate=0.1",
    "0009:down_every_ms=4000,down_ms=1500,error_rate=0.05,handshake_fail_rate=0.1",
];

async fn survives_sigkill(url: String) {
    let inquiries = env_usize("SHOKAI_CHAOS_INQUIRIES", 5_000);
    let kills = env_usize("SHOKAI_CHAOS_KILLS", 10);
    let cases = inquiries.div_ceil(SUBJECTS_PER_CASE * BANKS.len());
    let s = setup(&url, FAULTS).await;
    let staff_port = free_port();
    let log = s.pki.parent().unwrap().join("gateway.log");
    let mut gw = GatewayProcess::new(&url, &s.pki, staff_port, s.bank_port, "all", log);
    gw.start().await;
    let started = Instant::now();
    let token = s.token.clone();
    let filer = tokio::spawn(async move { file_cases(staff_port, &token, cases, "chaos").await });
    for k in 0..kills {
        let pause = rand::rng().random_range(300..1500);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        gw.kill().await;
        eprintln!("chaos: kill {} after {pause} ms", k + 1);
        gw.start().await;
    }
    let requests = filer.await.unwrap();
    let batches = assert_all_delivered(&s, &requests, Duration::from_secs(600)).await;
    eprintln!(
        "chaos: {} inquiries in {} batches, {kills} SIGKILLs, all final after {:.1} s",
        requests.len() * SUBJECTS_PER_CASE * BANKS.len(),
        batches,
        started.elapsed().as_secs_f64()
    );
    gw.kill().await;
    s.store.close().await;
}
db_test!(survives_sigkill, super::survives_sigkill);

/// One bank unreachable: the others finish, its batches wait with backoff
/// (a bounded number of attempts, not a busy loop), and go through once the
/// bank is back.
async fn a_down_bank_slows_only_itself(url: String) {
    let s = setup(&url, &[]).await;
    // Point 0009 at a port where nothing listens.
    let dead_port = free_port();
    let mut settings = s
        .store
        .institution(&code("0009"))
        .await
        .unwrap()
        .unwrap()
        .settings;
    let real_endpoint = settings.endpoint_url.clone();
    settings.endpoint_url = Some(format!("https://127.0.0.1:{dead_port}/inquiries"));
    admin::set_institution(&s.store, &code("0009"), &settings)
        .await
        .unwrap();
    let staff_port = free_port();
    let log = s.pki.parent().unwrap().join("gateway.log");
    let mut gw = GatewayProcess::new(&url, &s.pki, staff_port, s.bank_port, "all", log);
    gw.start().await;
    let requests = file_cases(staff_port, &s.token, 5, "down").await;
    eventually(
        "the two live banks to answer",
        Duration::from_secs(120),
        || async {
            let mut done = 0;
            for id in &requests {
                let view = s
                    .store
                    .request(&shokai::domain::ids::RequestId::parse(id).unwrap())
                    .await
                    .unwrap()
                    .unwrap();
                done += view
                    .inquiries
                    .iter()
                    .filter(|i| i.institution.as_str() != "0009" && i.state.is_final())
                    .count();
            }
            done == requests.len() * SUBJECTS_PER_CASE * 2
        },
    )
    .await;
    // Give the down bank's batches a few seconds of failing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let waiting = s
        .store
        .batches_in_state(BatchState::RetryWait, 100)
        .await
        .unwrap();
    assert!(!waiting.is_empty() && waiting.iter().all(|b| b.institution.as_str() == "0009"));
    let mut attempts = 0;
    for b in &waiting {
        attempts += s.store.delivery_attempts(&b.id).await.unwrap().len();
        assert!(
            b.last_error.as_deref().unwrap_or("").contains("connect"),
            "{:?}",
            b.last_error
        );
    }
    // Backoff and the breaker keep this small; a busy loop would make
    // hundreds of tries in the seconds since the batches were sealed.
    assert!(
        attempts < 60 * waiting.len(),
        "{attempts} attempts for {} batches",
        waiting.len()
    );
    eprintln!(
        "down bank: {attempts} attempts for {} waiting batches",
        waiting.len()
    );
    // The bank comes back.
    settings.endpoint_url = real_endpoint;
    admin::set_institution(&s.store, &code("0009"), &settings)
        .await
        .unwrap();
    assert_all_delivered(&s, &requests, Duration::from_secs(120)).await;
    gw.kill().await;
    s.store.close().await;
}
db_test!(
    a_down_bank_slows_only_itself,
    super::a_down_bank_slows_only_itself
);

/// Two gateways on one PostgreSQL queue share the work and never hold the
/// same batch at once: every batch is tried exactly once and reaches its
/// bank once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_share_one_postgres_queue() {
    let Some(db) = crate::support::postgres_db().await else {
        eprintln!("skipped: SHOKAI_TEST_DATABASE_URL is not set");
        return;
    };
    let s = setup(&db.url, &[]).await;
    let dir = s.pki.parent().unwrap().to_owned();
    let (staff_a, staff_b) = (free_port(), free_port());
    let mut a = GatewayProcess::new(
        &db.url,
        &s.pki,
        staff_a,
        s.bank_port,
        "all",
        dir.join("a.log"),
    );
    let mut b = GatewayProcess::new(
        &db.url,
        &s.pki,
        staff_b,
        free_port(),
        "dispatcher",
        dir.join("b.log"),
    );
    a.start().await;
    b.start().await;
    let requests = file_cases(staff_a, &s.token, 40, "two").await;
    assert_all_delivered(&s, &requests, Duration::from_secs(300)).await;
    let log = std::fs::read_to_string(&s.bank_log).unwrap();
    assert!(
        !log.contains(" repeat"),
        "a batch reached a bank twice:\n{log}"
    );
    for batch in s
        .store
        .batches_in_state(BatchState::Acknowledged, 100_000)
        .await
        .unwrap()
    {
        let tries = s.store.delivery_attempts(&batch.id).await.unwrap();
        assert_eq!(
            tries.len(),
            1,
            "batch {} was tried {} times",
            batch.id,
            tries.len()
        );
    }
    // The dispatcher serves its own metrics.
    let metrics = reqwest::get(format!("http://127.0.0.1:{staff_b}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("shokai_delivery_attempts_total"),
        "{metrics}"
    );
    let (da, dbb) = (a.delivery_lines(), b.delivery_lines());
    eprintln!("two gateways: {da} deliveries by A, {dbb} by B");
    assert!(da > 0 && dbb > 0, "both gateways delivered ({da}, {dbb})");
    a.kill().await;
    b.kill().await;
    s.store.close().await;
    db.drop_postgres().await;
}
