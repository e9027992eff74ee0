//! An appender that keeps one connection between batches, for a log that
//! only ever appends from one task (the policy service's decision log).
//!
//! On SQLite each pooled connection has its own page cache, and a write
//! through one connection makes the others' caches stale; a writer that
//! took whichever connection was free re-read the audit table's index
//! pages for almost every batch. One held connection keeps them warm and
//! skips the pool's checkout on every batch. The owner gives it back when
//! it has nothing to write ([`AuditWriter::release`]): a connection held
//! by an idle writer would keep the pool from closing at shutdown.

use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, Postgres, Sqlite};

use super::{AuditLog, NewAuditEvent, append_batch_postgres, append_batch_sqlite};
use crate::db::{Database, TransactionTimer};

/// Appends batches of events, each in its own transaction, over one
/// connection held from the first batch on (taken again after an error).
#[derive(Debug)]
pub struct AuditWriter {
    db: Database,
    held: Option<Held>,
}

#[derive(Debug)]
enum Held {
    Sqlite(PoolConnection<Sqlite>),
    Postgres(PoolConnection<Postgres>),
}

impl AuditWriter {
    pub fn new(log: &AuditLog) -> Self {
        Self {
            db: log.db.clone(),
            held: None,
        }
    }

    /// Appends `events` in one transaction, in order. After an error the
    /// connection is given back (it may be broken) and the next batch
    /// takes one from the pool again.
    pub async fn append_batch(&mut self, events: &[NewAuditEvent]) -> Result<(), sqlx::Error> {
        let appended = self.append_held(events).await;
        if appended.is_err() {
            self.held = None;
        }
        appended
    }

    /// Gives the held connection back to the pool (the next batch takes
    /// one again).
    pub fn release(&mut self) {
        self.held = None;
    }

    async fn append_held(&mut self, events: &[NewAuditEvent]) -> Result<(), sqlx::Error> {
        let held = match self.held.take() {
            Some(held) => held,
            None => match &self.db {
                Database::Sqlite(pool) => Held::Sqlite(pool.acquire().await?),
                Database::Postgres(pool) => Held::Postgres(pool.acquire().await?),
            },
        };
        let held = self.held.insert(held);
        let timer = TransactionTimer::start();
        let committed = match held {
            Held::Sqlite(conn) => {
                let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
                append_batch_sqlite(&mut tx, events).await?;
                tx.commit().await
            }
            Held::Postgres(conn) => {
                let mut tx = conn.begin().await?;
                append_batch_postgres(&mut tx, events).await?;
                tx.commit().await
            }
        };
        timer.finish(committed)
    }
}
