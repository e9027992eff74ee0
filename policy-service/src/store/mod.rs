//! Versioned policy sets and the active revision, on SQLite or PostgreSQL
//! (portable SQL written once; see `airt_kit::write_tx!`).

use airt_kit::Principal;
use airt_kit::audit::{AppendAudit as _, NewAuditEvent};
use airt_kit::db::{Backend, Database, Migrations};
use serde_json::json;
use sqlx::migrate::Migrator;

mod budgets;
mod shadow;

pub use budgets::Consumed;

use crate::domain::CompiledPolicySet;
use crate::error::PolicyError;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The policy schema, the same for both backends.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &MIGRATOR,
    postgres: &MIGRATOR,
};

/// A stored revision.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredPolicySet {
    pub revision: String,
    pub seq: i64,
    pub source_yaml: String,
    pub description: String,
    pub default_decision: String,
    pub escalate_high_risk: i64,
    pub rule_count: i64,
    pub created_by: String,
    pub created_at_us: i64,
    pub last_activated_at_us: i64,
}

/// Which revision is active, and how many activations happened so far.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ActiveState {
    pub active_revision: String,
    pub activation_seq: i64,
    /// Evaluated beside the active set, never enforced; empty for none.
    pub shadow_revision: String,
}

const COLUMNS: &str = "revision, seq, source_yaml, description, default_decision, escalate_high_risk, \
     rule_count, created_by, created_at_us, last_activated_at_us";
const SELECT_STATE: &str =
    "SELECT active_revision, activation_seq, shadow_revision FROM policy_state WHERE id = 1";
const SELECT_STATE_FOR_UPDATE: &str = "SELECT active_revision, activation_seq, shadow_revision \
     FROM policy_state WHERE id = 1 FOR UPDATE";
const NEXT_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) + 1 FROM policy_sets";
const INSERT_SET: &str = "INSERT INTO policy_sets \
     (revision, seq, source_yaml, description, default_decision, escalate_high_risk, rule_count, \
      created_by, created_at_us, last_activated_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 0)";
const ACTIVATE: &str = "UPDATE policy_state SET active_revision = $1, activation_seq = activation_seq + 1, \
     activated_at_us = $2 WHERE id = 1";
const MARK_ACTIVATED: &str = "UPDATE policy_sets SET last_activated_at_us = $2 WHERE revision = $1";

fn select_one() -> String {
    format!("SELECT {COLUMNS} FROM policy_sets WHERE revision = $1")
}

fn select_page() -> String {
    format!(
        "SELECT {COLUMNS} FROM policy_sets WHERE ($1 = 0 OR seq < $1) ORDER BY seq DESC LIMIT $2"
    )
}

/// Activates `$revision` inside transaction `$tx` and records it.
macro_rules! activate_in {
    ($tx:ident, $revision:expr, $actor:expr, $reason:expr, $request_id:expr, $previous:expr) => {{
        let now = airt_kit::clock::now_micros();
        sqlx::query(ACTIVATE).bind($revision).bind(now).execute(&mut *$tx).await?;
        sqlx::query(MARK_ACTIVATED).bind($revision).bind(now).execute(&mut *$tx).await?;
        $tx.append_audit(
            &NewAuditEvent::new($actor, "policy_set.activated", "policy_set", $revision).with_details(json!({
                "previous_revision": $previous,
                "reason": $reason,
                "request_id": $request_id,
            })),
        )
        .await?;
    }};
}

/// The policy service's database.
#[derive(Debug, Clone)]
pub struct PolicyStore {
    db: Database,
}

