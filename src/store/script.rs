//! Several statements of one transaction sent as one unit.
//!
//! On SQLite every statement is a round trip between the caller's task and
//! the connection's worker thread, and the write lock stays held while the
//! caller's task waits to be polled again. A script goes to the worker as
//! one multi-statement query, one round trip, and still reports each
//! statement's own rows and change count. On PostgreSQL the extended protocol takes one statement per
//! message, so a script runs its statements one after another, exactly as
//! separate calls would.
//!
//! sqlx deprecates multi-statement queries with arguments in its `query()`
//! API (launchbadge/sqlx#3108: only SQLite can do it); the driver still
//! runs them through `Executor::fetch_many`, binding each statement's
//! anonymous `?`s from where the previous one stopped. The tests below pin
//! that behaviour, so an upgrade that drops it fails here, and `groups`
//! can then fall back to one statement per round trip.

use futures_util::TryStreamExt;
use sqlx::any::AnyRow;
use sqlx::{Either, Executor};

use super::{Dialect, Query, ROWS_PER_STATEMENT, Result, q, value_rows};

/// The longest group of statements kept in the statement cache.
const CACHED_GROUP_BYTES: usize = 4096;

type Binder<'a> = Box<dyn FnOnce(Query) -> Query + Send + 'a>;

/// One statement: SQL with `$1 … $n` placeholders and what binds them.
struct Part<'a> {
    sql: String,
    bind: Binder<'a>,
    /// Which `push`/`insert_rows` call the statement came from: a long
    /// insert is several statements but one result. None for the
    /// transaction's own BEGIN or COMMIT, carried along on SQLite.
    item: Option<usize>,
}

/// What one `push` or `insert_rows` did.
#[derive(Default)]
pub(super) struct Done {
    pub rows: Vec<AnyRow>,
    pub rows_affected: u64,
}

pub(super) struct Script<'a> {
    dialect: Dialect,
    parts: Vec<Part<'a>>,
    items: usize,
    /// Whether the script opens its transaction (`Store::begin_with`).
    begins: bool,
    /// Whether the script ends its transaction (`then_commit`).
    commits: bool,
    /// Whether PostgreSQL runs the writes as one statement (`fuse_writes`).
    fuses: bool,
    /// Whether the script's first statement is a gate that its inserts
    /// wait on (`gate`, PostgreSQL).
    gated: bool,
}

impl<'a> Script<'a> {
    pub fn new(dialect: Dialect) -> Self {
        Self {
            dialect,
            parts: Vec::new(),
            items: 0,
            begins: false,
            commits: false,
            fuses: false,
            gated: false,
        }
    }

    /// PostgreSQL: makes the script one statement, run on its own outside
    /// any transaction (`run_alone`), whose inserts take effect only if
    /// the gate admits them. `sql` is a `SELECT` of at most one row with
    /// a boolean column `admits`; it may lock what it reads (`FOR … OF`),
    /// and the lock holds until the statement ends. Its row is the
    /// script's only result. Every statement added after it must be an
    /// `insert_rows`: those are what the gate can hold back.
    pub fn gate(
        &mut self,
        sql: impl Into<String>,
        bind: impl FnOnce(Query) -> Query + Send + 'a,
    ) -> usize {
        debug_assert!(
            self.dialect == Dialect::Postgres && self.parts.is_empty(),
            "a gate opens a PostgreSQL script"
        );
        let gate = self.push(sql, bind);
        self.gated = true;
        self.fuses = true;
        gate
    }

    /// On PostgreSQL, sends the script's statements as few statements as
    /// possible, one round trip each: every statement but the last becomes
    /// a data-modifying `WITH` of the next. Only for scripts of writes
    /// that do not depend on each other's changes (they share one snapshot)
    /// and whose results are not read, but for the last's. A statement
    /// that has a `WITH` of its own runs alone. No change on SQLite, where
    /// a script is one round trip anyway.
    pub fn fuse_writes(&mut self) {
        self.fuses = true;
    }

    /// Commits the transaction with the script's last statements, on
    /// SQLite: one round trip fewer. Only for the last script of a
    /// transaction whose results need no checking. The caller still ends
    /// with `commit`, which then has nothing left to do (on PostgreSQL it
    /// commits).
    pub fn then_commit(&mut self) {
        self.commits = true;
    }

    /// Undoes `then_commit`: more statements are to follow.
    pub fn keep_open(&mut self) {
        self.commits = false;
    }

