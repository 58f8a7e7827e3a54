//! The store and queue on real databases: filing, sealing, claims with
//! fencing, and answers applied exactly once.

use chrono::NaiveDate;
use shokai::delivery::seal_due_batches;
use shokai::domain::answer::{Account, AccountType, Answer, Outcome};
use shokai::domain::breaker::BreakerPolicy;
use shokai::domain::ids::{BatchId, ClaimToken};
use shokai::domain::state::{BatchState, Channel, InquiryState};
use shokai::domain::time::now_millis;
use shokai::domain::zengin::BranchCode;
use shokai::store::{
    ApplyOutcome, AttemptRecord, BatchFinish, InstitutionSettings, Store, StoreError,
};

use crate::db_test;
use crate::support::{code, count_behind_the_store, import_small_directory, open};

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

async fn make_push(store: &Store, bank: &str, max_batch: i64) {
    store
        .update_institution_settings(
            &code(bank),
            &InstitutionSettings {
                channel: Channel::Push,
                endpoint_url: Some("https://127.0.0.1:1/inquiries".into()),
                server_ca_pem: Some("unused".into()),
                max_batch_size: max_batch,
                max_in_flight: 1,
                batch_max_age_ms: 0,
                paused: false,
                delivery_window: None,
            },
        )
        .await
        .unwrap();
}

fn attempt(batch: &BatchId, token: &ClaimToken, at: i64) -> AttemptRecord {
    AttemptRecord {
        batch_id: batch.clone(),
        attempt_no: 1,
        token: token.clone(),
        started_at: at,
        ended_at: at,
        outcome: "test".into(),
        http_status: None,
        error: None,
    }
}

/// An inquiry's history as its states, without the times.
fn steps(inquiry: &shokai::store::InquiryView) -> Vec<InquiryState> {
    inquiry.history.iter().map(|(s, _)| *s).collect()
}

/// The histories of a request's inquiries, times included.
fn histories(view: &shokai::store::RequestView) -> Vec<Vec<(InquiryState, i64)>> {
    view.inquiries.iter().map(|i| i.history.clone()).collect()
}

fn found(inquiry: &shokai::domain::ids::InquiryId, balance: i64) -> Answer {
    Answer {
        inquiry_id: inquiry.clone(),
        response_id: "R1".into(),
        outcome: Outcome::Found {
            accounts: vec![Account {
                branch: BranchCode::parse("110").unwrap(),
                account_type: AccountType::Ordinary,
                number: "1234567".into(),
                holder_kana: "ﾔﾏﾀﾞ ﾀﾛｳ".into(),
                balance: Some(balance),
                as_of: Some(d("2026-10-31")),
                last_transaction: None,
                transactions: vec![],
            }],
            other_holdings: vec![],
        },
    }
}

