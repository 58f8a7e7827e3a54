//! `shokai demo`: the whole path on one machine with no setup. A dev PKI,
//! the zengin directory, three mock banks as child processes, sample cases
//! filed through the real staff API, and a summary once every inquiry is
//! final.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::admin;
use crate::casework::{Role, today};
use crate::connectors::{ConnectorSpec, ConnectorsConfig, Source};
use crate::domain::department::Department;
use crate::domain::ids::RequestId;
use crate::domain::state::InquiryState;
use crate::domain::zengin::InstitutionCode;
use crate::gateway::{Gateway, GatewayConfig, TlsFiles};
use crate::mockdept::{Change, MockDepartments, Person};
use crate::pki;
use crate::store::StoreConfig;

pub struct DemoConfig {
    pub database_url: Option<String>,
    pub work_dir: PathBuf,
    pub directory_dir: PathBuf,
    pub exit: bool,
    pub subjects: usize,
    pub staff_listen: SocketAddr,
    pub timeout: Duration,
}

const DEMO_BANKS: &[&str] = &["0001", "0005", "0009"];
const OFFICE: &str = "131016";
/// Departments the demo reads by CSV file linkage; the rest over the pull API.
const FILE_DEPARTMENTS: [Department; 2] = [Department::Tax, Department::Pension];

const FAMILY: &[(&str, &str)] = &[
    ("ヤマダ", "山田"),
    ("スズキ", "鈴木"),
    ("タカハシ", "高橋"),
    ("タナカ", "田中"),
    ("ワタナベ", "渡辺"),
    ("イトウ", "伊藤"),
    ("ナカムラ", "中村"),
    ("コバヤシ", "小林"),
    ("カトウ", "加藤"),
    ("ヨシダ", "吉田"),
    ("サトウ", "佐藤"),
    ("マツモト", "松本"),
    ("イノウエ", "井上"),
    ("キムラ", "木村"),
];
const GIVEN: &[(&str, &str)] = &[
    ("タロウ", "太郎"),
    ("ハナコ", "花子"),
    ("ショウタ", "翔太"),
    ("キョウコ", "京子"),
    ("ユウキ", "勇気"),
    ("ジロウ", "次郎"),
    ("サクラ", "さくら"),
    ("リョウ", "亮"),
    ("メグミ", "恵"),
    ("ダイスケ", "大輔"),
    ("ミユキ", "美幸"),
];

/// Starts `shokai mock-banks` as a child process and waits for its ports.
async fn start_mock_banks(
    pki_dir: &Path,
    gateway_url: &str,
) -> anyhow::Result<(Child, Vec<(String, String)>)> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("mock-banks")
        .arg("--pki-dir")
        .arg(pki_dir)
        .arg("--gateway-url")
        .arg(gateway_url)
        .arg("--answer-delay-ms")
        .arg("300");
    for code in DEMO_BANKS {
        cmd.arg("--bank").arg(format!("{code}=127.0.0.1:0"));
    }
    crate::mockbank::spawn(cmd)
        .await
        .context("starting the mock banks")
}

