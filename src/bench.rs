//! `shokai bench`: the real path under load on loopback — staff API submit,
//! batching, mTLS delivery to mock banks, answers through the bank API,
//! case file — with a raw-database baseline measured in the same run.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio::sync::Mutex;

use crate::admin;
use crate::casework::{Role, today};
use crate::delivery::EngineTuning;
use crate::domain::state::{Channel, InquiryState};
use crate::domain::zengin::InstitutionCode;
use crate::gateway::{Gateway, GatewayConfig, TlsFiles};
use crate::pki;
use crate::store::{InstitutionSettings, StoreConfig, WriterScheduling};

pub struct BenchConfig {
    pub inquiries: usize,
    pub institutions: usize,
    pub batch_size: i64,
    pub database_url: Option<String>,
    /// The SQLite writer's scheduling (the gateway's `--writer-scheduling`).
    pub writer_scheduling: WriterScheduling,
    /// Fill the queue with every institution paused, then release it.
    pub backlog: bool,
    pub submitters: usize,
    /// Gateway processes on one database (more than one needs PostgreSQL).
    pub gateways: usize,
    /// Requests filed per second, spread evenly (open loop); 0 files them
    /// as fast as the submitters can. A latency under a steady load says
    /// more than one under saturation, which only measures the queue.
    pub submit_rate: f64,
    pub work_dir: PathBuf,
    pub directory_dir: PathBuf,
}

const SUBJECTS_PER_CASE: usize = 20;
/// How often the wait for the end counts inquiries by state (a full read).
const FULL_COUNT_EVERY: Duration = Duration::from_secs(5);

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Peak resident memory of this process (VmHWM), in MB.
fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Busy and idle seconds of the whole machine so far (`/proc/stat`'s
/// first line; time stolen by the hypervisor counts as neither).
fn machine_cpu_seconds() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(7)
        .map(|t| t.parse().ok())
        .collect::<Option<_>>()?;
    let [user, nice, system, idle, iowait, irq, softirq] = ticks[..] else {
        return None;
    };
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (per_second > 0.0).then(|| {
        (
            (user + nice + system + irq + softirq) / per_second,
            (idle + iowait) / per_second,
        )
    })
}

/// The CPU the whole machine spent per inquiry between two readings, in
/// µs, and the share of the time it was busy. Every process counts (the
/// database server, mock banks and submitters too): with two cores, 10,000
/// inquiries/s leaves 200 µs per inquiry for all of them. Steadier from
/// run to run than the throughput when the machine is shared.
fn machine_cpu_per_inquiry(
    from: Option<(f64, f64)>,
    to: Option<(f64, f64)>,
    inquiries: usize,
) -> Option<(f64, f64)> {
    let ((busy0, idle0), (busy1, idle1)) = (from?, to?);
    let (busy, idle) = (busy1 - busy0, idle1 - idle0);
    (busy + idle > 0.0 && inquiries > 0)
        .then(|| (busy * 1e6 / inquiries as f64, busy / (busy + idle)))
}

