//! Retention: a closed case's personal data is purged after the period,
//! other cases are untouched, and the trail records counts only.

use shokai::delivery::seal_due_batches;
use shokai::domain::answer::{Answer, Outcome};
use shokai::domain::audit::AuditAction;
use shokai::domain::breaker::BreakerPolicy;
use shokai::domain::time::now_millis;
use shokai::store::{AttemptRecord, AuditFilter, BatchFinish, StoreError};

use crate::db_test;
use crate::support::{code, import_small_directory, open};

async fn closed_cases_are_purged_after_the_period(url: String) {
    let store = open(&url).await;
    import_small_directory(&store).await;
    let mut settings = store
        .institution(&code("0001"))
        .await
        .unwrap()
        .unwrap()
        .settings;
    settings.channel = shokai::domain::state::Channel::Push;
    settings.endpoint_url = Some("https://127.0.0.1:9/x".into());
    settings.server_ca_pem = Some("unused".into());
    settings.batch_max_age_ms = 0;
    store
        .update_institution_settings(&code("0001"), &settings)
        .await
        .unwrap();
    let closing = crate::support::file_request_for(&store, 2, &["0001"]).await;
    let keeping = crate::support::file_request_for(&store, 1, &["0001"]).await;
    // Claimed at the sealing instant or later: a claim within the same
    // millisecond as the seal would find nothing due yet.
    let sealed_at = now_millis() + 1;
    seal_due_batches(&store, sealed_at).await.unwrap();
    let policy = BreakerPolicy::default();
    let mut sent = Vec::new();
    for b in store
        .claim_due_batches(sealed_at.max(now_millis()), 60_000, 10, &policy)
        .await
        .unwrap()
    {
        let a = AttemptRecord {
            batch_id: b.id.clone(),
            attempt_no: 1,
            token: b.token.clone(),
            started_at: now_millis(),
            ended_at: now_millis(),
            outcome: "acknowledged".into(),
            http_status: Some(200),
            error: None,
        };
        store
            .finish_batch(&a, &BatchFinish::Acknowledged, None)
            .await
            .unwrap();
        sent.push((b.id.clone(), b.payload.clone()));
    }
    // A case with unanswered inquiries cannot close.
    let case = closing.case_id.clone();
    assert!(matches!(
        store.close_case(&case, now_millis()).await,
        Err(StoreError::Conflict(_))
    ));
    for r in [&closing, &keeping] {
        for i in &r.inquiries {
            let answer = Answer {
                inquiry_id: i.id.clone(),
                response_id: "R".into(),
                outcome: Outcome::NotFound,
            };
            store
                .apply_answer(&code("0001"), &answer, now_millis())
                .await
                .unwrap();
        }
    }
    store
        .close_case(&case, now_millis() - 5 * 86_400_000)
        .await
        .unwrap();
    assert!(
        matches!(
            store.close_case(&case, now_millis()).await,
            Err(StoreError::NotFound(_))
        ),
        "closed once"
    );

    // Within the period nothing goes.
    let counts = shokai::admin::purge_expired(&store, 30).await.unwrap();
    assert_eq!(counts, shokai::store::PurgeCounts::default());
    assert!(store.case(&case).await.unwrap().is_some());

    // Past it, everything personal of that case goes, and only that case.
    let counts = shokai::admin::purge_expired(&store, 3).await.unwrap();
    assert_eq!(
        (
            counts.cases,
            counts.subjects,
            counts.requests,
            counts.inquiries,
            counts.answers
        ),
        (1, 2, 1, 2, 2)
    );
    assert!(store.case(&case).await.unwrap().is_none());
    assert!(store.request(&closing.id).await.unwrap().is_none());
    // The batch still holds the kept case's inquiry and is recent: its
    // stored payload stays, and reads back as the document that was sent.
    assert_eq!(counts.batch_payloads, 0);
    let [(batch, document)] = sent.as_slice() else {
        panic!("one batch, {} sent", sent.len());
    };
    assert!(document.starts_with(b"<?xml"), "a document was claimed");
    assert_eq!(
        store
            .batch_payload(&code("0001"), batch)
            .await
            .unwrap()
            .as_ref(),
        Some(document)
    );
    // The batch lists only the kept case's inquiry now.
    assert_eq!(
        crate::support::count_behind_the_store(&url, "SELECT COUNT(*) FROM batch_inquiries").await,
        1
    );
    let kept = store.request(&keeping.id).await.unwrap().unwrap();
    assert_eq!(kept.inquiries.len(), 1);
    assert_eq!(
        store
            .case_file(&keeping.case_id)
            .await
            .unwrap()
            .unwrap()
            .entries
            .len(),
        1
    );
    let trail = store
        .audit_entries(&AuditFilter {
            action: Some(AuditAction::Purge),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(trail.len(), 1);
    assert!(
        trail[0].entry.target.starts_with(&format!(
            "case:{case}: 2 subjects, 1 requests, 2 inquiries, 2 answers"
        )),
        "{}",
        trail[0].entry.target
    );
    assert_eq!(trail[0].entry.case_id.as_deref(), Some(case.as_str()));
    // A second purge finds nothing and writes nothing.
    assert_eq!(
        shokai::admin::purge_expired(&store, 3).await.unwrap().cases,
        0
    );
    let again = store
        .audit_entries(&AuditFilter {
            action: Some(AuditAction::Purge),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    store.close().await;
}
db_test!(
    closed_cases_are_purged_after_the_period,
    super::closed_cases_are_purged_after_the_period
);
