//! The pull channel: a bank that fetches its batches over mTLS and
//! acknowledges them, with the same status model as push.

use std::time::Duration;

use shokai::admin;
use shokai::domain::state::{BatchState, Channel};
use shokai::gateway::Gateway;
use shokai::pki::{self, PkiLayout};
use shokai::store::InstitutionSettings;
use shokai::tls::{Identity, load_certs, mtls_client_config};

use crate::db_test;
use crate::support::{code, import_small_directory};

async fn a_pull_bank_fetches_acknowledges_and_answers(url: String) {
    shokai::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    pki::init(&pki_dir, &["0001".to_owned(), "0005".to_owned()]).unwrap();
    let gateway = Gateway::start(crate::support::gateway_config(&url, &pki_dir))
        .await
        .unwrap();
    let store = gateway.store.clone();
    import_small_directory(&store).await;
    let layout = PkiLayout::new(&pki_dir);
    // 0001 pulls; nothing is pushed to it.
    admin::set_institution(
        &store,
        &code("0001"),
        &InstitutionSettings {
            channel: Channel::Pull,
            batch_max_age_ms: 50,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    admin::add_bank_certificate(&store, &code("0001"), &layout.bank_client("0001").0)
        .await
        .unwrap();
    admin::add_bank_certificate(&store, &code("0005"), &layout.bank_client("0005").0)
        .await
        .unwrap();

    // Before the bank starts, its batch waits, sealed, and another bank
    // cannot see or take it.
    let request = crate::support::file_request_for(&store, 3, &["0001"]).await;
    crate::support::eventually("a sealed batch", Duration::from_secs(10), || async {
        !store
            .batches_in_state(BatchState::Sealed, 10)
            .await
            .unwrap()
            .is_empty()
    })
    .await;
    let sealed = store
        .batches_in_state(BatchState::Sealed, 10)
        .await
        .unwrap()
        .remove(0);
    let ca = load_certs(&layout.ca_cert()).unwrap();
    let client_of = |bank: &str| {
        let (cert, key) = layout.bank_client(bank);
        let id = Identity::load(&cert, &key).unwrap();
        reqwest::Client::builder()
            .no_proxy()
            .tls_backend_preconfigured(mtls_client_config(&ca, id.chain.clone(), id.key()).unwrap())
            .build()
            .unwrap()
    };
    let base = gateway
        .answers_url()
        .trim_end_matches("/answers")
        .to_owned();
    let other = client_of("0005");
    let listing = other
        .get(format!("{base}/batches?status=pending"))
        .send()
        .await
        .unwrap();
    let listed = shokai::iso20022::decode_pending_batches(&listing.bytes().await.unwrap()).unwrap();
    assert!(listed.is_empty(), "0005 sees no 0001 batch");
    let stolen = other
        .get(format!("{base}/batches/{}", sealed.id))
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status().as_u16(), 404);
    let ack = other
        .post(format!("{base}/batches/{}/ack", sealed.id))
        .send()
        .await
        .unwrap();
    assert_eq!(ack.status().as_u16(), 404);
    assert_eq!(
        store.batch(&sealed.id).await.unwrap().unwrap().state,
        BatchState::Sealed
    );
    // The owner sees it, with the bytes a push bank would get.
    let own = client_of("0001");
    let listing = own
        .get(format!("{base}/batches?status=pending"))
        .send()
        .await
        .unwrap();
    let listed = shokai::iso20022::decode_pending_batches(&listing.bytes().await.unwrap()).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].batch_id.as_str(), listed[0].count),
        (sealed.id.as_str(), 3)
    );

    // The pull mock bank takes it from here.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_mock-banks"));
    cmd.arg("--pki-dir")
        .arg(&pki_dir)
        .arg("--gateway-url")
        .arg(gateway.answers_url())
        .arg("--answer-delay-ms")
        .arg("100")
        .arg("--bank")
        .arg("0001=pull");
    let (_child, endpoints) = shokai::mockbank::spawn(cmd).await.unwrap();
    assert_eq!(endpoints, vec![("0001".to_owned(), "pull".to_owned())]);
    crate::support::eventually(
        "the pulled inquiries answered",
        Duration::from_secs(30),
        || async {
            let view = store.request(&request.id).await.unwrap().unwrap();
            view.inquiries.iter().all(|i| i.state.is_final())
        },
    )
    .await;
    let view = store.request(&request.id).await.unwrap().unwrap();
    let states: Vec<_> = view.inquiries[0]
        .history
        .iter()
        .map(|(s, _)| s.as_str())
        .collect();
    assert_eq!(&states[..3], ["queued", "batched", "delivered"]);
    let batch = store.batch(&sealed.id).await.unwrap().unwrap();
    assert_eq!(batch.state, BatchState::Acknowledged);
    let attempts = store.delivery_attempts(&sealed.id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].outcome, "pulled");
    // Acknowledging again is harmless.
    let again = own
        .post(format!("{base}/batches/{}/ack", sealed.id))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 200);
    assert_eq!(store.delivery_attempts(&sealed.id).await.unwrap().len(), 1);
    gateway.stop().await;
}
db_test!(
    a_pull_bank_fetches_acknowledges_and_answers,
    super::a_pull_bank_fetches_acknowledges_and_answers
);
