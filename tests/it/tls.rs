//! TLS negatives over real mutual TLS on loopback. The bank API refuses a
//! connection without a client certificate, with one from an unknown CA, an
//! expired one and one revoked by the gateway's CRL, and nothing is stored.
//! The dispatcher refuses a bank server whose certificate names another host
//! or comes from a CA the institution is not configured with: the batch
//! waits for a retry, the attempt records the certificate error, and nothing
//! is delivered or answered. Each test has a positive control in the same
//! setup, so that it fails if the refusal came from something else.

use std::path::PathBuf;
use std::time::Duration;

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use shokai::admin;
use shokai::delivery::seal_due_batches;
use shokai::domain::answer::{Answer, Outcome};
use shokai::domain::ids::{BatchId, InquiryId};
use shokai::domain::request::Request;
use shokai::domain::state::{BatchState, InquiryKind, InquiryState};
use shokai::domain::time::now_millis;
use shokai::gateway::{Gateway, GatewayConfig, TlsFiles};
use shokai::iso20022::{self, AnswerStatus, OutgoingAnswer};
use shokai::pki::{self, Ca, LeafSpec, PkiLayout};
use shokai::store::{InquiryView, Store};
use shokai::tls::{load_certs, mtls_client_config, parse_certs};
use sqlx::Connection;
use time::OffsetDateTime;

use crate::support::{
    TestDb, code, eventually, import_small_directory, sqlite_db, start_mock_banks,
};

const OFFICE: &str = "131016";
/// The serial of the client certificate the gateway's CRL revokes.
const REVOKED_SERIAL: u64 = 0x5EED_0001;

async fn start_gateway(db: &TestDb, tls: TlsFiles, run_engine: bool) -> Gateway {
    Gateway::start(GatewayConfig {
        tls,
        run_engine,
        ..crate::support::gateway_config(&db.url, std::path::Path::new("."))
    })
    .await
    .unwrap()
}

fn inquiry_for(request: &Request, bank: &str) -> InquiryId {
    request
        .inquiries
        .iter()
        .find(|i| i.target.institution.as_str() == bank)
        .unwrap()
        .id
        .clone()
}

async fn inquiry(store: &Store, id: &InquiryId) -> InquiryView {
    store.inquiry_view(id).await.unwrap().unwrap()
}

// ---------------------------------------------------------------------------
// The bank API (the gateway's mutual-TLS listener)
// ---------------------------------------------------------------------------

/// A gateway whose bank listener checks client certificates against the dev
/// CA and a CRL revoking [`REVOKED_SERIAL`], with one inquiry to bank 0001
/// batched and so open for an answer. The engine does not run, so nothing
/// but the bank API can change the inquiry.
struct BankApi {
    gateway: Gateway,
    pki: PkiLayout,
    ca: Ca,
    inquiry: InquiryId,
    case_id: shokai::domain::ids::CaseId,
    dir: tempfile::TempDir,
    _db: TestDb,
}

/// What a refused answer batch must leave untouched.
#[derive(Debug, PartialEq)]
struct Snapshot {
    counts: Vec<(InquiryState, i64)>,
    inquiry: InquiryView,
    case_file_entries: usize,
}

impl BankApi {
    async fn start() -> BankApi {
        shokai::tls::install_crypto_provider();
        let db = sqlite_db();
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        let (pki, ca) = pki::init_with_ca(&pki_dir, &["0001".to_owned()]).unwrap();
        let crl = pki_dir.join("crl.pem");
        ca.write_crl(&crl, 1, &[REVOKED_SERIAL]).unwrap();
        let tls = TlsFiles {
            crl: Some(crl),
            ..TlsFiles::from_pki_dir(&pki_dir)
        };
        let gateway = start_gateway(&db, tls, false).await;
        let store = &gateway.store;
        import_small_directory(store).await;
        // The endpoint is never called: the engine is not running.
        admin::connect_push_institution(
            store,
            &code("0001"),
            "https://127.0.0.1:9/inquiries",
            &ca.pem,
            &pki.bank_client("0001").0,
            (10, 1, 0),
        )
        .await
        .unwrap();
        let request = crate::support::file_request_for(store, 1, &["0001"]).await;
        assert_eq!(seal_due_batches(store, now_millis()).await.unwrap(), 1);
        let inquiry = inquiry_for(&request, "0001");
        assert_eq!(
            self::inquiry(store, &inquiry).await.state,
            InquiryState::Batched
        );
        BankApi {
            gateway,
            pki,
            ca,
            inquiry,
            case_id: request.case_id,
            dir,
            _db: db,
        }
    }

