//! The store: the only code that writes SQL. One API over SQLite (the
//! embedded default, WAL) and PostgreSQL, through sqlx's `Any` driver with
//! runtime-built, portable SQL. What differs between the two dialects lives
//! in [`Dialect`] and in the per-dialect migration folders.
//!
//! The database is the queue: every state that matters is a row, and every
//! multi-row change is one transaction.

mod accounts;
mod answers;
mod audit;
mod bench;
mod cases;
mod departments;
mod feed;
mod institutions;
mod letters;
mod migrate;
mod overview;
mod queue;
mod retention;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, AssertSqlSafe, Row};

pub use accounts::UserRecord;
pub use answers::{ApplyOutcome, CaseFile, CaseFileEntry, StoredAccount, SubjectTotal};
pub use audit::AuditFilter;
pub use cases::{
    AlertChange, AlertRecord, CaseInsert, CaseRecord, CaseSummary, InquiryView, RequestInsert,
    RequestView, TokenRecord,
};
pub use departments::{
    FetchApply, FetchLogEntry, LinkageFileRecord, LinkageImport, RaisedChange,
    StoredDepartmentRecord,
};
pub use feed::{ClaimedEvent, FeedCounts};
pub use institutions::{Institution, InstitutionSettings};
pub use letters::{Letter, LetterLine, LetterSummary};
pub use overview::{InstitutionQueue, InstitutionRef};
pub use queue::{
    AttemptRecord, BatchFinish, BatchRow, ClaimedBatch, QueueGauges, QueueStats, QueuedInstitution,
};
pub use retention::PurgeCounts;

use crate::domain::DomainError;

/// What went wrong in the store, with a stable machine code.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found: {0}")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    /// A fenced update changed no row: another worker holds the batch now.
    #[error("lost the lease on batch {0}")]
    LostLease(String),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    /// The action does not fit the record's state (e.g. a closed case).
    #[error("{0}")]
    Refused(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration: {0}")]
    Migration(String),
}

impl StoreError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::LostLease(_) => "lost_lease",
            Self::Corrupt(_) => "corrupt_data",
            Self::Refused(_) => "refused",
            Self::Database(_) => "database_error",
            Self::Migration(_) => "migration_error",
        }
    }

    pub fn is_unique_violation(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::Database(e)) if e.is_unique_violation())
    }
}

impl From<DomainError> for StoreError {
    fn from(e: DomainError) -> Self {
        Self::Corrupt(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// Write transactions on SQLite take the write lock up front, so two
    /// writers queue on the busy timeout instead of failing on upgrade.
    fn begin_write(self) -> &'static str {
        match self {
            Self::Sqlite => "BEGIN IMMEDIATE",
            Self::Postgres => "BEGIN",
        }
    }

    /// Row locks for claims. SQLite has one writer at a time, so it needs none.
    fn skip_locked(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
    pub max_connections: u32,
    /// Write case-file feed events (a webhook receiver is configured).
    pub feed_events: bool,
}

impl StoreConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            feed_events: false,
        }
    }
}

/// The default embedded database: a file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://shokai.db";

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    feed_events: bool,
}

fn dialect_of(url: &str) -> std::result::Result<Dialect, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Dialect::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Dialect::Postgres)
    } else {
        Err(StoreError::Migration(format!(
            "unsupported database URL '{url}': use sqlite://FILE or postgres://…"
        )))
    }
}

impl Store {
    /// Connects and applies pending migrations.
    pub async fn open(config: &StoreConfig) -> Result<Store> {
        let store = Self::connect(config).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating (for `shokai migrate` and checks).
    pub async fn connect(config: &StoreConfig) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let dialect = dialect_of(&config.url)?;
        let mut url = config.url.clone();
        if dialect == Dialect::Sqlite && !url.contains("mode=") {
            url.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
        let options = AnyConnectOptions::from_str(&url)?;
        let pool = AnyPoolOptions::new()
            .max_connections(config.max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        for pragma in [
                            "PRAGMA journal_mode = WAL",
                            "PRAGMA synchronous = NORMAL",
                            "PRAGMA foreign_keys = ON",
                            "PRAGMA busy_timeout = 10000",
                        ] {
                            sqlx::query(pragma).execute(&mut *conn).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Store {
            pool,
            dialect,
            feed_events: config.feed_events,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// True when the database answers (for readiness checks).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(self.pool.begin_with(self.dialect.begin_write()).await?)
    }
}

/// Builds a query from runtime text. All of our SQL is written in this
/// module tree; values are always bound, never formatted in.
fn q(sql: String) -> sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments> {
    sqlx::query(AssertSqlSafe(sql))
}

fn get_str(row: &AnyRow, col: &str) -> Result<String> {
    Ok(row.try_get::<String, _>(col)?)
}

fn get_opt_str(row: &AnyRow, col: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}

fn get_i64(row: &AnyRow, col: &str) -> Result<i64> {
    Ok(row.try_get::<i64, _>(col)?)
}

fn get_opt_i64(row: &AnyRow, col: &str) -> Result<Option<i64>> {
    Ok(row.try_get::<Option<i64>, _>(col)?)
}

fn parse_date(raw: &str) -> Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| StoreError::Corrupt(format!("bad date '{raw}'")))
}

fn get_opt_date(row: &AnyRow, col: &str) -> Result<Option<chrono::NaiveDate>> {
    get_opt_str(row, col)?
        .as_deref()
        .map(parse_date)
        .transpose()
}

/// `$1, $2, …, $n` starting after `offset` placeholders already used.
fn placeholders(offset: usize, n: usize) -> String {
    (1..=n)
        .map(|i| format!("${}", offset + i))
        .collect::<Vec<_>>()
        .join(", ")
}
