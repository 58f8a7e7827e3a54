//! Certificates and CRLs reloaded on SIGHUP, without a restart.

use std::time::Duration;

use shokai::admin;
use shokai::pki::{self, LeafSpec, PkiLayout};
use shokai::tls::{Identity, load_certs, mtls_client_config};

use crate::chaos::{GatewayProcess, free_port};
use crate::support::{code, eventually, import_small_directory, open};

const BANK_SERIAL: u64 = 4242;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_crls_and_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let (layout, ca) = pki::init_with_ca(&pki_dir, &["0001".to_owned()]).unwrap();
    let crl = dir.path().join("banks.crl.pem");
    ca.write_crl(&crl, 1, &[]).unwrap();
    // The bank's client certificate, with a serial we can revoke.
    let bank = ca
        .issue_leaf(&LeafSpec {
            serial: Some(BANK_SERIAL),
            ..LeafSpec::client("bank 0001 client")
        })
        .unwrap();
    pki::write_pair(&layout.bank_client("0001"), &bank).unwrap();
    let db = crate::support::sqlite_db();
    let store = open(&db.url).await;
    import_small_directory(&store).await;
    admin::add_bank_certificate(&store, &code("0001"), &layout.bank_client("0001").0)
        .await
        .unwrap();

    let (staff, bank_port) = (free_port(), free_port());
    let mut gw = GatewayProcess::new(
        &db.url,
        &pki_dir,
        staff,
        bank_port,
        "all",
        dir.path().join("gw.log"),
    )
    .arg("--crl")
    .arg(&crl.display().to_string());
    gw.start().await;
    let bank_client = {
        let (cert, key) = layout.bank_client("0001");
        let id = Identity::load(&cert, &key).unwrap();
        let tls = mtls_client_config(
            &load_certs(&layout.ca_cert()).unwrap(),
            id.chain.clone(),
            id.key(),
        )
        .unwrap();
        // A fresh client per call: no pooled connection survives the reload.
        move || {
            reqwest::Client::builder()
                .no_proxy()
                .pool_max_idle_per_host(0)
                .tls_backend_preconfigured(tls.clone())
                .build()
                .unwrap()
        }
    };
    let answers = format!("https://127.0.0.1:{bank_port}/bank/v1/answers");
    let reaches = || {
        let (client, url) = (bank_client(), answers.clone());
        async move { client.post(url).body("<x/>").send().await.is_ok() }
    };
    assert!(
        reaches().await,
        "the bank gets through before the revocation"
    );
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let ready = format!("http://127.0.0.1:{staff}/readyz");
    assert_eq!(
        http.get(&ready).send().await.unwrap().status().as_u16(),
        200
    );

    // Revoke the bank, and rotate the office's client certificate to one
    // that runs out in ten days; then SIGHUP.
    ca.write_crl(&crl, 2, &[BANK_SERIAL]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let short = ca
        .issue_leaf(&LeafSpec {
            not_after: now + time::Duration::days(10),
            ..LeafSpec::client("shokai gateway client")
        })
        .unwrap();
    pki::write_pair(&layout.gateway_client(), &short).unwrap();
    let hup = tokio::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .await
        .unwrap();
    assert!(hup.success());
    let mut revoked = false;
    for _ in 0..100 {
        if !reaches().await {
            revoked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(dir.path().join("gw.log")).unwrap();
    assert!(revoked, "the revocation did not apply; gateway log:\n{log}");
    eventually(
        "readiness to see the expiring certificate",
        Duration::from_secs(10),
        || async { http.get(&ready).send().await.unwrap().status().as_u16() == 503 },
    )
    .await;
    let log = std::fs::read_to_string(dir.path().join("gw.log")).unwrap();
    assert!(log.contains("certificates and CRLs reloaded"), "{log}");
    assert!(
        log.contains("client certificate refused"),
        "the refusal is logged: {log}"
    );

    // A broken file is refused and the previous certificates stay.
    std::fs::write(&crl, "not a CRL").unwrap();
    let hup = tokio::process::Command::new("kill")
        .args(["-HUP", &gw.pid().to_string()])
        .status()
        .await
        .unwrap();
    assert!(hup.success());
    eventually(
        "the failed reload to be logged",
        Duration::from_secs(10),
        || async {
            std::fs::read_to_string(dir.path().join("gw.log"))
                .unwrap()
                .contains("certificate reload failed")
        },
    )
    .await;
    assert!(!reaches().await, "still revoked");
    assert_eq!(
        http.get(format!("http://127.0.0.1:{staff}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    gw.kill().await;
    let _ = PkiLayout::new(&pki_dir);
    store.close().await;
}