async fn queue_flow(url: String) {
    let store = open(&url).await;
    import_small_directory(&store).await;
    make_push(&store, "0001", 2).await;
    let request = crate::support::file_request_for(&store, 3, &["0001"]).await;
    assert_eq!(request.inquiries.len(), 3);

    // Size 2 and age 0: one full batch and one partial.
    let sealed = seal_due_batches(&store, now_millis() + 1).await.unwrap();
    assert_eq!(sealed, 2);
    assert_eq!(
        seal_due_batches(&store, now_millis() + 1).await.unwrap(),
        0,
        "nothing left to seal"
    );

    // max_in_flight = 1: one claim at a time. Not before the sealing
    // instant, which can still be this millisecond.
    let now = now_millis() + 1;
    let claimed = store
        .claim_due_batches(now, 1000, 10, &BreakerPolicy::default())
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let first = claimed[0].clone();
    assert_eq!(first.attempt, 1);
    assert!(
        store
            .claim_due_batches(now, 1000, 10, &BreakerPolicy::default())
            .await
            .unwrap()
            .is_empty()
    );

    // The lease expires; another worker reclaims the batch with a new token.
    let later = now + 2000;
    let reclaimed = store
        .claim_due_batches(later, 60_000, 10, &BreakerPolicy::default())
        .await
        .unwrap();
    assert_eq!(reclaimed.len(), 1);
    assert_eq!(reclaimed[0].id, first.id);
    assert_eq!(reclaimed[0].attempt, 2);
    assert_eq!(
        reclaimed[0].payload, first.payload,
        "same bytes on every try"
    );

    // The stale worker's update changes nothing.
    let stale = store
        .finish_batch(
            &attempt(&first.id, &first.token, later),
            &BatchFinish::Acknowledged,
            None,
        )
        .await;
    assert!(matches!(stale, Err(StoreError::LostLease(_))), "{stale:?}");
    let bogus = store
        .finish_batch(
            &attempt(&first.id, &ClaimToken::generate(), later),
            &BatchFinish::Acknowledged,
            None,
        )
        .await;
    assert!(matches!(bogus, Err(StoreError::LostLease(_))));
    assert_eq!(
        store.batch(&first.id).await.unwrap().unwrap().state,
        BatchState::InFlight
    );

    // A retryable failure waits; the current holder then gets it through.
    let holder = &reclaimed[0];
    store
        .finish_batch(
            &attempt(&holder.id, &holder.token, later),
            &BatchFinish::RetryAt {
                at: later + 5000,
                error: "HTTP 503".into(),
            },
            None,
        )
        .await
        .unwrap();
    let b = store.batch(&holder.id).await.unwrap().unwrap();
    assert_eq!(
        (b.state, b.last_error.as_deref()),
        (BatchState::RetryWait, Some("HTTP 503"))
    );
    // The other, older sealed batch goes first; one in flight at a time.
    for _ in 0..2 {
        let c = store
            .claim_due_batches(later + 5000, 60_000, 10, &BreakerPolicy::default())
            .await
            .unwrap();
        assert_eq!(c.len(), 1);
        store
            .finish_batch(
                &attempt(&c[0].id, &c[0].token, later + 5001),
                &BatchFinish::Acknowledged,
                None,
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store.batch(&holder.id).await.unwrap().unwrap().state,
        BatchState::Acknowledged
    );
    assert!(
        store
            .claim_due_batches(later + 10_000, 60_000, 10, &BreakerPolicy::default())
            .await
            .unwrap()
            .is_empty()
    );

    // Its inquiries are delivered, with history.
    let view = store.request(&request.id).await.unwrap().unwrap();
    let delivered: Vec<_> = view
        .inquiries
        .iter()
        .filter(|i| i.state == InquiryState::Delivered)
        .collect();
    assert_eq!(delivered.len(), 3);
    assert_eq!(
        steps(delivered[0]),
        vec![
            InquiryState::Queued,
            InquiryState::Batched,
            InquiryState::Delivered
        ]
    );

    // Answers: first accepted, identical repeat ignored, correction kept as
    // revision 2, another bank's answer refused.
    let inquiry = delivered[0].id.clone();
    let t = now_millis();
    assert!(matches!(
        store
            .apply_answer(&code("0001"), &found(&inquiry, 100), t)
            .await
            .unwrap(),
        ApplyOutcome::Accepted { revision: 1, .. }
    ));
    assert_eq!(
        store
            .apply_answer(&code("0001"), &found(&inquiry, 100), t)
            .await
            .unwrap(),
        ApplyOutcome::Duplicate
    );
    assert!(matches!(
        store
            .apply_answer(&code("0001"), &found(&inquiry, 250), t)
            .await
            .unwrap(),
        ApplyOutcome::Accepted { revision: 2, .. }
    ));
    match store
        .apply_answer(&code("0005"), &found(&inquiry, 999), t)
        .await
        .unwrap()
    {
        ApplyOutcome::Rejected { code, .. } => assert_eq!(code, "unknown_inquiry"),
        other => panic!("another bank's answer was {other:?}"),
    }
    let file = store.case_file(&view.case_id).await.unwrap().unwrap();
    assert_eq!(file.entries.len(), 2);
    assert!(file.entries[0].superseded && !file.entries[1].superseded);
    match &file.entries[1].outcome {
        Outcome::Found { accounts, .. } => assert_eq!(accounts[0].balance, Some(250)),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.duplicate_case_file_entries().await.unwrap(), 0);
    store.close().await;
}
db_test!(queue_flow, super::queue_flow);

/// A store with one request of `subjects` people at push bank `bank`,
/// sealed into one batch and claimed.
async fn claimed_batch(
    url: &str,
    bank: &str,
    subjects: usize,
) -> (
    Store,
    shokai::domain::request::Request,
    Vec<shokai::store::ClaimedBatch>,
) {
    let (store, request) = queued_request(url, bank, subjects).await;
    let claimed = seal_and_claim(&store).await;
    (store, request, claimed)
}

/// A store with the small directory, `bank` on push, and one request of
/// `subjects` people to it, queued.
async fn queued_request(
    url: &str,
    bank: &str,
    subjects: usize,
) -> (Store, shokai::domain::request::Request) {
    let store = open(url).await;
    import_small_directory(&store).await;
    make_push(&store, bank, 10).await;
    let request = crate::support::file_request_for(&store, subjects, &[bank]).await;
    (store, request)
}

/// Seals what is queued and claims the batches that are due.
async fn seal_and_claim(store: &Store) -> Vec<shokai::store::ClaimedBatch> {
    // Claimed at the sealing instant or later: a claim within the same
    // millisecond as the seal would find nothing due yet.
    let sealed_at = now_millis() + 1;
    seal_due_batches(store, sealed_at).await.unwrap();
    store
        .claim_due_batches(
            sealed_at.max(now_millis()),
            60_000,
            10,
            &BreakerPolicy::default(),
        )
        .await
        .unwrap()
}

/// The bank acknowledged the claimed batch: its inquiries are delivered.
async fn acknowledge(store: &Store, batch: &shokai::store::ClaimedBatch, at: i64) {
    store
        .finish_batch(
            &attempt(&batch.id, &batch.token, at),
            &BatchFinish::Acknowledged,
            None,
        )
        .await
        .unwrap();
}

/// The trail entry bank 0001's accepted answers get.
fn bank_audit(at: i64) -> shokai::store::AnswerAudit {
    std::sync::Arc::new(
        move |a: &Answer, revision: i64| shokai::domain::audit::AuditEntry {
            at,
            actor: "bank:0001".into(),
            role: "bank".into(),
            office: "0001".into(),
            action: shokai::domain::audit::AuditAction::AnswerReceive,
            target: format!("inquiry:{}#{revision}", a.inquiry_id),
            case_id: None,
            purpose: None,
            legal_basis: None,
        },
    )
}

/// One answer batch holding every kind of answer at once: a first answer
/// and its resend and correction for the same inquiry, another bank's
/// inquiry, a cancelled one and a not-found. Each is judged as if it came
/// alone, in order, and the accepted ones get their audit entries in the
/// same transaction.
async fn answer_batches_apply_in_order(url: String) {
    let (store, request, claimed) = claimed_batch(&url, "0001", 4).await;
    let t = now_millis();
    acknowledge(&store, &claimed[0], t).await;
    let ids: Vec<_> = request.inquiries.iter().map(|i| i.id.clone()).collect();
    store
        .cancel_inquiries(std::slice::from_ref(&ids[3]), "test", t)
        .await
        .unwrap();
    let mut corrected = found(&ids[0], 250);
    corrected.response_id = "R2".into();
    let not_found = Answer {
        inquiry_id: ids[1].clone(),
        response_id: "R3".into(),
        outcome: Outcome::NotFound,
    };
    let stranger = found(&shokai::domain::ids::InquiryId::generate(), 1);
    let batch = [
        found(&ids[0], 100),
        found(&ids[0], 100),
        corrected,
        stranger,
        not_found,
        found(&ids[3], 5),
    ];
    let (head_before, _) = store.audit_head().await.unwrap();
    let audit = bank_audit(t);
    let out = store
        .apply_answers(&code("0001"), &batch, t, Some(audit.clone()))
        .await
        .unwrap();
    let codes: Vec<String> = out
        .iter()
        .map(|o| match o {
            ApplyOutcome::Accepted { revision, .. } => format!("accepted {revision}"),
            ApplyOutcome::Duplicate => "duplicate".into(),
            ApplyOutcome::Rejected { code, .. } => (*code).into(),
        })
        .collect();
    assert_eq!(
        codes,
        [
            "accepted 1",
            "duplicate",
            "accepted 2",
            "unknown_inquiry",
            "accepted 1",
            "inquiry_cancelled"
        ]
    );
    let view = store.request(&request.id).await.unwrap().unwrap();
    let state_of = |id: &shokai::domain::ids::InquiryId| {
        let i = view.inquiries.iter().find(|i| &i.id == id).unwrap();
        (i.state, i.answer_revision)
    };
    assert_eq!(state_of(&ids[0]), (InquiryState::Answered, 2));
    assert_eq!(state_of(&ids[1]), (InquiryState::NotFound, 1));
    assert_eq!(state_of(&ids[2]), (InquiryState::Delivered, 0));
    assert_eq!(state_of(&ids[3]), (InquiryState::Cancelled, 0));
    let file = store.case_file(&view.case_id).await.unwrap().unwrap();
    assert_eq!(file.entries.len(), 3);
    let first = file
        .entries
        .iter()
        .find(|e| e.revision == 1 && e.inquiry_id == ids[0]);
    assert!(first.unwrap().superseded);
    assert_eq!(store.duplicate_case_file_entries().await.unwrap(), 0);
    // Exactly the three accepted answers are in the trail, in order.
    let trail = store
        .audit_entries(&shokai::store::AuditFilter {
            after_seq: Some(head_before),
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    let targets: Vec<_> = trail.iter().map(|c| c.entry.target.clone()).collect();
    assert_eq!(
        targets,
        [
            format!("inquiry:{}#1", ids[0]),
            format!("inquiry:{}#2", ids[0]),
            format!("inquiry:{}#1", ids[1]),
        ]
    );
    // The same batch again changes nothing.
    let again = store
        .apply_answers(&code("0001"), &batch, t + 1, Some(audit.clone()))
        .await
        .unwrap();
    assert_eq!(
        again
            .iter()
            .filter(|o| **o == ApplyOutcome::Duplicate)
            .count(),
        4
    );
    assert_eq!(store.audit_head().await.unwrap().0, head_before + 3);
    store.close().await;
}
db_test!(
    answer_batches_apply_in_order,
    super::answer_batches_apply_in_order
);

/// A long answer message (301 answers): every answer is judged in order,
/// a correction near the end supersedes the first answer, each accepted
/// answer has its trail entry, and the whole message again is all
/// duplicates.
async fn long_answer_batches_are_filed_whole(url: String) {
    let store = open(&url).await;
    import_small_directory(&store).await;
    make_push(&store, "0001", 500).await;
    let mut ids = Vec::new();
    for _ in 0..15 {
        let request = crate::support::file_request_for(&store, 20, &["0001"]).await;
        ids.extend(request.inquiries.iter().map(|i| i.id.clone()));
    }
    let claimed = seal_and_claim(&store).await;
    assert_eq!(claimed.len(), 1, "one batch of 300");
    let t = now_millis();
    acknowledge(&store, &claimed[0], t).await;
    let mut batch: Vec<Answer> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| found(id, n as i64))
        .collect();
    let mut corrected = found(&ids[0], 999);
    corrected.response_id = "R2".into();
    batch.push(corrected);
    let (head_before, _) = store.audit_head().await.unwrap();
    let audit = bank_audit(t);
    let out = store
        .apply_answers(&code("0001"), &batch, t, Some(audit.clone()))
        .await
        .unwrap();
    assert_eq!(out.len(), 301);
    assert!(
        out[..300]
            .iter()
            .all(|o| matches!(o, ApplyOutcome::Accepted { revision: 1, .. }))
    );
    assert!(matches!(
        out[300],
        ApplyOutcome::Accepted { revision: 2, .. }
    ));
    let trail = store
        .audit_entries(&shokai::store::AuditFilter {
            after_seq: Some(head_before),
            limit: 1000,
            ..Default::default()
        })
        .await
        .unwrap();
    let targets: Vec<_> = trail.iter().map(|c| c.entry.target.clone()).collect();
    let expected: Vec<_> = ids
        .iter()
        .map(|id| format!("inquiry:{id}#1"))
        .chain([format!("inquiry:{}#2", ids[0])])
        .collect();
    assert_eq!(targets, expected);
    assert_eq!(store.duplicate_case_file_entries().await.unwrap(), 0);
    let again = store
        .apply_answers(&code("0001"), &batch, t + 1, Some(audit.clone()))
        .await
        .unwrap();
    assert!(again.iter().all(|o| *o == ApplyOutcome::Duplicate));
    assert_eq!(store.audit_head().await.unwrap().0, head_before + 301);
    store.close().await;
}
db_test!(
    long_answer_batches_are_filed_whole,
    super::long_answer_batches_are_filed_whole
);

async fn dead_batches_fail_their_inquiries(url: String) {
    let (store, request, claimed) = claimed_batch(&url, "0005", 2).await;
    let b = &claimed[0];
    store
        .finish_batch(
            &attempt(&b.id, &b.token, now_millis()),
            &BatchFinish::Dead {
                reason: "rejected by the bank: INST".into(),
            },
            None,
        )
        .await
        .unwrap();
    let view = store.request(&request.id).await.unwrap().unwrap();
    for i in &view.inquiries {
        assert_eq!(i.state, InquiryState::Failed);
        assert_eq!(
            i.failure_reason.as_deref(),
            Some("rejected by the bank: INST")
        );
    }
    store.close().await;
}
db_test!(
    dead_batches_fail_their_inquiries,
    super::dead_batches_fail_their_inquiries
);

async fn migrations_are_idempotent(url: String) {
    let store = open(&url).await;
    store.migrate().await.unwrap();
    assert_eq!(
        store.applied_migrations().await.unwrap(),
        (1..=Store::latest_migration()).collect::<Vec<_>>()
    );
    store.close().await;
}
db_test!(migrations_are_idempotent, super::migrations_are_idempotent);

/// The delivery queue holds exactly the queued inquiries: sealing takes
/// them out, and so does a cancel, so the batcher never meets a cancelled
/// inquiry (it would refuse the whole batch as a conflict).
async fn cancelled_inquiries_leave_the_queue(url: String) {
    let (store, request) = queued_request(&url, "0001", 3).await;
    let cancelled = request.inquiries[1].id.clone();
    let n = store
        .cancel_inquiries(
            std::slice::from_ref(&cancelled),
            "filed twice",
            now_millis(),
        )
        .await
        .unwrap();
    assert_eq!(n, 1);

    assert_eq!(seal_due_batches(&store, now_millis() + 1).await.unwrap(), 1);
    assert_eq!(seal_due_batches(&store, now_millis() + 1).await.unwrap(), 0);
    let view = store.request(&request.id).await.unwrap().unwrap();
    assert_eq!(view.inquiries.len(), 3);
    for i in &view.inquiries {
        let want = if i.id == cancelled {
            InquiryState::Cancelled
        } else {
            InquiryState::Batched
        };
        assert_eq!(i.state, want);
    }
    store.close().await;
}
db_test!(
    cancelled_inquiries_leave_the_queue,
    super::cancelled_inquiries_leave_the_queue
);

/// Migration 0011 moves the queue out of the inquiries' index into a table
/// of its own: inquiries queued before it are still delivered after it.
async fn the_queue_table_migration_keeps_queued_inquiries(url: String) {
    let (store, request) = queued_request(&url, "0001", 4).await;
    // Back to the schema before 0011, with the inquiries still queued.
    crate::support::execute_behind_the_store(
        &url,
        &[
            "DROP TABLE inquiry_queue",
            "CREATE INDEX inquiries_queue ON inquiries (state, institution_code, created_at, id)",
            "DELETE FROM shokai_migrations WHERE version = 11",
        ],
    )
    .await;

    store.migrate().await.unwrap();
    assert_eq!(seal_due_batches(&store, now_millis() + 1).await.unwrap(), 1);
    let view = store.request(&request.id).await.unwrap().unwrap();
    assert_eq!(view.inquiries.len(), 4);
    assert!(
        view.inquiries
            .iter()
            .all(|i| i.state == InquiryState::Batched && i.batch_id.is_some())
    );
    store.close().await;
}
db_test!(
    the_queue_table_migration_keeps_queued_inquiries,
    super::the_queue_table_migration_keeps_queued_inquiries
);

/// Migrations 0012 and 0013 move the case file onto the answers and stop
/// storing the submit as a history row: an inquiry answered before them
/// keeps its case-file entry and its history, with the submit once, first.
async fn the_case_file_migrations_keep_answers_and_history(url: String) {
    let (store, request, claimed) = claimed_batch(&url, "0001", 2).await;
    acknowledge(&store, &claimed[0], now_millis()).await;
    let answered = request.inquiries[0].id.clone();
    assert!(matches!(
        store
            .apply_answer(&code("0001"), &found(&answered, 100), now_millis())
            .await
            .unwrap(),
        ApplyOutcome::Accepted { revision: 1, .. }
    ));
    let before = store.request(&request.id).await.unwrap().unwrap();
    // Back to the schema before 0012: the entries in a table of their own,
    // and a stored "queued" row at the head of every history.
    let serial = if url.starts_with("postgres") {
        "BIGSERIAL PRIMARY KEY"
    } else {
        "INTEGER PRIMARY KEY AUTOINCREMENT"
    };
    let create = format!(
        "CREATE TABLE case_file_entries (id {serial}, case_id TEXT NOT NULL, \
         inquiry_id TEXT NOT NULL, answer_id BIGINT NOT NULL UNIQUE, created_at BIGINT NOT NULL)"
    );
    crate::support::execute_behind_the_store(
        &url,
        &[
            &create,
            "INSERT INTO case_file_entries (case_id, inquiry_id, answer_id, created_at) \
             SELECT case_id, inquiry_id, id, received_at FROM answers",
            "DROP INDEX answers_case",
            "ALTER TABLE answers DROP COLUMN case_id",
            "INSERT INTO inquiry_events (inquiry_id, at, to_state) \
             SELECT id, created_at, 'queued' FROM inquiries",
            "DELETE FROM shokai_migrations WHERE version IN (12, 13)",
        ],
    )
    .await;

    store.migrate().await.unwrap();
    let file = store.case_file(&before.case_id).await.unwrap().unwrap();
    assert_eq!(file.entries.len(), 1);
    assert_eq!(file.entries[0].inquiry_id, answered);
    assert_eq!(store.duplicate_case_file_entries().await.unwrap(), 0);
    let after = store.request(&request.id).await.unwrap().unwrap();
    let states = |v: &shokai::store::RequestView| -> Vec<Vec<InquiryState>> {
        v.inquiries.iter().map(steps).collect()
    };
    assert_eq!(states(&after), states(&before));
    assert_eq!(
        steps(&after.inquiries[0]),
        vec![
            InquiryState::Queued,
            InquiryState::Batched,
            InquiryState::Delivered,
            InquiryState::Answered
        ]
    );
    store.close().await;
}
db_test!(
    the_case_file_migrations_keep_answers_and_history,
    super::the_case_file_migrations_keep_answers_and_history
);

/// Migration 0015 lists a batch's inquiries in batch_inquiries and derives
/// the history's "batched" step from the batch: a batch sealed before it is
/// still moved whole after it, and its inquiries' histories read the same.
async fn the_batch_members_migration_keeps_batches_and_history(url: String) {
    let (store, request, claimed) = claimed_batch(&url, "0001", 3).await;
    let before = store.request(&request.id).await.unwrap().unwrap();
    // Back to the schema before 0015: the batch found through an index on
    // inquiries, and its step stored as a history row.
    crate::support::execute_behind_the_store(
        &url,
        &[
            "DROP TABLE batch_inquiries",
            "CREATE INDEX inquiries_batch ON inquiries (batch_id)",
            "INSERT INTO inquiry_events (inquiry_id, at, from_state, to_state, detail) \
             SELECT i.id, b.created_at, 'queued', 'batched', b.id \
             FROM inquiries i JOIN batches b ON b.id = i.batch_id",
            "DELETE FROM shokai_migrations WHERE version = 15",
        ],
    )
    .await;

    store.migrate().await.unwrap();
    let after = store.request(&request.id).await.unwrap().unwrap();
    assert_eq!(histories(&after), histories(&before));
    assert_eq!(
        steps(&after.inquiries[0]),
        vec![InquiryState::Queued, InquiryState::Batched]
    );

    // The batch's move finds its inquiries through the listed members.
    acknowledge(&store, &claimed[0], now_millis()).await;
    let delivered = store.request(&request.id).await.unwrap().unwrap();
    for i in &delivered.inquiries {
        assert_eq!(i.state, InquiryState::Delivered);
        assert_eq!(
            steps(i),
            vec![
                InquiryState::Queued,
                InquiryState::Batched,
                InquiryState::Delivered
            ]
        );
    }
    store.close().await;
}
db_test!(
    the_batch_members_migration_keeps_batches_and_history,
    super::the_batch_members_migration_keeps_batches_and_history
);

/// One batcher at a time reads an institution's queue: on PostgreSQL,
/// where gateways share the queue, the turn is an advisory lock that a
/// second gateway's batcher finds taken and skips, and that a dropped turn
/// gives back. On SQLite one engine runs per file, so a turn is always free.
async fn one_batcher_at_a_time_per_queue(url: String) {
    let (store, request) = queued_request(&url, "0001", 3).await;
    let other = open(&url).await;
    let turn = store
        .seal_turn(&code("0001"))
        .await
        .unwrap()
        .expect("a free queue's turn");
    if url.starts_with("postgres") {
        assert!(other.seal_turn(&code("0001")).await.unwrap().is_none());
        other
            .seal_turn(&code("0005"))
            .await
            .unwrap()
            .expect("another queue's turn is free")
            .end()
            .await
            .unwrap();
        assert_eq!(
            seal_due_batches(&other, now_millis() + 1).await.unwrap(),
            0,
            "a queue another batcher has is skipped"
        );
        // Dropped, not ended (an error on the way): the lock goes too.
        drop(turn);
        crate::support::eventually(
            "the dropped turn's lock to go",
            std::time::Duration::from_secs(10),
            || async {
                match other.seal_turn(&code("0001")).await.unwrap() {
                    Some(t) => {
                        t.end().await.unwrap();
                        true
                    }
                    None => false,
                }
            },
        )
        .await;
    } else {
        other
            .seal_turn(&code("0001"))
            .await
            .unwrap()
            .expect("always free on SQLite")
            .end()
            .await
            .unwrap();
        turn.end().await.unwrap();
    }
    assert_eq!(seal_due_batches(&other, now_millis() + 1).await.unwrap(), 1);
    let view = other.request(&request.id).await.unwrap().unwrap();
    assert!(
        view.inquiries
            .iter()
            .all(|i| i.state == InquiryState::Batched)
    );
    other.close().await;
    store.close().await;
}
db_test!(
    one_batcher_at_a_time_per_queue,
    super::one_batcher_at_a_time_per_queue
);

/// Migration 0016 stops storing answer steps in the history: they are read
/// from the answers, one step per revision, after every stored step. An
/// inquiry answered and corrected before it keeps its history.
async fn the_answer_history_migration_keeps_history(url: String) {
    let (store, request, claimed) = claimed_batch(&url, "0001", 2).await;
    acknowledge(&store, &claimed[0], now_millis()).await;
    let corrected = request.inquiries[0].id.clone();
    let not_found = request.inquiries[1].id.clone();
    for (answer, revision) in [
        (found(&corrected, 100), 1),
        (found(&corrected, 250), 2),
        (
            Answer {
                inquiry_id: not_found.clone(),
                response_id: "R2".into(),
                outcome: Outcome::NotFound,
            },
            1,
        ),
    ] {
        assert!(matches!(
            store
                .apply_answer(&code("0001"), &answer, now_millis())
                .await
                .unwrap(),
            ApplyOutcome::Accepted { revision: r, .. } if r == revision
        ));
    }
    let before = store.request(&request.id).await.unwrap().unwrap();
    let of = |id: &shokai::domain::ids::InquiryId| {
        steps(before.inquiries.iter().find(|i| &i.id == id).unwrap())
    };
    use InquiryState::*;
    assert_eq!(
        of(&corrected),
        vec![Queued, Batched, Delivered, Answered, Answered]
    );
    assert_eq!(of(&not_found), vec![Queued, Batched, Delivered, NotFound]);
    // Back to the schema before 0016: each answer also a history row.
    crate::support::execute_behind_the_store(
        &url,
        &[
            "INSERT INTO inquiry_events (inquiry_id, at, from_state, to_state, detail) \
             SELECT inquiry_id, received_at, 'delivered', \
             CASE outcome WHEN 'found' THEN 'answered' ELSE outcome END, 'answer' \
             FROM answers",
            "DELETE FROM shokai_migrations WHERE version = 16",
        ],
    )
    .await;

    store.migrate().await.unwrap();
    let after = store.request(&request.id).await.unwrap().unwrap();
    assert_eq!(histories(&after), histories(&before));
    store.close().await;
}
db_test!(
    the_answer_history_migration_keeps_history,
    super::the_answer_history_migration_keeps_history
);

/// Back to the schema before 0018: each delivery a history row.
const BEFORE_0018: [&str; 3] = [
    "INSERT INTO inquiry_events (inquiry_id, at, from_state, to_state, detail) \
     SELECT id, delivered_at, 'batched', 'delivered', NULL FROM inquiries \
     WHERE delivered_at IS NOT NULL",
    "ALTER TABLE inquiries DROP COLUMN delivered_at",
    "DELETE FROM shokai_migrations WHERE version = 18",
];

/// Migration 0018 stops storing the delivered step: it is the inquiry's
/// `delivered_at`, read before the first stored step out of delivered.
/// Inquiries of a batch that died, was retried and then delivered, one of
/// them answered and corrected and one cancelled after delivery, read the
/// same histories before and after it.
async fn the_delivered_migration_keeps_history(url: String) {
    let (store, request, claimed) = claimed_batch(&url, "0001", 3).await;
    let dead = BatchFinish::Dead {
        reason: "refused by the bank".into(),
    };
    store
        .finish_batch(
            &attempt(&claimed[0].id, &claimed[0].token, now_millis()),
            &dead,
            None,
        )
        .await
        .unwrap();
    store
        .retry_dead_batch(&claimed[0].id, now_millis())
        .await
        .unwrap();
    let again = store
        .claim_due_batches(now_millis() + 1, 60_000, 10, &BreakerPolicy::default())
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    acknowledge(&store, &again[0], now_millis()).await;
    let [answered, cancelled, waiting] = [0, 1, 2].map(|n| request.inquiries[n].id.clone());
    for balance in [100, 250] {
        store
            .apply_answer(&code("0001"), &found(&answered, balance), now_millis())
            .await
            .unwrap();
    }
    store
        .cancel_inquiries(
            std::slice::from_ref(&cancelled),
            "filed twice",
            now_millis(),
        )
        .await
        .unwrap();
    let before = store.request(&request.id).await.unwrap().unwrap();
    let of = |id: &shokai::domain::ids::InquiryId| {
        steps(before.inquiries.iter().find(|i| &i.id == id).unwrap())
    };
    use InquiryState::*;
    let delivered = vec![Queued, Batched, Failed, Batched, Delivered];
    assert_eq!(of(&waiting), delivered);
    assert_eq!(of(&cancelled), [&delivered[..], &[Cancelled]].concat());
    assert_eq!(
        of(&answered),
        [&delivered[..], &[Answered, Answered]].concat()
    );
    crate::support::execute_behind_the_store(&url, &BEFORE_0018).await;
    store.migrate().await.unwrap();
    let after = store.request(&request.id).await.unwrap().unwrap();
    assert_eq!(histories(&after), histories(&before));
    let stored = crate::support::count_behind_the_store(
        &url,
        "SELECT COUNT(*) FROM inquiry_events WHERE to_state = 'delivered'",
    )
    .await;
    assert_eq!(stored, 0, "no delivered step is stored");
    store.close().await;
}
db_test!(
    the_delivered_migration_keeps_history,
    super::the_delivered_migration_keeps_history
);

/// A submit whose caller stops waiting half-way (a client that hangs up)
/// is written whole or not at all. On SQLite the transaction runs on the
/// writer's own thread once started, so it is written whole; on
/// PostgreSQL the dropped transaction rolls back.
async fn an_abandoned_submit_is_written_whole_or_not_at_all(url: String) {
    let store = open(&url).await;
    import_small_directory(&store).await;
    let request = crate::support::file_request_for(&store, 1, &["0001"]).await;
    let mut again = request.clone();
    again.id = shokai::domain::ids::RequestId::generate();
    for inquiry in &mut again.inquiries {
        inquiry.id = shokai::domain::ids::InquiryId::generate();
    }
    // Polled once, so begun, and then dropped.
    let _ = tokio::time::timeout(
        std::time::Duration::ZERO,
        store.insert_request(&again, "test", None, &[]),
    )
    .await;
    let written = || async {
        store
            .request(&again.id)
            .await
            .unwrap()
            .map(|view| view.inquiries.len())
    };
    if url.starts_with("sqlite") {
        crate::support::eventually(
            "the abandoned submit to be written",
            std::time::Duration::from_secs(10),
            || async { written().await.is_some() },
        )
        .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    match written().await {
        None => assert!(url.starts_with("postgres"), "SQLite writes it whole"),
        Some(n) => assert_eq!(n, again.inquiries.len(), "never half a request"),
    }
    store.close().await;
}
db_test!(
    an_abandoned_submit_is_written_whole_or_not_at_all,
    super::an_abandoned_submit_is_written_whole_or_not_at_all
);

/// The same request under new ids: another submit of it.
fn resubmitted(request: &shokai::domain::request::Request) -> shokai::domain::request::Request {
    let mut again = request.clone();
    again.id = shokai::domain::ids::RequestId::generate();
    for inquiry in &mut again.inquiries {
        inquiry.id = shokai::domain::ids::InquiryId::generate();
    }
    again
}

/// The store decides a submit itself, in the transaction that writes it,
/// whatever the caller checked before: a key used for another body, a
/// replay, a case closed in the meantime and a missing case each write
/// nothing, not even the audit entry, and only an admitted submit writes.
async fn the_store_writes_a_request_only_if_its_case_admits_it(url: String) {
    use shokai::domain::audit::{AuditAction, AuditEntry};
    use shokai::store::{RequestInsert, StoreError};
    let store = open(&url).await;
    import_small_directory(&store).await;
    let first = crate::support::file_request_for(&store, 2, &["0001", "0005"]).await;
    let trace = |request: &shokai::domain::request::Request| AuditEntry {
        at: now_millis(),
        actor: "test".into(),
        role: "caseworker".into(),
        office: "131016".into(),
        action: AuditAction::RequestCreate,
        target: format!("request:{}", request.id),
        case_id: Some(request.case_id.to_string()),
        purpose: None,
        legal_basis: Some(request.legal_basis.clone()),
    };
    let insert = |request: shokai::domain::request::Request,
                  key: Option<(&'static str, &'static str)>| {
        let store = store.clone();
        async move {
            let audit = [trace(&request)];
            store.insert_request(&request, "test", key, &audit).await
        }
    };
    let keyed = resubmitted(&first);
    let before = rows_a_submit_writes(&url).await;
    assert!(matches!(
        insert(keyed.clone(), Some(("k", "h1"))).await,
        Ok(RequestInsert::Created(view)) if view.id == keyed.id
    ));
    let written = rows_a_submit_writes(&url).await;
    assert_eq!(written - before, 1 + 2 * keyed.inquiries.len() as i64 + 1);

    assert!(matches!(
        insert(resubmitted(&first), Some(("k", "h2"))).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        insert(resubmitted(&first), Some(("k", "h1"))).await,
        Ok(RequestInsert::Replayed(id)) if id == keyed.id
    ));
    let mut elsewhere = resubmitted(&first);
    elsewhere.case_id = shokai::domain::ids::CaseId::generate();
    assert!(matches!(
        insert(elsewhere, None).await,
        Err(StoreError::NotFound(_))
    ));
    // Closed behind the caller's back, after it found the case open.
    crate::support::execute_behind_the_store(&url, &["UPDATE cases SET closed_at = 1"]).await;
    assert!(matches!(
        insert(resubmitted(&first), None).await,
        Err(StoreError::Refused(m)) if m.contains("closed")
    ));
    assert!(matches!(
        insert(resubmitted(&first), Some(("k2", "h1"))).await,
        Err(StoreError::Refused(m)) if m.contains("closed")
    ));
    assert_eq!(
        rows_a_submit_writes(&url).await,
        written,
        "refusals write nothing"
    );
    store.close().await;
}
db_test!(
    the_store_writes_a_request_only_if_its_case_admits_it,
    super::the_store_writes_a_request_only_if_its_case_admits_it
);

fn caseworker() -> shokai::casework::Actor {
    shokai::casework::Actor {
        id: "token:test:caseworker".into(),
        role: shokai::casework::Role::Caseworker,
        office: "131016".into(),
    }
}

fn request_input(
    kinds: &[shokai::domain::state::InquiryKind],
) -> shokai::domain::request::RequestInput {
    shokai::domain::request::RequestInput {
        subject_ids: vec![],
        targets: ["0001", "0005"]
            .iter()
            .map(|b| shokai::domain::request::Target {
                institution: code(b),
                branches: vec![],
            })
            .collect(),
        kinds: kinds.to_vec(),
        reference_date: None,
        period: None,
        legal_basis: None,
        purpose: None,
        due_date: shokai::casework::today() + chrono::Days::new(14),
    }
}

/// A submit with an idempotency key that was filed before gets the first
/// request back, also once its case has closed and also when two tries
/// race; the same key with another body is refused, and nothing is filed
/// twice.
async fn a_retried_submit_gets_its_first_request_back(url: String) {
    use shokai::casework::{self, CaseworkError, Submitted};
    use shokai::domain::state::InquiryKind::{Balance, Existence};
    let store = open(&url).await;
    import_small_directory(&store).await;
    let actor = caseworker();
    let subjects = vec![shokai::domain::request::SubjectInput {
        kana_name: "ヤマダ タロウ".into(),
        kanji_name: None,
        birth_date: d("1970-01-01"),
        postal_code: None,
        address: None,
        former_kana_names: vec![],
    }];
    let case = casework::create_case(&store, &actor, "CASE-1", subjects.clone())
        .await
        .unwrap()
        .id;
    let submit = |key: Option<&'static str>, hash: &'static str, kinds: &'static [_]| {
        let (store, actor, case) = (store.clone(), actor.clone(), case.clone());
        async move {
            casework::submit_request(
                &store,
                &actor,
                &case,
                request_input(kinds),
                key.map(|k| (k, hash)),
            )
            .await
        }
    };
    let Ok(Submitted::Created(first)) = submit(Some("k1"), "h1", &[Existence]).await else {
        panic!("the first submit is filed");
    };
    assert!(matches!(
        submit(Some("k1"), "h1", &[Existence]).await,
        Ok(Submitted::Replayed(v)) if v.id == first.id
    ));
    assert!(matches!(
        submit(Some("k1"), "h2", &[Balance]).await,
        Err(CaseworkError::IdempotencyConflict(_))
    ));

    casework::cancel_request(&store, &actor, &first.id)
        .await
        .unwrap();
    casework::close_case(&store, &actor, &case).await.unwrap();
    let written = rows_a_submit_writes(&url).await;
    assert!(matches!(
        submit(Some("k1"), "h1", &[Existence]).await,
        Ok(Submitted::Replayed(v)) if v.id == first.id
    ));
    assert!(matches!(
        submit(Some("k1"), "h2", &[Balance]).await,
        Err(CaseworkError::IdempotencyConflict(_))
    ));
    assert!(matches!(
        submit(Some("k2"), "h1", &[Existence]).await,
        Err(CaseworkError::Conflict(m)) if m.contains("closed")
    ));
    assert!(matches!(
        submit(None, "", &[Existence]).await,
        Err(CaseworkError::Conflict(m)) if m.contains("closed")
    ));
    assert_eq!(
        rows_a_submit_writes(&url).await,
        written,
        "a replayed or refused submit writes nothing"
    );

    // Two tries at once: one files, the other gets its request.
    let open_case = casework::create_case(&store, &actor, "CASE-2", subjects)
        .await
        .unwrap()
        .id;
    let race = || {
        let (store, actor, case) = (store.clone(), actor.clone(), open_case.clone());
        tokio::spawn(async move {
            casework::submit_request(
                &store,
                &actor,
                &case,
                request_input(&[Existence]),
                Some(("k3", "h3")),
            )
            .await
        })
    };
    let (a, b) = tokio::join!(race(), race());
    let ids: Vec<_> = [a.unwrap().unwrap(), b.unwrap().unwrap()]
        .into_iter()
        .map(|s| match s {
            Submitted::Created(v) => ("created", v.id),
            Submitted::Replayed(v) => ("replayed", v.id),
        })
        .collect();
    assert_eq!(ids[0].1, ids[1].1, "{ids:?}");
    assert_ne!(ids[0].0, ids[1].0, "{ids:?}");
    let mut filed = 0;
    for c in [&case, &open_case] {
        filed += store.case_requests(c).await.unwrap().len();
    }
    assert_eq!(filed, 2);
}
/// The rows of every kind a submit writes: requests, inquiries, places
/// in the queue and `request.create` audit entries (on PostgreSQL also
/// those not chained yet).
async fn rows_a_submit_writes(url: &str) -> i64 {
    let audit = "SELECT COUNT(*) FROM audit_log WHERE action = 'request.create'";
    let pending = "SELECT COUNT(*) FROM audit_pending WHERE action = 'request.create'";
    let mut n = 0;
    for sql in [
        "SELECT COUNT(*) FROM requests",
        "SELECT COUNT(*) FROM inquiries",
        "SELECT COUNT(*) FROM inquiry_queue",
        audit,
    ] {
        n += count_behind_the_store(url, sql).await;
    }
    if !url.starts_with("sqlite") {
        n += count_behind_the_store(url, pending).await;
    }
    n
}

db_test!(
    a_retried_submit_gets_its_first_request_back,
    super::a_retried_submit_gets_its_first_request_back
);

/// The keys migration 0017 drops: table, column, parent, parent's column.
const PER_INQUIRY_KEYS: [(&str, &str, &str, &str); 7] = [
    ("inquiries", "request_id", "requests", "id"),
    ("inquiries", "subject_id", "subjects", "id"),
    ("inquiries", "institution_code", "institutions", "code"),
    ("answers", "inquiry_id", "inquiries", "id"),
    ("answer_accounts", "answer_id", "answers", "id"),
    ("answer_transactions", "account_id", "answer_accounts", "id"),
    ("answer_other_holdings", "answer_id", "answers", "id"),
];

async fn foreign_keys_of_per_inquiry_rows(url: &str) -> i64 {
    let mut tables: Vec<&str> = PER_INQUIRY_KEYS.iter().map(|k| k.0).collect();
    tables.dedup();
    let mut n = 0;
    for table in tables {
        let sql = if url.starts_with("sqlite") {
            format!("SELECT COUNT(*) FROM pragma_foreign_key_list('{table}')")
        } else {
            format!(
                "SELECT COUNT(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = '{table}'::regclass"
            )
        };
        n += count_behind_the_store(url, &sql).await;
    }
    n
}

/// Migration 0017 drops the keys of the rows written once per inquiry (on
/// SQLite by rebuilding their tables): every row stays, the histories read
/// the same, and no id is given out again, not even a purged row's.
async fn the_per_inquiry_keys_migration_keeps_rows_and_ids(url: String) {
    use crate::support::execute_behind_the_store;
    let (store, request, claimed) = claimed_batch(&url, "0001", 2).await;
    acknowledge(&store, &claimed[0], now_millis()).await;
    let (first, second) = (&request.inquiries[0].id, &request.inquiries[1].id);
    store
        .apply_answer(&code("0001"), &found(first, 100), now_millis())
        .await
        .unwrap();
    assert_eq!(foreign_keys_of_per_inquiry_rows(&url).await, 0);
    // A purged answer's id, above every id in use.
    let sqlite = url.starts_with("sqlite");
    if sqlite {
        execute_behind_the_store(
            &url,
            &[
                "INSERT INTO answers (id, inquiry_id, revision, institution_code, response_id, \
                 outcome, content_hash, received_at, case_id) SELECT 1000, inquiry_id, 99, \
                 institution_code, response_id, outcome, content_hash, received_at, case_id \
                 FROM answers",
                "DELETE FROM answers WHERE id = 1000",
            ],
        )
        .await;
    } else {
        execute_behind_the_store(&url, &["SELECT setval('answers_id_seq', 1000)"]).await;
    }
    let before = store.request(&request.id).await.unwrap().unwrap();
    let accounts = "SELECT COUNT(*) FROM answer_accounts";
    assert_eq!(count_behind_the_store(&url, accounts).await, 1);

    // Back to the schema before 0017 (and so before 0018). On SQLite the
    // rebuild runs again on the rebuilt tables; a new database ran it on
    // the keyed ones.
    let mut back: Vec<String> = BEFORE_0018.iter().map(|sql| sql.to_string()).collect();
    back.push("DELETE FROM shokai_migrations WHERE version = 17".to_owned());
    if !sqlite {
        back.extend(PER_INQUIRY_KEYS.iter().map(|(table, column, parent, key)| {
            format!(
                "ALTER TABLE {table} ADD CONSTRAINT {table}_{column}_fkey \
                 FOREIGN KEY ({column}) REFERENCES {parent} ({key})"
            )
        }));
    }
    let back: Vec<&str> = back.iter().map(String::as_str).collect();
    execute_behind_the_store(&url, &back).await;
    if !sqlite {
        assert_eq!(
            foreign_keys_of_per_inquiry_rows(&url).await,
            PER_INQUIRY_KEYS.len() as i64
        );
    }

    store.migrate().await.unwrap();
    assert_eq!(foreign_keys_of_per_inquiry_rows(&url).await, 0);
    let after = store.request(&request.id).await.unwrap().unwrap();
    assert_eq!(histories(&after), histories(&before));
    assert_eq!(count_behind_the_store(&url, accounts).await, 1);
    store
        .apply_answer(&code("0001"), &found(second, 200), now_millis())
        .await
        .unwrap();
    let newest = count_behind_the_store(&url, "SELECT MAX(id) FROM answers").await;
    assert!(newest > 1000, "answer id {newest} was given out before");
    store.close().await;
}
db_test!(
    the_per_inquiry_keys_migration_keeps_rows_and_ids,
    super::the_per_inquiry_keys_migration_keeps_rows_and_ids
);

/// The pool no longer pings a connection before every use (a round trip
/// each); one that the server dropped while it sat idle must still be
/// replaced without the caller seeing an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_while_idle_is_replaced_unseen() {
    let Some(db) = crate::support::postgres_db().await else {
        eprintln!("skipped: SHOKAI_TEST_DATABASE_URL is not set");
        return;
    };
    let store = open(&db.url).await;
    let (a, b, c) = tokio::join!(store.ping(), store.ping(), store.ping());
    for pinged in [a, b, c] {
        pinged.unwrap();
    }
    let dropped = count_behind_the_store(
        &db.url,
        "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .await;
    assert!(dropped >= 1, "the store held no connection to drop");
    tokio::time::sleep(shokai::store::PING_IF_IDLE_FOR + std::time::Duration::from_millis(200))
        .await;
    for _ in 0..4 {
        store
            .ping()
            .await
            .expect("a fresh connection in place of the dropped ones");
    }
    let (a, b, c) = tokio::join!(store.ping(), store.ping(), store.ping());
    for pinged in [a, b, c] {
        pinged.unwrap();
    }
    store.close().await;
    db.drop_postgres().await;
}
