//! Mock financial institutions for the demo and the tests, and a reference
//! for bank engineers: each bank listens on its own loopback port with its
//! own certificate, takes inquiry batches over mutual TLS (de-duplicating by
//! batch id), and answers later through the gateway's bank API with
//! deterministic generated data.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::{App, HttpResponse, HttpServer, web};
use chrono::{Days, NaiveDate};
use rand::Rng;
use sha2::{Digest, Sha256};

use crate::domain::answer::{Account, AccountType, Answer, Outcome, Transaction};
use crate::domain::ids::InquiryId;
use crate::domain::state::InquiryKind;
use crate::domain::time::now_millis;
use crate::domain::zengin::{BranchCode, InstitutionCode};
use crate::iso20022::{self, BatchReceipt, Limits, OutgoingAnswer, ReceivedInquiry};
use crate::pki::PkiLayout;
use crate::tls::{Identity, load_certs, mtls_client_config, mtls_server_config};

#[derive(Debug, Clone)]
pub struct MockBankConfig {
    pub code: InstitutionCode,
    /// Where to listen for pushed batches; None for a pull bank, which
    /// fetches its batches from the gateway instead.
    pub listen: Option<SocketAddr>,
    pub faults: Faults,
}

/// Misbehaviour on purpose, for tests of the gateway's fault handling.
/// Rates are probabilities per received batch (or per answer).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Reply 503.
    pub error_rate: f64,
    /// Reply 429 with `Retry-After: 1`.
    pub throttle_rate: f64,
    /// Break the connection after the headers.
    pub reset_rate: f64,
    /// Never reply (the gateway's timeout fires).
    pub hang_rate: f64,
    /// Reply 200 with a body that is not a receipt.
    pub malformed_rate: f64,
    /// Reply with a receipt for another batch id (after processing it).
    pub wrong_receipt_rate: f64,
    /// Abort the TLS handshake (no certificate offered).
    pub handshake_fail_rate: f64,
    /// Wait this long before every reply.
    pub slow_ms: u64,
    /// Down (connections broken) for `down_ms` out of every `down_every_ms`.
    pub down_every_ms: u64,
    pub down_ms: u64,
    /// Answers sent twice.
    pub duplicate_rate: f64,
    /// Answers followed later by a correction.
    pub correction_rate: f64,
    /// Answers held back by `late_ms`.
    pub late_rate: f64,
    pub late_ms: u64,
}

impl Faults {
    /// Parses `error_rate=0.2,slow_ms=100,…`.
    pub fn parse(spec: &str) -> anyhow::Result<Faults> {
        let mut f = Faults::default();
        for part in spec.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("fault '{part}' must be key=value"))?;
            let rate = || -> anyhow::Result<f64> {
                let r: f64 = v.parse()?;
                anyhow::ensure!((0.0..=1.0).contains(&r), "{k} must be between 0 and 1");
                Ok(r)
            };
            match k {
                "error_rate" => f.error_rate = rate()?,
                "throttle_rate" => f.throttle_rate = rate()?,
                "reset_rate" => f.reset_rate = rate()?,
                "hang_rate" => f.hang_rate = rate()?,
                "malformed_rate" => f.malformed_rate = rate()?,
                "wrong_receipt_rate" => f.wrong_receipt_rate = rate()?,
                "handshake_fail_rate" => f.handshake_fail_rate = rate()?,
                "duplicate_rate" => f.duplicate_rate = rate()?,
                "correction_rate" => f.correction_rate = rate()?,
                "late_rate" => f.late_rate = rate()?,
                "slow_ms" => f.slow_ms = v.parse()?,
                "down_every_ms" => f.down_every_ms = v.parse()?,
                "down_ms" => f.down_ms = v.parse()?,
                "late_ms" => f.late_ms = v.parse()?,
                _ => anyhow::bail!("unknown fault '{k}'"),
            }
        }
        Ok(f)
    }

    fn is_down(&self, since_start: Duration) -> bool {
        self.down_every_ms > 0
            && (since_start.as_millis() as u64 % self.down_every_ms) < self.down_ms
    }
}

#[derive(Debug, Clone)]
pub struct MockBanksConfig {
    pub pki_dir: PathBuf,
    /// The gateway's `/bank/v1/answers` URL.
    pub gateway_url: String,
    pub banks: Vec<MockBankConfig>,
    pub answer_delay: Duration,
    pub log: Option<PathBuf>,
}

