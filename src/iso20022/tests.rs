use chrono::NaiveDate;
use proptest::prelude::*;

use super::*;
use crate::domain::ids::SubjectId;
use crate::domain::kana::KanaName;
use crate::domain::request::Subject;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

pub(crate) fn sample_inquiry(kinds: Vec<InquiryKind>) -> InquiryForBatch {
    InquiryForBatch {
        id: InquiryId::generate(),
        queued_at: 0,
        office: "131091".into(),
        subject: Subject {
            id: SubjectId::generate(),
            kana_name: KanaName::parse("ヤマダ タロウ").unwrap(),
            kanji_name: Some("山田 太郎".into()),
            birth_date: d("1972-09-03"),
            postal_code: Some("141-0032".into()),
            address: Some("東京都品川区大崎一丁目2番3号 <&>".into()),
            former_kana_names: vec![KanaName::parse("スズキ タロウ").unwrap()],
        },
        branches: vec![BranchCode::parse("110").unwrap()],
        period: kinds.contains(&InquiryKind::Transactions).then(|| Period {
            from: d("2026-05-01"),
            to: d("2026-10-31"),
        }),
        kinds,
        reference_date: d("2026-10-31"),
        legal_basis: "生活保護法第29条".into(),
        due_date: d("2026-12-07"),
    }
}

fn found(inquiry: &InquiryId) -> Answer {
    Answer {
        inquiry_id: inquiry.clone(),
        response_id: "R0001-1".into(),
        outcome: Outcome::Found {
            accounts: vec![Account {
                branch: BranchCode::parse("110").unwrap(),
                account_type: AccountType::Ordinary,
                number: "1234567".into(),
                holder_kana: "ﾔﾏﾀﾞ ﾀﾛｳ".into(),
                balance: Some(85_320),
                as_of: Some(d("2026-10-31")),
                last_transaction: Some(d("2026-10-27")),
                transactions: vec![Transaction {
                    date: d("2026-10-27"),
                    description: Some("ATM".into()),
                    debit: Some(46_130),
                    credit: None,
                    balance: 85_320,
                }],
            }],
            other_holdings: vec![OtherHolding {
                kind: "SAFE".into(),
                description: "貸金庫 1件".into(),
            }],
        },
    }
}

#[test]
fn inquiry_batch_round_trips_through_the_bank_side() {
    let inq = sample_inquiry(vec![
        InquiryKind::Existence,
        InquiryKind::Balance,
        InquiryKind::Transactions,
    ]);
    let bytes = encode_inquiry_batch(
        &BatchId::parse("B1").unwrap(),
        &InstitutionCode::parse("0001").unwrap(),
        1_795_000_000_123,
        std::slice::from_ref(&inq),
    );
    let got = decode_inquiry_batch(&bytes, &Limits::default()).unwrap();
    assert_eq!(got.batch_id, "B1");
    assert_eq!(got.office, "131091");
    let r = &got.inquiries[0];
    assert_eq!(r.id, inq.id.as_str());
    assert_eq!(r.zengin_name, "ﾔﾏﾀﾞ ﾀﾛｳ");
    assert_eq!(r.kana_name, "ヤマダ タロウ");
    assert_eq!(r.kanji_name.as_deref(), Some("山田 太郎"));
    assert_eq!(r.birth_date, Some(d("1972-09-03")));
    assert_eq!(r.kinds.len(), 3);
    assert_eq!(r.period.from, d("2026-05-01"));
    assert_eq!(r.branches, inq.branches);
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("&lt;&amp;&gt;"), "address is escaped");
    assert!(text.contains("<b:CreDtTm>") && text.contains("Z</b:CreDtTm>"));
}

#[test]
fn answers_round_trip() {
    let inst = InstitutionCode::parse("0001").unwrap();
    let ids: Vec<InquiryId> = (0..3).map(|_| InquiryId::generate()).collect();
    let all = vec![
        InquiryKind::Existence,
        InquiryKind::Balance,
        InquiryKind::Transactions,
    ];
    let answers = vec![
        OutgoingAnswer {
            answer: found(&ids[0]),
            kinds: all.clone(),
            zengin_name: "ﾔﾏﾀﾞ ﾀﾛｳ".into(),
        },
        OutgoingAnswer {
            answer: Answer {
                inquiry_id: ids[1].clone(),
                response_id: "R2".into(),
                outcome: Outcome::NotFound,
            },
            kinds: vec![InquiryKind::Existence],
            zengin_name: "ｽｽﾞｷ ﾊﾅｺ".into(),
        },
        OutgoingAnswer {
            answer: Answer {
                inquiry_id: ids[2].clone(),
                response_id: "R3".into(),
                outcome: Outcome::Refused {
                    code: "LEGL".into(),
                    reason: "legal basis not accepted".into(),
                },
            },
            kinds: vec![InquiryKind::Balance],
            zengin_name: "ｻﾄｳ ｼﾞﾛｳ".into(),
        },
    ];
    let bytes = encode_answer_batch("A1", &inst, "131091", 1_795_000_000_000, &answers);
    let batch = decode_answer_batch(&bytes, &Limits::default()).unwrap();
    assert_eq!(batch.institution, inst);
    let got: Vec<Answer> = batch.items.into_iter().map(Result::unwrap).collect();
    for (g, a) in got.iter().zip(&answers) {
        assert_eq!(g, &a.answer);
    }
}

