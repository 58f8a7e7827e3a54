//! The audit trail: every access to personal data leaves a chained entry,
//! tampering is found and named, and logs never carry personal data.

use std::time::Duration;

use serde_json::{Value, json};
use shokai::admin;
use shokai::casework::Role;
use sqlx::Connection;

use crate::chaos::{GatewayProcess, assert_all_delivered, file_cases, free_port, setup};
use crate::db_test;
use crate::support::api_call as call;

async fn every_personal_data_endpoint_is_audited(url: String) {
    let s = setup(&url, &[]).await;
    let staff = free_port();
    let mut gw = GatewayProcess::new(
        &url,
        &s.pki,
        staff,
        s.bank_port,
        "all",
        s.pki.parent().unwrap().join("gw.log"),
    );
    gw.start().await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let base = format!("http://127.0.0.1:{staff}/api/v1");
    let auditor = admin::create_token(&s.store, Role::Auditor, "131016", "auditor")
        .await
        .unwrap();
    let tok = s.token.clone();
    let last_action = || async { s.store.audit_head().await.unwrap().0 };

    // (call, expected action) — each call must add exactly its entry.
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let before = last_action().await;
    let (st, case) = call(&http, &tok, post.clone(), format!("{base}/cases"), Some(json!({
        "case_number": "AUD-1", "subjects": [{"kana_name": "オオタ ケン", "birth_date": "1955-05-05"}]
    }))).await;
    assert_eq!(st, 201);
    let case_id = case["id"].as_str().unwrap().to_owned();
    let due = (shokai::casework::today() + chrono::Days::new(14)).to_string();
    let steps: Vec<(reqwest::Method, String, Option<Value>, &str)> = vec![
        (
            get.clone(),
            format!("{base}/cases/{case_id}"),
            None,
            "case.read",
        ),
        (
            post.clone(),
            format!("{base}/requests"),
            Some(json!({
                "case_id": case_id, "institutions": [{"code": "0001"}], "kinds": ["balance"], "due_date": due, "purpose": "資産調査"
            })),
            "request.create",
        ),
        (
            get.clone(),
            format!("{base}/cases/{case_id}/file"),
            None,
            "case_file.read",
        ),
        (
            reqwest::Method::PUT,
            format!("{base}/cases/{case_id}/decision"),
            Some(json!({"decision_date": shokai::casework::today().to_string()})),
            "case.decide",
        ),
    ];
    let mut seq = before;
    let next_seq = |after: i64| {
        let store = s.store.clone();
        async move {
            store
                .audit_entries(&shokai::store::AuditFilter {
                    after_seq: Some(after),
                    limit: 100,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .find(|c| !c.entry.actor.starts_with("bank:"))
                .map(|c| c.seq)
                .unwrap()
        }
    };
    let entries = |from: i64| {
        let store = s.store.clone();
        async move {
            // The bank's answers arrive on their own schedule; the staff
            // API's entries are the ones each call must add.
            store
                .audit_entries(&shokai::store::AuditFilter {
                    after_seq: Some(from),
                    limit: 100,
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_iter()
                .filter(|c| !c.entry.actor.starts_with("bank:"))
                .collect::<Vec<_>>()
        }
    };
    let created = entries(seq).await;
    assert_eq!(created.len(), 1);
    assert_eq!(created[0].entry.action.as_str(), "case.create");
    seq = next_seq(seq).await;
    let mut request_id = String::new();
    for (method, url, body, action) in steps {
        let (st, resp) = call(&http, &tok, method, url.clone(), body).await;
        assert!(st < 300, "{url}: {st} {resp}");
        if action == "request.create" {
            request_id = resp["id"].as_str().unwrap().to_owned();
        }
        let new = entries(seq).await;
        assert_eq!(new.len(), 1, "{url} wrote {} entries", new.len());
        let e = &new[0].entry;
        assert_eq!(
            (e.action.as_str(), e.case_id.as_deref()),
            (action, Some(case_id.as_str())),
            "{url}"
        );
        assert!(e.actor.starts_with("token:") && e.role == "caseworker" && e.office == "131016");
        if action == "request.create" {
            assert_eq!(
                (e.purpose.as_deref(), e.legal_basis.as_deref()),
                (Some("資産調査"), Some("生活保護法第29条"))
            );
        }
        seq = next_seq(seq).await;
    }
    let (st, _) = call(
        &http,
        &tok,
        get.clone(),
        format!("{base}/requests/{request_id}"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(entries(seq).await[0].entry.action.as_str(), "request.read");
    // Answers from the bank are recorded with the bank as the actor.
    crate::support::eventually("the answer", Duration::from_secs(30), || async {
        let bank = shokai::store::AuditFilter {
            actor: Some("bank:0001".into()),
            limit: 10,
            ..Default::default()
        };
        s.store
            .audit_entries(&bank)
            .await
            .unwrap()
            .iter()
            .any(|c| c.entry.action.as_str() == "answer.receive")
    })
    .await;
    // Only auditors (and admins) read the trail, and that is recorded too.
    let (st, p) = call(&http, &tok, get.clone(), format!("{base}/audit"), None).await;
    assert_eq!((st, p["code"].as_str()), (403, Some("forbidden")));
    let (st, list) = call(
        &http,
        &auditor,
        get.clone(),
        format!("{base}/audit?case_id={case_id}"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let actions: Vec<&str> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["actor"].as_str().unwrap().starts_with("bank:"))
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        &actions[..6],
        [
            "case.create",
            "case.read",
            "request.create",
            "case_file.read",
            "case.decide",
            "request.read"
        ]
    );
    // An auditor of another office sees none of this office's entries.
    let stranger = admin::create_token(&s.store, Role::Auditor, "131024", "auditor-b")
        .await
        .unwrap();
    let (st, other) = call(
        &http,
        &stranger,
        get.clone(),
        format!("{base}/audit?case_id={case_id}"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(other["entries"].as_array().unwrap().is_empty(), "{other}");
    let head = s.store.audit_head().await.unwrap().0;
    assert_eq!(
        entries(head - 1).await[0].entry.action.as_str(),
        "audit.read"
    );
    gw.kill().await;
    s.store.close().await;
}
db_test!(
    every_personal_data_endpoint_is_audited,
    super::every_personal_data_endpoint_is_audited
);

/// `shokai audit verify` passes on an intact trail, and names the first
/// broken entry after a row is changed or the last one removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_row_fails_verification_and_is_named() {
    let db = crate::support::sqlite_db();
    let store = crate::support::open(&db.url).await;
    let entries: Vec<_> = (0..5).map(read_entry).collect();
    store.append_audit(&entries).await.unwrap();
    let verify = || async {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shokai"))
            .args(["audit", "verify", "--database-url", &db.url])
            .output()
            .await
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (ok, out) = verify().await;
    assert!(ok && out.contains("5 entries verified"), "{out}");
    let path = db.url.trim_start_matches("sqlite://").to_owned();
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{path}"))
        .await
        .unwrap();
    sqlx::query("UPDATE audit_log SET target = 'case:forged' WHERE seq = 3")
        .execute(&mut conn)
        .await
        .unwrap();
    let (ok, out) = verify().await;
    assert!(!ok && out.contains("entry 3 is broken"), "{out}");
    sqlx::query("UPDATE audit_log SET target = 'case:2' WHERE seq = 3")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(verify().await.0, "restored");
    sqlx::query("DELETE FROM audit_log WHERE seq = 5")
        .execute(&mut conn)
        .await
        .unwrap();
    let (ok, out) = verify().await;
    assert!(!ok && out.contains("entry 5 is broken"), "{out}");
    store.close().await;
}

/// A full run through the gateway at debug level, every crate, leaves no
/// name, birth date or account number in its logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_no_personal_data() {
    let db = crate::support::sqlite_db();
    let s = setup(&db.url, &[]).await;
    let staff = free_port();
    let log = s.pki.parent().unwrap().join("verbose.log");
    let mut gw =
        GatewayProcess::new(&db.url, &s.pki, staff, s.bank_port, "all", log.clone()).verbose();
    gw.start().await;
    let requests = file_cases(staff, &s.token, 2, "logs").await;
    assert_all_delivered(&s, &requests, Duration::from_secs(120)).await;
    gw.kill().await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("delivery attempt"), "the log is the real one");
    let mut secrets: Vec<String> = Vec::new();
    for id in &requests {
        let view = s
            .store
            .request(&shokai::domain::ids::RequestId::parse(id).unwrap())
            .await
            .unwrap()
            .unwrap();
        let file = s.store.case_file(&view.case_id).await.unwrap().unwrap();
        for subject in &file.case.subjects {
            secrets.push(subject.kana_name.as_str().to_owned());
            secrets.push(subject.kana_name.zengin());
            secrets.push(subject.birth_date.to_string());
        }
        for e in &file.entries {
            if let shokai::domain::answer::Outcome::Found { accounts, .. } = &e.outcome {
                secrets.extend(accounts.iter().map(|a| a.number.clone()));
            }
        }
    }
    assert!(secrets.len() > 100);
    // Whole words only: a 7-digit account number also occurs by chance
    // inside hex ids and millisecond timestamps, which carry nothing.
    let words: std::collections::HashSet<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '-'))
        .filter(|w| !w.is_empty())
        .collect();
    for secret in &secrets {
        let found = if secret.bytes().all(|b| b.is_ascii_digit()) {
            words.contains(secret.as_str())
        } else {
            text.contains(secret.as_str())
        };
        assert!(!found, "the log carries '{secret}'");
    }
    s.store.close().await;
}

fn read_entry(i: i64) -> shokai::domain::audit::AuditEntry {
    shokai::domain::audit::AuditEntry {
        at: 1_000 + i,
        actor: "token:x".into(),
        role: "caseworker".into(),
        office: "131016".into(),
        action: shokai::domain::audit::AuditAction::CaseRead,
        target: format!("case:{i}"),
        case_id: Some(format!("{i}")),
        purpose: None,
        legal_basis: None,
    }
}

/// Appends from many tasks at once, with a chainer running beside them,
/// end as one intact chain holding every entry exactly once.
async fn concurrent_appends_make_one_intact_chain(url: String) {
    let store = crate::support::open(&url).await;
    let (tasks, appends) = (6i64, 30i64);
    let writers: Vec<_> = (0..tasks)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                for n in 0..appends {
                    let first = (t * appends + n) * 3;
                    let entries: Vec<_> = (first..first + 1 + n % 3).map(read_entry).collect();
                    store.append_audit(&entries).await.unwrap();
                }
            })
        })
        .collect();
    let chainer = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                store
                    .chain_pending_audit(shokai::store::ChainWait::Skip)
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    chainer.abort();
    let expected = tasks * (0..appends).map(|n| 1 + n % 3).sum::<i64>();
    match admin::verify_audit(&store).await.unwrap() {
        admin::AuditVerdict::Intact { entries, .. } => assert_eq!(entries, expected),
        admin::AuditVerdict::Broken(b) => panic!("broken at {}: {}", b.seq, b.reason),
    }
    let mut targets: Vec<String> = store
        .audit_entries(&shokai::store::AuditFilter {
            limit: expected + 10,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.entry.target)
        .collect();
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len() as i64, expected, "each entry once");
    store.close().await;
}
db_test!(
    concurrent_appends_make_one_intact_chain,
    super::concurrent_appends_make_one_intact_chain
);

