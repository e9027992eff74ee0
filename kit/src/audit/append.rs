//! Appending events to the chain inside a transaction: reading (and on
//! PostgreSQL locking) the head, sealing the events in order, inserting
//! them with multi-row INSERTs and moving the head once.

use sqlx::{PgConnection, SqliteConnection};

use super::{AuditEvent, NewAuditEvent};

pub(super) const SELECT_HEAD: &str = "SELECT sequence, hash FROM audit_head WHERE id = 1";
pub(super) const SELECT_HEAD_FOR_UPDATE: &str =
    "SELECT sequence, hash FROM audit_head WHERE id = 1 FOR UPDATE";
pub(super) const UPDATE_HEAD: &str = "UPDATE audit_head SET sequence = $1, hash = $2 WHERE id = 1";
pub(super) const INSERT_EVENTS_PREFIX: &str = "INSERT INTO audit_events \
     (sequence, event_id, occurred_at_us, actor, action, resource_type, resource_id, details, prev_hash, hash) ";

/// Up to this many rows go in one INSERT of exactly that many rows.
const SMALL_INSERT: usize = 64;
/// Rows per INSERT at most (10 binds each: 5,120, far below both
/// databases' limits).
const MAX_INSERT: usize = 512;

/// How many of `remaining` rows the next INSERT carries: all of them up to
/// [`SMALL_INSERT`], else the largest power of two that fits (at most
/// [`MAX_INSERT`]). Every INSERT's text is one of few (≤ 68), so each
/// connection prepares it once and reuses it from its statement cache.
pub(super) fn insert_rows(remaining: usize) -> usize {
    if remaining <= SMALL_INSERT {
        remaining
    } else {
        let fits = remaining.min(MAX_INSERT);
        1 << (usize::BITS - 1 - fits.leading_zeros())
    }
}

/// Inserts sealed events on `$conn`. With `$head_with_last_insert` the head
/// update rides with the last INSERT as one statement (a data-modifying
/// CTE, PostgreSQL only), one round trip fewer while the head row is
/// locked; otherwise the caller moves the head itself.
macro_rules! insert_sealed {
    ($conn:expr, $sealed:expr, $head_with_last_insert:expr) => {{
        let sealed: &[$crate::audit::AuditEvent] = $sealed;
        let mut start = 0;
        while start < sealed.len() {
            let end = start + $crate::audit::append::insert_rows(sealed.len() - start);
            let chunk = &sealed[start..end];
            let with_head = $head_with_last_insert && end == sealed.len();
            let mut insert = sqlx::QueryBuilder::new(if with_head {
                format!(
                    "WITH inserted AS ({}",
                    $crate::audit::append::INSERT_EVENTS_PREFIX
                )
            } else {
                $crate::audit::append::INSERT_EVENTS_PREFIX.to_owned()
            });
            insert.push_values(chunk, |mut row, event| {
                row.push_bind(event.sequence)
                    .push_bind(event.event_id.as_str())
                    .push_bind(event.occurred_at_us)
                    .push_bind(event.actor.as_str())
                    .push_bind(event.action.as_str())
                    .push_bind(event.resource_type.as_str())
                    .push_bind(event.resource_id.as_str())
                    .push_bind(event.details.as_str())
                    .push_bind(event.prev_hash.as_str())
                    .push_bind(event.hash.as_str());
            });
            if with_head {
                let last = &chunk[chunk.len() - 1];
                insert.push(" RETURNING 1) UPDATE audit_head SET sequence = ");
                insert.push_bind(last.sequence);
                insert.push(", hash = ");
                insert.push_bind(last.hash.as_str());
                insert.push(" WHERE id = 1");
            }
            insert.build().execute(&mut *$conn).await?;
            start = end;
        }
    }};
}
pub(super) use insert_sealed;