#[test]
fn existence_only_found_has_no_accounts() {
    let id = InquiryId::generate();
    let a = OutgoingAnswer {
        answer: found(&id),
        kinds: vec![InquiryKind::Existence],
        zengin_name: "ｱ".into(),
    };
    let bytes = encode_answer_batch("A", &InstitutionCode::parse("0001").unwrap(), "1", 0, &[a]);
    let got = decode_answer_batch(&bytes, &Limits::default()).unwrap();
    assert_eq!(
        got.items[0].as_ref().unwrap().outcome,
        Outcome::Found {
            accounts: vec![],
            other_holdings: vec![]
        }
    );
}

#[test]
fn receipts_round_trip() {
    let r = BatchReceipt {
        batch_id: "B1".into(),
        accepted: false,
        reason_code: Some("SIZE".into()),
        reason_text: Some("too large".into()),
        count: None,
    };
    assert_eq!(decode_batch_receipt(&encode_batch_receipt(&r)).unwrap(), r);
    let a = AnswerBatchReceipt {
        batch_id: "A1".into(),
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
                response_id: "R3".into(),
                inquiry_id: "I3".into(),
                status: AnswerStatus::Rejected {
                    reason_code: "UNKN".into(),
                    reason_text: "unknown".into(),
                },
            },
        ],
    };
    assert_eq!(
        decode_answer_batch_receipt(&encode_answer_batch_receipt(&a)).unwrap(),
        a
    );
}

#[test]
fn bad_answers_are_refused_one_by_one() {
    let inst = InstitutionCode::parse("0001").unwrap();
    let good = OutgoingAnswer {
        answer: found(&InquiryId::generate()),
        kinds: vec![InquiryKind::Balance],
        zengin_name: "ｱ".into(),
    };
    let bytes = encode_answer_batch("A", &inst, "1", 0, &[good.clone(), good]);
    let text = String::from_utf8(bytes).unwrap();
    // Break the second answer's account type only.
    let idx = text.rfind("<jp:Tp>1</jp:Tp>").unwrap();
    let broken = format!(
        "{}<jp:Tp>3</jp:Tp>{}",
        &text[..idx],
        &text[idx + "<jp:Tp>1</jp:Tp>".len()..]
    );
    let batch = decode_answer_batch(broken.as_bytes(), &Limits::default()).unwrap();
    assert!(batch.items[0].is_ok());
    let err = batch.items[1].as_ref().unwrap_err();
    assert_eq!(err.error.code, "invalid_value");
    assert_eq!(err.response_id, "R0001-1");
}

#[test]
fn envelope_errors_refuse_the_batch() {
    let wrong_ns = br#"<b:AnswBtch xmlns:b="urn:other"><b:BtchId>A</b:BtchId></b:AnswBtch>"#;
    assert_eq!(
        decode_answer_batch(wrong_ns, &Limits::default())
            .unwrap_err()
            .code,
        "wrong_namespace"
    );
    let wrong_msg = format!(r#"<b:InqryBtch xmlns:b="{NS_BATCH}"/>"#);
    assert_eq!(
        decode_answer_batch(wrong_msg.as_bytes(), &Limits::default())
            .unwrap_err()
            .code,
        "wrong_message"
    );
    let count = format!(
        r#"<b:AnswBtch xmlns:b="{NS_BATCH}"><b:BtchId>A</b:BtchId><b:InstnCd>0001</b:InstnCd><b:CreDtTm>2026-01-01T00:00:00Z</b:CreDtTm><b:NbOfMsgs>2</b:NbOfMsgs></b:AnswBtch>"#
    );
    assert_eq!(
        decode_answer_batch(count.as_bytes(), &Limits::default())
            .unwrap_err()
            .code,
        "count_mismatch"
    );
}

#[test]
fn the_repository_examples_decode() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/examples/");
    let read = |f: &str| std::fs::read(format!("{dir}{f}")).unwrap();
    let batch = decode_inquiry_batch(&read("inquiry-batch.xml"), &Limits::default()).unwrap();
    assert_eq!(batch.inquiries.len(), 2);
    let answers = decode_answer_batch(&read("answer-batch.xml"), &Limits::default()).unwrap();
    assert_eq!(answers.items.len(), 3);
    assert!(
        answers.items.iter().all(|i| i.is_ok()),
        "{:?}",
        answers.items
    );
    assert!(
        decode_batch_receipt(&read("batch-receipt-accepted.xml"))
            .unwrap()
            .accepted
    );
    assert!(
        !decode_batch_receipt(&read("batch-receipt-rejected.xml"))
            .unwrap()
            .accepted
    );
    assert_eq!(
        decode_answer_batch_receipt(&read("answer-batch-receipt.xml"))
            .unwrap()
            .results
            .len(),
        3
    );
}

proptest! {
    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_answer_batch(&bytes, &Limits::default());
        let _ = decode_batch_receipt(&bytes);
        let _ = decode_inquiry_batch(&bytes, &Limits::default());
    }

    /// Cutting or corrupting a valid answer batch anywhere gives an error
    /// or a decoded batch, never a panic.
    #[test]
    fn decoders_never_panic_on_mutated_answers(cut in 0usize..4000, pos in 0usize..4000, byte in any::<u8>()) {
        let inst = InstitutionCode::parse("0001").unwrap();
        let a = OutgoingAnswer {
            answer: found(&InquiryId::generate()),
            kinds: vec![InquiryKind::Balance, InquiryKind::Transactions],
            zengin_name: "ｱ".into(),
        };
        let mut bytes = encode_answer_batch("A", &inst, "1", 0, &[a]);
        if pos < bytes.len() {
            bytes[pos] = byte;
        }
        bytes.truncate(cut.min(bytes.len()));
        let _ = decode_answer_batch(&bytes, &Limits::default());
    }
}