    /// Opens the transaction with the script's first statements
    /// (`Store::begin_with`, on SQLite).
    pub(super) fn begin_first(&mut self) {
        self.begins = true;
    }

    /// Adds a statement and returns the index of its result. Its
    /// placeholders must each be used once, in ascending order, for it to
    /// travel with the others on SQLite; one that does not runs on its own.
    pub fn push(
        &mut self,
        sql: impl Into<String>,
        bind: impl FnOnce(Query) -> Query + Send + 'a,
    ) -> usize {
        debug_assert!(!self.gated, "behind a gate, only inserts");
        let item = self.next_item();
        self.parts.push(Part {
            sql: sql.into(),
            bind: Box::new(bind),
            item: Some(item),
        });
        item
    }

    /// Adds a multi-row `INSERT … VALUES` of `width` columns per row (see
    /// `super::insert_rows`) and returns the index of its result. No rows,
    /// no statement: the result is empty.
    pub fn insert_rows<T: Sync>(
        &mut self,
        sql: &str,
        width: usize,
        rows: &'a [T],
        tail: &str,
        bind: impl Fn(Query, &T) -> Query + Send + Sync + Clone + 'a,
    ) -> usize {
        self.chunked(sql, width, rows.len(), tail, |range| {
            let bind = bind.clone();
            Box::new(move |query| rows[range].iter().fold(query, &bind))
        })
    }

    /// `insert_rows` for rows built for this script alone.
    pub fn insert_owned_rows<T: Send + Sync + 'a>(
        &mut self,
        sql: &str,
        width: usize,
        rows: Vec<T>,
        tail: &str,
        bind: impl Fn(Query, &T) -> Query + Send + Sync + Clone + 'a,
    ) -> usize {
        let rows = std::sync::Arc::new(rows);
        self.chunked(sql, width, rows.len(), tail, |range| {
            let (rows, bind) = (rows.clone(), bind.clone());
            Box::new(move |query| rows[range].iter().fold(query, &bind))
        })
    }

    fn chunked(
        &mut self,
        sql: &str,
        width: usize,
        len: usize,
        tail: &str,
        mut binder: impl FnMut(std::ops::Range<usize>) -> Binder<'a>,
    ) -> usize {
        let item = self.next_item();
        for start in (0..len).step_by(ROWS_PER_STATEMENT) {
            let end = (start + ROWS_PER_STATEMENT).min(len);
            let rows = value_rows(0, end - start, width);
            self.parts.push(Part {
                sql: if self.gated {
                    format!(
                        "{sql} SELECT * FROM (VALUES {rows}) AS v WHERE (SELECT admits FROM gate){tail}"
                    )
                } else {
                    format!("{sql} VALUES {rows}{tail}")
                },
                bind: binder(start..end),
                item: Some(item),
            });
        }
        item
    }

    fn next_item(&mut self) -> usize {
        self.items += 1;
        self.items - 1
    }

    /// Runs the statements in order inside `tx` and returns one result per
    /// item. The first failure stops the script and is returned; the
    /// caller's transaction then rolls back as with any failed statement.
    pub async fn run(mut self, tx: &mut super::WriteTx) -> Result<Vec<Done>> {
        debug_assert!(tx.is_open(), "a script after its transaction's COMMIT");
        debug_assert!(!self.gated, "a gated script runs alone");
        // On PostgreSQL the statements go one by one anyway: BEGIN and
        // COMMIT stay the caller's.
        let commits = self.commits && self.dialect == Dialect::Sqlite;
        if self.begins && self.dialect == Dialect::Sqlite {
            self.parts.insert(0, control("BEGIN IMMEDIATE"));
        }
        if commits {
            self.parts.push(control("COMMIT"));
        }
        let items = self.items;
        let done = run_groups(tx, items, self.groups()).await?;
        if commits {
            tx.committed_by_script();
        }
        Ok(done)
    }

    /// Runs a gated script (`gate`) as the one statement it fuses into, on
    /// a connection with no transaction open: the statement is its own
    /// transaction, gate and writes alike.
    pub async fn run_alone(self, conn: &mut sqlx::AnyConnection) -> Result<Vec<Done>> {
        assert!(self.gated, "only a gated script runs alone");
        let items = self.items;
        let groups = self.groups();
        // Two statements would commit apart: never send the first.
        if groups.len() != 1 {
            return Err(super::StoreError::Corrupt(format!(
                "a gated script fused into {} statements",
                groups.len()
            )));
        }
        run_groups(conn, items, groups).await
    }

    /// The statements as round trips: on SQLite, runs of statements that can
    /// share one query (their placeholders made anonymous); on PostgreSQL
    /// one statement each, fused first if asked (`fuse_writes`).
    fn groups(mut self) -> Vec<Vec<Part<'a>>> {
        let dialect = self.dialect;
        if dialect == Dialect::Postgres && self.gated {
            return fuse_behind_gate(std::mem::take(&mut self.parts))
                .map(|part| vec![vec![part]])
                .unwrap_or_default();
        }
        if dialect == Dialect::Postgres && self.fuses {
            self.parts = fuse(std::mem::take(&mut self.parts));
        }
        let mut groups: Vec<Vec<Part<'a>>> = Vec::new();
        let mut open = false;
        for mut part in self.parts {
            let shareable = dialect == Dialect::Sqlite && {
                part.sql = dialect.positional(std::mem::take(&mut part.sql));
                !has_numbered_placeholder(&part.sql)
            };
            match groups.last_mut() {
                Some(group) if open && shareable => group.push(part),
                _ => groups.push(vec![part]),
            }
            open = shareable;
        }
        groups
    }
}