/// Appends `$events` on `$conn` inside the caller's transaction: reads the
/// head with `$head_sql`, seals, inserts and moves the head.
macro_rules! append_batch_on {
    ($conn:expr, $head_sql:expr, $events:expr, $head_with_last_insert:expr) => {{
        let (mut head_sequence, mut head_hash): (i64, String) =
            sqlx::query_as($head_sql).fetch_one(&mut *$conn).await?;
        let mut sealed = Vec::with_capacity($events.len());
        for event in $events {
            let next = AuditEvent::seal(head_sequence, &head_hash, event);
            head_sequence = next.sequence;
            head_hash.clone_from(&next.hash);
            sealed.push(next);
        }
        insert_sealed!($conn, &sealed, $head_with_last_insert);
        if !sealed.is_empty() && !$head_with_last_insert {
            sqlx::query(UPDATE_HEAD)
                .bind(head_sequence)
                .bind(&head_hash)
                .execute(&mut *$conn)
                .await?;
        }
        Ok(sealed)
    }};
}

/// Appends within a SQLite write transaction (one started with
/// [`begin_immediate`](crate::db::begin_immediate)).
pub async fn append_sqlite(
    conn: &mut SqliteConnection,
    event: &NewAuditEvent,
) -> Result<AuditEvent, sqlx::Error> {
    let mut sealed = append_batch_sqlite(conn, std::slice::from_ref(event)).await?;
    sealed.pop().ok_or(sqlx::Error::RowNotFound)
}

/// Appends within a PostgreSQL transaction; the head row is locked until the
/// transaction ends, which orders concurrent appends.
pub async fn append_postgres(
    conn: &mut PgConnection,
    event: &NewAuditEvent,
) -> Result<AuditEvent, sqlx::Error> {
    let mut sealed = append_batch_postgres(conn, std::slice::from_ref(event)).await?;
    sealed.pop().ok_or(sqlx::Error::RowNotFound)
}

/// Appends several events, in order, within a SQLite write transaction.
pub async fn append_batch_sqlite(
    conn: &mut SqliteConnection,
    events: &[NewAuditEvent],
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    append_batch_on!(conn, SELECT_HEAD, events, false)
}

/// Appends several events, in order, within a PostgreSQL transaction.
pub async fn append_batch_postgres(
    conn: &mut PgConnection,
    events: &[NewAuditEvent],
) -> Result<Vec<AuditEvent>, sqlx::Error> {
    append_batch_on!(conn, SELECT_HEAD_FOR_UPDATE, events, true)
}

/// Appending inside an open transaction on either backend, so code written
/// once for both (see [`crate::write_tx!`]) can record its audit event in the
/// same transaction as its change.
pub trait AppendAudit {
    fn append_audit(
        &mut self,
        event: &NewAuditEvent,
    ) -> impl std::future::Future<Output = Result<AuditEvent, sqlx::Error>> + Send;

    fn append_audit_batch(
        &mut self,
        events: &[NewAuditEvent],
    ) -> impl std::future::Future<Output = Result<Vec<AuditEvent>, sqlx::Error>> + Send;
}

impl AppendAudit for SqliteConnection {
    async fn append_audit(&mut self, event: &NewAuditEvent) -> Result<AuditEvent, sqlx::Error> {
        append_sqlite(self, event).await
    }

    async fn append_audit_batch(
        &mut self,
        events: &[NewAuditEvent],
    ) -> Result<Vec<AuditEvent>, sqlx::Error> {
        append_batch_sqlite(self, events).await
    }
}

impl AppendAudit for PgConnection {
    async fn append_audit(&mut self, event: &NewAuditEvent) -> Result<AuditEvent, sqlx::Error> {
        append_postgres(self, event).await
    }

    async fn append_audit_batch(
        &mut self,
        events: &[NewAuditEvent],
    ) -> Result<Vec<AuditEvent>, sqlx::Error> {
        append_batch_postgres(self, events).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inserts_are_whole_small_batches_or_powers_of_two() {
        assert_eq!(insert_rows(1), 1);
        assert_eq!(insert_rows(64), 64);
        assert_eq!(insert_rows(65), 64);
        assert_eq!(insert_rows(300), 256);
        assert_eq!(insert_rows(512), 512);
        assert_eq!(insert_rows(5_000), 512);
        // Every size a batch of up to 2,000 rows is cut into.
        let mut texts = std::collections::BTreeSet::new();
        for n in 1..=2_000 {
            let mut left = n;
            while left > 0 {
                let rows = insert_rows(left);
                assert!(rows >= 1 && rows <= left);
                texts.insert(rows);
                left -= rows;
            }
        }
        assert!(texts.len() <= 68, "{} distinct INSERTs", texts.len());
    }
}
