//! Mock department systems for the demo and the tests: the seven
//! departments' pull APIs over HTTPS on one listener
//! (`https://ADDR/{department}/records/search`), and CSV exports for the
//! departments a gateway reads by file linkage.
//!
//! The population is the people registered with [`MockDepartments::register`]
//! (or `POST /control/people`); anyone else is not a resident and gets
//! `not_found`. Records are derived from a hash of the person, so the same
//! person always has the same income, allowances and pension until changed
//! with [`MockDepartments::change`] (or `POST /control/change`). A
//! department can be slowed down or made to fail, to test timeouts.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::connectors::file::HEADER;
use crate::connectors::pull::{SearchRequest, SearchResponse, WireRecord, WireResult, WireStatus};
use crate::domain::department::{Department, RecordKind, encode_fields};
use crate::domain::kana::KanaName;
use crate::domain::time::{jst_date, now_millis};
use crate::pki::PkiLayout;
use crate::tls::{Identity, server_config};

/// A resident, as the mock's registry knows them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Person {
    pub kana_name: String,
    #[serde(default)]
    pub kanji_name: Option<String>,
    pub birth_date: NaiveDate,
    /// People with the same household key live together.
    pub household: String,
    /// 続柄: 世帯主, 妻, 夫, 子, 母, 父 …
    pub relationship: String,
    #[serde(default)]
    pub address: Option<String>,
}

/// A change to one person's record of one kind: replaces the named amounts
/// and attributes and the effective date, adds the record if the person had
/// none of that kind, or removes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Change {
    pub kana_name: String,
    pub birth_date: NaiveDate,
    pub kind: String,
    pub effective_date: NaiveDate,
    #[serde(default)]
    pub amounts: BTreeMap<String, i64>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub remove: bool,
}

/// Slows a department down or makes it fail (HTTP 503).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    pub department: String,
    #[serde(default)]
    pub delay_ms: u64,
    #[serde(default)]
    pub fail: bool,
}

#[derive(Default)]
struct State {
    /// By the person's key (kana match key and birth date).
    people: BTreeMap<String, Person>,
    changes: HashMap<(String, RecordKind), Change>,
    faults: HashMap<Department, Fault>,
    /// Where `POST /control/export` writes each file-linkage department.
    exports: Vec<(Department, PathBuf)>,
}

fn person_key(kana: &str, birth: NaiveDate) -> Option<String> {
    Some(format!(
        "{}|{birth}",
        KanaName::parse(kana).ok()?.match_key()
    ))
}

fn digest(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    h.finalize().into()
}

/// The registry's person number (宛名番号) for a person.
fn atena(key: &str) -> String {
    format!("A{}", &hex::encode(digest(&[key]))[..10])
}

fn household_id(household: &str) -> String {
    format!("H{}", &hex::encode(digest(&["household", household]))[..10])
}

