//! An appender that keeps one connection between batches and seals each
//! batch before its transaction, for a log that only ever appends from one
//! task (the policy service's decision log).
//!
//! On SQLite each pooled connection has its own page cache, and a write
//! through one connection makes the others' caches stale; a writer that
//! took whichever connection was free re-read the audit table's index
//! pages for almost every batch. One held connection keeps them warm and
//! skips the pool's checkout on every batch. The owner gives it back when
//! it has nothing to write ([`AuditWriter::release`]): a connection held
//! by an idle writer would keep the pool from closing at shutdown.
//!
//! A [`SealedBatch`] is hashed and chained before its transaction begins,
//! after the head its writer expects (the last one it wrote), so no lock is
//! held while it is sealed and the transaction needs no read of the head:
//! it moves the head only from that expected head (one statement), and
//! when another appender moved it meanwhile, reads the real head and seals
//! the batch again after it before anything is inserted. Appending a batch
//! again after an error is safe: if the failed attempt had in fact
//! committed, the batch's first event is found in the log and nothing is
//! written twice.

use sqlx::pool::PoolConnection;
use sqlx::{Connection as _, Postgres, Sqlite};

use super::append::{SELECT_HEAD, SELECT_HEAD_FOR_UPDATE, UPDATE_HEAD, insert_sealed};
use super::{AuditEvent, AuditLog, GENESIS_HASH, NewAuditEvent};
use crate::db::{Database, TransactionTimer};

/// Moves the head from the expected one; no row when it moved meanwhile.
const MOVE_HEAD_FROM: &str = "UPDATE audit_head SET sequence = $1, hash = $2 \
     WHERE id = 1 AND sequence = $3 AND hash = $4";

/// Whether an event is in the log (a batch commits whole, so its first
/// event tells whether it was written).
const SELECT_BY_EVENT_ID: &str = "SELECT sequence FROM audit_events WHERE event_id = $1";

/// Events sealed ahead of their transaction, chained after an expected
/// head (see the module documentation).
#[derive(Debug, Clone)]
pub struct SealedBatch {
    /// The head the first event is chained to.
    after: (i64, String),
    events: Vec<AuditEvent>,
}

impl SealedBatch {
    /// Seals `event` after the batch's last event.
    pub fn push(&mut self, event: &NewAuditEvent) {
        let (sequence, hash) = self.tip();
        self.events.push(AuditEvent::seal(sequence, &hash, event));
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The head once this batch is appended.
    fn tip(&self) -> (i64, String) {
        self.events.last().map_or_else(
            || self.after.clone(),
            |last| (last.sequence, last.hash.clone()),
        )
    }

    /// Chains the events again, after `head`.
    fn reseal(&mut self, head: (i64, String)) {
        let (mut sequence, mut hash) = head.clone();
        for event in &mut self.events {
            event.rechain(sequence, &hash);
            sequence = event.sequence;
            hash.clone_from(&event.hash);
        }
        self.after = head;
    }
}

/// Inside the transaction: moves the head from the batch's expected head
/// to its tip, or reads the real head (locking it with `$head_sql`) and
/// seals the batch again after it. Evaluates to `false` when the batch is
/// already in the log: an earlier attempt whose commit reported an error
/// had committed it, and nothing is to be written again.
macro_rules! settle_head {
    ($conn:expr, $batch:expr, $head_sql:expr) => {{
        let batch: &mut SealedBatch = $batch;
        let tip = batch.tip();
        let moved = sqlx::query(MOVE_HEAD_FROM)
            .bind(tip.0)
            .bind(&tip.1)
            .bind(batch.after.0)
            .bind(&batch.after.1)
            .execute(&mut *$conn)
            .await?
            .rows_affected();
        if moved == 1 {
            true
        } else {
            let head: (i64, String) = sqlx::query_as($head_sql).fetch_one(&mut *$conn).await?;
            let written: Option<i64> = sqlx::query_scalar(SELECT_BY_EVENT_ID)
                .bind(&batch.events[0].event_id)
                .fetch_optional(&mut *$conn)
                .await?;
            if written.is_some() {
                false
            } else {
                batch.reseal(head);
                let tip = batch.tip();
                sqlx::query(UPDATE_HEAD)
                    .bind(tip.0)
                    .bind(&tip.1)
                    .execute(&mut *$conn)
                    .await?;
                true
            }
        }
    }};
}

/// Appends batches of events, each in its own transaction, over one
/// connection held from the first batch on (taken again after an error).
#[derive(Debug)]
pub struct AuditWriter {
    db: Database,
    held: Option<Held>,
    /// The head after the last batch this writer appended (before the
    /// first one, a guess the first transaction corrects).
    head: (i64, String),
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
            head: (0, GENESIS_HASH.to_owned()),
        }
    }

    /// An empty batch chained after the last one this writer appended.
    pub fn batch(&self) -> SealedBatch {
        SealedBatch {
            after: self.head.clone(),
            events: Vec::new(),
        }
    }

    /// Appends `events` in one transaction, in order.
    pub async fn append_batch(&mut self, events: &[NewAuditEvent]) -> Result<(), sqlx::Error> {
        let mut batch = self.batch();
        for event in events {
            batch.push(event);
        }
        self.append_sealed(&mut batch).await
    }

    /// Appends a sealed batch in one transaction (sealing it again first if
    /// the head moved since it was sealed). After an error the connection
    /// is given back (it may be broken) and the next batch takes one from
    /// the pool again; appending the same batch again is safe: a batch an
    /// earlier attempt committed is not written twice.
    pub async fn append_sealed(&mut self, batch: &mut SealedBatch) -> Result<(), sqlx::Error> {
        if batch.is_empty() {
            return Ok(());
        }
        let appended = self.append_held(batch).await;
        match appended {
            Ok(()) => self.head = batch.tip(),
            Err(_) => self.held = None,
        }
        appended
    }

    /// Gives the held connection back to the pool (the next batch takes
    /// one again).
    pub fn release(&mut self) {
        self.held = None;
    }

    async fn append_held(&mut self, batch: &mut SealedBatch) -> Result<(), sqlx::Error> {
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
                if settle_head!(&mut *tx, batch, SELECT_HEAD) {
                    insert_sealed!(&mut *tx, &batch.events, false);
                }
                tx.commit().await
            }
            Held::Postgres(conn) => {
                let mut tx = conn.begin().await?;
                if settle_head!(&mut *tx, batch, SELECT_HEAD_FOR_UPDATE) {
                    insert_sealed!(&mut *tx, &batch.events, false);
                }
                tx.commit().await
            }
        };
        timer.finish(committed)
    }
}