struct Bank {
    code: InstitutionCode,
    faults: Faults,
    started: std::time::Instant,
    seen_batches: Mutex<HashSet<String>>,
    /// (office, not before, answer)
    pending: Mutex<std::collections::VecDeque<Pending>>,
    /// Shared by every bank of the process.
    log: Option<Arc<Mutex<std::fs::File>>>,
}

struct Pending {
    office: String,
    not_before: std::time::Instant,
    answer: OutgoingAnswer,
}

impl Bank {
    /// One line per received batch, for tests that check every batch id
    /// reached the bank: `CODE BATCH_ID COUNT first|repeat`.
    fn log(&self, batch_id: &str, count: usize, first: bool) {
        if let Some(log) = &self.log {
            use std::io::Write;
            // One write per line: the banks of a process share the file
            // (O_APPEND), and `writeln!` on a File writes piece by piece,
            // so lines of two banks could interleave.
            let line = format!(
                "{} {batch_id} {count} {}\n",
                self.code,
                if first { "first" } else { "repeat" }
            );
            let _ = log.lock().expect("lock").write_all(line.as_bytes());
        }
    }

    fn queue(&self, office: &str, answer: OutgoingAnswer) {
        let mut rng = rand::rng();
        let now = std::time::Instant::now();
        let f = &self.faults;
        let delay = if rng.random_bool(f.late_rate) {
            Duration::from_millis(f.late_ms)
        } else {
            Duration::ZERO
        };
        let mut pending = self.pending.lock().expect("lock");
        if rng.random_bool(f.duplicate_rate) {
            pending.push_back(Pending {
                office: office.to_owned(),
                not_before: now + delay * 2,
                answer: answer.clone(),
            });
        }
        if rng.random_bool(f.correction_rate)
            && let Outcome::Found {
                accounts,
                other_holdings,
            } = &answer.answer.outcome
        {
            let mut corrected = answer.clone();
            let accounts = accounts
                .iter()
                .map(|a| Account {
                    balance: a.balance.map(|b| b + 1000),
                    ..a.clone()
                })
                .collect();
            corrected.answer.outcome = Outcome::Found {
                accounts,
                other_holdings: other_holdings.clone(),
            };
            corrected.answer.response_id.push('C');
            pending.push_back(Pending {
                office: office.to_owned(),
                not_before: now + delay + Duration::from_millis(500),
                answer: corrected,
            });
        }
        pending.push_back(Pending {
            office: office.to_owned(),
            not_before: now + delay,
            answer,
        });
    }
}

/// Offers no certificate now and then, which aborts the TLS handshake.
#[derive(Debug)]
struct FlakyCert {
    inner: Arc<dyn rustls::server::ResolvesServerCert>,
    rate: f64,
}

impl rustls::server::ResolvesServerCert for FlakyCert {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        if rand::rng().random_bool(self.rate) {
            return None;
        }
        self.inner.resolve(hello)
    }
}

/// Runs the banks until the process is stopped. Prints one line per bank,
/// `mock-bank CODE https://ADDR/inquiries`, then `mock-banks ready`.
pub async fn run(config: MockBanksConfig) -> anyhow::Result<()> {
    crate::tls::install_crypto_provider();
    let pki = PkiLayout::new(&config.pki_dir);
    let ca = load_certs(&pki.ca_cert())?;
    let mut servers = Vec::new();
    let shared_log = match &config.log {
        Some(path) => Some(Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ))),
        None => None,
    };
    for b in &config.banks {
        let (cert, key) = pki.bank_server(b.code.as_str());
        let server_id = Identity::load(&cert, &key)?;
        let mut tls =
            mtls_server_config(server_id.chain.clone(), server_id.key(), &ca, Vec::new())?;
        if b.faults.handshake_fail_rate > 0.0 {
            tls.cert_resolver = Arc::new(FlakyCert {
                inner: tls.cert_resolver.clone(),
                rate: b.faults.handshake_fail_rate,
            });
        }
        let (ccert, ckey) = pki.bank_client(b.code.as_str());
        let client_id = Identity::load(&ccert, &ckey)?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(mtls_client_config(
                &ca,
                client_id.chain.clone(),
                client_id.key(),
            )?)
            .timeout(Duration::from_secs(30))
            .no_proxy()
            .build()?;
        let log = shared_log.clone();
        let bank = Arc::new(Bank {
            code: b.code.clone(),
            faults: b.faults.clone(),
            started: std::time::Instant::now(),
            seen_batches: Mutex::default(),
            pending: Mutex::default(),
            log,
        });
        let Some(listen) = b.listen else {
            println!("mock-bank {} pull", b.code);
            tokio::spawn(pull_loop(
                bank.clone(),
                client.clone(),
                config.gateway_url.clone(),
                config.answer_delay,
            ));
            tokio::spawn(answer_loop(
                bank,
                client,
                config.gateway_url.clone(),
                config.answer_delay,
            ));
            continue;
        };
        let listener = std::net::TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let data = bank.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(data.clone()))
                .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
                .route("/inquiries", web::post().to(receive_batch))
        })
        .workers(1)
        .disable_signals()
        .listen_rustls_0_23(listener, tls)?
        .run();
        println!("mock-bank {} https://{addr}/inquiries", b.code);
        servers.push(tokio::spawn(server));
        tokio::spawn(answer_loop(
            bank,
            client,
            config.gateway_url.clone(),
            config.answer_delay,
        ));
    }
    println!("mock-banks ready");
    for s in servers {
        s.await??;
    }
    // Only pull banks: they run until the process is stopped.
    std::future::pending::<()>().await;
    Ok(())
}