impl PolicyStore {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    fn state_lock_sql(&self) -> &'static str {
        match self.db.backend() {
            Backend::Sqlite => SELECT_STATE,
            Backend::Postgres => SELECT_STATE_FOR_UPDATE,
        }
    }

    /// Stores a compiled set (identical revisions are stored once) and, if
    /// asked, makes it active in the same transaction. Returns the stored
    /// set and whether it was new.
    pub async fn put(
        &self,
        set: &CompiledPolicySet,
        source_yaml: &str,
        description: &str,
        actor: &Principal,
        activate: bool,
        request_id: &str,
    ) -> Result<(StoredPolicySet, bool), PolicyError> {
        let lock = self.state_lock_sql();
        let select = select_one();
        let revision = set.revision();
        airt_kit::write_tx!(&self.db, tx => {
            let state: ActiveState = sqlx::query_as(lock).fetch_one(&mut *tx).await?;
            let existing: Option<StoredPolicySet> =
                sqlx::query_as(sqlx::AssertSqlSafe(select.as_str())).bind(revision).fetch_optional(&mut *tx).await?;
            let created = existing.is_none();
            if created {
                let seq: i64 = sqlx::query_scalar(NEXT_SEQ).fetch_one(&mut *tx).await?;
                sqlx::query(INSERT_SET)
                    .bind(revision)
                    .bind(seq)
                    .bind(source_yaml)
                    .bind(description)
                    .bind(set.set().default.as_str())
                    .bind(i64::from(set.set().escalate_high_risk))
                    .bind(set.rules().len() as i64)
                    .bind(actor.to_string())
                    .bind(airt_kit::clock::now_micros())
                    .execute(&mut *tx)
                    .await?;
                tx.append_audit(
                    &NewAuditEvent::new(actor, "policy_set.stored", "policy_set", revision).with_details(json!({
                        "rule_count": set.rules().len(),
                        "default": set.set().default.as_str(),
                        "escalate_high_risk": set.set().escalate_high_risk,
                        "description": description,
                        "request_id": request_id,
                    })),
                )
                .await?;
            }
            if activate && state.active_revision != revision {
                activate_in!(tx, revision, actor, "put with activate", request_id, state.active_revision);
            }
            let stored: StoredPolicySet =
                sqlx::query_as(sqlx::AssertSqlSafe(select.as_str())).bind(revision).fetch_one(&mut *tx).await?;
            (stored, created)
        })
        .map_err(PolicyError::from)
    }

    /// Makes a stored revision active (roll back or forward).
    pub async fn activate(
        &self,
        revision: &str,
        actor: &Principal,
        reason: &str,
        request_id: &str,
    ) -> Result<StoredPolicySet, PolicyError> {
        let lock = self.state_lock_sql();
        let select = select_one();
        airt_kit::write_tx!(&self.db, tx => {
            let state: ActiveState = sqlx::query_as(lock).fetch_one(&mut *tx).await?;
            let found: Option<StoredPolicySet> =
                sqlx::query_as(sqlx::AssertSqlSafe(select.as_str())).bind(revision).fetch_optional(&mut *tx).await?;
            if found.is_none() {
                return Err(PolicyError::NotFound(revision.to_owned()));
            }
            if state.active_revision != revision {
                activate_in!(tx, revision, actor, reason, request_id, state.active_revision);
            }
            let stored: StoredPolicySet =
                sqlx::query_as(sqlx::AssertSqlSafe(select.as_str())).bind(revision).fetch_one(&mut *tx).await?;
            stored
        })
        .map_err(PolicyError::from)
    }

    pub async fn state(&self) -> Result<ActiveState, PolicyError> {
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as::<_, ActiveState>(SELECT_STATE).fetch_one(pool).await?
        }))
    }

    pub async fn get(&self, revision: &str) -> Result<Option<StoredPolicySet>, PolicyError> {
        let sql = select_one();
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(revision).fetch_optional(pool).await?
        }))
    }

    /// Stored sets, newest first, with a storage sequence below `before_seq`
    /// (0: from the newest).
    pub async fn list(
        &self,
        before_seq: i64,
        limit: i64,
    ) -> Result<Vec<StoredPolicySet>, PolicyError> {
        let sql = select_page();
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(before_seq).bind(limit).fetch_all(pool).await?
        }))
    }
}