    async fn snapshot(&self) -> Snapshot {
        let store = &self.gateway.store;
        let mut counts = store.inquiry_state_counts().await.unwrap();
        counts.sort();
        Snapshot {
            counts,
            inquiry: inquiry(store, &self.inquiry).await,
            case_file_entries: store
                .case_file(&self.case_id)
                .await
                .unwrap()
                .unwrap()
                .entries
                .len(),
        }
    }

    /// Writes a client certificate to the temporary directory and registers
    /// its fingerprint for bank 0001, so that only TLS can refuse it.
    async fn registered_client_cert(&self, name: &str, pems: &(String, String)) -> PathBuf {
        let paths = (
            self.dir.path().join(format!("{name}.pem")),
            self.dir.path().join(format!("{name}-key.pem")),
        );
        pki::write_pair(&paths, pems).unwrap();
        admin::add_bank_certificate(&self.gateway.store, &code("0001"), &paths.0)
            .await
            .unwrap();
        paths.0
    }

    /// An answer batch from bank 0001 answering the batched inquiry.
    fn answer_batch(&self, id: &str) -> Vec<u8> {
        iso20022::encode_answer_batch(
            id,
            &code("0001"),
            OFFICE,
            now_millis(),
            &[OutgoingAnswer {
                answer: Answer {
                    inquiry_id: self.inquiry.clone(),
                    response_id: format!("R-{id}"),
                    outcome: Outcome::NotFound,
                },
                kinds: vec![InquiryKind::Existence, InquiryKind::Balance],
                zengin_name: "ﾔﾏﾀﾞ ﾀﾛｳ".into(),
            }],
        )
    }