/// A pull bank: lists its pending batches on the gateway, fetches each,
/// takes it as a pushed batch would be taken, and acknowledges it.
async fn pull_loop(bank: Arc<Bank>, client: reqwest::Client, answers_url: String, every: Duration) {
    let base = answers_url.trim_end_matches("/answers").to_owned();
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = pull_once(&bank, &client, &base).await {
            eprintln!("mock-bank {} (pull): {e}", bank.code);
        }
    }
}

async fn pull_once(bank: &Bank, client: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let listing = client
        .get(format!("{base}/batches?status=pending"))
        .send()
        .await?;
    anyhow::ensure!(
        listing.status().is_success(),
        "listing: HTTP {}",
        listing.status()
    );
    for pending in iso20022::decode_pending_batches(&listing.bytes().await?)? {
        let resp = client
            .get(format!("{base}/batches/{}", pending.batch_id))
            .send()
            .await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "fetching {}: HTTP {}",
            pending.batch_id,
            resp.status()
        );
        let batch = iso20022::decode_inquiry_batch(&resp.bytes().await?, &Limits::default())?;
        anyhow::ensure!(
            batch.institution == bank.code,
            "batch {} is for {}",
            batch.batch_id,
            batch.institution
        );
        take_batch(bank, &batch);
        let ack = client
            .post(format!("{base}/batches/{}/ack", batch.batch_id))
            .send()
            .await?;
        let receipt = iso20022::decode_batch_receipt(&ack.bytes().await?)?;
        anyhow::ensure!(
            receipt.accepted,
            "the gateway refused the acknowledgement of {}",
            batch.batch_id
        );
    }
    Ok(())
}

/// Records a received batch once (by id) and queues its answers.
fn take_batch(bank: &Bank, batch: &iso20022::ReceivedBatch) {
    let first_time = bank
        .seen_batches
        .lock()
        .expect("lock")
        .insert(batch.batch_id.clone());
    bank.log(&batch.batch_id, batch.inquiries.len(), first_time);
    if first_time {
        for inq in &batch.inquiries {
            if let Some(answer) = generate_answer(&bank.code, inq) {
                bank.queue(&batch.office, answer);
            }
        }
    }
}

/// A response whose body breaks off: the peer sees the connection drop.
fn broken_connection() -> HttpResponse {
    HttpResponse::Ok().streaming(futures_util::stream::once(async {
        Err::<web::Bytes, actix_web::Error>(actix_web::error::ErrorInternalServerError(
            "connection reset by the mock bank",
        ))
    }))
}

