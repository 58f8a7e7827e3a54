//! The file-linkage transport: the department drops CSV files (UTF-8, a
//! header line, one record per line) in its folder. Each file is picked up
//! once: its good rows are loaded into the store, its malformed rows are
//! reported by line number, and the file moves to `processed/`. A fetch
//! first picks up new files, then reads the loaded records of each subject.
//!
//! Departments write `NAME.csv.part` and rename it to `NAME.csv` when
//! complete, so a half-written file is never read.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures_util::future::BoxFuture;
use sha2::{Digest, Sha256};

use super::{Connector, ConnectorError, Fetched, Transport};
use crate::domain::department::{
    Department, PersonRecord, RecordKind, SubjectQuery, decode_amounts, decode_fields,
};
use crate::domain::kana::KanaName;
use crate::domain::time::now_millis;
use crate::store::{LinkageImport, Store, StoreError};

pub const HEADER: &str = "record_id,kind,kana_name,birth_date,effective_date,amounts,attributes";

/// The largest file read; a department's monthly extract is far smaller.
pub const MAX_FILE_BYTES: u64 = 256 * 1024 * 1024;

fn parse_row(department: Department, f: &[String]) -> Result<PersonRecord, String> {
    if f.len() != 7 {
        return Err(format!("expected 7 fields, found {}", f.len()));
    }
    // Reasons name the field, never its value: they reach logs and people
    // who may not see this person's data.
    let date = |name: &str, raw: &str| {
        crate::domain::time::parse_date(name, raw.trim())
            .map_err(|_| format!("{name} is not a date in the form YYYY-MM-DD"))
    };
    let record = PersonRecord {
        department,
        kind: RecordKind::parse(department, f[1].trim()).map_err(|e| e.message)?,
        source_id: f[0].trim().to_owned(),
        kana_name: KanaName::parse(&f[2])
            .map_err(|_| "kana_name is not a name in kana".to_owned())?,
        birth_date: date("birth_date", &f[3])?,
        effective_date: date("effective_date", &f[4])?,
        amounts: decode_amounts(&f[5]).map_err(|e| e.message)?,
        attributes: decode_fields(&f[6]).map_err(|e| e.message)?,
    };
    // The same checks as the pull API's records.
    record.validate().map_err(|e| e.message)
}

/// Parses a linkage file: the good rows, and `line N: reason` for each bad
/// one (line numbers count from 1, the header being line 1). A file whose
/// header is wrong loads nothing.
pub fn parse_csv(department: Department, text: &str) -> (Vec<PersonRecord>, Vec<String>) {
    let lines = match crate::csv::records(text, HEADER) {
        Ok(lines) => lines,
        Err(e) => return (Vec::new(), vec![e]),
    };
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    let mut ids = HashSet::new();
    for (n, fields) in lines {
        match fields.and_then(|f| parse_row(department, &f)) {
            Ok(r) if !ids.insert(r.source_id.clone()) => {
                errors.push(format!(
                    "line {n}: record id '{}' appears twice",
                    r.source_id
                ));
            }
            Ok(r) => rows.push(r),
            Err(why) => errors.push(format!("line {n}: {why}")),
        }
    }
    (rows, errors)
}

/// What picking up one file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Import {
    pub file_name: String,
    pub loaded: usize,
    pub errors: Vec<String>,
}

pub struct FileConnector {
    department: Department,
    inner: Arc<Pickup>,
}

/// The folder's pickup, shared with the task that runs it.
struct Pickup {
    department: Department,
    dir: PathBuf,
    store: Store,
    /// One pickup at a time per folder in this process; across processes the
    /// store loads a content once and a file another process moved is skipped.
    running: tokio::sync::Mutex<()>,
}

/// Whether a file replaces the department's records (a full extract, the
/// default) or only adds and updates some (`*.delta.csv`).
pub fn is_delta(file_name: &str) -> bool {
    file_name.ends_with(".delta.csv")
}

