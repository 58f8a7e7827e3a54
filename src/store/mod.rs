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
mod payload;
mod queue;
mod retention;
mod script;
mod turns;
mod writer;

use script::{Done, Script};
use turns::Priority;
use writer::{WriteTx, Writer};

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyConnection, AnyPool, AssertSqlSafe, Connection, Row};

pub use accounts::UserRecord;
pub use answers::{
    AnswerAudit, ApplyOutcome, CaseFile, CaseFileEntry, StoredAccount, SubjectTotal,
};
pub use audit::{AuditFilter, ChainWait};
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
    SealTurn,
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

    /// A PostgreSQL deadlock or serialisation failure: the database rolled
    /// the whole transaction back, and running it again is safe.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Database(sqlx::Error::Database(e))
            if matches!(e.code().as_deref(), Some("40P01" | "40001")))
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
    /// On SQLite, `$1 … $n` used once each in ascending order become
    /// anonymous `?`s. SQLite looks up a named parameter by a linear scan
    /// of the statement's names, at parse and again at every bind, so a
    /// multi-row statement with thousands of `$n` costs quadratic time
    /// (a third of the CPU in the first profile); `?`s are bound in order
    /// at no cost. Any other use of placeholders is left as written.
    fn positional(self, sql: String) -> String {
        if self == Self::Postgres {
            return sql;
        }
        let bytes = sql.as_bytes();
        let mut out = String::with_capacity(sql.len());
        let (mut expected, mut copied, mut i) = (1usize, 0, 0);
        while i < bytes.len() {
            if bytes[i] == b'$' {
                let digits = bytes[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_digit())
                    .count();
                if digits > 0 {
                    if sql[i + 1..i + 1 + digits].parse() != Ok(expected) {
                        return sql;
                    }
                    expected += 1;
                    out.push_str(&sql[copied..i]);
                    out.push('?');
                    i += 1 + digits;
                    copied = i;
                    continue;
                }
            }
            i += 1;
        }
        out.push_str(&sql[copied..]);
        out
    }

    // Row locks, PostgreSQL only: SQLite has one writer at a time. Each is
    // `FOR NO KEY UPDATE`: we never change a key, and the stronger
    // `FOR UPDATE` also excludes the `KEY SHARE` lock that each foreign-key
    // check takes, so a claim holding an institution's row made every
    // submit inserting inquiries for that institution wait for it (the most
    // frequent wait in `pg_stat_activity` with two gateways).

    /// Row locks for claims: rows another worker holds are passed over.
    fn skip_locked(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR NO KEY UPDATE SKIP LOCKED",
        }
    }

    /// Locks only `table`'s rows of a join (PostgreSQL).
    fn for_update_of(self, table: &str) -> String {
        match self {
            Self::Sqlite => String::new(),
            Self::Postgres => format!(" FOR NO KEY UPDATE OF {table}"),
        }
    }

    fn for_update(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR NO KEY UPDATE",
        }
    }
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub url: String,
    pub max_connections: u32,
    /// Write case-file feed events (a webhook receiver is configured).
    pub feed_events: bool,
    /// How the SQLite writer's threads are scheduled.
    pub writer_scheduling: WriterScheduling,
}

impl StoreConfig {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
            feed_events: false,
            writer_scheduling: WriterScheduling::Shared,
        }
    }
}

/// How the threads that hold SQLite's one write lock are scheduled: the
/// writer's driver and its connection's worker (`writer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WriterScheduling {
    /// Like every other thread of the process.
    #[default]
    Shared,
    /// Real-time (`SCHED_FIFO`, its lowest priority), where the process
    /// may (Linux, with `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` of 1 or
    /// more): a busy machine then wakes them at once when their statements
    /// or results arrive, instead of after the running thread's time
    /// slice, so the lock is held for less time. They only ever wait on a
    /// channel or the disk, never spin. Refused, the gateway warns and goes
    /// on with `Shared`.
    RealTime,
}

/// How long a pooled connection may sit idle and still be handed out
/// without a ping first (`Store::connect`).
pub const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// The default embedded database: a file in the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://shokai.db";