/// Sends each group as one query on `conn` and returns one result per item.
async fn run_groups<'a>(
    conn: &mut sqlx::AnyConnection,
    items: usize,
    groups: Vec<Vec<Part<'a>>>,
) -> Result<Vec<Done>> {
    let mut done: Vec<Done> = (0..items).map(|_| Done::default()).collect();
    for group in groups {
        let mut sql = String::new();
        let mut binders = Vec::with_capacity(group.len());
        let mut items = Vec::with_capacity(group.len());
        for part in group {
            if !sql.is_empty() {
                sql.push_str(";\n");
            }
            sql.push_str(&part.sql);
            binders.push(part.bind);
            items.push(part.item);
        }
        // A statement alone stays in the connection's statement cache, as
        // any query does, and so does a short group (fixed text, such as
        // a claim's reads). A long group is prepared afresh each time:
        // its text varies with the row counts of all its parts, so it
        // would rarely be reused, and each cached one holds the compiled
        // programs of several multi-row statements (the gateway's peak
        // memory grew by 50 MB with them cached).
        let persistent = binders.len() == 1 || sql.len() <= CACHED_GROUP_BYTES;
        let query = binders
            .into_iter()
            .fold(q(sql).persistent(persistent), |query, bind| bind(query));
        let mut stream = (&mut *conn).fetch_many(query);
        let mut statement = 0;
        let mut rows = Vec::new();
        while let Some(step) = stream.try_next().await? {
            match step {
                Either::Right(row) => rows.push(row),
                Either::Left(result) => {
                    if let Some(item) = items[statement] {
                        let d = &mut done[item];
                        d.rows.append(&mut rows);
                        d.rows_affected += result.rows_affected();
                    }
                    statement += 1;
                }
            }
        }
    }
    Ok(done)
}

/// PostgreSQL's limit on the parameters of one statement.
const MAX_PARAMETERS: usize = 65_535;