async fn api(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    token: &str,
    body: Option<Value>,
    key: Option<String>,
) -> anyhow::Result<Value> {
    let mut req = client.request(method, &url).bearer_auth(token);
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let bytes = resp.bytes().await?;
    if !status.is_success() {
        anyhow::bail!("{url}: HTTP {status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

pub async fn run(config: DemoConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.work_dir)?;
    let pki_dir = config.work_dir.join("pki");
    let codes: Vec<String> = DEMO_BANKS.iter().map(|s| (*s).to_owned()).collect();
    pki::init(&pki_dir, &codes)?;
    let database_url = match &config.database_url {
        Some(u) => u.clone(),
        None => {
            let file = config.work_dir.join("demo.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
            format!("sqlite://{}", file.display())
        }
    };
    println!("demo: database {}", redact(&database_url));
    let departments = MockDepartments::start(&pki_dir, "127.0.0.1:0".parse()?).await?;
    let linkage = config.work_dir.join("linkage");
    let _ = std::fs::remove_dir_all(&linkage);
    let connectors = ConnectorsConfig {
        specs: Department::ALL
            .into_iter()
            .map(|d| ConnectorSpec {
                department: d,
                source: if FILE_DEPARTMENTS.contains(&d) {
                    Source::Files(linkage.join(d.as_str()))
                } else {
                    Source::Pull(departments.url(d))
                },
            })
            .collect(),
        ca: Some(pki::PkiLayout::new(&pki_dir).ca_cert()),
        ..Default::default()
    };
    println!(
        "demo: mock departments at https://{} (file linkage for {})",
        departments.addr,
        FILE_DEPARTMENTS.map(|d| d.as_str()).join(" and ")
    );
    let gateway = Gateway::start(GatewayConfig {
        database: StoreConfig::new(database_url),
        staff_listen: config.staff_listen,
        bank_listen: "127.0.0.1:0".parse()?,
        tls: TlsFiles::from_pki_dir(&pki_dir),
        workers: 2,
        run_engine: true,
        serve_api: true,
        engine: crate::delivery::EngineTuning::default(),
        connectors,
        feed: None,
    })
    .await?;
    let store = gateway.store.clone();
    let banks = config.directory_dir.join("banks.csv");
    let branches = config.directory_dir.join("branches.csv");
    let (n_banks, n_branches) = admin::import_directory(&store, &banks, Some(&branches))
        .await
        .with_context(|| {
            format!(
                "importing the zengin directory from {}",
                config.directory_dir.display()
            )
        })?;
    println!("demo: imported {n_banks} institutions and {n_branches} branches");

    let (mut child, endpoints) = start_mock_banks(&pki_dir, &gateway.answers_url()).await?;
    let ca_pem = std::fs::read_to_string(pki::PkiLayout::new(&pki_dir).ca_cert())?;
    for (code, url) in &endpoints {
        let code = InstitutionCode::parse(code)?;
        let (cert, _) = pki::PkiLayout::new(&pki_dir).bank_client(code.as_str());
        admin::connect_push_institution(&store, &code, url, &ca_pem, &cert, (20, 2, 500)).await?;
        println!("demo: mock bank {code} at {url}");
    }

    let token = admin::create_token(&store, Role::Caseworker, OFFICE, "demo").await?;
    let logins = demo_accounts(&store).await?;
    println!(
        "demo: web UI at http://{}/ui — log in as {logins}",
        gateway.staff_addr.expect("the demo serves the staff API")
    );
    let http = reqwest::Client::builder().no_proxy().build()?;
    let base = gateway.api_url();
    let due = today() + chrono::Days::new(14);
    let mut request_ids = Vec::new();
    let mut case_ids = Vec::new();
    let mut people = Vec::new();
    let mut filed = 0usize;
    let mut case_no = 0;
    while filed < config.subjects {
        case_no += 1;
        let size = 1 + case_no % 3;
        let subjects: Vec<Value> = (0..size.min(config.subjects - filed))
            .map(|k| {
                let i = filed + k;
                let (fk, fj) = FAMILY[case_no % FAMILY.len()];
                let (gk, gj) = GIVEN[(i * 7) % GIVEN.len()];
                // The third member of a household is a child.
                let year = if k == 2 {
                    2012 + i % 10
                } else {
                    1950 + (i * 13) % 55
                };
                let birth = format!("{year}-{:02}-{:02}", 1 + i % 12, 1 + (i * 5) % 28);
                let address = format!(
                    "東京都新宿区新宿{}丁目{}番",
                    1 + (filed % 6),
                    1 + (filed % 20)
                );
                people.push(Person {
                    kana_name: format!("{fk} {gk}"),
                    kanji_name: Some(format!("{fj} {gj}")),
                    birth_date: chrono::NaiveDate::parse_from_str(&birth, "%Y-%m-%d")
                        .expect("valid demo date"),
                    household: format!("DEMO-{case_no:04}"),
                    relationship: ["世帯主", "世帯員", "子"][k].to_owned(),
                    address: Some(address.clone()),
                });
                json!({
                    "kana_name": format!("{fk} {gk}"),
                    "kanji_name": format!("{fj} {gj}"),
                    "birth_date": birth,
                    "postal_code": "160-0022",
                    "address": address,
                })
            })
            .collect();
        filed += subjects.len();
        let case = api(
            &http,
            reqwest::Method::POST,
            format!("{base}/cases"),
            &token,
            Some(json!({"case_number": format!("DEMO-{case_no:04}"), "subjects": subjects})),
            None,
        )
        .await?;
        case_ids.push(case["id"].as_str().unwrap_or_default().to_owned());
        let with_tx = case_no % 4 == 0;
        let mut kinds = vec!["existence", "balance"];
        let mut body = json!({
            "case_id": case["id"],
            "institutions": DEMO_BANKS.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
            "due_date": due.to_string(),
            "purpose": "生活保護申請に係る資産調査",
        });
        if with_tx {
            kinds.push("transactions");
            body["period"] = json!({"from": (today() - chrono::Days::new(180)).to_string(), "to": today().to_string()});
        }
        body["kinds"] = json!(kinds);
        let req = api(
            &http,
            reqwest::Method::POST,
            format!("{base}/requests"),
            &token,
            Some(body),
            Some(format!("demo-{}", case["id"].as_str().unwrap_or_default())),
        )
        .await?;
        request_ids.push(RequestId::parse(req["id"].as_str().unwrap_or_default())?);
    }
    let total: usize = (filed) * DEMO_BANKS.len();
    println!(
        "demo: filed {} requests with {total} inquiries for {filed} people",
        request_ids.len()
    );

    let departments_line = ask_departments(
        &departments,
        &gateway,
        &http,
        &token,
        &case_ids,
        &people,
        &linkage,
    )
    .await?;

    let started = Instant::now();
    let summary = loop {
        let mut counts = std::collections::HashMap::<InquiryState, usize>::new();
        for id in &request_ids {
            if let Some(view) = store.request(id).await? {
                for i in view.inquiries {
                    *counts.entry(i.state).or_default() += 1;
                }
            }
        }
        let get = |s| counts.get(&s).copied().unwrap_or(0);
        let done: usize = counts
            .iter()
            .filter(|(s, _)| s.is_final())
            .map(|(_, n)| n)
            .sum();
        println!(
            "demo: {done}/{total} final — queued {}, batched {}, delivered {}, answered {}, not found {}, refused {}, failed {}",
            get(InquiryState::Queued),
            get(InquiryState::Batched),
            get(InquiryState::Delivered),
            get(InquiryState::Answered),
            get(InquiryState::NotFound),
            get(InquiryState::Refused),
            get(InquiryState::Failed)
        );
        if done >= total {
            break format!(
                "demo: {total} inquiries, {} answered, {} not found, {} failed; {departments_line}",
                get(InquiryState::Answered),
                get(InquiryState::NotFound),
                get(InquiryState::Failed)
            );
        }
        if started.elapsed() > config.timeout {
            let _ = child.kill().await;
            gateway.stop().await;
            anyhow::bail!(
                "not every inquiry reached a final state within {:?}",
                config.timeout
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    println!("{summary}");
    if !config.exit {
        println!("demo: staff API at {base} — try:");
        println!(
            "  curl -H 'Authorization: Bearer {token}' {base}/requests/{}",
            request_ids[0]
        );
        println!("demo: serving until Ctrl-C");
        tokio::signal::ctrl_c().await?;
    }
    let _ = child.kill().await;
    let _ = child.wait().await;
    departments.stop().await;
    gateway.stop().await;
    Ok(())
}

/// The departments' part of the demo: a comprehensive inquiry (総合照会)
/// for every case through the staff API, then a tax reassessment in the
/// mock tax office that the next re-query turns into an alert.
async fn ask_departments(
    departments: &MockDepartments,
    gateway: &Gateway,
    http: &reqwest::Client,
    token: &str,
    case_ids: &[String],
    people: &[Person],
    linkage: &Path,
) -> anyhow::Result<String> {
    departments.register(people)?;
    for d in FILE_DEPARTMENTS {
        departments.export_csv(d, &linkage.join(d.as_str()))?;
    }
    let base = gateway.api_url();
    let mut records = 0;
    let mut durations = Vec::new();
    for id in case_ids {
        let run = api(
            http,
            reqwest::Method::POST,
            format!("{base}/cases/{id}/department-inquiry"),
            token,
            None,
            None,
        )
        .await?;
        if run["partial"] != json!(false) {
            anyhow::bail!("a department inquiry was partial: {run}");
        }
        records += run["connectors"]
            .as_array()
            .map(|c| c.iter().filter_map(|c| c["records"].as_u64()).sum::<u64>())
            .unwrap_or(0);
        durations.push(run["duration_ms"].as_u64().unwrap_or(0));
    }
    durations.sort_unstable();
    let median = durations.get(durations.len() / 2).copied().unwrap_or(0);
    println!(
        "demo: comprehensive inquiry (総合照会) for {} cases over {} departments: {records} records, median {median} ms per case",
        case_ids.len(),
        Department::ALL.len()
    );
    let Some(head) = people.first() else {
        return Ok("no departments asked".to_owned());
    };
    departments.change(Change {
        kana_name: head.kana_name.clone(),
        birth_date: head.birth_date,
        kind: "assessed_income".to_owned(),
        effective_date: today(),
        amounts: [("annual_income".to_owned(), 3_600_000)].into(),
        attributes: Default::default(),
        remove: false,
    })?;
    // The tax office's next nightly file carries the new assessment.
    departments.export_csv(Department::Tax, &linkage.join(Department::Tax.as_str()))?;
    println!("demo: the tax office reassesses one person's income; re-querying open cases");
    let summary = crate::casework::requery_open_cases(&gateway.store, &gateway.connectors).await?;
    let case = crate::domain::ids::CaseId::parse(&case_ids[0])?;
    for alert in gateway.store.case_alerts(&case).await? {
        if let Some(change) = &alert.change {
            println!(
                "demo: alert on case {}: {} ({})",
                case,
                alert.detail,
                change.suggested_action.text_ja()
            );
        }
    }
    Ok(format!(
        "departments asked for {} cases ({records} records, median {median} ms), {} change alert{} raised",
        case_ids.len(),
        summary.alerts,
        if summary.alerts == 1 { "" } else { "s" }
    ))
}

/// A caseworker and an admin for the web UI, with fresh random passwords
/// (printed once); accounts left by an earlier run keep theirs.
async fn demo_accounts(store: &crate::store::Store) -> anyhow::Result<String> {
    use rand::Rng;
    let mut out = Vec::new();
    for (username, name, role) in [
        ("demo-caseworker", "デモ ケースワーカー", Role::Caseworker),
        ("demo-admin", "デモ 管理者", Role::Admin),
    ] {
        let password: String = (0..16)
            .map(|_| {
                const CHARS: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
                CHARS[rand::rng().random_range(0..CHARS.len())] as char
            })
            .collect();
        let created = crate::accounts::create_user(
            store,
            crate::accounts::NewUser {
                username: username.to_owned(),
                display_name: name.to_owned(),
                password: password.clone(),
                role,
                office: OFFICE.to_owned(),
            },
        )
        .await;
        match created {
            Ok(_) => out.push(format!("{} {username} / {password}", role.as_str())),
            Err(e) if e.code() == "user_exists" => out.push(format!(
                "{} {username} (kept from an earlier run)",
                role.as_str()
            )),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out.join(", "))
}

/// Keeps passwords in database URLs out of the terminal.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_owned(),
    }
}