#[derive(Clone)]
pub struct Store {
    /// Reads and single-statement writes.
    pool: AnyPool,
    /// Write transactions. On SQLite one connection behind a fair queue:
    /// SQLite has one writer at a time, and queueing in the process wakes
    /// the next writer at once, where queueing on the busy timeout sleeps
    /// in growing steps (the submit tail in BENCHMARKS.md). On PostgreSQL
    /// the same pool as `pool`.
    writer: Arc<Writer>,
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
            // sqlx pings every connection it hands out, one round trip
            // before each use: on PostgreSQL a third of a submit's. It also
            // pings every connection given back and drops a broken one, so
            // only one that sat idle can have died unseen: just those are
            // pinged.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IF_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        sqlite_pragmas(conn, &[]).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options.clone())
            .await?;
        let writer = match dialect {
            // The writer leaves checkpoints to `checkpoint_wal_forever`, on
            // a reader connection; the high mark only bounds the WAL should
            // that task ever stall.
            Dialect::Sqlite => {
                let driver = writer::Driver::start(config.writer_scheduling)
                    .map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
                // Opened on the driver's thread: the connection's worker
                // thread starts there and so is scheduled as it is.
                let conn = driver
                    .open(async move {
                        let mut conn = AnyConnection::connect_with(&options).await?;
                        sqlite_pragmas(&mut conn, &["PRAGMA wal_autocheckpoint = 25000"]).await?;
                        Ok(conn)
                    })
                    .await?;
                tokio::spawn(checkpoint_wal_forever(pool.clone()));
                Writer::sqlite(driver, conn)
            }
            Dialect::Postgres => Writer::Postgres(pool.clone()),
        };
        Ok(Store {
            pool,
            writer: Arc::new(writer),
            dialect,
            feed_events: config.feed_events,
        })
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// How the SQLite writer's threads are scheduled, as the system allowed
    /// (`StoreConfig::writer_scheduling`); None on PostgreSQL.
    pub fn writer_scheduling(&self) -> Option<WriterScheduling> {
        self.writer.driver().map(|d| d.scheduling())
    }

    /// Seconds the SQLite write connection has spent in transactions since
    /// the store opened (the write lock's busy time); None on PostgreSQL.
    pub fn writer_held_seconds(&self) -> Option<f64> {
        self.writer.held_seconds()
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }

    /// True when the database answers (for readiness checks).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Begins a write transaction once it is `priority`'s turn (`turns`).
    async fn begin(&self, priority: Priority) -> Result<WriteTx> {
        self.writer.begin(priority).await
    }

    /// Begins a write transaction and runs its first script; on SQLite the
    /// BEGIN goes with the script's statements, one round trip fewer.
    async fn begin_with(
        &self,
        priority: Priority,
        mut first: Script<'_>,
    ) -> Result<(WriteTx, Vec<Done>)> {
        let mut tx = self.writer.take_turn(priority).await?;
        first.begin_first();
        let done = first.run(&mut tx).await?;
        Ok((tx, done))
    }