/// On PostgreSQL an audited transaction does not wait for the chain's
/// head: with the head's row held by another session, an append commits,
/// a periodic chainer passes, and the next read links the entry once the
/// head is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_do_not_wait_for_the_chain_head_on_postgres() {
    let Some(db) = crate::support::postgres_db().await else {
        eprintln!("skipped: SHOKAI_TEST_DATABASE_URL is not set");
        return;
    };
    let store = crate::support::open(&db.url).await;
    store.append_audit(&[read_entry(1)]).await.unwrap();
    let (seq_before, _) = store.audit_head().await.unwrap();
    assert_eq!(seq_before, 1);

    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut held = holder.begin().await.unwrap();
    sqlx::query("SELECT seq FROM audit_head WHERE id = 1 FOR UPDATE")
        .execute(&mut *held)
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        store.append_audit(&[read_entry(2), read_entry(3)]),
    )
    .await
    .expect("an append does not wait for the head")
    .unwrap();
    let linked = tokio::time::timeout(
        Duration::from_secs(10),
        store.chain_pending_audit(shokai::store::ChainWait::Skip),
    )
    .await
    .expect("a periodic chainer passes a held head")
    .unwrap();
    assert_eq!(linked, 0);

    // A read waits for the head, then links what is pending.
    let read = {
        let store = store.clone();
        tokio::spawn(async move { store.audit_head().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!read.is_finished(), "the read waits for the held head");
    held.rollback().await.unwrap();
    let (seq, head) = read.await.unwrap();
    assert_eq!(seq, 3);
    match admin::verify_audit(&store).await.unwrap() {
        admin::AuditVerdict::Intact { entries, head: h } => {
            assert_eq!((entries, h), (3, head));
        }
        admin::AuditVerdict::Broken(b) => panic!("broken at {}: {}", b.seq, b.reason),
    }
    store.close().await;
    db.drop_postgres().await;
}
