//! Where write transactions run.
//!
//! SQLite has one writer at a time, so the store keeps one connection for
//! writing, for its whole life, taken in turns (`super::turns`, people
//! before machines): a transaction holds its turn from `BEGIN IMMEDIATE`
//! to `COMMIT`, and ending it hands the connection straight to the next
//! waiter. A sqlx pool of one
//! connection did the same job with more hand-offs: every return to the
//! pool ran in a task of its own and pinged the connection's worker thread
//! on the way, and the next waiter was woken only after that, all of it
//! while nobody could write. On PostgreSQL, writes take their connections
//! from the shared pool, with sqlx's own transactions.
//!
//! The busiest SQLite write transactions also run on a thread of their own
//! (`Driver`, through `Store::on_writer`). Between two round trips to the
//! connection's worker a transaction's task must be polled again, and on an
//! HTTP worker it waited behind whatever request that worker was parsing,
//! with the write lock held all along (BENCHMARKS.md, fourteenth session).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sqlx::{AnyConnection, AnyPool};
use tokio::sync::{Mutex, OwnedMutexGuard};

use super::turns::{Priority, Turn, Turns};
use super::{Result, StoreError, WriterScheduling};

/// How long a writer waits for its turn before giving up (as a pool's
/// acquire timeout would).
const TURN_TIMEOUT: Duration = Duration::from_secs(30);

pub(super) enum Writer {
    Sqlite {
        driver: Driver,
        lane: Arc<Mutex<Lane>>,
        /// Who writes next (`turns`): the lane's mutex is only ever locked
        /// by the holder of a turn, so it never makes anyone wait.
        turns: Arc<Turns>,
        /// Nanoseconds the lane has been held in transactions: the time the
        /// process holds the database's write lock (the bench prints its
        /// share of a run; `/metrics` exports it).
        held_ns: Arc<AtomicU64>,
    },
    Postgres(AnyPool),
}

/// The SQLite write connection. A transaction dropped open (an early
/// return, an error, a cancelled future) is rolled back at once by a task
/// that holds the lane meanwhile; `rollback_first` stays set until that is
/// done, so should the task never run, the next writer rolls back first.
pub(super) struct Lane {
    conn: Option<AnyConnection>,
    rollback_first: bool,
}

impl Writer {
    pub fn sqlite(driver: Driver, conn: AnyConnection) -> Self {
        Self::Sqlite {
            driver,
            lane: Arc::new(Mutex::new(Lane {
                conn: Some(conn),
                rollback_first: false,
            })),
            turns: Arc::default(),
            held_ns: Arc::default(),
        }
    }

    /// Where write transactions are driven: the driver on SQLite, the
    /// caller's own task on PostgreSQL (None).
    pub fn driver(&self) -> Option<&Driver> {
        match self {
            Self::Sqlite { driver, .. } => Some(driver),
            Self::Postgres(_) => None,
        }
    }

    pub async fn begin(&self, priority: Priority) -> Result<WriteTx> {
        let mut tx = self.take_turn(priority).await?;
        if let WriteTx::Sqlite(lane) = &mut tx {
            sqlx::query("BEGIN IMMEDIATE").execute(lane.conn()?).await?;
        }
        Ok(tx)
    }

    /// A transaction whose BEGIN is still to be sent, on SQLite: the caller
    /// sends it with its first statements (`Store::begin_with`). On
    /// PostgreSQL, begun.
    pub async fn take_turn(&self, priority: Priority) -> Result<WriteTx> {
        let (lane, turns, held_ns) = match self {
            Self::Postgres(pool) => return Ok(WriteTx::Postgres(pool.begin().await?)),
            Self::Sqlite {
                lane,
                turns,
                held_ns,
                ..
            } => (lane, turns, held_ns),
        };
        let turn = tokio::time::timeout(TURN_TIMEOUT, turns.take(priority))
            .await
            .map_err(|_| StoreError::Database(sqlx::Error::PoolTimedOut))?;
        let guard = lane.clone().lock_owned().await;
        let mut tx = LaneTx {
            turn: Some(turn),
            guard: Some(guard),
            acquired_at: Instant::now(),
            held_ns: held_ns.clone(),
            open: false,
        };
        tx.lane().roll_back_if_left_open().await;
        // BEGIN IMMEDIATE, whoever sends it, takes the write lock at once,
        // so a writer in another process queues on the busy timeout instead
        // of failing on upgrade. Open before it is sent: a BEGIN cancelled
        // half-way is rolled back by the next writer.
        tx.open = true;
        Ok(WriteTx::Sqlite(tx))
    }

