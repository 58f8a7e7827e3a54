//! The benchmark as a smoke test: a 10,000-inquiry run completes and ends
//! with its JSON line. Figures are printed, never asserted.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_completes_and_prints_its_json_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shokai"))
        .args(["bench", "--inquiries", "10000"])
        .arg("--work-dir")
        .arg(dir.path())
        .arg("--directory")
        .arg(crate::support::repo_path("data/zengin"))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    assert_eq!(
        (
            last["db"].as_str(),
            last["inquiries"].as_u64(),
            last["failed"].as_i64()
        ),
        (Some("sqlite"), Some(10_000), Some(0))
    );
}
