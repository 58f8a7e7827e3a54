//! The audit trail's storage. On SQLite an appending transaction chains
//! its entries itself (it is the one writer); on PostgreSQL it leaves them
//! in `audit_pending` and a chainer links them under the lock on
//! `audit_head`. Reads, in order for verification and filtered for
//! auditors, link what is pending first.

use sqlx::any::AnyRow;

use super::script::{Done, Script};
use super::{
    Dialect, Priority, Query, Result, Store, StoreError, get_i64, get_opt_str, get_str, q,
};
use crate::domain::audit::{AuditAction, AuditEntry, ChainedEntry, chain_hash};

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    /// Entries by actors of this office (auditors see their own office).
    pub office: Option<String>,
    pub action: Option<AuditAction>,
    pub case_id: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub after_seq: Option<i64>,
    pub limit: i64,
}

fn entry_from_row(r: &AnyRow) -> Result<ChainedEntry> {
    Ok(ChainedEntry {
        seq: get_i64(r, "seq")?,
        entry: entry_from_columns(r)?,
        prev_hash: get_str(r, "prev_hash")?,
        hash: get_str(r, "hash")?,
    })
}

/// An entry from the columns of `ENTRY_COLUMNS`.
fn entry_from_columns(r: &AnyRow) -> Result<AuditEntry> {
    let action = get_str(r, "action")?;
    Ok(AuditEntry {
        at: get_i64(r, "at")?,
        actor: get_str(r, "actor")?,
        role: get_str(r, "role")?,
        office: get_str(r, "office")?,
        action: AuditAction::parse(&action)
            .ok_or_else(|| StoreError::Corrupt(format!("audit action '{action}'")))?,
        target: get_str(r, "target")?,
        case_id: get_opt_str(r, "case_id")?,
        purpose: get_opt_str(r, "purpose")?,
        legal_basis: get_opt_str(r, "legal_basis")?,
    })
}

/// Binds an entry's values in the order of `ENTRY_COLUMNS`.
fn bind_entry(query: Query, e: &AuditEntry) -> Query {
    query
        .bind(e.at)
        .bind(e.actor.clone())
        .bind(e.role.clone())
        .bind(e.office.clone())
        .bind(e.action.as_str())
        .bind(e.target.clone())
        .bind(e.case_id.clone())
        .bind(e.purpose.clone())
        .bind(e.legal_basis.clone())
}

/// What an entry says, chained or not.
const ENTRY_COLUMNS: &str =
    "at, actor, role, office, action, target, case_id, purpose, legal_basis";

/// The columns of a chained entry: `ENTRY_COLUMNS` and its links.
fn chained_columns() -> String {
    format!("seq, {ENTRY_COLUMNS}, prev_hash, hash")
}

/// How many pending entries one chaining transaction links: bounded, so
/// that a backlog of entries does not become one long transaction.
const CHAIN_PER_TRANSACTION: usize = 5_000;

/// Whether `Store::chain_pending_audit` waits for another chainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainWait {
    /// Wait, then link what is left: before a read of the trail.
    Wait,
    /// Return at once if another chainer is at work: periodic runs.
    Skip,
}

/// The chain's last number and hash, as read under the write lock.
struct AuditHead {
    seq: i64,
    hash: String,
}

impl AuditHead {
    fn from(read: &Done) -> Result<Self> {
        let row = read
            .rows
            .first()
            .ok_or_else(|| StoreError::Corrupt("the audit head row is missing".into()))?;
        Ok(Self {
            seq: get_i64(row, "seq")?,
            hash: get_str(row, "hash")?,
        })
    }
}