impl FileConnector {
    pub fn new(department: Department, dir: PathBuf, store: Store) -> Self {
        Self {
            department,
            inner: Arc::new(Pickup {
                department,
                dir,
                store,
                running: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// Loads every new `*.csv` in the folder, oldest name first, and moves
    /// each to `processed/`. It runs as a task of its own, so a fetch that
    /// times out does not abandon an import half way: the next fetch sees it.
    pub async fn pick_up(&self) -> Result<Vec<Import>, ConnectorError> {
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.run().await })
            .await
            .map_err(|e| ConnectorError::Io(format!("linkage pickup stopped: {e}")))?
    }
}

impl Pickup {
    async fn run(&self) -> Result<Vec<Import>, ConnectorError> {
        let _one = self.running.lock().await;
        let io = |e: std::io::Error| ConnectorError::Io(format!("{}: {e}", self.dir.display()));
        let mut names = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir).await.map_err(io)?;
        while let Some(e) = entries.next_entry().await.map_err(io)? {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.ends_with(".csv") && e.file_type().await.map_err(io)?.is_file() {
                names.push(name);
            }
        }
        names.sort();
        let mut imports = Vec::new();
        for name in names {
            let path = self.dir.join(&name);
            let bytes = match tokio::fs::metadata(&path).await {
                Ok(m) if m.len() > MAX_FILE_BYTES => {
                    imports.push(Import {
                        file_name: name,
                        loaded: 0,
                        errors: vec![format!("larger than {MAX_FILE_BYTES} bytes: not read")],
                    });
                    continue;
                }
                Ok(_) => match tokio::fs::read(&path).await {
                    Ok(b) => b,
                    // Another process picked it up meanwhile.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io(e)),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            let department = self.department;
            // Hashing and parsing a large file is CPU work: off the runtime.
            let (sha, parsed) = tokio::task::spawn_blocking(move || {
                let sha = hex::encode(Sha256::digest(&bytes));
                let parsed = match std::str::from_utf8(&bytes) {
                    Ok(text) => parse_csv(department, text),
                    Err(e) => (
                        Vec::new(),
                        vec![format!(
                            "the file is not UTF-8 (at byte {})",
                            e.valid_up_to()
                        )],
                    ),
                };
                (sha, parsed)
            })
            .await
            .map_err(|e| ConnectorError::Io(format!("parsing {name}: {e}")))?;
            if !self.store.linkage_file_seen(department, &sha).await? {
                let (rows, errors) = parsed;
                let import = LinkageImport {
                    department,
                    file_name: &name,
                    sha256: &sha,
                    rows: &rows,
                    errors: &errors,
                    replace: !is_delta(&name),
                };
                match self.store.import_linkage_file(&import, now_millis()).await {
                    Ok(_) | Err(StoreError::Conflict(_)) => {}
                    Err(e) => return Err(e.into()),
                }
                imports.push(Import {
                    file_name: name.clone(),
                    loaded: rows.len(),
                    errors,
                });
            }
            match move_to_processed(&self.dir, &name).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        Ok(imports)
    }
}

async fn move_to_processed(dir: &Path, name: &str) -> std::io::Result<()> {
    let done = dir.join("processed");
    tokio::fs::create_dir_all(&done).await?;
    tokio::fs::rename(dir.join(name), done.join(name)).await
}

impl Connector for FileConnector {
    fn department(&self) -> Department {
        self.department
    }

    fn transport(&self) -> Transport {
        Transport::File
    }

    fn fetch<'a>(
        &'a self,
        subjects: &'a [SubjectQuery],
    ) -> BoxFuture<'a, Result<Fetched, ConnectorError>> {
        Box::pin(async move {
            let mut fetched = Fetched::default();
            for import in self.pick_up().await? {
                for e in import.errors {
                    fetched.warnings.push(format!("{}: {e}", import.file_name));
                }
            }
            for s in subjects {
                let mut records = self
                    .inner
                    .store
                    .linkage_records_for(self.department, &s.kana_name, s.birth_date, &s.subject)
                    .await?;
                fetched.records.append(&mut records);
            }
            Ok(fetched)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn good_rows_load_and_bad_rows_are_named_by_line() {
        let text = format!(
            "{HEADER}\n\
             T-1,assessed_income,ヤマダ タロウ,1980-01-01,2026-06-01,annual_income=1800000,fiscal_year=2026\n\
             T-2,assessed_income,ヤマダ ハナコ,1982-13-01,2026-06-01,annual_income=0,\n\
             \n\
             \"T-3\",declared_income,ﾔﾏﾀﾞ ｼﾞﾛｳ,2010-04-01,2026-03-15,annual_income=1,\"income_type=給与\"\n\
             T-4,residence,ヤマダ タロウ,1980-01-01,2026-06-01,,\n\
             T-1,assessed_income,ヤマダ タロウ,1980-01-01,2026-06-01,annual_income=1,\n"
        );
        let (rows, errors) = parse_csv(Department::Tax, &text);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].kana_name.as_str(), "ヤマダ ジロウ");
        assert_eq!(rows[1].attributes["income_type"], "給与");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("line 3: "), "{errors:?}");
        assert!(errors[1].starts_with("line 6: "), "{errors:?}");
        assert!(errors[2].starts_with("line 7: ") && errors[2].contains("twice"));
    }

    #[test]
    fn a_wrong_header_loads_nothing() {
        let (rows, errors) = parse_csv(Department::Tax, "id,kind\nT-1,assessed_income\n");
        assert!(rows.is_empty());
        assert!(errors[0].starts_with("line 1: the header"));
    }

    proptest! {
        #[test]
        fn any_text_parses_without_panicking(body in "\\PC{0,200}") {
            let text = format!("{HEADER}\n{body}");
            let (rows, errors) = parse_csv(Department::Pension, &text);
            let lines = text.lines().skip(1).filter(|l| !l.trim().is_empty()).count();
            prop_assert_eq!(rows.len() + errors.len(), lines);
        }

    }
}
