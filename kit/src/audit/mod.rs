//! The tamper-evident audit log each service keeps in its own database.
//!
//! Events are append-only and hash-chained:
//! `hash = SHA-256(prev_hash ‖ canonical JSON of the event)`, where the
//! canonical JSON holds `sequence, event_id, occurred_at_us, actor, action,
//! resource_type, resource_id, details` with sorted keys, and `prev_hash` is
//! the lowercase hex hash of the previous event (64 zeros for the first).
//! `audit_head` remembers the last event, so deleting the newest events is
//! detected too. [`AuditLog::verify`] recomputes everything and names the
//! first broken event.
//!
//! Services append within their own write transactions with
//! [`append_sqlite`] / [`append_postgres`], so a change and its audit event
//! commit together or not at all.

mod api;
mod append;
mod writer;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::db::{Database, begin_immediate};
use crate::json::canonical_json;
use crate::with_pool;

use append::SELECT_HEAD;

pub use api::AuditApi;
pub use append::{
    AppendAudit, append_batch_postgres, append_batch_sqlite, append_postgres, append_sqlite,
};
pub use writer::{AuditWriter, SealedBatch};

/// `prev_hash` of the first event.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Roles that may read the audit log.
pub const AUDIT_READER_ROLES: &[&str] = &["admin", "auditor"];

/// An event to append; the log assigns sequence, id, time and hashes.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    pub actor: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub details: Value,
}

