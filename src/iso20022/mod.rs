//! The bank protocol: our ISO 20022 profile (see docs/bank-integration.md
//! and schemas/). The only module that knows XML. Both directions are here:
//! the gateway's (encode inquiries, decode receipts and answers) and the
//! bank's (decode inquiries, encode receipts and answers), which the mock
//! banks and the conformance kit use.

mod xml;

use chrono::NaiveDate;

use crate::domain::answer::{
    Account, AccountType, Answer, OtherHolding, Outcome, Transaction, parse_account_number,
};
use crate::domain::ids::{BatchId, InquiryId};
use crate::domain::request::{InquiryForBatch, Period};
use crate::domain::state::InquiryKind;
use crate::domain::time::rfc3339;
use crate::domain::zengin::{BranchCode, InstitutionCode};

pub use xml::Limits;
use xml::{Element, Out, parse};

pub const NS_BATCH: &str = "urn:shokai:xsd:batch.001.01";
pub const NS_JP: &str = "urn:shokai:xsd:jpdpst.001.01";
pub const NS_HEAD: &str = "urn:iso:std:iso:20022:tech:xsd:head.001.001.01";
pub const NS_AUTH001: &str = "urn:iso:std:iso:20022:tech:xsd:auth.001.001.01";
pub const NS_AUTH002: &str = "urn:iso:std:iso:20022:tech:xsd:auth.002.001.01";

/// Placeholders the schema requires and a Japanese subject rarely has.
pub const CITY_OF_BIRTH_PLACEHOLDER: &str = "not in use";
pub const COUNTRY_OF_BIRTH_PLACEHOLDER: &str = "XX";

/// A document was refused. `code` is stable; the message says what and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CodecError {
    pub code: &'static str,
    pub message: String,
}

impl CodecError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// The 4-character reason code of our receipts.
    pub fn reason_code(&self) -> &'static str {
        match self.code {
            "too_large" | "too_many_elements" => "SIZE",
            "wrong_namespace" | "wrong_message" => "MSGT",
            "wrong_institution" => "INST",
            _ => "FRMT",
        }
    }
}

fn invalid(message: impl Into<String>) -> CodecError {
    CodecError::new("invalid_value", message)
}

impl InquiryKind {
    /// `AuthrtyReq/Tp/MsgNmId` of the profile.
    pub fn message_name(self) -> &'static str {
        match self {
            InquiryKind::Existence => "jp.dpst.exst",
            InquiryKind::Balance => "jp.dpst.bal",
            InquiryKind::Transactions => "jp.dpst.txs",
        }
    }

    pub fn from_message_name(raw: &str) -> Option<Self> {
        InquiryKind::ALL
            .iter()
            .copied()
            .find(|k| k.message_name() == raw)
    }
}

fn party(out: &mut Out, tag: &str, id: &str, scheme: &str) {
    out.open(tag)
        .raw("<h:OrgId><h:Id><h:OrgId><h:Othr>")
        .leaf("h:Id", id)
        .raw("<h:SchmeNm>")
        .leaf("h:Prtry", scheme)
        .raw("</h:SchmeNm></h:Othr></h:OrgId></h:Id></h:OrgId>")
        .close(tag);
}

fn app_hdr(
    out: &mut Out,
    from: (&str, &str),
    to: (&str, &str),
    msg_id: &str,
    def: &str,
    created: &str,
) {
    out.open("h:AppHdr");
    party(out, "h:Fr", from.0, from.1);
    party(out, "h:To", to.0, to.1);
    out.leaf("h:BizMsgIdr", msg_id)
        .leaf("h:MsgDefIdr", def)
        .leaf("h:CreDt", created)
        .close("h:AppHdr");
}

/// CreDt must be UTC with a `Z` and no fraction the schema would refuse.
fn iso_datetime(ms: i64) -> String {
    rfc3339(ms - ms.rem_euclid(1000)).replace(".000Z", "Z")
}