    /// Adds, on SQLite, the read of the highest id `table` has ever given
    /// out to the first script of a write transaction (`reserve_ids`).
    fn read_id_floor(&self, script: &mut Script<'_>, table: &'static str) -> Option<usize> {
        (self.dialect == Dialect::Sqlite).then(|| {
            // AUTOINCREMENT never reuses an id, even of a purged row.
            script.push(
                format!(
                    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), \
                     COALESCE((SELECT MAX(id) FROM {table}), 0)) AS floor"
                ),
                |query| query,
            )
        })
    }

    /// The ids of `n` rows the transaction is about to insert into `table`
    /// (a `BIGSERIAL` or `INTEGER PRIMARY KEY AUTOINCREMENT` id), so that
    /// parents and children go in one script, without a `RETURNING` round
    /// trip each. On SQLite they follow on from the floor read under the
    /// write lock (`read_id_floor`), once per table and transaction; on
    /// PostgreSQL they come from the table's sequence.
    async fn reserve_ids(
        &self,
        tx: &mut WriteTx,
        table: &'static str,
        floor: Option<&Done>,
        n: usize,
    ) -> Result<Vec<i64>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        if self.dialect == Dialect::Sqlite {
            let row = floor
                .and_then(|f| f.rows.first())
                .ok_or_else(|| StoreError::Corrupt(format!("no id floor was read for {table}")))?;
            let floor = get_i64(row, "floor")?;
            return Ok((floor + 1..=floor + n as i64).collect());
        }
        // The sequence by its name (BIGSERIAL's `<table>_id_seq`), resolved
        // once: `pg_get_serial_sequence` looked it up again for every row,
        // eight times the cost of the `nextval` itself.
        let rows = q(format!(
            "SELECT nextval('{table}_id_seq') AS id FROM generate_series(1, $1)"
        ))
        .bind(n as i64)
        .fetch_all(&mut **tx)
        .await?;
        rows.iter().map(|row| get_i64(row, "id")).collect()
    }

    /// Runs a write transaction on the writer's driver thread (SQLite), so
    /// that between its round trips it is polled at once instead of after
    /// the HTTP work queued on the caller's worker; on PostgreSQL, which
    /// has no one write lock to keep short, in place. The transaction runs
    /// to its end even if the caller stops waiting: a caller that goes away
    /// neither rolls back nor half-writes it. `transaction` gets a handle
    /// of its own on the store, as it may outlive the caller.
    async fn on_writer<T, F, Fut>(&self, transaction: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Store) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let transaction = transaction(self.clone());
        match self.writer.driver() {
            Some(driver) => driver.run(transaction).await,
            None => transaction.await,
        }
    }

    /// Runs a write transaction again, a few times, when the database rolled
    /// it back for a deadlock. On PostgreSQL the queue's transactions lock
    /// inquiries in id order, but a batch being sealed by one gateway and
    /// finished or answered on another can still meet in a cycle, and the
    /// loser's work is not to be left to a lease expiry.
    async fn retrying<T, F, Fut>(&self, mut transaction: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let mut tries = 0u32;
        loop {
            match transaction().await {
                Err(e) if e.is_transient() && tries < 3 => {
                    tries += 1;
                    tracing::debug!(error = %e, tries, "transaction rolled back; running it again");
                    tokio::time::sleep(Duration::from_millis(10 * u64::from(tries))).await;
                }
                done => return done,
            }
        }
    }
}

