//! The database connection manager on both backends: concurrent
//! read-then-write transactions finish without a single error.

use airt_kit::db::{Backend, Database, begin_immediate};
use airt_kit::testing::TestDb;

const TASKS: i64 = 8;
const TRANSACTIONS_PER_TASK: i64 = 200;

async fn create_counter(db: &Database) {
    airt_kit::with_pool!(db, pool => {
        sqlx::query("CREATE TABLE counter (id INTEGER PRIMARY KEY, value BIGINT NOT NULL)")
            .execute(pool)
            .await
            .expect("create table");
        sqlx::query("INSERT INTO counter (id, value) VALUES (1, 0)")
            .execute(pool)
            .await
            .expect("seed counter");
    });
}

/// One read-then-write transaction: read the counter, write it back plus one.
async fn increment(db: &Database) -> Result<(), sqlx::Error> {
    match db {
        Database::Sqlite(pool) => {
            let mut tx = begin_immediate(pool).await?;
            let (value,): (i64,) = sqlx::query_as("SELECT value FROM counter WHERE id = 1")
                .fetch_one(&mut *tx)
                .await?;
            sqlx::query("UPDATE counter SET value = $1 WHERE id = 1")
                .bind(value + 1)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
        Database::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            let (value,): (i64,) =
                sqlx::query_as("SELECT value FROM counter WHERE id = 1 FOR UPDATE")
                    .fetch_one(&mut *tx)
                    .await?;
            sqlx::query("UPDATE counter SET value = $1 WHERE id = 1")
                .bind(value + 1)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_read_then_write_transactions_never_fail() {
    for test_db in TestDb::all().await {
        let db = Database::connect(test_db.url(), None)
            .await
            .expect("connect");
        create_counter(&db).await;

        let mut tasks = Vec::new();
        for _ in 0..TASKS {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let mut errors = Vec::new();
                for _ in 0..TRANSACTIONS_PER_TASK {
                    if let Err(error) = increment(&db).await {
                        errors.push(error.to_string());
                    }
                }
                errors
            }));
        }
        let mut errors = Vec::new();
        for task in tasks {
            errors.extend(task.await.expect("task"));
        }
        assert!(
            errors.is_empty(),
            "{:?}: {} errors, first: {:?}",
            test_db.backend(),
            errors.len(),
            errors.first()
        );

        let value: i64 = airt_kit::with_pool!(&db, pool => {
            sqlx::query_scalar("SELECT value FROM counter WHERE id = 1").fetch_one(pool).await
        })
        .expect("read counter");
        assert_eq!(
            value,
            TASKS * TRANSACTIONS_PER_TASK,
            "{:?}: lost updates",
            test_db.backend()
        );
        db.close().await;
    }
}

#[tokio::test]
async fn sqlite_file_is_created_with_wal_normal_sync_and_busy_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("nested/dir/service.db");
    let url = format!("sqlite://{}", path.display());
    let db = Database::connect(&url, None)
        .await
        .expect("connect creates the file");
    assert!(
        path.exists(),
        "database file created in a missing directory"
    );
    assert_eq!(db.backend(), Backend::Sqlite);
    let Database::Sqlite(pool) = &db else {
        unreachable!()
    };
    let mut conn = pool.acquire().await.expect("connection");
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma");
    let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma");
    let busy: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma");
    let foreign_keys: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(&mut *conn)
        .await
        .expect("pragma");
    assert_eq!(journal, "wal");
    assert_eq!(synchronous, 1, "synchronous=NORMAL");
    assert_eq!(busy, 10_000);
    assert_eq!(foreign_keys, 1);
    drop(conn);
    db.close().await;
}

/// No commit checkpoints the WAL; the task beside the pool copies it into
/// the database file soon after.
#[tokio::test]
async fn the_wal_is_checkpointed_beside_the_writers_not_by_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("service.db");
    let db = Database::connect(&format!("sqlite://{}", path.display()), None)
        .await
        .expect("connect");
    let Database::Sqlite(pool) = &db else {
        unreachable!()
    };
    let autocheckpoint: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
        .fetch_one(pool)
        .await
        .expect("pragma");
    assert_eq!(autocheckpoint, 0, "commits never checkpoint");
    sqlx::query("CREATE TABLE filler (data BLOB NOT NULL)")
        .execute(pool)
        .await
        .expect("create");
    // About 8 MiB: far more than the 1,000 pages at which a commit would
    // have checkpointed by itself.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000) \
         INSERT INTO filler SELECT randomblob(4096) FROM n",
    )
    .execute(pool)
    .await
    .expect("fill");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let size = std::fs::metadata(&path).expect("database file").len();
        if size > 8_000_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the WAL was not copied into the database file ({size} bytes)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    db.close().await;
}

/// Replicas (and `airt up`) may open one new database file at the same
/// moment; switching it to WAL is a lock SQLite does not wait for.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_processes_opening_one_new_sqlite_file_all_succeed() {
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("shared.db").display());
        let opens: Vec<_> = (0..6)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { Database::connect(&url, None).await })
            })
            .collect();
        for open in opens {
            let db = open
                .await
                .expect("task")
                .unwrap_or_else(|e| panic!("round {round}: a concurrent open failed: {e}"));
            db.close().await;
        }
    }
}

#[tokio::test]
async fn migrations_are_applied_once_and_reopening_is_harmless() {
    for test_db in TestDb::all().await {
        for _ in 0..2 {
            let db = Database::connect(test_db.url(), None)
                .await
                .expect("connect and migrate");
            let head: i64 = airt_kit::with_pool!(&db, pool => {
                sqlx::query_scalar("SELECT sequence FROM audit_head WHERE id = 1").fetch_one(pool).await
            })
            .expect("audit schema present");
            assert_eq!(head, 0);
            db.close().await;
        }
    }
}

#[tokio::test]
async fn unsupported_urls_are_refused_with_a_clear_error() {
    let error = Database::connect("mysql://root@localhost/x", None)
        .await
        .expect_err("refused");
    assert!(
        error.to_string().contains("unsupported database URL"),
        "{error}"
    );
}