/// Joins runs of statements into one each (`Script::fuse_writes`): all but
/// the last of a run become `WITH w0 AS (…), w1 AS (…)` before it, their
/// placeholders renumbered after the ones before them, their values bound
/// in the same order. A run ends at a statement with a `WITH` of its own
/// (PostgreSQL allows data-modifying `WITH`s only at the top) or where the
/// parameters would pass PostgreSQL's limit. The run's result is the last
/// statement's.
fn fuse(parts: Vec<Part<'_>>) -> Vec<Part<'_>> {
    let mut fused: Vec<Part<'_>> = Vec::new();
    let mut run: Vec<(Part<'_>, usize)> = Vec::new();
    let mut run_parameters = 0;
    for part in parts {
        let parameters = highest_placeholder(&part.sql);
        let alone = part.sql.trim_start().starts_with("WITH");
        if alone || run_parameters + parameters > MAX_PARAMETERS {
            fused.extend(join_run(std::mem::take(&mut run)));
            run_parameters = 0;
        }
        if alone {
            fused.push(part);
        } else {
            run_parameters += parameters;
            run.push((part, parameters));
        }
    }
    fused.extend(join_run(run));
    fused
}

/// The one statement of a gated script (`Script::gate`): the gate first,
/// as `gate`, which every insert after it reads; each insert a
/// data-modifying `WITH`, numbered as `fuse` numbers them; the gate's row
/// the statement's result. None if the statement would pass PostgreSQL's
/// parameter limit: the caller must not split it.
fn fuse_behind_gate(parts: Vec<Part<'_>>) -> Option<Part<'_>> {
    let mut parts = parts.into_iter();
    let gate = parts.next()?;
    let mut offset = highest_placeholder(&gate.sql);
    let mut sql = format!("WITH gate AS MATERIALIZED ({})", gate.sql);
    let mut binders = vec![gate.bind];
    for (n, part) in parts.enumerate() {
        sql.push_str(&format!(
            ", w{} AS ({})",
            n + 1,
            renumber_placeholders(&part.sql, offset)
        ));
        offset += highest_placeholder(&part.sql);
        binders.push(part.bind);
    }
    if offset > MAX_PARAMETERS {
        return None;
    }
    sql.push_str(" SELECT * FROM gate");
    Some(Part {
        sql,
        bind: Box::new(move |query| binders.into_iter().fold(query, |query, bind| bind(query))),
        item: gate.item,
    })
}

/// One statement of a run of `fuse` (none for an empty run).
fn join_run<'a>(run: Vec<(Part<'a>, usize)>) -> Option<Part<'a>> {
    if run.len() <= 1 {
        return run.into_iter().next().map(|(part, _)| part);
    }
    let last = run.len() - 1;
    let (mut sql, mut offset) = (String::from("WITH "), 0);
    let mut binders = Vec::with_capacity(run.len());
    let mut item = None;
    for (n, (part, parameters)) in run.into_iter().enumerate() {
        let renumbered = renumber_placeholders(&part.sql, offset);
        offset += parameters;
        if n == last {
            sql.push(' ');
            sql.push_str(&renumbered);
            item = part.item;
        } else {
            if n > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("w{n} AS ({renumbered})"));
        }
        binders.push(part.bind);
    }
    Some(Part {
        sql,
        bind: Box::new(move |query| binders.into_iter().fold(query, |query, bind| bind(query))),
        item,
    })
}

/// The placeholders' `$n` positions and numbers in `sql`.
fn placeholders_in(sql: &str) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let bytes = sql.as_bytes();
    (0..bytes.len()).filter_map(move |i| {
        if bytes[i] != b'$' {
            return None;
        }
        let digits = bytes[i + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let n = sql.get(i + 1..i + 1 + digits)?.parse().ok()?;
        Some((i, digits, n))
    })
}

/// The highest `$n` in `sql`: how many values it binds.
fn highest_placeholder(sql: &str) -> usize {
    placeholders_in(sql).map(|(_, _, n)| n).max().unwrap_or(0)
}

/// `sql` with every `$n` made `$(n + offset)`.
fn renumber_placeholders(sql: &str, offset: usize) -> String {
    if offset == 0 {
        return sql.to_owned();
    }
    let mut out = String::with_capacity(sql.len() + sql.len() / 8);
    let mut copied = 0;
    for (at, digits, n) in placeholders_in(sql) {
        out.push_str(&sql[copied..at]);
        out.push_str(&format!("${}", n + offset));
        copied = at + 1 + digits;
    }
    out.push_str(&sql[copied..]);
    out
}

/// The transaction's own BEGIN or COMMIT as a statement of a script.
fn control<'a>(sql: &'static str) -> Part<'a> {
    Part {
        sql: sql.to_owned(),
        bind: Box::new(|query| query),
        item: None,
    }
}

/// True if `$n` is left in the statement: `Dialect::positional` could not
/// make its placeholders anonymous, so it cannot share a query with others
/// (SQLite would bind `$n` by number and the next statement's `?`s from
/// the wrong offset).
fn has_numbered_placeholder(sql: &str) -> bool {
    placeholders_in(sql).next().is_some()
}

#[cfg(test)]
mod tests {
    use super::Script;
    use crate::store::{Priority, Store, StoreConfig};

    async fn store(dir: &tempfile::TempDir) -> Store {
        let url = format!("sqlite://{}", dir.path().join("s.db").display());
        let store = Store::open(&StoreConfig::new(url)).await.unwrap();
        write(
            &store,
            "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE)",
        )
        .await;
        store
    }

    /// One statement in a write transaction of its own.
    async fn write(store: &Store, sql: &'static str) {
        let mut tx = store.begin(Priority::Background).await.unwrap();
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
        tx.commit().await.unwrap();
    }

