//! The database connection manager: one URL, one pool, embedded migrations.
//!
//! `sqlite://PATH` (or `sqlite:PATH`) opens a SQLite file — created if
//! missing, WAL journal, `synchronous=NORMAL`, a busy timeout and foreign keys
//! on. Write transactions must start with [`begin_immediate`] so that two
//! writers never deadlock upgrading a read lock ("database is locked").
//! No commit checkpoints the WAL (`wal_autocheckpoint=0`): a task beside
//! the pool does, every [`SQLITE_CHECKPOINT_EVERY`], on a connection of
//! its own, so no writer waits for the database file's copy and syncs.
//! `postgres://...` opens a PostgreSQL pool.
//!
//! Migrations are embedded per backend. The audit chain's schema belongs to
//! this crate and is tracked in its own table (`_airt_kit_migrations`), so each
//! service's own migrations stay independent of it.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};

/// How long a SQLite writer waits for the write lock before failing.
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often the background checkpointer copies the SQLite WAL back into
/// the database file (a passive checkpoint: it never waits for a reader or
/// a writer, and costs nothing when no commit happened since the last).
pub const SQLITE_CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Which database a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Result<Self, DbError> {
        if url.starts_with("sqlite:") {
            Ok(Self::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Self::Postgres)
        } else {
            Err(DbError::UnsupportedUrl(crate::config::redact_url(url)))
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("cannot create the directory of the SQLite file: {0}")]
    CreateDir(#[source] std::io::Error),
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

/// A service's own migrations, one set per backend.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    pub sqlite: &'static Migrator,
    pub postgres: &'static Migrator,
}

/// An open pool on one of the two backends.
#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Database {
    /// Opens the database named by `url` and runs the kit's migrations (the
    /// audit chain), then `service` migrations if given.
    pub async fn connect(url: &str, service: Option<Migrations>) -> Result<Self, DbError> {
        let db = match Backend::of_url(url)? {
            Backend::Sqlite => Self::Sqlite(open_sqlite(url).await?),
            Backend::Postgres => Self::Postgres(
                PgPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?,
            ),
        };
        // Several processes may open a new database at once (replicas,
        // `airt up`). PostgreSQL serialises migrations with an advisory lock;
        // SQLite has none, so a loser of that race retries and then finds
        // the winner's migrations applied.
        let mut attempt = 1;
        loop {
            match db.migrate(service).await {
                Ok(()) => return Ok(db),
                Err(error) if attempt < 5 && db.backend() == Backend::Sqlite => {
                    tracing::debug!(%error, attempt, "migration raced another process; retrying");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                    attempt += 1;
                }
                Err(error) => {
                    // Nobody gets this pool: close it (and so end its
                    // SQLite checkpointer) rather than leave it open.
                    db.close().await;
                    return Err(error);
                }
            }
        }
    }

    async fn migrate(&self, service: Option<Migrations>) -> Result<(), DbError> {
        match self {
            Self::Sqlite(pool) => {
                let mut kit = sqlx::migrate!("migrations/sqlite");
                kit.dangerous_set_table_name("_airt_kit_migrations");
                kit.run(pool).await?;
                if let Some(m) = service {
                    m.sqlite.run(pool).await?;
                }
            }
            Self::Postgres(pool) => {
                let mut kit = sqlx::migrate!("migrations/postgres");
                kit.dangerous_set_table_name("_airt_kit_migrations");
                kit.run(pool).await?;
                if let Some(m) = service {
                    m.postgres.run(pool).await?;
                }
            }
        }
        Ok(())
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Sqlite(_) => Backend::Sqlite,
            Self::Postgres(_) => Backend::Postgres,
        }
    }

    /// One round trip to the database (`SELECT 1`).
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        crate::with_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(drop))
    }

    /// Connections of the pool: (open, idle).
    pub fn pool_connections(&self) -> (u32, usize) {
        crate::with_pool!(self, pool => (pool.size(), pool.num_idle()))
    }

    /// Waits for checked-out connections to return, then closes the pool.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