    /// Seconds the SQLite write connection has been in a transaction.
    pub fn held_seconds(&self) -> Option<f64> {
        match self {
            Self::Sqlite { held_ns, .. } => Some(held_ns.load(Ordering::Relaxed) as f64 / 1e9),
            Self::Postgres(_) => None,
        }
    }

    pub async fn close(&self) {
        match self {
            Self::Sqlite { lane, .. } => {
                if let Some(conn) = lane.lock().await.conn.take() {
                    let _ = sqlx::Connection::close(conn).await;
                }
            }
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

/// A thread with a runtime of its own that polls nothing but write
/// transactions, so the one holding the write lock is polled as soon as its
/// statements come back. It stops when the writer is dropped; transactions
/// still running then are dropped, and so rolled back.
pub(super) struct Driver {
    handle: tokio::runtime::Handle,
    /// What the thread got: `RealTime` may be refused.
    scheduling: WriterScheduling,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Driver {
    pub fn start(scheduling: WriterScheduling) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (got_tx, got) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("shokai-writer".into())
            .spawn(move || {
                let got = match scheduling {
                    WriterScheduling::RealTime => match take_real_time(PassedOn::Yes) {
                        Ok(()) => WriterScheduling::RealTime,
                        Err(e) => {
                            tracing::warn!(
                                error = %e,
                                "the SQLite writer could not take real-time scheduling; \
                                 it runs as shared"
                            );
                            WriterScheduling::Shared
                        }
                    },
                    WriterScheduling::Shared => WriterScheduling::Shared,
                };
                let _ = got_tx.send(got);
                let _ = runtime.block_on(stopped);
            })?;
        // The thread's first act: a wait of microseconds, once per store.
        let scheduling = got.recv().map_err(std::io::Error::other)?;
        Ok(Self {
            handle,
            scheduling,
            _stop: stop,
        })
    }

    pub fn scheduling(&self) -> WriterScheduling {
        self.scheduling
    }

    /// Opens the writer's connection on the driver's thread: the
    /// connection's worker thread starts there and so is scheduled as the
    /// driver is. Threads the driver starts afterwards (a reader connection
    /// opened by a transaction it runs) are scheduled as shared.
    pub async fn open<T, Fut>(&self, open: Fut) -> Result<T>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let real_time = self.scheduling == WriterScheduling::RealTime;
        self.run(async move {
            let opened = open.await;
            if real_time && let Err(e) = take_real_time(PassedOn::No) {
                tracing::warn!(error = %e, "the SQLite writer's later threads stay real-time");
            }
            opened
        })
        .await
    }

    /// Runs `work` on the driver's thread and waits for it. It runs to its
    /// end even if the caller stops waiting.
    pub async fn run<T, Fut>(&self, work: Fut) -> Result<T>
    where
        T: Send + 'static,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        match self.handle.spawn(work).await {
            Ok(done) => done,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The driver stopped: the store is being dropped.
            Err(_) => Err(StoreError::Database(sqlx::Error::PoolClosed)),
        }
    }
}

/// Whether threads started later by a thread that takes real time get it
/// too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassedOn {
    Yes,
    No,
}