impl NewAuditEvent {
    pub fn new(
        actor: impl std::fmt::Display,
        action: impl Into<String>,
        resource_type: impl Into<String>,
        resource_id: impl Into<String>,
    ) -> Self {
        Self {
            actor: actor.to_string(),
            action: action.into(),
            resource_type: resource_type.into(),
            resource_id: resource_id.into(),
            details: Value::Object(Default::default()),
        }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditEvent {
    pub sequence: i64,
    pub event_id: String,
    pub occurred_at_us: i64,
    pub actor: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    /// Canonical JSON text.
    pub details: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditEvent {
    fn seal(head_sequence: i64, head_hash: &str, event: &NewAuditEvent) -> Self {
        let occurred_at_us = crate::clock::now_micros();
        let mut sealed = Self {
            sequence: head_sequence + 1,
            event_id: uuid::Uuid::now_v7().to_string(),
            occurred_at_us,
            actor: event.actor.clone(),
            action: event.action.clone(),
            resource_type: event.resource_type.clone(),
            resource_id: event.resource_id.clone(),
            details: canonical_json(&event.details),
            prev_hash: head_hash.to_owned(),
            hash: String::new(),
        };
        sealed.hash = sealed.hash_of_canonical();
        sealed
    }

    /// Chains the event after another head: its sequence, time and hashes
    /// change, its id and content do not.
    fn rechain(&mut self, head_sequence: i64, head_hash: &str) {
        self.sequence = head_sequence + 1;
        self.occurred_at_us = crate::clock::now_micros();
        head_hash.clone_into(&mut self.prev_hash);
        self.hash = self.hash_of_canonical();
    }

    /// The hashed part of the event, or `None` if `details` is not JSON.
    fn body(&self) -> Option<Value> {
        let details: Value = serde_json::from_str(&self.details).ok()?;
        Some(json!({
            "sequence": self.sequence,
            "event_id": self.event_id,
            "occurred_at_us": self.occurred_at_us,
            "actor": self.actor,
            "action": self.action,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "details": details,
        }))
    }

    /// The canonical JSON of the hashed body, built directly: keys in
    /// sorted order, `details` embedded as stored (it is canonical JSON).
    /// Equal to `canonical_json(body())` whenever `details` is canonical.
    fn canonical_body(&self) -> String {
        let text = |s: &str| Value::String(s.to_owned()).to_string();
        format!(
            "{{\"action\":{},\"actor\":{},\"details\":{},\"event_id\":{},\"occurred_at_us\":{},\"resource_id\":{},\"resource_type\":{},\"sequence\":{}}}",
            text(&self.action),
            text(&self.actor),
            self.details,
            text(&self.event_id),
            self.occurred_at_us,
            text(&self.resource_id),
            text(&self.resource_type),
            self.sequence,
        )
    }

    /// `SHA-256(prev_hash ‖ canonical body)` in lowercase hex; `None` when
    /// the stored details are not canonical JSON (they were edited).
    pub fn compute_hash(&self) -> Option<String> {
        let details: Value = serde_json::from_str(&self.details).ok()?;
        if canonical_json(&details) != self.details {
            return None;
        }
        Some(self.hash_of_canonical())
    }

    fn hash_of_canonical(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(self.canonical_body().as_bytes());
        hex::encode(hasher.finalize())
    }

    /// One JSON Lines record: the hashed body plus `prev_hash` and `hash`,
    /// canonical, so the chain can be re-verified offline.
    pub fn json_line(&self) -> String {
        let mut body = self
            .body()
            .unwrap_or_else(|| json!({"details_raw": self.details}));
        if let Value::Object(map) = &mut body {
            map.insert("prev_hash".into(), Value::String(self.prev_hash.clone()));
            map.insert("hash".into(), Value::String(self.hash.clone()));
        }
        canonical_json(&body)
    }

    pub fn to_proto(&self) -> airt_proto::audit::v1::AuditEvent {
        let details = serde_json::from_str::<Value>(&self.details)
            .ok()
            .and_then(|v| v.as_object().map(crate::json::to_proto_struct));
        airt_proto::audit::v1::AuditEvent {
            sequence: self.sequence,
            event_id: self.event_id.clone(),
            occur_time: Some(crate::clock::timestamp_from_micros(self.occurred_at_us)),
            actor: self.actor.clone(),
            action: self.action.clone(),
            resource_type: self.resource_type.clone(),
            resource_id: self.resource_id.clone(),
            details,
            prev_hash: self.prev_hash.clone(),
            hash: self.hash.clone(),
        }
    }
}

/// Restricts [`AuditLog::list`]; empty strings match everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub actor: String,
}

/// The result of [`AuditLog::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub events_checked: i64,
    /// The first broken event and what is wrong with it; `None` when intact.
    pub broken: Option<BrokenLink>,
    /// Hash of the last event checked.
    pub head_hash: String,
}

impl VerifyReport {
    pub fn intact(&self) -> bool {
        self.broken.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub sequence: i64,
    pub problem: String,
}

const SELECT_EVENTS: &str = "SELECT sequence, event_id, occurred_at_us, actor, action, resource_type, \
     resource_id, details, prev_hash, hash FROM audit_events \
     WHERE sequence > $1 AND ($2 = '' OR action = $2) AND ($3 = '' OR resource_type = $3) \
     AND ($4 = '' OR resource_id = $4) AND ($5 = '' OR actor = $5) \
     ORDER BY sequence LIMIT $6";

/// The audit log of one service's database.
#[derive(Debug, Clone)]
pub struct AuditLog {
    db: Database,
}

impl AuditLog {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Appends one event in its own transaction.
    pub async fn append(&self, event: &NewAuditEvent) -> Result<AuditEvent, sqlx::Error> {
        match &self.db {
            Database::Sqlite(pool) => {
                let mut tx = begin_immediate(pool).await?;
                let sealed = append_sqlite(&mut tx, event).await?;
                tx.commit().await?;
                Ok(sealed)
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                let sealed = append_postgres(&mut tx, event).await?;
                tx.commit().await?;
                Ok(sealed)
            }
        }
    }

    /// Appends several events in one transaction (one commit for all), in order.
    pub async fn append_batch(&self, events: &[NewAuditEvent]) -> Result<(), sqlx::Error> {
        crate::write_tx!(&self.db, tx => {
            tx.append_audit_batch(events).await?;
        })
    }