/// The inquiry batch the gateway POSTs to a bank. Encoded once, when the
/// batch is sealed; resends reuse these bytes.
pub fn encode_inquiry_batch(
    batch_id: &BatchId,
    institution: &InstitutionCode,
    created_at_ms: i64,
    inquiries: &[InquiryForBatch],
) -> Vec<u8> {
    let created = iso_datetime(created_at_ms);
    let mut out = Out::with_capacity(512 + inquiries.len() * 2048);
    out.raw(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .raw(&format!(
            r#"<b:InqryBtch xmlns:b="{NS_BATCH}" xmlns:h="{NS_HEAD}" xmlns:q="{NS_AUTH001}" xmlns:jp="{NS_JP}">"#
        ))
        .leaf("b:BtchId", batch_id.as_str())
        .leaf("b:InstnCd", institution.as_str())
        .leaf("b:CreDtTm", &created)
        .leaf("b:NbOfMsgs", &inquiries.len().to_string());
    for inq in inquiries {
        out.open("b:Msg");
        app_hdr(
            &mut out,
            (&inq.office, "SHOKAI-OFFICE"),
            (institution.as_str(), "ZENGIN"),
            inq.id.as_str(),
            "auth.001.001.01",
            &created,
        );
        encode_opening(&mut out, inq);
        out.close("b:Msg");
    }
    out.close("b:InqryBtch");
    out.buf.into_bytes()
}

fn encode_opening(out: &mut Out, inq: &InquiryForBatch) {
    let s = &inq.subject;
    let (from, to) = match inq.period {
        Some(p) if inq.kinds.contains(&InquiryKind::Transactions) => (p.from, p.to),
        _ => (inq.reference_date, inq.reference_date),
    };
    out.open("q:Document")
        .open("q:InfReqOpng")
        .leaf("q:InvstgtnId", inq.id.as_str())
        .open("q:LglMndtBsis")
        .leaf("q:Prgrph", &inq.legal_basis)
        .close("q:LglMndtBsis")
        .leaf("q:CnfdtltySts", "true")
        .open("q:DueDt")
        .leaf("q:DueDt", &inq.due_date.to_string())
        .close("q:DueDt")
        .raw("<q:InvstgtnPrd><q:Dt>")
        .leaf("q:FrDt", &from.to_string())
        .leaf("q:ToDt", &to.to_string())
        .raw("</q:Dt></q:InvstgtnPrd>")
        .raw("<q:SchCrit><q:CstmrId><q:Pty>")
        .leaf("q:Nm", &s.kana_name.zengin());
    if s.address.is_some() || s.postal_code.is_some() {
        out.open("q:PstlAdr")
            .opt_leaf("q:PstCd", s.postal_code.as_deref())
            .leaf("q:Ctry", "JP")
            .opt_leaf("q:AdrLine", s.address.as_deref())
            .close("q:PstlAdr");
    }
    out.raw("<q:Id><q:PrvtId><q:DtAndPlcOfBirth>")
        .leaf("q:BirthDt", &s.birth_date.to_string())
        .leaf("q:CityOfBirth", CITY_OF_BIRTH_PLACEHOLDER)
        .leaf("q:CtryOfBirth", COUNTRY_OF_BIRTH_PLACEHOLDER)
        .close("q:DtAndPlcOfBirth");
    let others = s
        .kanji_name
        .iter()
        .map(|k| (k.clone(), "KANJI-NAME"))
        .chain(
            s.former_kana_names
                .iter()
                .map(|n| (n.zengin(), "FORMER-KANA-NAME")),
        );
    for (id, scheme) in others {
        out.open("q:Othr")
            .leaf("q:Id", &id)
            .raw("<q:SchmeNm>")
            .leaf("q:Prtry", scheme)
            .raw("</q:SchmeNm>")
            .close("q:Othr");
    }
    out.raw("</q:PrvtId></q:Id></q:Pty>");
    for kind in &inq.kinds {
        out.raw("<q:AuthrtyReq><q:Tp>")
            .leaf("q:MsgNmId", kind.message_name())
            .raw("</q:Tp><q:InvstgtdRoles><q:Cd>ALLP</q:Cd></q:InvstgtdRoles></q:AuthrtyReq>");
    }
    out.raw("</q:CstmrId></q:SchCrit><q:SplmtryData><q:Envlp><jp:InqryDtls>")
        .leaf("jp:RefDt", &inq.reference_date.to_string());
    if inq.branches.is_empty() {
        out.empty("jp:AllBrnchs");
    } else {
        for b in &inq.branches {
            out.leaf("jp:Brnch", b.as_str());
        }
    }
    out.leaf("jp:KanaNm", s.kana_name.as_str())
        .raw("</jp:InqryDtls></q:Envlp></q:SplmtryData>")
        .close("q:InfReqOpng")
        .close("q:Document");
}

/// The bank's synchronous answer to an inquiry batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchReceipt {
    pub batch_id: String,
    pub accepted: bool,
    pub reason_code: Option<String>,
    pub reason_text: Option<String>,
    pub count: Option<u64>,
}