/// Real-time scheduling (`SCHED_FIFO`, its lowest priority) for the
/// calling thread.
#[cfg(target_os = "linux")]
fn take_real_time(passed_on: PassedOn) -> std::io::Result<()> {
    let lowest = libc::sched_param { sched_priority: 1 };
    let policy = match passed_on {
        PassedOn::Yes => libc::SCHED_FIFO,
        PassedOn::No => libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK,
    };
    // SAFETY: sets the calling thread's policy; `lowest` outlives the call.
    match unsafe { libc::sched_setscheduler(0, policy, &lowest) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[cfg(not(target_os = "linux"))]
fn take_real_time(_: PassedOn) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// A write transaction: dereferences to its connection for statements;
/// ends with `commit` or `rollback`, and rolls back if dropped.
pub(super) enum WriteTx {
    Sqlite(LaneTx),
    Postgres(sqlx::Transaction<'static, sqlx::Any>),
}

impl WriteTx {
    pub async fn commit(self) -> Result<()> {
        match self {
            // Already committed by its last script (`Script::then_commit`).
            Self::Sqlite(tx) if !tx.open => Ok(()),
            Self::Sqlite(mut tx) => tx.end("COMMIT").await,
            Self::Postgres(tx) => Ok(tx.commit().await?),
        }
    }

    /// False once a script's own COMMIT went through (SQLite): statements
    /// run after it would each commit on their own.
    pub(super) fn is_open(&self) -> bool {
        match self {
            Self::Sqlite(tx) => tx.open,
            Self::Postgres(_) => true,
        }
    }

    /// A script's own COMMIT went through (SQLite).
    pub(super) fn committed_by_script(&mut self) {
        if let Self::Sqlite(tx) = self {
            tx.open = false;
        }
    }

    pub async fn rollback(self) -> Result<()> {
        match self {
            Self::Sqlite(mut tx) => tx.end("ROLLBACK").await,
            Self::Postgres(tx) => Ok(tx.rollback().await?),
        }
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Self::Sqlite(tx) => tx
                .guard
                .as_ref()
                .and_then(|g| g.conn.as_ref())
                .expect(BEGUN),
            Self::Postgres(tx) => tx,
        }
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Self::Sqlite(tx) => tx.lane().conn.as_mut().expect(BEGUN),
            Self::Postgres(tx) => tx,
        }
    }
}

const BEGUN: &str = "a begun transaction has its connection";

impl Lane {
    async fn roll_back_if_left_open(&mut self) {
        if let (true, Some(conn)) = (self.rollback_first, self.conn.as_mut()) {
            // Fails harmlessly if the dropped transaction never began.
            let _ = sqlx::query("ROLLBACK").execute(conn).await;
            self.rollback_first = false;
        }
    }
}

pub(super) struct LaneTx {
    /// Given up after the guard, so the next holder finds the lane free.
    turn: Option<Turn>,
    /// Always present until dropped.
    guard: Option<OwnedMutexGuard<Lane>>,
    acquired_at: Instant,
    held_ns: Arc<AtomicU64>,
    open: bool,
}

impl LaneTx {
    fn lane(&mut self) -> &mut Lane {
        self.guard.as_mut().expect("a transaction holds its lane")
    }

    fn conn(&mut self) -> Result<&mut AnyConnection> {
        self.lane()
            .conn
            .as_mut()
            .ok_or(StoreError::Database(sqlx::Error::PoolClosed))
    }

    async fn end(&mut self, statement: &'static str) -> Result<()> {
        sqlx::query(statement).execute(self.conn()?).await?;
        self.open = false;
        Ok(())
    }
}

impl Drop for LaneTx {
    fn drop(&mut self) {
        let Some(mut guard) = self.guard.take() else {
            return;
        };
        let (acquired_at, held_ns) = (self.acquired_at, self.held_ns.clone());
        let released = move || {
            held_ns.fetch_add(acquired_at.elapsed().as_nanos() as u64, Ordering::Relaxed);
        };
        if !self.open {
            released();
            return;
        }
        // The write lock stays taken until the rollback: do it now, not
        // when the next writer happens to come.
        guard.rollback_first = true;
        let turn = self.turn.take();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                guard.roll_back_if_left_open().await;
                released();
                drop(guard);
                drop(turn);
            });
        } else {
            released();
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::store::{Priority, Store, StoreConfig, WriterScheduling, q};

    /// A table `t (v TEXT)`, created in a write transaction of its own.
    async fn create_table_t(store: &Store) {
        let mut tx = store.begin(Priority::Background).await.unwrap();
        q("CREATE TABLE t (v TEXT)".to_owned())
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
    }

    /// The policy of each of the process's threads named `name`.
    #[cfg(target_os = "linux")]
    fn policies_of(name: &str) -> Vec<i32> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|task| {
                let task = task.ok()?.path();
                let comm = std::fs::read_to_string(task.join("comm")).ok()?;
                let tid: i32 = task.file_name()?.to_str()?.parse().ok()?;
                // SAFETY: reads a thread's policy; no memory is passed.
                (comm.trim() == name).then(|| unsafe { libc::sched_getscheduler(tid) })
            })
            .collect()
    }

    /// Real-time scheduling, where the system allows it, goes to the
    /// writer's driver and its connection's worker, and to no thread
    /// started later (a reader connection a transaction opens); where it
    /// is refused the store says so and writes as before.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn real_time_goes_to_the_writer_threads_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("rt.db").display());
        let store = Store::open(&StoreConfig {
            writer_scheduling: WriterScheduling::RealTime,
            ..StoreConfig::new(url)
        })
        .await
        .unwrap();
        let driver = store.writer.driver().unwrap();
        // A thread started by the driver now: as a reader connection would be.
        let (policy, later) = driver
            .run(async {
                // SAFETY: reads the calling thread's policy.
                let policy = unsafe { libc::sched_getscheduler(0) };
                let later = std::thread::spawn(|| unsafe { libc::sched_getscheduler(0) })
                    .join()
                    .unwrap();
                Ok((policy, later))
            })
            .await
            .unwrap();
        assert_eq!(later, libc::SCHED_OTHER, "a later thread is shared");
        if store.writer_scheduling() == Some(WriterScheduling::RealTime) {
            assert_eq!(policy, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK);
            // Only this test asks for real time: one worker in the process has it.
            let fifo = |p: &&i32| **p & !libc::SCHED_RESET_ON_FORK == libc::SCHED_FIFO;
            assert_eq!(
                policies_of("sqlx-sqlite-wor").iter().filter(fifo).count(),
                1,
                "the writer's connection worker, and no reader"
            );
        } else {
            assert_eq!(policy, libc::SCHED_OTHER);
        }
        store.ping().await.unwrap();
        create_table_t(&store).await;
        store.close().await;
    }

    /// A transaction dropped open is rolled back at once: its rows are gone
    /// and the database's write lock is free for other connections, not
    /// only for the next writer of this store.
    #[tokio::test]
    async fn a_dropped_transaction_rolls_back_and_frees_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("w.db").display());
        let store = Store::connect(&StoreConfig::new(url)).await.unwrap();
        create_table_t(&store).await;
        let mut tx = store.begin(Priority::Background).await.unwrap();
        q("INSERT INTO t (v) VALUES ('dropped')".to_owned())
            .execute(&mut *tx)
            .await
            .unwrap();
        drop(tx);
        // A write on a pool connection, outside the writer: with the lock
        // still held it would wait out the busy timeout and fail.
        let mut done = None;
        for _ in 0..100 {
            let mut conn = store.pool.acquire().await.unwrap();
            q("PRAGMA busy_timeout = 0".to_owned())
                .execute(&mut *conn)
                .await
                .unwrap();
            match q("INSERT INTO t (v) VALUES ('other')".to_owned())
                .execute(&mut *conn)
                .await
            {
                Ok(r) => {
                    done = Some(r);
                    break;
                }
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
        assert!(done.is_some(), "the write lock was not freed");
        let rows: Vec<String> = sqlx::query_scalar("SELECT v FROM t")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(rows, vec!["other".to_owned()]);
        store.close().await;
    }
}