    /// The rows of `t` that other connections see: what is committed.
    async fn committed_rows(store: &Store) -> i64 {
        sqlx::query_scalar("SELECT COUNT(*) FROM t")
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    /// Each statement gets its own binds, rows and change count, whether
    /// it shared a query with others or ran on its own.
    #[tokio::test]
    async fn statements_keep_their_own_binds_and_results() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let values: Vec<String> = (0..1200).map(|i| format!("v{i}")).collect();
        let mut tx = store.begin(Priority::Background).await.unwrap();
        let mut script = Script::new(store.dialect);
        let insert = script.insert_rows("INSERT INTO t (v)", 1, &values, "", |q, v| {
            q.bind(v.clone())
        });
        let update = script.push("UPDATE t SET v = v || $1 WHERE id <= $2", |q| {
            q.bind("!").bind(10_i64)
        });
        // `$1` twice: cannot be made anonymous, so it runs alone.
        let reused = script.push(
            "SELECT id FROM t WHERE v = $1 || '!' OR v = $1 ORDER BY id",
            |q| q.bind("v3"),
        );
        let count = script.push("SELECT COUNT(*) AS n FROM t WHERE id > $1", |q| {
            q.bind(1000_i64)
        });
        let done = script.run(&mut tx).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(done[insert].rows_affected, 1200);
        assert_eq!(done[update].rows_affected, 10);
        let ids: Vec<i64> = done[reused]
            .rows
            .iter()
            .map(|r| sqlx::Row::get(r, "id"))
            .collect();
        assert_eq!(ids, vec![4]);
        assert_eq!(sqlx::Row::get::<i64, _>(&done[count].rows[0], "n"), 200);
    }

    /// A script can carry its transaction's BEGIN and COMMIT: what it wrote
    /// is committed once it returns, and the caller's `commit` finds nothing
    /// left to do. One that fails, COMMIT and all, keeps nothing.
    #[tokio::test]
    async fn a_script_can_begin_and_commit_its_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let mut first = Script::new(store.dialect);
        let read = first.push("SELECT COUNT(*) AS n FROM t", |q| q);
        let (mut tx, done) = store.begin_with(Priority::Background, first).await.unwrap();
        assert_eq!(sqlx::Row::get::<i64, _>(&done[read].rows[0], "n"), 0);
        let mut last = Script::new(store.dialect);
        let insert = last.insert_rows("INSERT INTO t (v)", 1, &["a", "b"], "", |q, v| q.bind(*v));
        last.then_commit();
        let done = last.run(&mut tx).await.unwrap();
        assert_eq!(done[insert].rows_affected, 2);
        // Committed before the caller's commit, which is a no-op.
        assert_eq!(committed_rows(&store).await, 2);
        tx.commit().await.unwrap();
        assert_eq!(committed_rows(&store).await, 2);

