//! The onboarding kit against a healthy and a faulty mock bank.

use shokai::pki::{self, PkiLayout};
use tokio::process::Command;

async fn run_kit(faults: Option<&str>) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    pki::init(&pki_dir, &["0001".to_owned()]).unwrap();
    let layout = PkiLayout::new(&pki_dir);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mock-banks"));
    cmd.arg("--pki-dir")
        .arg(&pki_dir)
        .arg("--gateway-url")
        .arg("https://127.0.0.1:9/bank/v1/answers")
        .arg("--bank")
        .arg("0001=127.0.0.1:0");
    if let Some(f) = faults {
        cmd.arg("--fault").arg(format!("0001:{f}"));
    }
    let (_bank, endpoints) = shokai::mockbank::spawn(cmd).await.unwrap();
    let (cert, key) = layout.gateway_client();
    let out = Command::new(env!("CARGO_BIN_EXE_shokai"))
        .args([
            "conformance",
            "--institution",
            "0001",
            "--oversize-bytes",
            "67200000",
            "--bank-url",
        ])
        .arg(&endpoints[0].1)
        .arg("--ca")
        .arg(layout.ca_cert())
        .arg("--cert")
        .arg(cert)
        .arg("--key")
        .arg(key)
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_bank_passes_every_case() {
    let (ok, table) = run_kit(None).await;
    assert!(ok, "{table}");
    assert!(table.contains("5 passed, 0 failed"), "{table}");
    for case in [
        "valid batch",
        "duplicate batch id",
        "batch for another institution",
        "oversize body",
        "malformed body",
    ] {
        assert!(
            table
                .lines()
                .any(|l| l.starts_with(case) && l.contains(" pass ")),
            "{case}: {table}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_bank_shows_its_failures() {
    // A bank that answers every batch with something that is not a receipt.
    let (ok, table) = run_kit(Some("malformed_rate=1.0")).await;
    assert!(!ok, "{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("valid batch") && l.contains(" FAIL ")),
        "{table}"
    );
    assert!(table.contains("no readable receipt"), "{table}");
    assert!(table.contains("1 passed, 4 failed"), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bank_failing_handshakes_gets_no_request_through() {
    let (ok, table) = run_kit(Some("handshake_fail_rate=1.0")).await;
    assert!(!ok, "{table}");
    assert!(table.contains("0 passed, 5 failed"), "{table}");
    assert!(table.contains("no reply"), "{table}");
}