impl Store {
    /// Appends entries to the chain in one transaction.
    pub async fn append_audit(&self, entries: &[AuditEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin(Priority::Interactive).await?;
        self.append_audit_in(&mut tx, entries).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Appends entries inside the caller's transaction, so that an action
    /// and its trace commit together or not at all.
    pub(super) async fn append_audit_in(
        &self,
        tx: &mut super::WriteTx,
        entries: &[AuditEntry],
    ) -> Result<()> {
        match self.dialect {
            Dialect::Sqlite => {
                let mut read = Script::new(self.dialect);
                let head = self.read_audit_head(&mut read);
                let head = AuditHead::from(&read.run(tx).await?[head])?;
                let mut write = Script::new(self.dialect);
                self.chain_audit(&mut write, head, entries);
                write.run(tx).await?;
            }
            Dialect::Postgres => {
                let mut write = Script::new(self.dialect);
                self.leave_audit_pending(&mut write, entries);
                write.run(tx).await?;
            }
        }
        Ok(())
    }

    /// Adds the read of the chain's head to the first script of a
    /// transaction that will append to it, on SQLite: one round trip fewer,
    /// and the write lock excludes every other writer anyway. Returns the
    /// result's index for `run_audited`, or None on PostgreSQL, where
    /// entries are left for the chainer (`chain_pending_audit`).
    pub(super) fn read_audit_head_early(&self, script: &mut Script<'_>) -> Option<usize> {
        (self.dialect == Dialect::Sqlite).then(|| self.read_audit_head(script))
    }

    /// Runs `write` and appends `entries` to the trail in the same
    /// transaction: chained on the head read early (`read_audit_head_early`)
    /// in the same script on SQLite, left for the chainer in the same
    /// script on PostgreSQL. Returns `write`'s results.
    pub(super) async fn run_audited<'a>(
        &self,
        tx: &mut super::WriteTx,
        mut write: Script<'a>,
        early_head: Option<&Done>,
        entries: &'a [AuditEntry],
    ) -> Result<Vec<Done>> {
        if entries.is_empty() {
            return write.run(tx).await;
        }
        match (early_head, self.dialect) {
            (Some(head), _) => self.chain_audit(&mut write, AuditHead::from(head)?, entries),
            (None, Dialect::Postgres) => self.leave_audit_pending(&mut write, entries),
            (None, Dialect::Sqlite) => {
                // The trail comes after: the caller's commit ends it.
                write.keep_open();
                let done = write.run(tx).await?;
                self.append_audit_in(tx, entries).await?;
                return Ok(done);
            }
        }
        write.run(tx).await
    }

    /// Adds `entries`, unchained, to a script of the transaction that does
    /// what they record (PostgreSQL). No lock is taken: the chainer links
    /// them after the commit.
    pub(super) fn leave_audit_pending<'a>(
        &self,
        script: &mut Script<'a>,
        entries: &'a [AuditEntry],
    ) {
        script.insert_rows(
            &format!("INSERT INTO audit_pending ({ENTRY_COLUMNS})"),
            9,
            entries,
            "",
            bind_entry,
        );
    }

    /// Links the entries left by committed transactions into the chain, in
    /// the order of their ids, a few thousand per transaction, and returns
    /// how many it linked. Chainers exclude each other by the head's row
    /// lock: with `ChainWait::Wait` this waits for one at work and then
    /// links what it left, so that a read that follows sees every entry
    /// committed before the call; with `ChainWait::Skip` it returns at once
    /// instead (the gateways' periodic runs). Nothing to do on SQLite.
    pub async fn chain_pending_audit(&self, wait: ChainWait) -> Result<u64> {
        if self.dialect == Dialect::Sqlite {
            return Ok(0);
        }
        let lock = match wait {
            ChainWait::Wait => " FOR NO KEY UPDATE",
            ChainWait::Skip => " FOR NO KEY UPDATE SKIP LOCKED",
        };
        let mut linked = 0;
        loop {
            let mut tx = self.begin(Priority::Background).await?;
            let mut take = Script::new(self.dialect);
            let head = take.push(
                format!("SELECT seq, hash FROM audit_head WHERE id = 1{lock}"),
                |query| query,
            );
            let mut done = take.run(&mut tx).await?;
            if done[head].rows.is_empty() {
                // Another chainer is at work (Skip).
                return Ok(linked);
            }
            let head = AuditHead::from(&done[head])?;
            let mut take = Script::new(self.dialect);
            let pending = take.push(
                format!(
                    "DELETE FROM audit_pending WHERE id IN \
                     (SELECT id FROM audit_pending ORDER BY id LIMIT {CHAIN_PER_TRANSACTION}) \
                     RETURNING id, {ENTRY_COLUMNS}"
                ),
                |query| query,
            );
            done = take.run(&mut tx).await?;
            let rows = std::mem::take(&mut done[pending].rows);
            if rows.is_empty() {
                return Ok(linked);
            }
            let mut entries = rows
                .iter()
                .map(|r| Ok((get_i64(r, "id")?, entry_from_columns(r)?)))
                .collect::<Result<Vec<_>>>()?;
            entries.sort_unstable_by_key(|(id, _)| *id);
            let entries: Vec<AuditEntry> = entries.into_iter().map(|(_, e)| e).collect();
            let mut write = Script::new(self.dialect);
            self.chain_audit(&mut write, head, &entries);
            write.run(&mut tx).await?;
            tx.commit().await?;
            linked += entries.len() as u64;
            if entries.len() < CHAIN_PER_TRANSACTION {
                return Ok(linked);
            }
        }
    }