/// Every SQLite connection's settings, and `extra` for this one.
async fn sqlite_pragmas(
    conn: &mut AnyConnection,
    extra: &[&'static str],
) -> std::result::Result<(), sqlx::Error> {
    for pragma in [
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA foreign_keys = ON",
        "PRAGMA busy_timeout = 10000",
        // Statement journals (multi-row writes that can fail half-way) stay
        // in memory: past 64 KiB they would spill to a temporary file that
        // is created, written and deleted inside the write lock.
        "PRAGMA temp_store = MEMORY",
    ]
    .iter()
    .chain(extra)
    {
        sqlx::query(*pragma).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Copies the SQLite WAL back into the database file every few hundred
/// milliseconds, until the pool closes. A checkpoint run by the writer
/// itself (SQLite's default, at each commit past 1,000 pages) stalls every
/// write behind it, and the writer is the gateway's one serial resource;
/// a passive checkpoint here runs beside it on the other core.
async fn checkpoint_wal_forever(pool: AnyPool) {
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !pool.is_closed() {
        tick.tick().await;
        let done = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await;
        if let Err(e) = done
            && !pool.is_closed()
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// Builds a query from runtime text. All of our SQL is written in this
/// module tree; values are always bound, never formatted in.
fn q(sql: String) -> Query {
    sqlx::query(AssertSqlSafe(sql))
}

/// `q` for statements with many placeholders (see `Dialect::positional`).
fn q_many(dialect: Dialect, sql: String) -> Query {
    q(dialect.positional(sql))
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

type Query = sqlx::query::Query<'static, sqlx::Any, sqlx::any::AnyArguments>;

/// Rows per multi-row statement: a few thousand bound values, well under
/// both databases' limits, and one round trip to the database per chunk.
const ROWS_PER_STATEMENT: usize = 500;

/// Inserts `rows` with multi-row `INSERT … VALUES` statements of `width`
/// columns each; `bind` binds one row's values in column order. `sql` is
/// the statement up to `VALUES`; `tail` follows the values (`RETURNING …`,
/// `ON CONFLICT …`, or empty), and whatever rows it returns are collected.
async fn insert_rows<T: Sync>(
    tx: &mut WriteTx,
    dialect: Dialect,
    sql: &str,
    width: usize,
    rows: &[T],
    tail: &str,
    bind: impl Fn(Query, &T) -> Query + Send + Sync + Clone,
) -> Result<Vec<AnyRow>> {
    let mut script = Script::new(dialect);
    let insert = script.insert_rows(sql, width, rows, tail, bind);
    Ok(std::mem::take(&mut script.run(tx).await?[insert].rows))
}

/// `($a, …), ($b, …), …`: `rows` tuples of `width` placeholders, numbered
/// on from `offset` placeholders already used.
fn value_rows(offset: usize, rows: usize, width: usize) -> String {
    (0..rows)
        .map(|i| format!("({})", placeholders(offset + i * width, width)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `$1, $2, …, $n` starting after `offset` placeholders already used.
fn placeholders(offset: usize, n: usize) -> String {
    (1..=n)
        .map(|i| format!("${}", offset + i))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::{Dialect, Priority, Script, Store, StoreConfig, q};

    /// The writer's held time counts the time a transaction is open.
    #[tokio::test]
    async fn the_writer_lock_time_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("held.db").display());
        let store = Store::connect(&StoreConfig::new(url)).await.unwrap();
        for _ in 0..3 {
            let tx = store.begin(Priority::Background).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            tx.commit().await.unwrap();
        }
        let held = store.writer_held_seconds().unwrap();
        assert!((0.29..5.0).contains(&held), "held {held} s");
        store.close().await;
    }

    /// The writer never checkpoints below its high mark, so the database
    /// file only grows if the background checkpointer copies the WAL back.
    #[tokio::test]
    async fn the_wal_is_checkpointed_beside_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("wal.db");
        let store = Store::connect(&StoreConfig::new(format!("sqlite://{}", file.display())))
            .await
            .unwrap();
        let before = std::fs::metadata(&file).unwrap().len();
        let mut tx = store.begin(Priority::Background).await.unwrap();
        q("CREATE TABLE filler (id INTEGER PRIMARY KEY, body TEXT NOT NULL)".to_owned())
            .execute(&mut *tx)
            .await
            .unwrap();
        for i in 0..2_000 {
            q("INSERT INTO filler (id, body) VALUES ($1, $2)".to_owned())
                .bind(i as i64)
                .bind("x".repeat(2_000))
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.commit().await.unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::fs::metadata(&file).unwrap().len() < before + 4_000_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the WAL was not checkpointed"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        store.close().await;
    }

    /// Reserved ids follow the highest id ever given out, even when the
    /// rows that had it were purged, and the table's own ids go on after
    /// them.
    #[tokio::test]
    async fn reserved_ids_are_never_reused() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ids.db").display());
        let store = &Store::connect(&StoreConfig::new(url)).await.unwrap();
        let insert = |sql: &'static str| async move {
            let mut tx = store.begin(Priority::Background).await.unwrap();
            q(sql.to_owned()).execute(&mut *tx).await.unwrap();
            tx.commit().await.unwrap();
        };
        insert("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT)").await;
        let reserve = |n: usize| async move {
            let mut read = Script::new(store.dialect);
            let floor = store.read_id_floor(&mut read, "t");
            let (mut tx, done) = store.begin_with(Priority::Background, read).await.unwrap();
            let ids = store
                .reserve_ids(&mut tx, "t", floor.map(|f| &done[f]), n)
                .await
                .unwrap();
            for id in &ids {
                q("INSERT INTO t (id, v) VALUES ($1, 'reserved')".to_owned())
                    .bind(*id)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
            }
            tx.commit().await.unwrap();
            ids
        };
        assert_eq!(reserve(2).await, vec![1, 2], "an empty table starts at 1");
        insert("INSERT INTO t (v) VALUES ('own')").await;
        insert("DELETE FROM t WHERE id >= 2").await;
        assert_eq!(reserve(2).await, vec![4, 5]);
        insert("INSERT INTO t (v) VALUES ('own')").await;
        let last = q("SELECT MAX(id) AS id FROM t".to_owned())
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(super::get_i64(&last, "id").unwrap(), 6);
        store.close().await;
    }

    #[test]
    fn positional_placeholders_only_when_in_order_and_once() {
        let p = |s: &str| Dialect::Sqlite.positional(s.to_owned());
        assert_eq!(
            p("VALUES ($1, $2), ($3, 'a$b')"),
            "VALUES (?, ?), (?, 'a$b')"
        );
        assert_eq!(p("SET a = $2, b = $1"), "SET a = $2, b = $1");
        assert_eq!(p("($1, $1)"), "($1, $1)");
        assert_eq!(p("x = $10"), "x = $10");
        assert_eq!(p("SELECT 1"), "SELECT 1");
        assert_eq!(
            Dialect::Postgres.positional("($1, $2)".to_owned()),
            "($1, $2)"
        );
    }
}