fn age_on(birth: NaiveDate, day: NaiveDate) -> i32 {
    let mut age = day.year() - birth.year();
    if (day.month(), day.day()) < (birth.month(), birth.day()) {
        age -= 1;
    }
    age
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

fn record(
    id: String,
    kind: RecordKind,
    effective: NaiveDate,
    amounts: &[(&str, i64)],
    attributes: &[(&str, String)],
) -> WireRecord {
    WireRecord {
        record_id: id,
        kind: kind.as_str().to_owned(),
        effective_date: effective,
        amounts: amounts.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
        attributes: attributes
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    }
}

impl State {
    fn register(&mut self, people: Vec<Person>) -> anyhow::Result<()> {
        for p in people {
            let key = person_key(&p.kana_name, p.birth_date)
                .ok_or_else(|| anyhow::anyhow!("'{}' is not a kana name", p.kana_name))?;
            self.people.insert(key, p);
        }
        Ok(())
    }

    fn change(&mut self, change: Change) -> anyhow::Result<()> {
        let key = person_key(&change.kana_name, change.birth_date)
            .ok_or_else(|| anyhow::anyhow!("'{}' is not a kana name", change.kana_name))?;
        let kind = RecordKind::ALL
            .into_iter()
            .find(|k| k.as_str() == change.kind)
            .ok_or_else(|| anyhow::anyhow!("unknown record kind '{}'", change.kind))?;
        anyhow::ensure!(self.people.contains_key(&key), "no such person registered");
        self.changes.insert((key, kind), change);
        Ok(())
    }

    fn set_fault(&mut self, fault: Fault) -> anyhow::Result<()> {
        let department = Department::parse(&fault.department)?;
        self.faults.insert(department, fault);
        Ok(())
    }

    /// What `department` holds about the person with `key`, before changes.
    fn base_records(&self, key: &str, department: Department, today: NaiveDate) -> Vec<WireRecord> {
        let Some(p) = self.people.get(key) else {
            return Vec::new();
        };
        let id = atena(key);
        let h = digest(&[key, "income"]);
        let age = age_on(p.birth_date, today);
        let members: Vec<(&String, &Person)> = self
            .people
            .iter()
            .filter(|(_, q)| q.household == p.household)
            .collect();
        let children = members
            .iter()
            .filter(|(_, q)| age_on(q.birth_date, today) < 18)
            .count() as i64;
        let head = p.relationship == "世帯主";
        let has_partner = members
            .iter()
            .any(|(_, q)| matches!(q.relationship.as_str(), "妻" | "夫"));
        let fy = today.year();
        let moved_in = date(2020, 4, 1).max(p.birth_date);
        use RecordKind as K;
        match department {
            Department::ResidentRegistry => {
                let hid = household_id(&p.household);
                let mut out = vec![record(
                    format!("RES-{id}"),
                    K::Residence,
                    moved_in,
                    &[],
                    &[
                        ("status", "resident".to_owned()),
                        ("household_id", hid.clone()),
                        ("relationship", p.relationship.clone()),
                        ("address", p.address.clone().unwrap_or_default()),
                    ],
                )];
                let mut ids: Vec<String> = members.iter().map(|(k, _)| atena(k)).collect();
                ids.sort();
                out.push(record(
                    format!("HH-{hid}"),
                    K::Household,
                    date(2020, 4, 1),
                    &[],
                    &[
                        ("member_count", members.len().to_string()),
                        ("members", ids.join(" ")),
                    ],
                ));
                out
            }
            Department::Tax if age >= 16 => {
                let income = if age >= 65 {
                    i64::from(h[0] % 12) * 100_000
                } else {
                    i64::from(h[0] % 25) * 100_000
                };
                let income_type = if age >= 65 {
                    "年金"
                } else if income > 0 {
                    "給与"
                } else {
                    "なし"
                };
                let mut out = vec![record(
                    format!("TAX-{id}-{fy}-A"),
                    K::AssessedIncome,
                    date(fy, 6, 1),
                    &[("annual_income", income)],
                    &[
                        ("fiscal_year", fy.to_string()),
                        ("income_type", income_type.to_owned()),
                    ],
                )];
                if h[1].is_multiple_of(4) && age < 65 {
                    out.push(record(
                        format!("TAX-{id}-{fy}-D"),
                        K::DeclaredIncome,
                        date(fy, 3, 15),
                        &[("annual_income", i64::from(h[2] % 10) * 100_000)],
                        &[
                            ("fiscal_year", fy.to_string()),
                            ("income_type", "事業".to_owned()),
                        ],
                    ));
                }
                out
            }
            Department::ChildAllowance if head && children > 0 => vec![record(
                format!("JA-{id}"),
                K::ChildAllowance,
                date(2024, 10, 1),
                &[("monthly_amount", 10_000 * children)],
                &[
                    ("status", "active".to_owned()),
                    ("children", children.to_string()),
                ],
            )],
            Department::ChildRearingAllowance if head && children > 0 && !has_partner => {
                let mut out = vec![record(
                    format!("JF-{id}"),
                    K::ChildRearingAllowance,
                    date(2023, 4, 1),
                    &[("monthly_amount", 46_690 + 11_030 * (children - 1))],
                    &[("status", "active".to_owned())],
                )];
                if h[3].is_multiple_of(3) {
                    out.push(record(
                        format!("TJ-{id}"),
                        K::SpecialChildRearingAllowance,
                        date(2024, 4, 1),
                        &[("monthly_amount", 37_830)],
                        &[("status", "active".to_owned()), ("grade", "2".to_owned())],
                    ));
                }
                out
            }
            Department::NationalHealthInsurance if age < 75 => vec![record(
                format!("KH-{id}"),
                K::HealthInsurance,
                moved_in,
                &[("annual_premium", 20_000 + i64::from(h[4] % 10) * 10_000)],
                &[("status", "enrolled".to_owned())],
            )],
            Department::LongTermCare if age >= 65 => {
                let mut out = vec![record(
                    format!("KP-{id}"),
                    K::CarePremium,
                    date(fy, 4, 1),
                    &[("annual_premium", 74_000)],
                    &[("status", "active".to_owned())],
                )];
                if age >= 75 && h[5].is_multiple_of(2) {
                    out.push(record(
                        format!("KN-{id}"),
                        K::CareCertification,
                        date(fy - 1, 10, 1),
                        &[],
                        &[
                            ("care_level", "要介護2".to_owned()),
                            ("valid_until", format!("{}-09-30", fy + 1)),
                        ],
                    ));
                }
                out
            }
            Department::Pension if age >= 65 || (age >= 20 && h[6].is_multiple_of(8)) => {
                let (kind, amount) = if age >= 65 {
                    ("老齢基礎年金", 831_700)
                } else {
                    ("障害基礎年金", 1_039_625)
                };
                vec![record(
                    format!("NK-{id}"),
                    K::PensionBenefit,
                    date(2024, 4, 1),
                    &[("annual_amount", amount)],
                    &[
                        ("pension_type", kind.to_owned()),
                        ("payer", "日本年金機構".to_owned()),
                    ],
                )]
            }
            _ => Vec::new(),
        }
    }

    /// The records with the changes applied.
    fn records(&self, key: &str, department: Department, today: NaiveDate) -> Vec<WireRecord> {
        let mut out = self.base_records(key, department, today);
        for ((k, kind), change) in &self.changes {
            if k != key || kind.department() != department {
                continue;
            }
            let existing = out.iter().position(|r| r.kind == kind.as_str());
            match (existing, change.remove) {
                (Some(i), true) => {
                    out.remove(i);
                }
                (None, true) => {}
                (Some(i), false) => {
                    let r = &mut out[i];
                    r.effective_date = change.effective_date;
                    r.amounts.extend(change.amounts.clone());
                    r.attributes.extend(change.attributes.clone());
                }
                (None, false) => out.push(WireRecord {
                    record_id: format!("{}-{}", kind.as_str().to_uppercase(), atena(key)),
                    kind: kind.as_str().to_owned(),
                    effective_date: change.effective_date,
                    amounts: change.amounts.clone(),
                    attributes: change.attributes.clone(),
                }),
            }
        }
        out.sort_by(|a, b| a.record_id.cmp(&b.record_id));
        out
    }
}

#[derive(Clone)]
pub struct MockDepartments {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

impl MockDepartments {
    /// Serves the seven departments on `listen` with the PKI's
    /// departments certificate.
    pub async fn start(pki_dir: &Path, listen: SocketAddr) -> anyhow::Result<MockDepartments> {
        crate::tls::install_crypto_provider();
        let (cert, key) = PkiLayout::new(pki_dir).departments_server();
        let tls = server_config(&Identity::load(&cert, &key)?)?;
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let listener = std::net::TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(shared.clone()))
                .app_data(web::JsonConfig::default().limit(1024 * 1024))
                .route("/{department}/records/search", web::post().to(search))
                .route("/control/people", web::post().to(control_people))
                .route("/control/change", web::post().to(control_change))
                .route("/control/fault", web::post().to(control_fault))
                .route("/control/export", web::post().to(control_export))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen_rustls_0_23(listener, tls)?
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Ok(MockDepartments {
            addr,
            state,
            handle,
        })
    }

    /// The pull endpoint of a department, for `--department NAME=URL`.
    pub fn url(&self, department: Department) -> String {
        format!("https://{}/{}", self.addr, department.as_str())
    }

    pub fn register(&self, people: &[Person]) -> anyhow::Result<()> {
        self.state
            .lock()
            .expect("state lock")
            .register(people.to_vec())
    }

    pub fn change(&self, change: Change) -> anyhow::Result<()> {
        self.state.lock().expect("state lock").change(change)
    }

    pub fn set_fault(&self, department: Department, delay: Duration, fail: bool) {
        let fault = Fault {
            department: department.as_str().to_owned(),
            delay_ms: delay.as_millis() as u64,
            fail,
        };
        let _ = self.state.lock().expect("state lock").set_fault(fault);
    }

    /// Sets the folders `POST /control/export` writes to.
    pub fn set_exports(&self, exports: Vec<(Department, PathBuf)>) {
        self.state.lock().expect("state lock").exports = exports;
    }

    /// Writes the department's records about everyone registered as one
    /// linkage CSV in `dir` (written aside, then renamed), as the
    /// department's nightly export would.
    pub fn export_csv(&self, department: Department, dir: &Path) -> anyhow::Result<PathBuf> {
        export_csv(&self.state.lock().expect("state lock"), department, dir)
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }
}

fn export_csv(state: &State, department: Department, dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let text = {
        let today = jst_date(now_millis());
        let mut text = format!("{HEADER}\n");
        for (key, p) in &state.people {
            for r in state.records(key, department, today) {
                let fields = [
                    r.record_id,
                    r.kind,
                    p.kana_name.clone(),
                    p.birth_date.to_string(),
                    r.effective_date.to_string(),
                    encode_fields(&r.amounts),
                    encode_fields(&r.attributes),
                ];
                for (i, f) in fields.iter().enumerate() {
                    if i > 0 {
                        text.push(',');
                    }
                    crate::csv::push_field(&mut text, f);
                }
                text.push('\n');
            }
        }
        text
    };
    let name = format!(
        "{}-{}.csv",
        department.as_str(),
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3f")
    );
    let part = dir.join(format!("{name}.part"));
    std::fs::write(&part, text)?;
    let path = dir.join(name);
    std::fs::rename(&part, &path)?;
    Ok(path)
}

type Shared = web::Data<Arc<Mutex<State>>>;

async fn search(
    state: Shared,
    department: web::Path<String>,
    body: web::Json<SearchRequest>,
) -> HttpResponse {
    let Ok(department) = Department::parse(&department) else {
        return HttpResponse::NotFound().finish();
    };
    let fault = state
        .lock()
        .expect("state lock")
        .faults
        .get(&department)
        .cloned();
    if let Some(f) = fault {
        tokio::time::sleep(Duration::from_millis(f.delay_ms)).await;
        if f.fail {
            return HttpResponse::ServiceUnavailable().finish();
        }
    }
    let today = jst_date(now_millis());
    let s = state.lock().expect("state lock");
    let results = body
        .subjects
        .iter()
        .map(|subject| {
            let key = person_key(&subject.kana_name, subject.birth_date);
            match key.filter(|k| s.people.contains_key(k)) {
                None => WireResult {
                    reference: subject.reference.clone(),
                    status: WireStatus::NotFound,
                    message: None,
                    records: Vec::new(),
                },
                Some(key) => WireResult {
                    reference: subject.reference.clone(),
                    status: WireStatus::Found,
                    message: None,
                    records: s.records(&key, department, today),
                },
            }
        })
        .collect();
    HttpResponse::Ok().json(SearchResponse { results })
}

fn control_result(r: anyhow::Result<()>) -> HttpResponse {
    match r {
        Ok(()) => HttpResponse::NoContent().finish(),
        Err(e) => HttpResponse::BadRequest().body(e.to_string()),
    }
}

async fn control_people(state: Shared, body: web::Json<Vec<Person>>) -> HttpResponse {
    control_result(
        state
            .lock()
            .expect("state lock")
            .register(body.into_inner()),
    )
}

async fn control_change(state: Shared, body: web::Json<Change>) -> HttpResponse {
    control_result(state.lock().expect("state lock").change(body.into_inner()))
}

async fn control_fault(state: Shared, body: web::Json<Fault>) -> HttpResponse {
    control_result(
        state
            .lock()
            .expect("state lock")
            .set_fault(body.into_inner()),
    )
}

/// Writes a fresh CSV for every file-linkage department, as a nightly run.
async fn control_export(state: Shared) -> HttpResponse {
    let s = state.lock().expect("state lock");
    let written: anyhow::Result<Vec<String>> = s
        .exports
        .iter()
        .map(|(d, dir)| Ok(export_csv(&s, *d, dir)?.display().to_string()))
        .collect();
    match written {
        Ok(paths) => HttpResponse::Ok().body(paths.join("\n")),
        Err(e) => HttpResponse::InternalServerError().body(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn household() -> State {
        let mut s = State::default();
        for (kana, birth, rel) in [
            ("ヤマダ ハナコ", date(1985, 5, 10), "世帯主"),
            ("ヤマダ タロウ", date(2012, 8, 1), "子"),
            ("ヤマダ ジロウ", date(2016, 2, 29), "子"),
            ("ヤマダ トメ", date(1948, 1, 3), "母"),
        ] {
            let p = Person {
                kana_name: kana.to_owned(),
                kanji_name: None,
                birth_date: birth,
                household: "case-1".to_owned(),
                relationship: rel.to_owned(),
                address: Some("東京都千代田区1-1".to_owned()),
            };
            s.people.insert(person_key(kana, birth).unwrap(), p);
        }
        s
    }

    #[test]
    fn a_household_has_records_in_every_department_and_they_are_stable() {
        let s = household();
        let today = date(2026, 11, 23);
        for d in Department::ALL {
            let all: Vec<_> = s
                .people
                .keys()
                .flat_map(|k| s.records(k, d, today))
                .collect();
            assert!(!all.is_empty(), "{} has nothing", d.as_str());
            for r in &all {
                assert_eq!(RecordKind::parse(d, &r.kind).unwrap().department(), d);
            }
        }
        let key = person_key("ヤマダ ハナコ", date(1985, 5, 10)).unwrap();
        assert_eq!(
            s.records(&key, Department::Tax, today)[0].amounts,
            s.records(&key, Department::Tax, today)[0].amounts
        );
    }

    #[test]
    fn a_change_replaces_the_named_fields() {
        let mut s = household();
        let key = person_key("ヤマダ ハナコ", date(1985, 5, 10)).unwrap();
        s.changes.insert(
            (key.clone(), RecordKind::AssessedIncome),
            Change {
                kana_name: "ヤマダ ハナコ".to_owned(),
                birth_date: date(1985, 5, 10),
                kind: "assessed_income".to_owned(),
                effective_date: date(2026, 11, 1),
                amounts: [("annual_income".to_owned(), 3_600_000)].into(),
                attributes: BTreeMap::new(),
                remove: false,
            },
        );
        let tax = s.records(&key, Department::Tax, date(2026, 11, 23));
        let assessed = tax.iter().find(|r| r.kind == "assessed_income").unwrap();
        assert_eq!(assessed.amounts["annual_income"], 3_600_000);
        assert_eq!(assessed.effective_date, date(2026, 11, 1));
    }
}
