//! The benchmark as a smoke test: a 10,000-inquiry run completes and ends
//! with its JSON line. Figures are printed, never asserted.

/// Runs `shokai bench` with `args` in a scratch directory; returns its
/// exit status, stdout and stderr.
async fn bench(args: &[&str]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shokai"))
        .arg("bench")
        .args(args)
        .arg("--work-dir")
        .arg(dir.path())
        .arg("--directory")
        .arg(crate::support::repo_path("data/zengin"))
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The last line of a successful run, with every field the issue asks for.
fn json_line(ok: bool, stdout: &str, stderr: &str) -> serde_json::Value {
    assert!(ok, "{stdout}\n{stderr}");
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!("bench smoke: {last}");
    for key in [
        "db",
        "inquiries",
        "e2e_inquiries_per_s",
        "submit_p50_ms",
        "submit_p99_ms",
        "answer_latency_p50_ms",
        "answer_latency_p99_ms",
        "peak_rss_mb",
        "baseline_rows_per_s",
        "ratio_to_baseline",
    ] {
        assert!(!last[key].is_null(), "{key} missing: {last}");
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_completes_and_prints_its_json_line() {
    let (ok, stdout, stderr) = bench(&["--inquiries", "10000"]).await;
    let last = json_line(ok, &stdout, &stderr);
    assert_eq!(
        (
            last["db"].as_str(),
            last["inquiries"].as_u64(),
            last["failed"].as_i64()
        ),
        (Some("sqlite"), Some(10_000), Some(0))
    );
    // The writer's held share is a fraction of the run (measured, not judged).
    let held = last["writer_held_ratio"].as_f64().unwrap();
    assert!(held > 0.0 && held <= 1.05, "{last}");
    // So is the machine's CPU: some per inquiry, busy part of the time.
    let cpu = last["machine_cpu_us_per_inquiry"].as_f64().unwrap();
    let busy = last["machine_busy_ratio"].as_f64().unwrap();
    assert!(cpu > 0.0 && busy > 0.0 && busy <= 1.0, "{last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_runs_two_gateways_on_postgres_only() {
    let (ok, _, stderr) = bench(&["--inquiries", "1000", "--gateways", "2"]).await;
    assert!(!ok && stderr.contains("needs PostgreSQL"), "{stderr}");
    let Some(db) = crate::support::postgres_db().await else {
        eprintln!("skipped: SHOKAI_TEST_DATABASE_URL is not set");
        return;
    };
    let (ok, stdout, stderr) = bench(&[
        "--inquiries",
        "3000",
        "--gateways",
        "2",
        "--submit-rate",
        "20",
        "--database-url",
        &db.url,
    ])
    .await;
    let last = json_line(ok, &stdout, &stderr);
    assert_eq!(
        (
            last["db"].as_str(),
            last["gateways"].as_u64(),
            last["failed"].as_i64()
        ),
        (Some("postgres"), Some(2), Some(0))
    );
    assert!(last["writer_held_ratio"].is_null(), "{last}");
    db.drop_postgres().await;
}