        let (mut tx, _) = store
            .begin_with(Priority::Background, Script::new(store.dialect))
            .await
            .unwrap();
        let mut failing = Script::new(store.dialect);
        failing.push("INSERT INTO t (v) VALUES ($1)", |q| q.bind("c"));
        failing.push("INSERT INTO t (v) VALUES ($1)", |q| q.bind("a"));
        failing.then_commit();
        let err = failing.run(&mut tx).await.err().expect("unique violation");
        assert!(err.is_unique_violation(), "{err}");
        drop(tx);
        // The next writer finds the lane rolled back and free.
        write(&store, "INSERT INTO t (v) VALUES ('d')").await;
        assert_eq!(committed_rows(&store).await, 3);
    }

    /// A failing statement stops the script, and the transaction it ran in
    /// rolls back whole: the statements before it are not kept.
    #[tokio::test]
    async fn a_failing_statement_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        let mut tx = store.begin(Priority::Background).await.unwrap();
        let mut script = Script::new(store.dialect);
        script.push("INSERT INTO t (v) VALUES ($1)", |q| q.bind("a"));
        script.push("INSERT INTO t (v) VALUES ($1)", |q| q.bind("a"));
        script.push("INSERT INTO t (v) VALUES ($1)", |q| q.bind("b"));
        let err = script.run(&mut tx).await.err().expect("unique violation");
        assert!(err.is_unique_violation(), "{err}");
        drop(tx);
        assert_eq!(committed_rows(&store).await, 0);
    }

    fn part(sql: &str) -> super::Part<'static> {
        super::Part {
            sql: sql.to_owned(),
            bind: Box::new(|query| query),
            item: Some(0),
        }
    }

    #[test]
    fn fused_writes_renumber_placeholders_in_order() {
        let fused = super::fuse(vec![
            part("INSERT INTO a (x, y) VALUES ($1, $2)"),
            part("UPDATE b SET v = $2 WHERE id = $1 AND w = $2"),
            part("INSERT INTO c (z) VALUES ($1)"),
        ]);
        assert_eq!(fused.len(), 1);
        assert_eq!(
            fused[0].sql,
            "WITH w0 AS (INSERT INTO a (x, y) VALUES ($1, $2)), \
             w1 AS (UPDATE b SET v = $4 WHERE id = $3 AND w = $4) \
             INSERT INTO c (z) VALUES ($5)"
        );
    }

    /// Behind a gate every insert is a `WITH` that reads it, and the
    /// statement returns the gate's row.
    #[test]
    fn a_gated_script_is_one_statement_that_returns_the_gate() {
        let mut script = Script::new(crate::store::Dialect::Postgres);
        let gate = script.gate("SELECT x = $1 AS admits FROM g WHERE id = $2", |q| q);
        let rows = script.insert_rows("INSERT INTO a (x, y)", 2, &[1, 2], "", |q, _| q);
        script.insert_rows(
            "INSERT INTO b (z)",
            1,
            &[3],
            " ON CONFLICT DO NOTHING",
            |q, _| q,
        );
        assert_eq!((gate, rows), (0, 1));
        let groups = script.groups();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].len(), 1);
        assert_eq!(
            groups[0][0].sql,
            "WITH gate AS MATERIALIZED (SELECT x = $1 AS admits FROM g WHERE id = $2), \
             w1 AS (INSERT INTO a (x, y) SELECT * FROM (VALUES ($3, $4), ($5, $6)) AS v \
             WHERE (SELECT admits FROM gate)), \
             w2 AS (INSERT INTO b (z) SELECT * FROM (VALUES ($7)) AS v \
             WHERE (SELECT admits FROM gate) ON CONFLICT DO NOTHING) \
             SELECT * FROM gate"
        );
        assert_eq!(groups[0][0].item, Some(gate));
    }

    #[test]
    fn a_gated_script_too_wide_for_one_statement_is_not_split() {
        let rows = vec![0; 70_000];
        let mut script = Script::new(crate::store::Dialect::Postgres);
        script.gate("SELECT true AS admits", |q| q);
        script.insert_rows("INSERT INTO a (x)", 1, &rows, "", |q, _| q);
        assert!(script.groups().is_empty());
    }

    #[test]
    fn a_statement_with_its_own_with_runs_alone() {
        let fused = super::fuse(vec![
            part("INSERT INTO a VALUES ($1)"),
            part("INSERT INTO b VALUES ($1)"),
            part("WITH m AS (DELETE FROM q RETURNING id) INSERT INTO e SELECT id FROM m"),
            part("INSERT INTO c VALUES ($1)"),
        ]);
        let sql: Vec<&str> = fused.iter().map(|p| p.sql.as_str()).collect();
        assert_eq!(
            sql,
            [
                "WITH w0 AS (INSERT INTO a VALUES ($1)) INSERT INTO b VALUES ($2)",
                "WITH m AS (DELETE FROM q RETURNING id) INSERT INTO e SELECT id FROM m",
                "INSERT INTO c VALUES ($1)",
            ]
        );
    }

    #[test]
    fn a_fused_statement_stays_within_the_parameter_limit() {
        let wide = format!(
            "INSERT INTO a VALUES ({})",
            (1..=40_000)
                .map(|n| format!("${n}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let fused = super::fuse(vec![
            part(&wide),
            part(&wide),
            part("INSERT INTO b VALUES ($1)"),
        ]);
        assert_eq!(fused.len(), 2);
        assert_eq!(fused[0].sql, wide);
        assert!(fused[1].sql.ends_with("INSERT INTO b VALUES ($40001)"));
    }

    proptest::proptest! {
        /// Renumbering moves every placeholder by the offset and leaves
        /// the rest of the text as it was.
        #[test]
        fn renumbering_shifts_every_placeholder(
            pieces in proptest::collection::vec(("[a-z ,()=']{0,6}", 1usize..300), 0..20),
            offset in 0usize..70_000,
        ) {
            let sql: String = pieces.iter().map(|(t, n)| format!("{t}${n}")).collect();
            let shifted = super::renumber_placeholders(&sql, offset);
            let expected: String = pieces.iter().map(|(t, n)| format!("{t}${}", n + offset)).collect();
            proptest::prop_assert_eq!(&shifted, &expected);
            let highest = pieces.iter().map(|(_, n)| *n).max().unwrap_or(0);
            proptest::prop_assert_eq!(super::highest_placeholder(&sql), highest);
        }
    }
}