    /// Adds the read of the chain's head to a script of the transaction
    /// that will append to it; on PostgreSQL the row is locked, which
    /// serialises appenders. Returns the result's index for
    /// `AuditHead::from`.
    fn read_audit_head(&self, script: &mut Script<'_>) -> usize {
        script.push(
            format!(
                "SELECT seq, hash FROM audit_head WHERE id = 1{}",
                self.dialect.for_update()
            ),
            |query| query,
        )
    }

    /// Adds `entries`, chained on from `head`, and the head's move to the
    /// last of them, to a script of the transaction that read `head`.
    fn chain_audit<'a>(&self, script: &mut Script<'a>, head: AuditHead, entries: &'a [AuditEntry]) {
        if entries.is_empty() {
            return;
        }
        let (mut seq, mut prev) = (head.seq, head.hash);
        let mut chained = Vec::with_capacity(entries.len());
        for e in entries {
            seq += 1;
            let hash = chain_hash(&prev, seq, e);
            chained.push((seq, e, std::mem::replace(&mut prev, hash.clone()), hash));
        }
        script.insert_owned_rows(
            &format!("INSERT INTO audit_log ({})", chained_columns()),
            12,
            chained,
            "",
            |query, (seq, e, prev, hash)| {
                bind_entry(query.bind(*seq), e)
                    .bind(prev.clone())
                    .bind(hash.clone())
            },
        );
        script.push(
            "UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1",
            move |query| query.bind(seq).bind(prev),
        );
    }

    /// The last number and hash of the chain, every entry committed
    /// before the call linked into it.
    pub async fn audit_head(&self) -> Result<(i64, String)> {
        self.chain_pending_audit(ChainWait::Wait).await?;
        let head = q("SELECT seq, hash FROM audit_head WHERE id = 1".to_owned())
            .fetch_one(&self.pool)
            .await?;
        Ok((get_i64(&head, "seq")?, get_str(&head, "hash")?))
    }

    /// Entries matching the filter, in chain order, every entry committed
    /// before the call linked into the chain first.
    pub async fn audit_entries(&self, f: &AuditFilter) -> Result<Vec<ChainedEntry>> {
        self.chain_pending_audit(ChainWait::Wait).await?;
        let mut conditions = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        let mut ints: Vec<i64> = Vec::new();
        // Text filters are bound first, then numbers; both keep their order.
        for (column, value) in [
            ("actor", &f.actor),
            ("office", &f.office),
            ("action", &f.action.map(|a| a.as_str().to_owned())),
            ("case_id", &f.case_id),
        ] {
            if let Some(v) = value {
                binds.push(v.clone());
                conditions.push(format!("{column} = ${}", binds.len()));
            }
        }
        for (cmp, value) in [("at >=", f.from), ("at <", f.to), ("seq >", f.after_seq)] {
            if let Some(v) = value {
                ints.push(v);
                conditions.push(format!("{cmp} ${}", binds.len() + ints.len()));
            }
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let mut query = q(format!(
            "SELECT {} FROM audit_log {filter} ORDER BY seq LIMIT ${}",
            chained_columns(),
            binds.len() + ints.len() + 1
        ));
        for b in binds {
            query = query.bind(b);
        }
        for i in ints {
            query = query.bind(i);
        }
        let rows = query.bind(f.limit).fetch_all(&self.pool).await?;
        rows.iter().map(entry_from_row).collect()
    }
}