    /// A bank API client trusting the dev CA for the gateway's server
    /// certificate and presenting `identity` (certificate PEM, key PEM).
    fn client(&self, identity: Option<&(String, String)>) -> reqwest::Client {
        let ca = load_certs(&self.pki.ca_cert()).unwrap();
        let tls = match identity {
            Some((cert, key)) => mtls_client_config(
                &ca,
                parse_certs(cert, "test client certificate").unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
            None => {
                let mut roots = rustls::RootCertStore::empty();
                for c in ca {
                    roots.add(c).unwrap();
                }
                rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth()
            }
        };
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .timeout(Duration::from_secs(10))
            .no_proxy()
            .build()
            .unwrap()
    }

    /// Posts an answer batch with `identity`; it must be refused (a TLS or
    /// request error, or 401/403) and change nothing in the store.
    async fn assert_refused(&self, what: &str, identity: Option<&(String, String)>) {
        let before = self.snapshot().await;
        let result = self
            .client(identity)
            .post(self.gateway.answers_url())
            .header("content-type", "application/xml")
            .body(self.answer_batch(&format!("FORGED-{}", what.replace(' ', "-"))))
            .send()
            .await;
        match result {
            Err(e) => eprintln!("{what}: refused: {}", error_chain(&e)),
            Ok(resp) => {
                let status = resp.status().as_u16();
                let body = resp.text().await.unwrap_or_default();
                assert!(
                    status == 401 || status == 403,
                    "{what}: the bank API answered HTTP {status}: {body}"
                );
            }
        }
        assert_eq!(
            before,
            self.snapshot().await,
            "{what}: a refused answer batch changed the store"
        );
        let inquiry = &before.inquiry;
        assert_eq!(
            (inquiry.state, inquiry.answer_revision),
            (InquiryState::Batched, 0),
            "{what}"
        );
    }

    /// The positive control: bank 0001's registered certificate gets through
    /// the same listener and its answer is applied.
    async fn assert_registered_bank_gets_through(&self) {
        let (cert, key) = self.pki.bank_client("0001");
        let identity = (
            std::fs::read_to_string(cert).unwrap(),
            std::fs::read_to_string(key).unwrap(),
        );
        let resp = self
            .client(Some(&identity))
            .post(self.gateway.answers_url())
            .header("content-type", "application/xml")
            .body(self.answer_batch("GENUINE-1"))
            .send()
            .await
            .expect("the registered bank certificate must be accepted");
        assert_eq!(resp.status().as_u16(), 200);
        let receipt = iso20022::decode_answer_batch_receipt(&resp.bytes().await.unwrap()).unwrap();
        assert_eq!(receipt.results.len(), 1);
        assert_eq!(receipt.results[0].status, AnswerStatus::Accepted);
        let after = self.snapshot().await;
        assert_eq!(
            (after.inquiry.state, after.inquiry.answer_revision),
            (InquiryState::NotFound, 1)
        );
        assert_eq!(after.case_file_entries, 1);
    }

    async fn stop(self) {
        self.gateway.stop().await;
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_api_refuses_a_connection_without_a_client_certificate() {
    let env = BankApi::start().await;
    env.assert_refused("no client certificate", None).await;
    env.assert_registered_bank_gets_through().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_api_refuses_a_client_certificate_from_an_unknown_ca() {
    let env = BankApi::start().await;
    // A CA of another name, and an impostor CA named like the real one.
    for (name, what) in [
        ("Some other CA", "unknown CA"),
        ("Shokai development CA", "impostor CA with the same name"),
    ] {
        let rogue = Ca::generate(name).unwrap();
        let pems = rogue
            .issue_leaf(&LeafSpec::client("bank 0001 client"))
            .unwrap();
        env.registered_client_cert(&what.replace(' ', "-"), &pems)
            .await;
        env.assert_refused(what, Some(&pems)).await;
    }
    env.assert_registered_bank_gets_through().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_api_refuses_an_expired_client_certificate() {
    let env = BankApi::start().await;
    let now = OffsetDateTime::now_utc();
    let pems = env
        .ca
        .issue_leaf(&LeafSpec {
            not_before: now - time::Duration::days(400),
            not_after: now - time::Duration::days(1),
            ..LeafSpec::client("bank 0001 client")
        })
        .unwrap();
    env.registered_client_cert("expired-client", &pems).await;
    env.assert_refused("expired certificate", Some(&pems)).await;
    env.assert_registered_bank_gets_through().await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_api_refuses_a_client_certificate_revoked_by_its_crl() {
    let env = BankApi::start().await;
    let pems = env
        .ca
        .issue_leaf(&LeafSpec {
            serial: Some(REVOKED_SERIAL),
            ..LeafSpec::client("bank 0001 client")
        })
        .unwrap();
    env.registered_client_cert("revoked-client", &pems).await;
    env.assert_refused("revoked certificate", Some(&pems)).await;
    // The refusal is counted, by reason.
    let metrics = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!(
            "http://{}/metrics",
            env.gateway.staff_addr.unwrap()
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("shokai_tls_client_refused_total{reason=\"revoked\"}"),
        "{metrics}"
    );
    // The same CA's certificate with another serial is not revoked.
    let sibling = env
        .ca
        .issue_leaf(&LeafSpec {
            serial: Some(REVOKED_SERIAL + 1),
            ..LeafSpec::client("bank 0001 client")
        })
        .unwrap();
    env.registered_client_cert("sibling-client", &sibling).await;
    let resp = env
        .client(Some(&sibling))
        .post(env.gateway.answers_url())
        .body("<not-an-answer-batch/>")
        .send()
        .await
        .expect("a certificate the CRL does not list must be accepted");
    assert_eq!(
        resp.status().as_u16(),
        400,
        "it passes TLS and is refused only for its body"
    );
    env.assert_registered_bank_gets_through().await;
    env.stop().await;
}

// ---------------------------------------------------------------------------
// The dispatcher (the gateway as a client of the banks)
// ---------------------------------------------------------------------------

enum BadServer {
    /// Issued by the right CA, but only for `wrong.example`.
    WrongName,
    /// For the right names, but issued by a CA the institution is not
    /// configured to trust.
    UntrustedCa,
}

/// Bank 0001's server certificate is bad as given; bank 0005's is right
/// and serves as the control. Both get one inquiry from the same request.
async fn dispatcher_refuses(bad: BadServer, expected_error: &[&str]) {
    shokai::tls::install_crypto_provider();
    let db = sqlite_db();
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let (pki, ca) = pki::init_with_ca(&pki_dir, &["0001".to_owned(), "0005".to_owned()]).unwrap();
    let server = match bad {
        BadServer::WrongName => ca.issue_leaf(&LeafSpec {
            names: vec!["wrong.example".to_owned()],
            ..LeafSpec::server("bank 0001")
        }),
        BadServer::UntrustedCa => Ca::generate("Bank 0001 private CA")
            .unwrap()
            .issue_leaf(&LeafSpec::server("bank 0001")),
    }
    .unwrap();
    pki::write_pair(&pki.bank_server("0001"), &server).unwrap();

    let gateway = start_gateway(&db, TlsFiles::from_pki_dir(&pki_dir), true).await;
    let store = gateway.store.clone();
    import_small_directory(&store).await;
    let banks = start_mock_banks(&pki_dir, &gateway.answers_url(), &["0001", "0005"]).await;
    for (c, endpoint) in &banks.endpoints {
        admin::connect_push_institution(
            &store,
            &code(c),
            endpoint,
            &ca.pem,
            &pki.bank_client(c).0,
            (5, 2, 100),
        )
        .await
        .unwrap();
    }
    let request = crate::support::file_request_for(&store, 1, &["0001", "0005"]).await;
    let (bad_inquiry, good_inquiry) =
        (inquiry_for(&request, "0001"), inquiry_for(&request, "0005"));

    // The control: 0005 is delivered, acknowledged and answered.
    // (The answer may arrive before the receipt is recorded, so wait for both.)
    eventually(
        "bank 0005's batch to be acknowledged and its inquiry answered",
        Duration::from_secs(60),
        || async {
            let view = inquiry(&store, &good_inquiry).await;
            let Some(id) = view.batch_id else {
                return false;
            };
            let batch = store.batch(&id).await.unwrap().unwrap();
            batch.state == BatchState::Acknowledged
                && matches!(view.state, InquiryState::Answered | InquiryState::NotFound)
        },
    )
    .await;

    // 0001: tried, refused by the dispatcher's TLS check, waiting for a retry.
    eventually(
        "bank 0001's batch to wait for a retry",
        Duration::from_secs(60),
        || async {
            let Some(id) = inquiry(&store, &bad_inquiry).await.batch_id else {
                return false;
            };
            let batch = store.batch(&id).await.unwrap().unwrap();
            batch.state == BatchState::RetryWait && batch.attempts >= 1
        },
    )
    .await;
    let bad_batch = inquiry(&store, &bad_inquiry).await.batch_id.unwrap();
    let row = store.batch(&bad_batch).await.unwrap().unwrap();
    let last_error = row.last_error.clone().unwrap_or_default();
    for want in expected_error {
        assert!(
            last_error.contains(want),
            "the batch's last error should mention {want:?}: {last_error}"
        );
    }
    let attempts = delivery_attempts(&db.url, &bad_batch).await;
    assert!(!attempts.is_empty(), "no delivery attempt was recorded");
    for (outcome, status, error) in &attempts {
        assert_eq!(outcome, "retryable");
        assert_eq!(*status, None, "no HTTP exchange took place");
        let error = error.as_deref().unwrap_or_default();
        for want in expected_error {
            assert!(
                error.contains(want),
                "the attempt's error should mention {want:?}: {error}"
            );
        }
    }
    let view = inquiry(&store, &bad_inquiry).await;
    assert_eq!(
        (view.state, view.answer_revision),
        (InquiryState::Batched, 0),
        "{view:?}"
    );
    let file = store.case_file(&request.case_id).await.unwrap().unwrap();
    assert!(
        file.entries
            .iter()
            .all(|e| e.institution.as_str() == "0005"),
        "nothing from bank 0001 was filed"
    );
    gateway.stop().await;
}

/// The `delivery_attempts` rows of a batch: (outcome, HTTP status, error).
/// The store has no reader for them, so this reads the SQLite file.
async fn delivery_attempts(
    url: &str,
    batch: &BatchId,
) -> Vec<(String, Option<i64>, Option<String>)> {
    let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
    let rows = sqlx::query_as(
        "SELECT outcome, http_status, error FROM delivery_attempts WHERE batch_id = ? \
         ORDER BY attempt_no",
    )
    .bind(batch.as_str().to_owned())
    .fetch_all(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_refuses_a_bank_server_certificate_for_the_wrong_name() {
    dispatcher_refuses(
        BadServer::WrongName,
        &["invalid peer certificate", "not valid for name"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_refuses_a_bank_server_certificate_from_an_untrusted_ca() {
    dispatcher_refuses(
        BadServer::UntrustedCa,
        &["invalid peer certificate", "UnknownIssuer"],
    )
    .await;
}