    /// Events with a sequence greater than `after`, in order, at most `limit`.
    pub async fn list(
        &self,
        filter: &AuditFilter,
        after: i64,
        limit: i64,
    ) -> Result<Vec<AuditEvent>, sqlx::Error> {
        with_pool!(&self.db, pool => {
            sqlx::query_as::<_, AuditEvent>(SELECT_EVENTS)
                .bind(after)
                .bind(&filter.action)
                .bind(&filter.resource_type)
                .bind(&filter.resource_id)
                .bind(&filter.actor)
                .bind(limit)
                .fetch_all(pool)
                .await
        })
    }

    /// How many events the chain holds (its head's sequence number).
    pub async fn length(&self) -> Result<i64, sqlx::Error> {
        Ok(self.head().await?.0)
    }

    async fn head(&self) -> Result<(i64, String), sqlx::Error> {
        with_pool!(&self.db, pool => sqlx::query_as(SELECT_HEAD).fetch_one(pool).await)
    }

    /// Recomputes the whole chain, page by page, and reports the first
    /// broken event: a gap or reordering in the sequence, a `prev_hash` that
    /// does not match, a hash that does not match the content, or a chain that
    /// ends before the recorded head.
    pub async fn verify(&self) -> Result<VerifyReport, sqlx::Error> {
        const PAGE: i64 = 1000;
        // Read the head first: events appended during verification lie
        // beyond it and are simply checked too.
        let (head_sequence, head_hash) = self.head().await?;
        let mut checker = ChainChecker::default();
        loop {
            let page = self
                .list(&AuditFilter::default(), checker.last_sequence, PAGE)
                .await?;
            let done = (page.len() as i64) < PAGE;
            for event in &page {
                if let Some(broken) = checker.check(event) {
                    return Ok(checker.report(Some(broken)));
                }
            }
            if done {
                break;
            }
        }
        if checker.last_sequence < head_sequence {
            let broken = BrokenLink {
                sequence: checker.last_sequence + 1,
                problem: format!(
                    "missing event: the chain ends at {} but the head records {head_sequence}",
                    checker.last_sequence
                ),
            };
            return Ok(checker.report(Some(broken)));
        }
        if checker.last_sequence == head_sequence && checker.last_hash != head_hash {
            let broken = BrokenLink {
                sequence: head_sequence,
                problem: "hash of the last event differs from the recorded head".into(),
            };
            return Ok(checker.report(Some(broken)));
        }
        Ok(checker.report(None))
    }
}

/// Walks events in sequence order.
#[derive(Debug)]
struct ChainChecker {
    last_sequence: i64,
    last_hash: String,
    checked: i64,
}

impl Default for ChainChecker {
    fn default() -> Self {
        Self {
            last_sequence: 0,
            last_hash: GENESIS_HASH.to_owned(),
            checked: 0,
        }
    }
}

impl ChainChecker {
    fn check(&mut self, event: &AuditEvent) -> Option<BrokenLink> {
        let broken = |problem: String| {
            Some(BrokenLink {
                sequence: event.sequence,
                problem,
            })
        };
        let expected = self.last_sequence + 1;
        if event.sequence != expected {
            return Some(BrokenLink {
                sequence: expected,
                problem: format!(
                    "missing event: expected sequence {expected}, found {}",
                    event.sequence
                ),
            });
        }
        if event.prev_hash != self.last_hash {
            return broken("prev_hash does not match the hash of the previous event".into());
        }
        match event.compute_hash() {
            None => return broken("details are not canonical JSON (edited)".into()),
            Some(hash) if hash != event.hash => {
                return broken("hash does not match the event's content".into());
            }
            Some(_) => {}
        }
        self.last_sequence = event.sequence;
        self.last_hash = event.hash.clone();
        self.checked += 1;
        None
    }

    fn report(&self, broken: Option<BrokenLink>) -> VerifyReport {
        VerifyReport {
            events_checked: self.checked,
            broken,
            head_hash: self.last_hash.clone(),
        }
    }
}
