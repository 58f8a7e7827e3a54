//! Micro-benchmarks: the ISO 20022 encoder and decoders and the kana
//! normaliser, each on one core. `cargo bench --bench codec` prints
//! throughput in elements (inquiries, answers, names) per second.

use std::hint::black_box;

use chrono::NaiveDate;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shokai::domain::answer::{Account, AccountType, Answer, Outcome};
use shokai::domain::ids::{BatchId, InquiryId, SubjectId};
use shokai::domain::kana::KanaName;
use shokai::domain::request::{InquiryForBatch, Subject};
use shokai::domain::state::InquiryKind;
use shokai::domain::zengin::{BranchCode, InstitutionCode};
use shokai::iso20022::{self, Limits, OutgoingAnswer};

const N: usize = 500;

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn inquiries() -> Vec<InquiryForBatch> {
    (0..N)
        .map(|i| InquiryForBatch {
            id: InquiryId::generate(),
            queued_at: 0,
            office: "131016".into(),
            subject: Subject {
                id: SubjectId::generate(),
                kana_name: KanaName::parse("ヤマダ タロウ").unwrap(),
                kanji_name: Some("山田 太郎".into()),
                birth_date: d("1961-04-02"),
                postal_code: Some("160-0022".into()),
                address: Some(format!("東京都新宿区新宿{}丁目", i % 9 + 1)),
                former_kana_names: vec![],
            },
            branches: vec![],
            kinds: vec![InquiryKind::Existence, InquiryKind::Balance],
            reference_date: d("2026-10-31"),
            period: None,
            legal_basis: "生活保護法第29条".into(),
            due_date: d("2026-12-07"),
        })
        .collect()
}

fn answers() -> Vec<OutgoingAnswer> {
    (0..N)
        .map(|i| OutgoingAnswer {
            answer: Answer {
                inquiry_id: InquiryId::generate(),
                response_id: format!("R{i}"),
                outcome: if i % 3 == 0 {
                    Outcome::NotFound
                } else {
                    Outcome::Found {
                        accounts: vec![Account {
                            branch: BranchCode::parse("110").unwrap(),
                            account_type: AccountType::Ordinary,
                            number: format!("{:07}", i),
                            holder_kana: "ﾔﾏﾀﾞ ﾀﾛｳ".into(),
                            balance: Some(123_456),
                            as_of: Some(d("2026-10-31")),
                            last_transaction: Some(d("2026-10-27")),
                            transactions: vec![],
                        }],
                        other_holdings: vec![],
                    }
                },
            },
            kinds: vec![InquiryKind::Existence, InquiryKind::Balance],
            zengin_name: "ﾔﾏﾀﾞ ﾀﾛｳ".into(),
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let inst = InstitutionCode::parse("0001").unwrap();
    let batch = inquiries();
    let mut g = c.benchmark_group("iso20022");
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("encode inquiry batch", |b| {
        b.iter(|| iso20022::encode_inquiry_batch(&BatchId::generate(), &inst, 0, black_box(&batch)))
    });
    let encoded = iso20022::encode_inquiry_batch(&BatchId::generate(), &inst, 0, &batch);
    g.bench_function("decode inquiry batch (bank side)", |b| {
        b.iter(|| iso20022::decode_inquiry_batch(black_box(&encoded), &Limits::default()).unwrap())
    });
    let answer_bytes = iso20022::encode_answer_batch("A1", &inst, "131016", 0, &answers());
    g.bench_function("decode answer batch", |b| {
        b.iter(|| {
            iso20022::decode_answer_batch(black_box(&answer_bytes), &Limits::default()).unwrap()
        })
    });
    g.finish();
}

fn kana(c: &mut Criterion) {
    let names = [
        "やまだ　たろう",
        "ｻﾄｳ ｷｮｳｺ",
        "スズキ　イチロー",
        "ﾀﾅｶ ﾊﾅｺ",
        "ヴァン　デル",
    ];
    let mut g = c.benchmark_group("kana");
    g.throughput(Throughput::Elements(names.len() as u64));
    g.bench_function("normalise and zengin form", |b| {
        b.iter(|| {
            for n in names {
                black_box(KanaName::parse(black_box(n)).unwrap().zengin());
            }
        })
    });
    g.finish();
}

criterion_group!(benches, codec, kana);
criterion_main!(benches);