async fn receive_batch(bank: web::Data<Arc<Bank>>, body: web::Bytes) -> HttpResponse {
    let f = &bank.faults;
    if f.is_down(bank.started.elapsed()) {
        return broken_connection();
    }
    if f.slow_ms > 0 {
        tokio::time::sleep(Duration::from_millis(f.slow_ms)).await;
    }
    let roll: f64 = rand::rng().random();
    let mut edge = f.error_rate;
    if roll < edge {
        return HttpResponse::ServiceUnavailable().finish();
    }
    edge += f.throttle_rate;
    if roll < edge {
        return HttpResponse::TooManyRequests()
            .insert_header(("retry-after", "1"))
            .finish();
    }
    edge += f.reset_rate;
    if roll < edge {
        return broken_connection();
    }
    edge += f.hang_rate;
    if roll < edge {
        tokio::time::sleep(Duration::from_secs(600)).await;
        return HttpResponse::ServiceUnavailable().finish();
    }
    edge += f.malformed_rate;
    if roll < edge {
        return HttpResponse::Ok()
            .content_type("application/xml")
            .body("<oops");
    }
    let receipt = |batch_id: &str, reject: Option<(&str, String)>| BatchReceipt {
        batch_id: if batch_id.is_empty() {
            "-".into()
        } else {
            batch_id.into()
        },
        accepted: reject.is_none(),
        reason_code: reject.as_ref().map(|(c, _)| (*c).to_owned()),
        reason_text: reject.map(|(_, t)| t),
        count: None,
    };
    let reply = |status: StatusCode, r: BatchReceipt| {
        HttpResponse::build(status)
            .content_type("application/xml")
            .body(iso20022::encode_batch_receipt(&r))
    };
    let batch = match iso20022::decode_inquiry_batch(&body, &Limits::default()) {
        Ok(b) => b,
        Err(e) => {
            return reply(
                StatusCode::BAD_REQUEST,
                receipt("", Some((e.reason_code(), e.to_string()))),
            );
        }
    };
    if batch.institution != bank.code {
        return reply(
            StatusCode::OK,
            receipt(
                &batch.batch_id,
                Some(("INST", format!("this is institution {}", bank.code))),
            ),
        );
    }
    let first_time = bank
        .seen_batches
        .lock()
        .expect("lock")
        .insert(batch.batch_id.clone());
    bank.log(&batch.batch_id, batch.inquiries.len(), first_time);
    if first_time {
        for inq in &batch.inquiries {
            if let Some(answer) = generate_answer(&bank.code, inq) {
                bank.queue(&batch.office, answer);
            }
        }
    }
    edge += f.wrong_receipt_rate;
    let batch_id = if roll < edge {
        format!("{}X", batch.batch_id)
    } else {
        batch.batch_id.clone()
    };
    let mut r = receipt(&batch_id, None);
    r.count = Some(batch.inquiries.len() as u64);
    reply(StatusCode::OK, r)
}

/// Answers one answer batch carries at most.
const MAX_ANSWERS_PER_BATCH: usize = 500;