pub async fn run(config: BenchConfig) -> anyhow::Result<serde_json::Value> {
    std::fs::create_dir_all(&config.work_dir)?;
    let (database_url, db) = match &config.database_url {
        Some(u) => (
            u.clone(),
            if u.starts_with("postgres") {
                "postgres"
            } else {
                "sqlite"
            },
        ),
        None => {
            let file = config.work_dir.join("bench.db");
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
            (format!("sqlite://{}", file.display()), "sqlite")
        }
    };
    anyhow::ensure!(
        config.gateways == 1 || db == "postgres",
        "--gateways {} needs PostgreSQL: SQLite has one writer",
        config.gateways
    );
    let banks = crate::domain::zengin::parse_banks_csv(
        &std::fs::read_to_string(config.directory_dir.join("banks.csv"))
            .context("reading banks.csv")?,
    )?;
    let codes: Vec<String> = banks
        .iter()
        .take(config.institutions)
        .map(|b| b.code.to_string())
        .collect();
    let pki_dir = config.work_dir.join("pki");
    pki::init(&pki_dir, &codes)?;

    let engine = EngineTuning {
        poll_interval: Duration::from_millis(20),
        claim_limit: 64,
        ..Default::default()
    };
    let gateway = Gateway::start(GatewayConfig {
        database: StoreConfig {
            writer_scheduling: config.writer_scheduling,
            ..StoreConfig::new(database_url.clone())
        },
        staff_listen: "127.0.0.1:0".parse()?,
        bank_listen: "127.0.0.1:0".parse()?,
        tls: TlsFiles::from_pki_dir(&pki_dir),
        workers: 2,
        run_engine: true,
        serve_api: true,
        engine,
        connectors: Default::default(),
        feed: None,
    })
    .await?;
    let store = gateway.store.clone();
    store.import_directory(&banks, &[]).await?;

    eprintln!("bench: measuring the baseline");
    let baseline = store
        .baseline_rows_per_s(config.inquiries.clamp(10_000, 200_000), 500, 10_000)
        .await?;

    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.arg("mock-banks")
        .arg("--pki-dir")
        .arg(&pki_dir)
        .arg("--gateway-url")
        .arg(gateway.answers_url())
        .arg("--answer-delay-ms")
        .arg("50");
    for c in &codes {
        cmd.arg("--bank").arg(format!("{c}=127.0.0.1:0"));
    }
    let (mut banks_child, endpoints) = crate::mockbank::spawn(cmd).await?;
    let ca = std::fs::read_to_string(pki::PkiLayout::new(&pki_dir).ca_cert())?;
    for (code, url) in &endpoints {
        let code = InstitutionCode::parse(code)?;
        let settings = InstitutionSettings {
            channel: Channel::Push,
            endpoint_url: Some(url.clone()),
            server_ca_pem: Some(ca.clone()),
            max_batch_size: config.batch_size,
            max_in_flight: 4,
            batch_max_age_ms: 200,
            paused: config.backlog,
            delivery_window: None,
        };
        admin::set_institution(&store, &code, &settings).await?;
        admin::add_bank_certificate(
            &store,
            &code,
            &pki::PkiLayout::new(&pki_dir).bank_client(code.as_str()).0,
        )
        .await?;
    }
    let token = admin::create_token(&store, Role::Caseworker, "131016", "bench").await?;
    // Further gateways: `shokai serve` children on the same database, with
    // the engine settings of the one in this process.
    let mut api_urls = vec![gateway.api_url()];
    let mut children = Vec::new();
    for _ in 1..config.gateways {
        let (child, api_url) = spawn_gateway(&database_url, &pki_dir).await?;
        api_urls.push(api_url);
        children.push(child);
    }

    // Cases of 20 people, each asked at every institution.
    let per_request = SUBJECTS_PER_CASE * codes.len();
    let requests = config.inquiries.div_ceil(per_request);
    let total = requests * per_request;
    eprintln!(
        "bench: {total} inquiries in {requests} requests at {} institutions",
        codes.len()
    );
    let http = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(config.submitters)
        .build()?;
    let next = Arc::new(Mutex::new(0usize));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(requests)));
    let started = Instant::now();
    let mut cpu_at_start = machine_cpu_seconds();
    let mut held_at_start = store.writer_held_seconds();
    let pace =
        (config.submit_rate > 0.0).then(|| Duration::from_secs_f64(1.0 / config.submit_rate));
    let mut submitters = Vec::new();
    for n in 0..config.submitters.max(1) {
        let (http, base, token, next, latencies, codes) = (
            http.clone(),
            api_urls[n % api_urls.len()].clone(),
            token.clone(),
            next.clone(),
            latencies.clone(),
            codes.clone(),
        );
        submitters.push(tokio::spawn(async move {
            loop {
                let n = {
                    let mut next = next.lock().await;
                    if *next >= requests {
                        return Ok::<_, anyhow::Error>(());
                    }
                    *next += 1;
                    *next - 1
                };
                let subjects: Vec<_> = (0..SUBJECTS_PER_CASE)
                    .map(|i| {
                        let k = n * SUBJECTS_PER_CASE + i;
                        json!({"kana_name": format!("ベンチ {}", kana_number(k)), "birth_date": format!("{}-{:02}-{:02}", 1940 + k % 60, 1 + k % 12, 1 + k % 28)})
                    })
                    .collect();
                let case: serde_json::Value = serde_json::from_slice(
                    &http
                        .post(format!("{base}/cases"))
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(json!({"case_number": format!("B-{n}"), "subjects": subjects}).to_string())
                        .send()
                        .await?
                        .bytes()
                        .await?,
                )?;
                // Paced: the latency counts from the request's slot, so a
                // gateway that falls behind cannot hide it (no coordinated
                // omission).
                let slot = pace.map(|p| started + p * n as u32);
                if let Some(slot) = slot {
                    tokio::time::sleep_until(slot.into()).await;
                }
                let body = json!({
                    "case_id": case["id"],
                    "institutions": codes.iter().map(|c| json!({"code": c})).collect::<Vec<_>>(),
                    "kinds": ["existence", "balance"],
                    "due_date": (today() + chrono::Days::new(14)).to_string(),
                });
                let t = slot.unwrap_or_else(Instant::now);
                let resp = http
                    .post(format!("{base}/requests"))
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .header("idempotency-key", format!("bench-{n}"))
                    .body(body.to_string())
                    .send()
                    .await?;
                anyhow::ensure!(resp.status().is_success(), "submit: HTTP {}", resp.status());
                latencies.lock().await.push(t.elapsed().as_secs_f64() * 1000.0);
            }
        }));
    }
    for s in submitters {
        s.await??;
    }
    let submitted_in = started.elapsed().as_secs_f64();
    let mut backlog_rss = None;
    let mut delivery_started = started;
    if config.backlog {
        // Everything is queued: this is the memory a backlog costs.
        tokio::time::sleep(Duration::from_millis(500)).await;
        backlog_rss = Some(peak_rss_mb());
        eprintln!(
            "bench: backlog of {total} queued, peak RSS {:.0} MB; releasing",
            backlog_rss.unwrap_or(0.0)
        );
        for c in &codes {
            store.set_paused(&InstitutionCode::parse(c)?, false).await?;
        }
        delivery_started = Instant::now();
        cpu_at_start = machine_cpu_seconds();
        held_at_start = store.writer_held_seconds();
    }
    // Progress is this gateway's count of answers accepted (the mock banks
    // answer here): counting final inquiries reads the whole table, and did
    // so every second on the machine being measured. The count by state
    // decides the end, and runs every few seconds too in case inquiries end
    // without an answer (failed).
    let mut counted_at: Option<Instant> = None;
    let mut printed_at = Instant::now();
    loop {
        let answered = crate::metrics::counter_sum("shokai_answers_total", ("result", "accepted"));
        let every = if answered as usize >= total {
            Duration::ZERO
        } else {
            FULL_COUNT_EVERY
        };
        if counted_at.is_none_or(|t| t.elapsed() >= every) {
            counted_at = Some(Instant::now());
            let done: i64 = store
                .inquiry_state_counts()
                .await?
                .iter()
                .filter(|(s, _)| s.is_final())
                .map(|(_, n)| n)
                .sum();
            if done as usize >= total {
                break;
            }
        }
        if printed_at.elapsed() >= Duration::from_secs(1) {
            printed_at = Instant::now();
            eprintln!(
                "bench: {answered}/{total} answered after {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = delivery_started.elapsed().as_secs_f64();
    let cpu = machine_cpu_per_inquiry(cpu_at_start, machine_cpu_seconds(), total);
    // The share of the run the writer lock was held (SQLite): near 1.0, the
    // single writer is the limit, whatever the cores are doing.
    let writer_held = store
        .writer_held_seconds()
        .zip(held_at_start)
        .map(|(end, start)| ((end - start) / elapsed * 1000.0).round() / 1000.0);
    let counts = store.inquiry_state_counts().await?;
    let failed = counts
        .iter()
        .find(|(s, _)| *s == InquiryState::Failed)
        .map_or(0, |(_, n)| *n);
    let mut submit: Vec<f64> = latencies.lock().await.clone();
    submit.sort_by(f64::total_cmp);
    let mut answer: Vec<f64> = store
        .first_answer_latencies()
        .await?
        .into_iter()
        .map(|ms| ms as f64)
        .collect();
    answer.sort_by(f64::total_cmp);
    let e2e = total as f64 / elapsed;
    let result = json!({
        "db": db,
        "gateways": config.gateways,
        "submit_rate": config.submit_rate,
        "inquiries": total,
        "institutions": codes.len(),
        "batch_size": config.batch_size,
        "backlog": config.backlog,
        "e2e_inquiries_per_s": (e2e * 10.0).round() / 10.0,
        "submit_p50_ms": (percentile(&submit, 0.5) * 100.0).round() / 100.0,
        "submit_p99_ms": (percentile(&submit, 0.99) * 100.0).round() / 100.0,
        "answer_latency_p50_ms": percentile(&answer, 0.5),
        "answer_latency_p99_ms": percentile(&answer, 0.99),
        "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
        "backlog_peak_rss_mb": backlog_rss.map(|r| (r * 10.0).round() / 10.0),
        "baseline_rows_per_s": baseline.round(),
        "ratio_to_baseline": ((e2e * 3.0 / baseline) * 1000.0).round() / 1000.0,
        "writer_held_ratio": writer_held,
        "writer_scheduling": store.writer_scheduling().map(|s| format!("{s:?}")),
        "failed": failed,
        "submit_seconds": (submitted_in * 10.0).round() / 10.0,
        "machine_cpu_us_per_inquiry": cpu.map(|(us, _)| us.round()),
        "machine_busy_ratio": cpu.map(|(_, busy)| (busy * 1000.0).round() / 1000.0),
    });
    println!(
        "database            {db} ({} gateway processes)",
        config.gateways
    );
    println!(
        "inquiries           {total} ({} institutions, batch size {})",
        codes.len(),
        config.batch_size
    );
    println!(
        "end to end          {:.0} inquiries/s over {elapsed:.1} s",
        e2e
    );
    println!(
        "submit latency      p50 {:.2} ms, p99 {:.2} ms",
        percentile(&submit, 0.5),
        percentile(&submit, 0.99)
    );
    println!(
        "answer latency      p50 {:.0} ms, p99 {:.0} ms",
        percentile(&answer, 0.5),
        percentile(&answer, 0.99)
    );
    println!("peak RSS (gateway)  {:.1} MB", peak_rss_mb());
    println!(
        "baseline            {:.0} rows/s (ratio {:.3})",
        baseline,
        e2e * 3.0 / baseline
    );
    if let Some((us, busy)) = cpu {
        println!(
            "machine CPU         {us:.0} µs per inquiry, every process ({:.0} % busy)",
            busy * 100.0
        );
    }
    if let (Some(held), Some(scheduling)) = (writer_held, store.writer_scheduling()) {
        println!(
            "writer lock held    {:.0} % of the run ({scheduling:?} scheduling)",
            held * 100.0
        );
    }
    println!("{result}");
    let _ = banks_child.kill().await;
    for mut child in children {
        let _ = child.kill().await;
    }
    gateway.stop().await;
    Ok(result)
}

/// Starts `shokai serve --role all` on loopback ports of its own and
/// returns it with its staff API URL, once it says it is serving.
async fn spawn_gateway(
    database_url: &str,
    pki_dir: &std::path::Path,
) -> anyhow::Result<(tokio::process::Child, String)> {
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.args(["serve", "--database-url", database_url, "--pki-dir"])
        .arg(pki_dir)
        .args([
            "--staff-listen",
            "127.0.0.1:0",
            "--bank-listen",
            "127.0.0.1:0",
            "--poll-ms",
            "20",
        ]);
    crate::child::spawn_announced(cmd, "a further gateway", |line| {
        line.strip_prefix("shokai: staff API ")
            .and_then(|r| r.split(' ').next())
            .map(str::to_owned)
    })
    .await
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_cpu_is_counted_per_inquiry() {
        // 3 busy and 1 idle second over 10,000 inquiries.
        assert_eq!(
            machine_cpu_per_inquiry(Some((10.0, 5.0)), Some((13.0, 6.0)), 10_000),
            Some((300.0, 0.75))
        );
        assert_eq!(
            machine_cpu_per_inquiry(Some((1.0, 1.0)), Some((1.0, 1.0)), 10),
            None
        );
        assert_eq!(machine_cpu_per_inquiry(None, Some((1.0, 1.0)), 10), None);
        #[cfg(target_os = "linux")]
        assert!(machine_cpu_seconds().is_some_and(|(busy, idle)| busy > 0.0 && idle >= 0.0));
    }
}