async fn open_sqlite(url: &str) -> Result<SqlitePool, DbError> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        .foreign_keys(true)
        .pragma("wal_autocheckpoint", "0");
    let path = options.get_filename();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(DbError::CreateDir)?;
    }
    // Switching a new file to WAL takes an exclusive lock that SQLite does
    // not wait for (the busy timeout does not apply), so a process opening
    // the file while another one switches it is refused with SQLITE_BUSY:
    // retry that for as long as the busy timeout would have waited.
    let deadline = tokio::time::Instant::now() + SQLITE_BUSY_TIMEOUT;
    let mut backoff =
        crate::backoff::Backoff::doubling(Duration::from_millis(10), Duration::from_millis(500));
    loop {
        let opened = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await;
        match opened {
            Err(error) if is_busy(&error) && tokio::time::Instant::now() < deadline => {
                tracing::debug!(%error, "the database is being opened by another process; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Ok(pool) => {
                tokio::spawn(checkpoint_in_background(pool.clone(), options));
                return Ok(pool);
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Checkpoints `pool`'s database every [`SQLITE_CHECKPOINT_EVERY`] until
/// the pool closes. With the automatic checkpoint, the commit that pushed
/// the WAL past 1,000 pages copied them into the database file and synced
/// both files before it returned, and every write queued behind it waited
/// (tens to hundreds of milliseconds under load).
async fn checkpoint_in_background(pool: SqlitePool, options: SqliteConnectOptions) {
    use sqlx::Connection as _;
    let mut ticks = tokio::time::interval(SQLITE_CHECKPOINT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<sqlx::SqliteConnection> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = pool.close_event() => break,
        }
        let checkpointer = match conn.as_mut() {
            Some(conn) => conn,
            None => match sqlx::SqliteConnection::connect_with(&options).await {
                Ok(opened) => conn.insert(opened),
                Err(error) => {
                    tracing::debug!(%error, "cannot open the checkpoint connection; retrying");
                    continue;
                }
            },
        };
        let checkpointed = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut *checkpointer)
            .await;
        if let Err(error) = checkpointed {
            tracing::debug!(%error, "WAL checkpoint failed; retrying with a new connection");
            conn = None;
        }
    }
    if let Some(conn) = conn {
        let _ = conn.close().await;
    }
}

/// SQLITE_BUSY (5) or one of its extended codes (`code & 0xff == 5`).
fn is_busy(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .and_then(|e| e.code())
        .and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

/// Starts a SQLite write transaction that holds the write lock from its first
/// statement (`BEGIN IMMEDIATE`). A deferred transaction that reads and then
/// writes can fail with SQLITE_BUSY without waiting; this one waits up to the
/// busy timeout instead.
pub async fn begin_immediate(
    pool: &SqlitePool,
) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// Runs the same expression against whichever pool a [`Database`] holds.
/// The expression is type-checked once per backend, so SQL written once in
/// portable form (`$1` placeholders work on both) is executed on either.
#[macro_export]
macro_rules! with_pool {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Database::Sqlite($pool) => $body,
            $crate::db::Database::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` inside a write transaction on whichever backend a
/// [`Database`] holds — `BEGIN IMMEDIATE` on SQLite, `BEGIN` on PostgreSQL —
/// and commits it. `$tx` is the open transaction; the body may leave early
/// with `?` or `return`, which rolls back. Evaluates to
/// `Result<body value, sqlx::Error>`.
#[macro_export]
macro_rules! write_tx {
    ($db:expr, $tx:ident => $body:expr) => {
        match $db {
            $crate::db::Database::Sqlite(pool) => {
                let timer = $crate::db::TransactionTimer::start();
                #[allow(unused_mut)]
                let mut $tx = $crate::db::begin_immediate(pool).await?;
                let value = $body;
                timer.finish($tx.commit().await).map(|()| value)
            }
            $crate::db::Database::Postgres(pool) => {
                let timer = $crate::db::TransactionTimer::start();
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                let value = $body;
                timer.finish($tx.commit().await).map(|()| value)
            }
        }
    };
}

/// Times one [`write_tx!`] transaction, from asking for it to its commit,
/// into [`transaction_seconds`]: `committed`, `failed` (the commit or the
/// begin failed) or `rolled_back` (the body left early).
#[derive(Debug)]
pub struct TransactionTimer {
    started: std::time::Instant,
    outcome: Option<&'static str>,
}

impl TransactionTimer {
    pub fn start() -> Self {
        Self {
            started: std::time::Instant::now(),
            outcome: None,
        }
    }

    /// Records the commit's outcome and hands it back.
    pub fn finish<T>(mut self, commit: Result<T, sqlx::Error>) -> Result<T, sqlx::Error> {
        self.outcome = Some(if commit.is_ok() {
            "committed"
        } else {
            "failed"
        });
        commit
    }
}

impl Drop for TransactionTimer {
    fn drop(&mut self) {
        let outcome = self.outcome.unwrap_or("rolled_back");
        TRANSACTIONS
            .get_or_create(&[("outcome", outcome)])
            .observe(self.started.elapsed().as_secs_f64());
    }
}

type TransactionFamily = crate::metrics::LatencyFamily<[(&'static str, &'static str); 1]>;

static TRANSACTIONS: std::sync::LazyLock<TransactionFamily> =
    std::sync::LazyLock::new(crate::metrics::latency_family);

/// This process's write transactions by outcome (one service per process
/// in a deployment; services embedded in one process share it).
pub fn transaction_seconds() -> TransactionFamily {
    TRANSACTIONS.clone()
}

/// Whether a database error says "not now" rather than "never": the pool
/// could not get a connection in time or is closed, the connection broke,
/// or the server refuses connections or is shutting down (SQLSTATE class
/// 08, 53300, 57P0x), or SQLite is busy or locked. A retry may succeed.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => database.code().is_some_and(|code| {
            code.starts_with("08")
                || matches!(
                    code.as_ref(),
                    "53300" | "57P01" | "57P02" | "57P03" | "5" | "6"
                )
        }),
        _ => false,
    }
}