async fn answer_loop(bank: Arc<Bank>, client: reqwest::Client, url: String, delay: Duration) {
    let mut backoff = delay;
    let mut seq = 0u64;
    loop {
        tokio::time::sleep(backoff).await;
        let mine: Vec<Pending> = {
            let mut pending = bank.pending.lock().expect("lock");
            let now = std::time::Instant::now();
            // One answer batch per office, as offices are separate addressees;
            // answers held back (late) wait for their time.
            let Some(office) = pending
                .iter()
                .find(|p| p.not_before <= now)
                .map(|p| p.office.clone())
            else {
                backoff = delay;
                continue;
            };
            // Up to 500 from the front, keeping the order of the rest: the
            // cost is what is scanned, not the whole queue (a backlog can
            // leave hundreds of thousands waiting).
            let mut ready = Vec::new();
            let mut skipped = Vec::new();
            while ready.len() < MAX_ANSWERS_PER_BATCH {
                match pending.pop_front() {
                    Some(p) if p.office == office && p.not_before <= now => ready.push(p),
                    Some(p) => skipped.push(p),
                    None => break,
                }
            }
            for p in skipped.into_iter().rev() {
                pending.push_front(p);
            }
            ready
        };
        let office = mine[0].office.clone();
        seq += 1;
        let id = format!("A{}-{}-{seq}", bank.code, now_millis());
        let answers: Vec<OutgoingAnswer> = mine.iter().map(|p| p.answer.clone()).collect();
        let body = iso20022::encode_answer_batch(&id, &bank.code, &office, now_millis(), &answers);
        let sent = client
            .post(&url)
            .header("content-type", "application/xml")
            .body(body)
            .send()
            .await;
        // What to send again: everything if the batch failed as a whole,
        // else the answers refused with TEMP ("try again later": the
        // gateway filed nothing of them).
        let again: Option<std::collections::HashSet<String>> = match sent {
            Ok(resp) if resp.status().is_success() => {
                let bytes = resp.bytes().await.unwrap_or_default();
                match iso20022::decode_answer_batch_receipt(&bytes) {
                    Ok(r) => {
                        let (again, refused) = temporary_refusals(&r.results);
                        for res in refused {
                            eprintln!(
                                "mock-bank {}: answer {} rejected: {:?}",
                                bank.code, res.inquiry_id, res.status
                            );
                        }
                        Some(again)
                    }
                    Err(e) => {
                        eprintln!("mock-bank {}: unreadable receipt: {e}", bank.code);
                        None
                    }
                }
            }
            Ok(resp) => {
                eprintln!(
                    "mock-bank {}: gateway answered HTTP {}",
                    bank.code,
                    resp.status()
                );
                None
            }
            Err(e) => {
                eprintln!("mock-bank {}: cannot reach the gateway: {e}", bank.code);
                None
            }
        };
        // Keep what is to be sent again and try later: nothing is dropped.
        let kept: Vec<Pending> = match &again {
            None => mine,
            Some(again) => mine
                .into_iter()
                .filter(|p| again.contains(p.answer.answer.inquiry_id.as_str()))
                .collect(),
        };
        if kept.is_empty() {
            backoff = delay;
        } else {
            eprintln!(
                "mock-bank {}: sending {} answers again later",
                bank.code,
                kept.len()
            );
            bank.pending.lock().expect("lock").extend(kept);
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// The inquiries whose answers a receipt refused with TEMP, to be sent
/// again, and the answers it refused for good.
fn temporary_refusals(
    results: &[iso20022::AnswerResult],
) -> (
    std::collections::HashSet<String>,
    Vec<&iso20022::AnswerResult>,
) {
    let mut again = std::collections::HashSet::new();
    let mut refused = Vec::new();
    for res in results {
        match &res.status {
            iso20022::AnswerStatus::Rejected { reason_code, .. }
                if reason_code == iso20022::TRY_AGAIN_LATER =>
            {
                again.insert(res.inquiry_id.clone());
            }
            iso20022::AnswerStatus::Rejected { .. } => refused.push(res),
            _ => {}
        }
    }
    (again, refused)
}

/// Deterministic data: the same person at the same bank always gets the
/// same answer. About a third of people have no account at a given bank.
pub fn generate_answer(bank: &InstitutionCode, inq: &ReceivedInquiry) -> Option<OutgoingAnswer> {
    let inquiry_id = InquiryId::parse(&inq.id).ok()?;
    let seed =
        Sha256::digest(format!("{bank}|{}|{:?}", inq.zengin_name, inq.birth_date).as_bytes());
    let n = |i: usize| u64::from(seed[i]);
    let outcome = if n(0) % 3 == 0 {
        Outcome::NotFound
    } else {
        let count = 1 + (n(1) % 3) as usize;
        let types = [
            AccountType::Ordinary,
            AccountType::Savings,
            AccountType::Time,
            AccountType::Current,
        ];
        let accounts = (0..count)
            .map(|k| {
                let branch = inq.branches.first().cloned().unwrap_or_else(|| {
                    BranchCode::from_trusted(format!("{:03}", 100 + (n(2 + k) % 800)))
                });
                let number = format!(
                    "{:07}",
                    (n(5 + k) << 16 | n(8 + k) << 8 | n(11 + k)) % 10_000_000
                );
                let balance = ((n(14 + k) << 16 | n(17 + k) << 8 | n(20 + k)) % 3_000_000) as i64;
                let as_of = inq.reference_date;
                let last = as_of
                    .checked_sub_days(Days::new(n(23 + k) % 40))
                    .unwrap_or(as_of);
                Account {
                    branch,
                    account_type: types[k % types.len()],
                    number,
                    holder_kana: inq.zengin_name.chars().take(30).collect(),
                    balance: Some(balance),
                    as_of: Some(as_of),
                    last_transaction: Some(last),
                    transactions: if inq.kinds.contains(&InquiryKind::Transactions) {
                        transactions(inq.period.from, inq.period.to, balance, &seed)
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        Outcome::Found {
            accounts,
            other_holdings: Vec::new(),
        }
    };
    Some(OutgoingAnswer {
        answer: Answer {
            inquiry_id,
            response_id: format!("R{bank}-{}", &inq.id[..inq.id.len().min(28)]),
            outcome,
        },
        kinds: inq.kinds.clone(),
        zengin_name: inq.zengin_name.clone(),
    })
}

fn transactions(from: NaiveDate, to: NaiveDate, closing: i64, seed: &[u8]) -> Vec<Transaction> {
    let days = (to - from).num_days().max(0) as u64;
    let mut balance = closing;
    let mut out: Vec<Transaction> = (0..3u64)
        .map(|i| {
            let date = to.checked_sub_days(Days::new(days * i / 3)).unwrap_or(to);
            let amount = 1000 + i64::from(seed[24 + i as usize]) * 100;
            let t = Transaction {
                date,
                description: Some(if i % 2 == 0 {
                    "ATM".into()
                } else {
                    "ﾌﾘｺﾐ".into()
                }),
                debit: (i % 2 == 0).then_some(amount),
                credit: (i % 2 == 1).then_some(amount),
                balance,
            };
            balance += if i % 2 == 0 { amount } else { -amount };
            t
        })
        .collect();
    out.reverse();
    out
}

/// Command-line arguments of the mock banks (the `mock-banks` binary and
/// `shokai mock-banks` share them).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Directory written by `shokai certs init`.
    #[arg(long)]
    pub pki_dir: PathBuf,
    /// The gateway's bank API answers URL, e.g. https://127.0.0.1:8443/bank/v1/answers
    #[arg(long)]
    pub gateway_url: String,
    /// A bank to run, as CODE=ADDR (port 0 picks a free port), or CODE=pull
    /// for a bank that fetches its batches from the gateway; repeatable.
    #[arg(long = "bank", required = true)]
    pub banks: Vec<String>,
    /// How long a bank waits before answering what it received.
    #[arg(long, default_value_t = 300)]
    pub answer_delay_ms: u64,
    /// Faults for one bank, as CODE:key=value,… (see `Faults`), e.g.
    /// 0001:error_rate=0.2,throttle_rate=0.1,duplicate_rate=0.1; repeatable.
    #[arg(long = "fault")]
    pub faults: Vec<String>,
    /// Append one line per received batch to this file.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

impl Args {
    pub fn into_config(self) -> anyhow::Result<MockBanksConfig> {
        let banks = self
            .banks
            .iter()
            .map(|b| {
                let (code, addr) = b
                    .split_once('=')
                    .ok_or_else(|| anyhow::anyhow!("--bank must be CODE=ADDR, got '{b}'"))?;
                let faults = match self
                    .faults
                    .iter()
                    .find_map(|f| f.strip_prefix(&format!("{code}:")))
                {
                    Some(spec) => Faults::parse(spec)?,
                    None => Faults::default(),
                };
                Ok(MockBankConfig {
                    code: InstitutionCode::parse(code)?,
                    listen: if addr == "pull" {
                        None
                    } else {
                        Some(addr.parse()?)
                    },
                    faults,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(MockBanksConfig {
            pki_dir: self.pki_dir,
            gateway_url: self.gateway_url,
            banks,
            answer_delay: Duration::from_millis(self.answer_delay_ms),
            log: self.log,
        })
    }
}

/// Starts a mock-banks process (`cmd` names the program and its arguments)
/// and waits until it has printed every bank's endpoint.
pub async fn spawn(
    cmd: tokio::process::Command,
) -> anyhow::Result<(tokio::process::Child, Vec<(String, String)>)> {
    let mut endpoints = Vec::new();
    crate::child::spawn_announced(cmd, "the mock banks", |line| {
        if line == "mock-banks ready" {
            return Some(std::mem::take(&mut endpoints));
        }
        if let Some((code, url)) = line
            .strip_prefix("mock-bank ")
            .and_then(|r| r.split_once(' '))
        {
            endpoints.push((code.to_owned(), url.to_owned()));
        }
        None
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::temporary_refusals;
    use crate::iso20022::{AnswerResult, AnswerStatus, TRY_AGAIN_LATER};

    fn result(inquiry: &str, status: AnswerStatus) -> AnswerResult {
        AnswerResult {
            response_id: format!("R-{inquiry}"),
            inquiry_id: inquiry.into(),
            status,
        }
    }

    /// "Try again later" keeps an answer for a resend; a refusal for good,
    /// an acceptance or a duplicate ends it.
    #[test]
    fn only_temp_refusals_are_sent_again() {
        let rejected = |code: &str| AnswerStatus::Rejected {
            reason_code: code.into(),
            reason_text: "x".into(),
        };
        let results = [
            result("a", AnswerStatus::Accepted),
            result("b", rejected(TRY_AGAIN_LATER)),
            result("c", AnswerStatus::Duplicate),
            result("d", rejected("NOTF")),
            result("e", rejected(TRY_AGAIN_LATER)),
        ];
        let (again, refused) = temporary_refusals(&results);
        let mut again: Vec<_> = again.into_iter().collect();
        again.sort();
        assert_eq!(again, ["b", "e"]);
        assert_eq!(
            refused
                .iter()
                .map(|r| r.inquiry_id.as_str())
                .collect::<Vec<_>>(),
            ["d"]
        );
    }
}
