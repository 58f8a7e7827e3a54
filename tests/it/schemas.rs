//! Every document the gateway and the mock banks emit, and every example in
//! the repository, validates with xmllint against our and the official XSDs.

use std::path::Path;
use std::process::Command;

use shokai::domain::answer::{Answer, Outcome};
use shokai::domain::ids::{BatchId, InquiryId, SubjectId};
use shokai::domain::kana::KanaName;
use shokai::domain::request::{InquiryForBatch, Period, Subject};
use shokai::domain::state::InquiryKind;
use shokai::domain::zengin::BranchCode;
use shokai::iso20022::{
    self, AnswerBatchReceipt, AnswerResult, AnswerStatus, BatchReceipt, Limits,
};

use crate::support::{code, repo_path};

fn validate(files: &[&Path]) -> (bool, String) {
    let out = Command::new("bash")
        .arg(repo_path("schemas/validate.sh"))
        .args(files)
        .output()
        .expect("run schemas/validate.sh (needs xmllint from libxml2-utils)");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn repository_examples_validate() {
    let (ok, out) = validate(&[]);
    assert!(ok, "{out}");
}

#[test]
fn emitted_documents_validate_and_broken_ones_do_not() {
    let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    let inquiry =
        |kinds: Vec<InquiryKind>, branches: Vec<&str>, kanji: Option<&str>| InquiryForBatch {
            id: InquiryId::generate(),
            queued_at: 0,
            office: "131016".into(),
            subject: Subject {
                id: SubjectId::generate(),
                kana_name: KanaName::parse("サトウ キョウコ").unwrap(),
                kanji_name: kanji.map(str::to_owned),
                birth_date: d("1958-12-01"),
                postal_code: Some("160-0022".into()),
                address: Some("東京都新宿区新宿1-1 <&>".into()),
                former_kana_names: vec![KanaName::parse("スズキ キョウコ").unwrap()],
            },
            branches: branches
                .into_iter()
                .map(|b| BranchCode::parse(b).unwrap())
                .collect(),
            period: kinds.contains(&InquiryKind::Transactions).then(|| Period {
                from: d("2026-01-01"),
                to: d("2026-10-31"),
            }),
            kinds,
            reference_date: d("2026-10-31"),
            legal_basis: "生活保護法第29条".into(),
            due_date: d("2026-12-07"),
        };
    let inquiries = vec![
        inquiry(vec![InquiryKind::Existence], vec![], None),
        inquiry(
            vec![
                InquiryKind::Existence,
                InquiryKind::Balance,
                InquiryKind::Transactions,
            ],
            vec!["110", "251"],
            Some("佐藤 京子"),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let batch = iso20022::encode_inquiry_batch(
        &BatchId::generate(),
        &code("0001"),
        1_795_000_000_123,
        &inquiries,
    );
    // The mock bank's answers to exactly these inquiries.
    let received = iso20022::decode_inquiry_batch(&batch, &Limits::default()).unwrap();
    let mut answers: Vec<_> = received
        .inquiries
        .iter()
        .map(|i| shokai::mockbank::generate_answer(&code("0001"), i).unwrap())
        .collect();
    answers.push(iso20022::OutgoingAnswer {
        answer: Answer {
            inquiry_id: InquiryId::generate(),
            response_id: "R9".into(),
            outcome: Outcome::Refused {
                code: "LEGL".into(),
                reason: "法的根拠の確認が必要".into(),
            },
        },
        kinds: vec![InquiryKind::Balance],
        zengin_name: "ｻﾄｳ ｷﾖｳｺ".into(),
    });
    answers.push(iso20022::OutgoingAnswer {
        answer: Answer {
            inquiry_id: InquiryId::generate(),
            response_id: "R10".into(),
            outcome: Outcome::NotFound,
        },
        kinds: vec![InquiryKind::Existence, InquiryKind::Balance],
        zengin_name: "ｻﾄｳ ｷﾖｳｺ".into(),
    });
    let docs = vec![
        ("inquiry-batch.xml", batch),
        (
            "answers.xml",
            iso20022::encode_answer_batch(
                "A-1",
                &code("0001"),
                "131016",
                1_795_000_000_000,
                &answers,
            ),
        ),
        (
            "receipt.xml",
            iso20022::encode_batch_receipt(&BatchReceipt {
                batch_id: "B".into(),
                accepted: true,
                reason_code: None,
                reason_text: None,
                count: Some(2),
            }),
        ),
        (
            "receipt-rejected.xml",
            iso20022::encode_batch_receipt(&BatchReceipt {
                batch_id: "B".into(),
                accepted: false,
                reason_code: Some("INST".into()),
                reason_text: Some("wrong bank".into()),
                count: None,
            }),
        ),
        (
            "answer-receipt.xml",
            iso20022::encode_answer_batch_receipt(&AnswerBatchReceipt {
                batch_id: "A-1".into(),
                rejection: None,
                results: vec![
                    AnswerResult {
                        response_id: "R1".into(),
                        inquiry_id: "I1".into(),
                        status: AnswerStatus::Accepted,
                    },
                    AnswerResult {
                        response_id: "R2".into(),
                        inquiry_id: "I2".into(),
                        status: AnswerStatus::Duplicate,
                    },
                    AnswerResult {
                        response_id: "-".into(),
                        inquiry_id: "-".into(),
                        status: AnswerStatus::Rejected {
                            reason_code: "UNKN".into(),
                            reason_text: "unknown_inquiry: no such inquiry".into(),
                        },
                    },
                ],
            }),
        ),
        (
            "pending.xml",
            iso20022::encode_pending_batches(
                &code("0001"),
                &[iso20022::PendingBatch {
                    batch_id: "B-1".into(),
                    created_at_ms: 1_795_000_000_000,
                    count: 2,
                }],
            ),
        ),
        (
            "answer-receipt-rejected.xml",
            iso20022::encode_answer_batch_receipt(&AnswerBatchReceipt {
                batch_id: "-".into(),
                rejection: Some(("FRMT".into(), "malformed".into())),
                results: vec![],
            }),
        ),
    ];
    let mut paths = Vec::new();
    for (name, bytes) in &docs {
        let p = dir.path().join(name);
        std::fs::write(&p, bytes).unwrap();
        paths.push(p);
    }
    let refs: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let (ok, out) = validate(&refs);
    assert!(ok, "{out}");

    // The validator really checks: a wrong account type fails.
    let answers_text = String::from_utf8(docs[1].1.clone()).unwrap();
    assert!(
        answers_text.contains("<jp:Tp>1</jp:Tp>"),
        "the sample has an ordinary account"
    );
    let broken = dir.path().join("broken.xml");
    std::fs::write(
        &broken,
        answers_text.replacen("<jp:Tp>1</jp:Tp>", "<jp:Tp>3</jp:Tp>", 1),
    )
    .unwrap();
    let (ok, _) = validate(&[broken.as_path()]);
    assert!(!ok, "a wrong account type must fail validation");
}