pub fn encode_batch_receipt(r: &BatchReceipt) -> Vec<u8> {
    let mut out = Out::with_capacity(256);
    out.raw(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .raw(&format!(r#"<b:BtchRct xmlns:b="{NS_BATCH}">"#))
        .leaf("b:BtchId", &r.batch_id)
        .leaf("b:Sts", if r.accepted { "ACPT" } else { "RJCT" })
        .opt_leaf("b:RsnCd", r.reason_code.as_deref())
        .opt_leaf(
            "b:RsnTxt",
            r.reason_text
                .as_deref()
                .map(|t| truncate(t, 140))
                .as_deref(),
        )
        .opt_leaf("b:NbOfMsgs", r.count.map(|c| c.to_string()).as_deref())
        .close("b:BtchRct");
    out.buf.into_bytes()
}

pub fn decode_batch_receipt(bytes: &[u8]) -> Result<BatchReceipt, CodecError> {
    let doc = parse(
        bytes,
        &Limits {
            max_bytes: 64 * 1024,
            ..Limits::default()
        },
    )?;
    let root = doc.root().expect(NS_BATCH, "BtchRct")?;
    let accepted = match root.text_at(&["Sts"])? {
        "ACPT" => true,
        "RJCT" => false,
        other => {
            return Err(invalid(format!(
                "BtchRct/Sts '{other}' is not ACPT or RJCT"
            )));
        }
    };
    Ok(BatchReceipt {
        batch_id: root.text_at(&["BtchId"])?.to_owned(),
        accepted,
        reason_code: root.opt_text_at(&["RsnCd"]).map(str::to_owned),
        reason_text: root.opt_text_at(&["RsnTxt"]).map(str::to_owned),
        count: root
            .opt_text_at(&["NbOfMsgs"])
            .map(|n| n.parse().map_err(|_| invalid("NbOfMsgs is not a number")))
            .transpose()?,
    })
}

/// More than `max` characters; no text has more characters than bytes.
fn longer_than(s: &str, max: usize) -> bool {
    s.len() > max && s.chars().count() > max
}

fn truncate(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect()
}

fn date(el: Element<'_>, path: &[&str]) -> Result<NaiveDate, CodecError> {
    let raw = el.text_at(path)?;
    parse_date(raw).ok_or_else(|| invalid(format!("{} '{raw}' is not a date", path.join("/"))))
}

/// `%Y-%m-%d`. The usual `YYYY-MM-DD` is read by hand, which chrono would
/// read alike; anything else goes through chrono's format parser.
fn parse_date(raw: &str) -> Option<NaiveDate> {
    let b = raw.as_bytes();
    let digits = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    if b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && let (Some(y), Some(m), Some(d)) = (digits(0..4), digits(5..7), digits(8..10))
    {
        return NaiveDate::from_ymd_opt(y as i32, m, d);
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok()
}

fn opt_date(el: Element<'_>, path: &[&str]) -> Result<Option<NaiveDate>, CodecError> {
    el.path(path).map(|_| date(el, path)).transpose()
}

fn amount(el: Element<'_>, path: &[&str]) -> Result<i64, CodecError> {
    let raw = el.text_at(path)?;
    raw.parse().map_err(|_| {
        invalid(format!(
            "{} '{raw}' is not a whole number of yen",
            path.join("/")
        ))
    })
}

fn check_count(root: Element<'_>, n: usize) -> Result<(), CodecError> {
    let declared = root.text_at(&["NbOfMsgs"])?;
    if declared != n.to_string() {
        return Err(CodecError::new(
            "count_mismatch",
            format!("NbOfMsgs says {declared} but the batch holds {n} messages"),
        ));
    }
    Ok(())
}

/// One inquiry as a bank reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedInquiry {
    pub id: String,
    pub zengin_name: String,
    pub kana_name: String,
    pub kanji_name: Option<String>,
    pub birth_date: Option<NaiveDate>,
    pub kinds: Vec<InquiryKind>,
    pub reference_date: NaiveDate,
    pub period: Period,
    pub branches: Vec<BranchCode>,
    pub due_date: Option<NaiveDate>,
    pub legal_basis: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedBatch {
    pub batch_id: String,
    pub institution: InstitutionCode,
    pub office: String,
    pub inquiries: Vec<ReceivedInquiry>,
}

/// The bank side: reads an inquiry batch.
pub fn decode_inquiry_batch(bytes: &[u8], limits: &Limits) -> Result<ReceivedBatch, CodecError> {
    let doc = parse(bytes, limits)?;
    let root = doc.root().expect(NS_BATCH, "InqryBtch")?;
    let institution =
        InstitutionCode::parse(root.text_at(&["InstnCd"])?).map_err(|e| invalid(e.message))?;
    let msgs: Vec<Element> = root.children_named("Msg").collect();
    check_count(root, msgs.len())?;
    let mut office = String::new();
    let mut inquiries = Vec::with_capacity(msgs.len());
    for msg in msgs {
        let hdr = msg
            .children()
            .next()
            .ok_or_else(|| CodecError::new("missing_element", "Msg has no AppHdr"))?
            .expect(NS_HEAD, "AppHdr")?;
        if hdr.text_at(&["MsgDefIdr"])? != "auth.001.001.01" {
            return Err(CodecError::new(
                "wrong_message",
                "MsgDefIdr must be auth.001.001.01",
            ));
        }
        office = hdr
            .text_at(&["Fr", "OrgId", "Id", "OrgId", "Othr", "Id"])?
            .to_owned();
        let doc = msg
            .children()
            .nth(1)
            .ok_or_else(|| CodecError::new("missing_element", "Msg has no Document"))?
            .expect(NS_AUTH001, "Document")?;
        let o = doc
            .child("InfReqOpng")
            .ok_or_else(|| CodecError::new("wrong_message", "Document holds no InfReqOpng"))?;
        let pty = o
            .path(&["SchCrit", "CstmrId", "Pty"])
            .ok_or_else(|| CodecError::new("missing_element", "no SchCrit/CstmrId/Pty"))?;
        let kinds = o
            .path(&["SchCrit", "CstmrId"])
            .into_iter()
            .flat_map(|c| c.children_named("AuthrtyReq"))
            .filter_map(|r| r.opt_text_at(&["Tp", "MsgNmId"]))
            .filter_map(InquiryKind::from_message_name)
            .collect();
        let dtls = o
            .path(&["SplmtryData", "Envlp"])
            .ok_or_else(|| CodecError::new("missing_element", "no SplmtryData/Envlp"))?
            .single_child()?
            .expect(NS_JP, "InqryDtls")?;
        let kanji_name = pty
            .path(&["Id", "PrvtId"])
            .into_iter()
            .flat_map(|p| p.children_named("Othr"))
            .find(|o| o.opt_text_at(&["SchmeNm", "Prtry"]) == Some("KANJI-NAME"))
            .and_then(|o| o.opt_text_at(&["Id"]))
            .map(str::to_owned);
        inquiries.push(ReceivedInquiry {
            id: o.text_at(&["InvstgtnId"])?.to_owned(),
            zengin_name: pty.text_at(&["Nm"])?.to_owned(),
            kana_name: dtls.text_at(&["KanaNm"])?.to_owned(),
            kanji_name,
            birth_date: opt_date(pty, &["Id", "PrvtId", "DtAndPlcOfBirth", "BirthDt"])?,
            kinds,
            reference_date: date(dtls, &["RefDt"])?,
            period: Period {
                from: date(o, &["InvstgtnPrd", "Dt", "FrDt"])?,
                to: date(o, &["InvstgtnPrd", "Dt", "ToDt"])?,
            },
            branches: dtls
                .children_named("Brnch")
                .map(|b| BranchCode::parse(b.text().trim()).map_err(|e| invalid(e.message)))
                .collect::<Result<_, _>>()?,
            due_date: opt_date(o, &["DueDt", "DueDt"])?,
            legal_basis: o.text_at(&["LglMndtBsis", "Prgrph"])?.to_owned(),
        });
    }
    Ok(ReceivedBatch {
        batch_id: root.text_at(&["BtchId"])?.to_owned(),
        institution,
        office,
        inquiries,
    })
}

/// One answer as a bank writes it: the outcome and what was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingAnswer {
    pub answer: Answer,
    pub kinds: Vec<InquiryKind>,
    pub zengin_name: String,
}

/// The bank side: writes an answer batch.
pub fn encode_answer_batch(
    batch_id: &str,
    institution: &InstitutionCode,
    office: &str,
    created_at_ms: i64,
    answers: &[OutgoingAnswer],
) -> Vec<u8> {
    let created = iso_datetime(created_at_ms);
    let mut out = Out::with_capacity(512 + answers.len() * 2048);
    out.raw(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .raw(&format!(
            r#"<b:AnswBtch xmlns:b="{NS_BATCH}" xmlns:h="{NS_HEAD}" xmlns:r="{NS_AUTH002}" xmlns:jp="{NS_JP}">"#
        ))
        .leaf("b:BtchId", batch_id)
        .leaf("b:InstnCd", institution.as_str())
        .leaf("b:CreDtTm", &created)
        .leaf("b:NbOfMsgs", &answers.len().to_string());
    for a in answers {
        out.open("b:Msg");
        app_hdr(
            &mut out,
            (institution.as_str(), "ZENGIN"),
            (office, "SHOKAI-OFFICE"),
            &a.answer.response_id,
            "auth.002.001.01",
            &created,
        );
        encode_response(&mut out, a);
        out.close("b:Msg");
    }
    out.close("b:AnswBtch");
    out.buf.into_bytes()
}

fn encode_response(out: &mut Out, a: &OutgoingAnswer) {
    let kinds: Vec<InquiryKind> = if a.kinds.is_empty() {
        vec![InquiryKind::Existence]
    } else {
        a.kinds.clone()
    };
    let status = match a.answer.outcome {
        Outcome::Refused { .. } => "NRES",
        _ => "COMP",
    };
    out.open("r:Document")
        .open("r:InfReqRspn")
        .leaf("r:RspnId", &a.answer.response_id)
        .leaf("r:InvstgtnId", a.answer.inquiry_id.as_str())
        .leaf("r:RspnSts", status)
        .raw("<r:SchCrit><r:CstmrId><r:Pty>")
        .leaf("r:Nm", &a.zengin_name)
        .raw("</r:Pty>");
    for k in &kinds {
        out.raw("<r:AuthrtyReq><r:Tp>")
            .leaf("r:MsgNmId", k.message_name())
            .raw("</r:Tp><r:InvstgtdRoles><r:Cd>ALLP</r:Cd></r:InvstgtdRoles></r:AuthrtyReq>");
    }
    out.raw("</r:CstmrId></r:SchCrit>");
    for k in &kinds {
        out.raw("<r:RtrInd><r:AuthrtyReqTp>")
            .leaf("r:MsgNmId", k.message_name())
            .raw("</r:AuthrtyReqTp><r:InvstgtnRslt>");
        match &a.answer.outcome {
            Outcome::NotFound => {
                out.leaf("r:InvstgtnSts", "NFOU").close("r:InvstgtnRslt");
            }
            Outcome::Refused { code, reason } => {
                out.leaf("r:InvstgtnSts", "NOAP")
                    .close("r:InvstgtnRslt")
                    .leaf("r:AddtlInf", &truncate(&format!("{code} {reason}"), 500));
            }
            Outcome::Found { .. } if *k == InquiryKind::Existence => {
                out.leaf("r:InvstgtnSts", "FOUN").close("r:InvstgtnRslt");
            }
            Outcome::Found {
                accounts,
                other_holdings,
            } => {
                out.raw("<r:Rslt>");
                encode_deposit_report(
                    out,
                    accounts,
                    other_holdings,
                    *k == InquiryKind::Transactions,
                );
                out.raw("</r:Rslt>").close("r:InvstgtnRslt");
            }
        }
        out.close("r:RtrInd");
    }
    out.close("r:InfReqRspn").close("r:Document");
}

fn encode_deposit_report(
    out: &mut Out,
    accounts: &[Account],
    other: &[OtherHolding],
    with_transactions: bool,
) {
    out.open("jp:DpstRpt");
    for a in accounts {
        out.open("jp:Acct")
            .leaf("jp:BrnchCd", a.branch.as_str())
            .leaf("jp:Tp", a.account_type.code())
            .leaf("jp:Nb", &a.number)
            .leaf("jp:HldrNm", &a.holder_kana)
            .leaf("jp:Bal", &a.balance.unwrap_or(0).to_string())
            .leaf(
                "jp:AsOfDt",
                &a.as_of.map(|d| d.to_string()).unwrap_or_default(),
            )
            .opt_leaf(
                "jp:LastTxDt",
                a.last_transaction.map(|d| d.to_string()).as_deref(),
            );
        if with_transactions {
            for t in &a.transactions {
                out.open("jp:Tx")
                    .leaf("jp:Dt", &t.date.to_string())
                    .opt_leaf("jp:Desc", t.description.as_deref())
                    .opt_leaf("jp:Dbt", t.debit.map(|v| v.to_string()).as_deref())
                    .opt_leaf("jp:Cdt", t.credit.map(|v| v.to_string()).as_deref())
                    .leaf("jp:Bal", &t.balance.to_string())
                    .close("jp:Tx");
            }
        }
        out.close("jp:Acct");
    }
    for o in other {
        out.open("jp:OthrHldg")
            .leaf("jp:Tp", &o.kind)
            .leaf("jp:Desc", &o.description)
            .close("jp:OthrHldg");
    }
    out.close("jp:DpstRpt");
}

/// One answer of a batch that could not be read. The batch goes on; this
/// answer is rejected with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerItemError {
    pub response_id: String,
    pub inquiry_id: String,
    pub error: CodecError,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerBatch {
    pub batch_id: String,
    pub institution: InstitutionCode,
    pub items: Vec<Result<Answer, AnswerItemError>>,
}

/// The gateway side: reads an answer batch. Envelope errors refuse the whole
/// batch; an unreadable answer inside it is refused alone.
pub fn decode_answer_batch(bytes: &[u8], limits: &Limits) -> Result<AnswerBatch, CodecError> {
    let doc = parse(bytes, limits)?;
    let root = doc.root().expect(NS_BATCH, "AnswBtch")?;
    let batch_id = root.text_at(&["BtchId"])?.to_owned();
    if longer_than(&batch_id, 35) {
        return Err(invalid("BtchId is longer than 35 characters"));
    }
    let institution =
        InstitutionCode::parse(root.text_at(&["InstnCd"])?).map_err(|e| invalid(e.message))?;
    let msgs: Vec<Element> = root.children_named("Msg").collect();
    check_count(root, msgs.len())?;
    let items = msgs.into_iter().map(decode_answer_msg).collect();
    Ok(AnswerBatch {
        batch_id,
        institution,
        items,
    })
}

fn decode_answer_msg(msg: Element<'_>) -> Result<Answer, AnswerItemError> {
    let doc = msg.children().nth(1);
    let rsp = doc.and_then(|d| d.child("InfReqRspn"));
    let id_of = |path: &[&str]| {
        rsp.and_then(|r| r.opt_text_at(path))
            .unwrap_or_default()
            .chars()
            .take(35)
            .collect::<String>()
    };
    let fail = |error: CodecError| AnswerItemError {
        response_id: id_of(&["RspnId"]),
        inquiry_id: id_of(&["InvstgtnId"]),
        error,
    };
    let hdr = msg
        .children()
        .next()
        .ok_or_else(|| CodecError::new("missing_element", "Msg has no AppHdr"))
        .and_then(|h| h.expect(NS_HEAD, "AppHdr"))
        .map_err(fail)?;
    if hdr.opt_text_at(&["MsgDefIdr"]) != Some("auth.002.001.01") {
        return Err(fail(CodecError::new(
            "wrong_message",
            "MsgDefIdr must be auth.002.001.01",
        )));
    }
    doc.ok_or_else(|| CodecError::new("missing_element", "Msg has no Document"))
        .and_then(|d| d.expect(NS_AUTH002, "Document"))
        .map_err(fail)?;
    let rsp = rsp.ok_or_else(|| {
        fail(CodecError::new(
            "wrong_message",
            "Document holds no InfReqRspn",
        ))
    })?;
    decode_response(rsp).map_err(fail)
}

fn decode_response(rsp: Element<'_>) -> Result<Answer, CodecError> {
    let response_id = rsp.text_at(&["RspnId"])?;
    if longer_than(response_id, 35) {
        return Err(invalid("RspnId is longer than 35 characters"));
    }
    let inquiry_id =
        InquiryId::parse(rsp.text_at(&["InvstgtnId"])?).map_err(|e| invalid(e.message))?;
    let status = rsp.text_at(&["RspnSts"])?;
    if !matches!(status, "COMP" | "PART" | "NRES") {
        return Err(invalid(format!(
            "RspnSts '{status}' is not COMP, PART or NRES"
        )));
    }
    let indicators: Vec<Element> = rsp.children_named("RtrInd").collect();
    if indicators.is_empty() {
        return Err(CodecError::new(
            "missing_element",
            "InfReqRspn has no RtrInd",
        ));
    }
    let mut found = false;
    let mut not_found = false;
    let mut refusal: Option<(String, String)> = None;
    let mut reports: Vec<(InquiryKind, Vec<Account>, Vec<OtherHolding>)> = Vec::new();
    for ind in indicators {
        let kind_name = ind.text_at(&["AuthrtyReqTp", "MsgNmId"])?;
        let kind = InquiryKind::from_message_name(kind_name)
            .ok_or_else(|| invalid(format!("unknown AuthrtyReqTp/MsgNmId '{kind_name}'")))?;
        let result = ind
            .child("InvstgtnRslt")
            .ok_or_else(|| CodecError::new("missing_element", "RtrInd has no InvstgtnRslt"))?;
        if let Some(rslt) = result.child("Rslt") {
            let report = rslt.single_child()?.expect(NS_JP, "DpstRpt")?;
            let (accounts, other) = decode_deposit_report(report)?;
            reports.push((kind, accounts, other));
            found = true;
            continue;
        }
        match result.text_at(&["InvstgtnSts"])? {
            "FOUN" => found = true,
            "NFOU" => not_found = true,
            "NOAP" => {
                let info = ind.opt_text_at(&["AddtlInf"]).unwrap_or("OTHR");
                let (code, reason) = info.split_once(' ').unwrap_or((info, ""));
                refusal = Some((truncate(code, 4), reason.trim().to_owned()));
            }
            other => {
                return Err(invalid(format!(
                    "InvstgtnSts '{other}' is not FOUN, NFOU or NOAP"
                )));
            }
        }
    }
    let outcome = if status == "NRES" || refusal.is_some() {
        let (code, reason) = refusal.unwrap_or_else(|| ("OTHR".into(), String::new()));
        Outcome::Refused { code, reason }
    } else if found {
        merge_reports(reports)
    } else if not_found {
        Outcome::NotFound
    } else {
        return Err(invalid("the answer says neither found nor not found"));
    };
    Ok(Answer {
        inquiry_id,
        response_id: response_id.to_owned(),
        outcome,
    })
}

/// Balance and transaction reports describe the same accounts: one list,
/// with transactions taken from the transaction report.
fn merge_reports(mut reports: Vec<(InquiryKind, Vec<Account>, Vec<OtherHolding>)>) -> Outcome {
    reports.sort_by_key(|(k, _, _)| *k);
    let mut accounts: Vec<Account> = Vec::new();
    let mut other_holdings: Vec<OtherHolding> = Vec::new();
    for (_, list, other) in reports {
        for a in list {
            match accounts.iter_mut().find(|x| {
                x.branch == a.branch && x.account_type == a.account_type && x.number == a.number
            }) {
                Some(existing) => {
                    if existing.transactions.is_empty() {
                        existing.transactions = a.transactions;
                    }
                    existing.balance = existing.balance.or(a.balance);
                    existing.as_of = existing.as_of.or(a.as_of);
                    existing.last_transaction = existing.last_transaction.or(a.last_transaction);
                }
                None => accounts.push(a),
            }
        }
        for o in other {
            if !other_holdings.contains(&o) {
                other_holdings.push(o);
            }
        }
    }
    Outcome::Found {
        accounts,
        other_holdings,
    }
}

fn decode_deposit_report(
    rpt: Element<'_>,
) -> Result<(Vec<Account>, Vec<OtherHolding>), CodecError> {
    let mut accounts = Vec::new();
    for a in rpt.children_named("Acct") {
        let holder = a.text_at(&["HldrNm"])?;
        if longer_than(holder, crate::domain::kana::MAX_ZENGIN_LEN) {
            return Err(invalid("HldrNm is longer than 30 characters"));
        }
        let mut transactions = Vec::new();
        for t in a.children_named("Tx") {
            let debit = t.path(&["Dbt"]).map(|_| amount(t, &["Dbt"])).transpose()?;
            let credit = t.path(&["Cdt"]).map(|_| amount(t, &["Cdt"])).transpose()?;
            if debit.is_some() == credit.is_some() {
                return Err(invalid("a transaction has exactly one of Dbt and Cdt"));
            }
            if debit.is_some_and(|v| v < 0) || credit.is_some_and(|v| v < 0) {
                return Err(invalid("Dbt and Cdt are not negative"));
            }
            transactions.push(Transaction {
                date: date(t, &["Dt"])?,
                description: t.opt_text_at(&["Desc"]).map(|d| truncate(d, 140)),
                debit,
                credit,
                balance: amount(t, &["Bal"])?,
            });
        }
        accounts.push(Account {
            branch: BranchCode::parse(a.text_at(&["BrnchCd"])?).map_err(|e| invalid(e.message))?,
            account_type: AccountType::parse(a.text_at(&["Tp"])?)
                .map_err(|e| invalid(e.message))?,
            number: parse_account_number(a.text_at(&["Nb"])?).map_err(|e| invalid(e.message))?,
            holder_kana: holder.to_owned(),
            balance: Some(amount(a, &["Bal"])?),
            as_of: Some(date(a, &["AsOfDt"])?),
            last_transaction: opt_date(a, &["LastTxDt"])?,
            transactions,
        });
    }
    let other = rpt
        .children_named("OthrHldg")
        .map(|o| {
            let kind = o.text_at(&["Tp"])?;
            if !matches!(kind, "COLL" | "SAFE") {
                return Err(invalid(format!("OthrHldg/Tp '{kind}' is not COLL or SAFE")));
            }
            Ok(OtherHolding {
                kind: kind.to_owned(),
                description: truncate(o.text_at(&["Desc"])?, 140),
            })
        })
        .collect::<Result<_, _>>()?;
    Ok((accounts, other))
}

/// How the gateway judged one answer of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AnswerStatus {
    Accepted,
    Duplicate,
    Rejected {
        reason_code: String,
        reason_text: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerResult {
    pub response_id: String,
    pub inquiry_id: String,
    pub status: AnswerStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnswerBatchReceipt {
    pub batch_id: String,
    /// `None` when every answer was processed; the reason when the whole
    /// batch was refused.
    pub rejection: Option<(String, String)>,
    pub results: Vec<AnswerResult>,
}

/// The receipts' reason code for "nothing was filed; send it again later".
pub const TRY_AGAIN_LATER: &str = "TEMP";

/// Maps our machine codes to the receipts' 4-character reason codes.
pub fn answer_reason_code(code: &str) -> &'static str {
    match code {
        "unknown_inquiry" => "UNKN",
        "inquiry_cancelled" => "CNCL",
        "not_delivered" => "NDLV",
        "illegal_transition" => "ILLT",
        "wrong_institution" => "INST",
        _ => "FRMT",
    }
}

pub fn encode_answer_batch_receipt(r: &AnswerBatchReceipt) -> Vec<u8> {
    let mut out = Out::with_capacity(256 + r.results.len() * 160);
    out.raw(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .raw(&format!(r#"<b:AnswBtchRct xmlns:b="{NS_BATCH}">"#))
        .leaf("b:BtchId", &truncate(&r.batch_id, 35))
        .leaf(
            "b:Sts",
            if r.rejection.is_some() {
                "RJCT"
            } else {
                "ACPT"
            },
        );
    if let Some((code, text)) = &r.rejection {
        out.leaf("b:RsnCd", code)
            .leaf("b:RsnTxt", &truncate(text, 140));
    }
    for res in &r.results {
        out.open("b:AnswRslt")
            .leaf("b:RspnId", &non_empty(&res.response_id))
            .leaf("b:InvstgtnId", &non_empty(&res.inquiry_id));
        match &res.status {
            AnswerStatus::Accepted => {
                out.leaf("b:Sts", "ACPT");
            }
            AnswerStatus::Duplicate => {
                out.leaf("b:Sts", "DUPL");
            }
            AnswerStatus::Rejected {
                reason_code,
                reason_text,
            } => {
                out.leaf("b:Sts", "RJCT")
                    .leaf("b:RsnCd", reason_code)
                    .leaf("b:RsnTxt", &truncate(reason_text, 140));
            }
        }
        out.close("b:AnswRslt");
    }
    out.close("b:AnswBtchRct");
    out.buf.into_bytes()
}

/// Ids echoed from unreadable answers may be missing; the schema wants text.
fn non_empty(s: &str) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s.to_owned()
    }
}

/// The bank side: reads the gateway's receipt for an answer batch.
pub fn decode_answer_batch_receipt(bytes: &[u8]) -> Result<AnswerBatchReceipt, CodecError> {
    let doc = parse(bytes, &Limits::default())?;
    let root = doc.root().expect(NS_BATCH, "AnswBtchRct")?;
    let rejection = match root.text_at(&["Sts"])? {
        "ACPT" => None,
        _ => Some((
            root.opt_text_at(&["RsnCd"]).unwrap_or("").to_owned(),
            root.opt_text_at(&["RsnTxt"]).unwrap_or("").to_owned(),
        )),
    };
    let results = root
        .children_named("AnswRslt")
        .map(|r| {
            let status = match r.text_at(&["Sts"])? {
                "ACPT" => AnswerStatus::Accepted,
                "DUPL" => AnswerStatus::Duplicate,
                _ => AnswerStatus::Rejected {
                    reason_code: r.opt_text_at(&["RsnCd"]).unwrap_or("").to_owned(),
                    reason_text: r.opt_text_at(&["RsnTxt"]).unwrap_or("").to_owned(),
                },
            };
            Ok(AnswerResult {
                response_id: r.text_at(&["RspnId"])?.to_owned(),
                inquiry_id: r.text_at(&["InvstgtnId"])?.to_owned(),
                status,
            })
        })
        .collect::<Result<_, CodecError>>()?;
    Ok(AnswerBatchReceipt {
        batch_id: root.text_at(&["BtchId"])?.to_owned(),
        rejection,
        results,
    })
}

#[cfg(test)]
mod tests;

/// One batch waiting for a pull institution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBatch {
    pub batch_id: String,
    pub created_at_ms: i64,
    pub count: u64,
}

/// The pull channel's listing of waiting batches.
pub fn encode_pending_batches(institution: &InstitutionCode, batches: &[PendingBatch]) -> Vec<u8> {
    let mut out = Out::with_capacity(128 + batches.len() * 160);
    out.raw(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .raw(&format!(r#"<b:PdgBtchs xmlns:b="{NS_BATCH}">"#))
        .leaf("b:InstnCd", institution.as_str());
    for b in batches {
        out.open("b:Btch")
            .leaf("b:BtchId", &b.batch_id)
            .leaf("b:CreDtTm", &iso_datetime(b.created_at_ms))
            .leaf("b:NbOfMsgs", &b.count.to_string())
            .close("b:Btch");
    }
    out.close("b:PdgBtchs");
    out.buf.into_bytes()
}

/// The bank side: reads the listing.
pub fn decode_pending_batches(bytes: &[u8]) -> Result<Vec<PendingBatch>, CodecError> {
    let doc = parse(bytes, &Limits::default())?;
    let root = doc.root().expect(NS_BATCH, "PdgBtchs")?;
    root.children_named("Btch")
        .map(|b| {
            let created = b.text_at(&["CreDtTm"])?;
            Ok(PendingBatch {
                batch_id: b.text_at(&["BtchId"])?.to_owned(),
                created_at_ms: chrono::DateTime::parse_from_rfc3339(created)
                    .map_err(|_| invalid(format!("CreDtTm '{created}' is not a time")))?
                    .timestamp_millis(),
                count: b
                    .text_at(&["NbOfMsgs"])?
                    .parse()
                    .map_err(|_| invalid("NbOfMsgs is not a number"))?,
            })
        })
        .collect()
}

/// For the onboarding kit: a batch envelope padded with a comment to
/// `bytes`, which a bank must refuse as too large.
pub fn probe_oversize_batch(bytes: usize) -> Vec<u8> {
    let mut out = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><b:InqryBtch xmlns:b="{NS_BATCH}"><b:BtchId>OVERSIZE</b:BtchId><!--"#
    )
    .into_bytes();
    out.resize(bytes.max(out.len()), b'x');
    out.extend_from_slice(b"--></b:InqryBtch>");
    out
}

/// For the onboarding kit: a batch that is not well-formed XML.
pub fn probe_malformed_batch() -> Vec<u8> {
    format!(r#"<b:InqryBtch xmlns:b="{NS_BATCH}"><unclosed>"#).into_bytes()
}
