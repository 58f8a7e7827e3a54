//! Operator endpoints: health, readiness (database, migrations,
//! certificates) and the Prometheus metrics during a real run.

use std::time::Duration;

use serde_json::json;
use shokai::gateway::{Gateway, GatewayConfig};
use shokai::pki::{self, LeafSpec};

use crate::db_test;

async fn start(url: &str, pki_dir: &std::path::Path) -> Gateway {
    Gateway::start(crate::support::gateway_config(url, pki_dir))
        .await
        .unwrap()
}

fn root(g: &Gateway) -> String {
    format!("http://{}", g.staff_addr.unwrap())
}

async fn metrics_during_a_run(url: String) {
    let s = crate::chaos::setup(&url, &[]).await;
    // The gateway in process, on the port the mock banks answer to.
    let gateway = Gateway::start(GatewayConfig {
        bank_listen: format!("127.0.0.1:{}", s.bank_port).parse().unwrap(),
        ..crate::support::gateway_config(&url, &s.pki)
    })
    .await
    .unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = root(&gateway);
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let body: serde_json::Value = serde_json::from_slice(&ready.bytes().await.unwrap()).unwrap();
    assert_eq!(body["ready"], json!(true));
    let port = gateway.staff_addr.unwrap().port();
    let requests = crate::chaos::file_cases(port, &s.token, 1, "ops").await;
    crate::chaos::assert_all_delivered(&s, &requests, Duration::from_secs(60)).await;
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for series in [
        "shokai_inquiries{institution=\"0001\",state=",
        "shokai_batches{institution=\"0005\",state=\"acknowledged\"}",
        "shokai_delivery_attempts_total{institution=\"0009\",outcome=\"acknowledged\"}",
        "shokai_delivery_duration_seconds_bucket{institution=\"0001\",le=",
        "shokai_answers_total{institution=\"0001\",result=\"accepted\"}",
        "shokai_answer_latency_seconds_count{institution=\"0005\"}",
        "shokai_http_requests_total{listener=\"staff\",method=\"POST\",route=\"/api/v1/requests\",status=\"201\"}",
        "shokai_http_requests_total{listener=\"bank\",method=\"POST\",route=\"/bank/v1/answers\",status=\"200\"}",
        "shokai_circuit_open{institution=\"0001\"} 0",
        "shokai_certificate_expiry_seconds{certificate=\"bank-client\"}",
    ] {
        assert!(text.contains(series), "/metrics lacks {series}:\n{text}");
    }
    // Only SQLite has one write lock to watch.
    assert_eq!(
        text.contains("\nshokai_sqlite_writer_held_seconds "),
        gateway.store.dialect() == shokai::store::Dialect::Sqlite,
        "{text}"
    );
    gateway.stop().await;
    s.store.close().await;
}
db_test!(metrics_during_a_run, super::metrics_during_a_run);

/// A certificate that runs out within 30 days makes the process not ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_before_a_certificate_expires() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, ca) = pki::init_with_ca(dir.path(), &["0001".to_owned()]).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let short = ca
        .issue_leaf(&LeafSpec {
            not_after: now + time::Duration::days(10),
            ..LeafSpec::client("shokai gateway client")
        })
        .unwrap();
    pki::write_pair(&layout.gateway_client(), &short).unwrap();
    let db = crate::support::sqlite_db();
    let gateway = start(&db.url, dir.path()).await;
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/readyz", root(&gateway)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    let body: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    assert!(
        body["problems"][0]
            .as_str()
            .unwrap()
            .contains("certificate bank-client expires"),
        "{body}"
    );
    gateway.stop().await;
}
