//! Capability revisions, lifecycle and the change feed, on SQLite or
//! PostgreSQL. The SQL is portable and written once; [`airt_kit::write_tx!`]
//! runs it in a write transaction on either backend, together with the
//! mutation's audit event.

use airt_kit::Principal;
use airt_kit::audit::{AppendAudit as _, NewAuditEvent};
use airt_kit::db::{Backend, Database, Migrations};
use airt_kit::vocabulary::RiskLevel;
use serde_json::json;
use sqlx::migrate::Migrator;
use tokio::sync::watch;

use crate::domain::{CapabilitySpec, Lifecycle, current_version};
use crate::error::RegistryError;

mod cache;
mod sync;

pub use cache::MAX_STALENESS as CACHE_MAX_STALENESS;
use cache::ReadCache;
pub use sync::SYNC_INTERVAL;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The registry's schema, the same for both backends.
pub const MIGRATIONS: Migrations = Migrations {
    sqlite: &MIGRATOR,
    postgres: &MIGRATOR,
};

/// A stored revision.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCapability {
    pub spec: CapabilitySpec,
    pub lifecycle: Lifecycle,
    pub lifecycle_reason: String,
    pub content_digest: String,
    pub registry_revision: i64,
    pub registered_by: String,
    pub created_at_us: i64,
    pub updated_at_us: i64,
}

/// What a registration did.
#[derive(Debug, Clone, PartialEq)]
pub enum Registered {
    /// A new revision was stored.
    Created(StoredCapability),
    /// Identical content was already stored; nothing changed.
    Unchanged(StoredCapability),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeType {
    Registered,
    LifecycleChanged,
}

impl ChangeType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Registered => "REGISTERED",
            Self::LifecycleChanged => "LIFECYCLE_CHANGED",
        }
    }
}

/// One entry of the change feed, with the revision as it was then.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub registry_revision: i64,
    pub change_type: ChangeType,
    pub capability: StoredCapability,
}

/// Restricts [`RegistryStore::list`].
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub id_prefix: String,
    pub risk_level: Option<RiskLevel>,
    pub tag: String,
    pub lifecycle: Option<Lifecycle>,
}

const REVISION_COLUMNS: &str = "r.capability_id, r.version, r.spec_json, r.content_digest, r.lifecycle, \
     r.lifecycle_reason, r.registered_by, r.registry_revision, r.created_at_us, r.updated_at_us";

#[derive(Debug, sqlx::FromRow)]
struct RevisionRow {
    spec_json: String,
    content_digest: String,
    lifecycle: String,
    lifecycle_reason: String,
    registered_by: String,
    registry_revision: i64,
    created_at_us: i64,
    updated_at_us: i64,
}

impl RevisionRow {
    fn into_stored(self) -> Result<StoredCapability, RegistryError> {
        let spec: CapabilitySpec = serde_json::from_str(&self.spec_json)
            .map_err(|e| RegistryError::Corrupt(format!("capability spec: {e}")))?;
        let lifecycle = Lifecycle::parse(&self.lifecycle)
            .ok_or_else(|| RegistryError::Corrupt(format!("lifecycle {:?}", self.lifecycle)))?;
        Ok(StoredCapability {
            spec,
            lifecycle,
            lifecycle_reason: self.lifecycle_reason,
            content_digest: self.content_digest,
            registry_revision: self.registry_revision,
            registered_by: self.registered_by,
            created_at_us: self.created_at_us,
            updated_at_us: self.updated_at_us,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
struct ChangeRow {
    change_revision: i64,
    change_type: String,
    change_lifecycle: String,
    change_reason: String,
    #[sqlx(flatten)]
    revision: RevisionRow,
}

const SELECT_HEAD: &str = "SELECT revision FROM registry_head WHERE id = 1";
const SELECT_HEAD_FOR_UPDATE: &str = "SELECT revision FROM registry_head WHERE id = 1 FOR UPDATE";
const UPDATE_HEAD: &str = "UPDATE registry_head SET revision = $1 WHERE id = 1";
const INSERT_REVISION: &str = "INSERT INTO capability_revisions \
     (capability_id, version, spec_json, content_digest, risk_level, lifecycle, lifecycle_reason, \
      registered_by, registry_revision, created_at_us, updated_at_us) \
     VALUES ($1, $2, $3, $4, $5, $6, '', $7, $8, $9, $9)";
const INSERT_TAG: &str = "INSERT INTO capability_tags (capability_id, version, tag) VALUES ($1, $2, $3) \
     ON CONFLICT DO NOTHING";
const UPDATE_LIFECYCLE: &str = "UPDATE capability_revisions \
     SET lifecycle = $3, lifecycle_reason = $4, registry_revision = $5, updated_at_us = $6 \
     WHERE capability_id = $1 AND version = $2";
const SELECT_LIFECYCLES: &str =
    "SELECT version, lifecycle FROM capability_revisions WHERE capability_id = $1";
const UPSERT_CURRENT: &str = "INSERT INTO capabilities (capability_id, current_version) VALUES ($1, $2) \
     ON CONFLICT (capability_id) DO UPDATE SET current_version = excluded.current_version";
const INSERT_CHANGE: &str = "INSERT INTO capability_changes \
     (registry_revision, capability_id, version, change_type, lifecycle, lifecycle_reason, occurred_at_us) \
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

fn select_revision() -> String {
    format!(
        "SELECT {REVISION_COLUMNS} FROM capability_revisions r WHERE r.capability_id = $1 AND r.version = $2"
    )
}

fn select_current() -> String {
    format!(
        "SELECT {REVISION_COLUMNS} FROM capabilities c JOIN capability_revisions r \
         ON r.capability_id = c.capability_id AND r.version = c.current_version \
         WHERE c.capability_id = $1"
    )
}

fn select_versions() -> String {
    format!("SELECT {REVISION_COLUMNS} FROM capability_revisions r WHERE r.capability_id = $1")
}

fn select_list() -> String {
    format!(
        "SELECT {REVISION_COLUMNS} FROM capabilities c JOIN capability_revisions r \
         ON r.capability_id = c.capability_id AND r.version = c.current_version \
         WHERE c.capability_id > $1 \
         AND ($2 = '' OR substr(c.capability_id, 1, length($2)) = $2) \
         AND ($3 = '' OR r.risk_level = $3) \
         AND ($4 = '' OR r.lifecycle = $4) \
         AND ($5 = '' OR EXISTS (SELECT 1 FROM capability_tags t \
              WHERE t.capability_id = r.capability_id AND t.version = r.version AND t.tag = $5)) \
         ORDER BY c.capability_id LIMIT $6"
    )
}

fn select_changes() -> String {
    format!(
        "SELECT ch.registry_revision AS change_revision, ch.change_type, \
         ch.lifecycle AS change_lifecycle, ch.lifecycle_reason AS change_reason, {REVISION_COLUMNS} \
         FROM capability_changes ch JOIN capability_revisions r \
         ON r.capability_id = ch.capability_id AND r.version = ch.version \
         WHERE ch.registry_revision > $1 \
         AND ($2 = '' OR substr(ch.capability_id, 1, length($2)) = $2) \
         ORDER BY ch.registry_revision LIMIT $3"
    )
}

fn parse_version(text: &str) -> Result<semver::Version, RegistryError> {
    semver::Version::parse(text)
        .map_err(|e| RegistryError::Corrupt(format!("version {text:?}: {e}")))
}

/// Recomputes which revision of `$id` is current, inside the open transaction `$tx`.
const COUNT_BY_LIFECYCLE: &str = "SELECT r.lifecycle, COUNT(*) FROM capabilities c \
     JOIN capability_revisions r ON r.capability_id = c.capability_id AND r.version = c.current_version \
     GROUP BY r.lifecycle";

macro_rules! refresh_current {
    ($tx:ident, $id:expr) => {{
        let rows: Vec<(String, String)> = sqlx::query_as(SELECT_LIFECYCLES)
            .bind($id)
            .fetch_all(&mut *$tx)
            .await?;
        let mut revisions = Vec::with_capacity(rows.len());
        for (version, lifecycle) in rows {
            let lifecycle = Lifecycle::parse(&lifecycle)
                .ok_or_else(|| RegistryError::Corrupt(format!("lifecycle {lifecycle:?}")))?;
            revisions.push((parse_version(&version)?, lifecycle));
        }
        if let Some(current) = current_version(&revisions) {
            sqlx::query(UPSERT_CURRENT)
                .bind($id)
                .bind(current.to_string())
                .execute(&mut *$tx)
                .await?;
        }
    }};
}

/// The registry's database, with the read cache in front of
/// [`RegistryStore::get`] (`store/cache.rs`).
#[derive(Debug, Clone)]
pub struct RegistryStore {
    db: Database,
    latest_revision: watch::Sender<i64>,
    cache: std::sync::Arc<ReadCache>,
}

impl RegistryStore {
    /// Opens the store; its read cache answers for [`CACHE_MAX_STALENESS`]
    /// and then only while [`RegistryStore::follow_changes`] (or
    /// [`RegistryStore::sync_changes`]) keeps reading the change feed.
    pub async fn new(db: Database) -> Result<Self, RegistryError> {
        Self::with_cache_staleness(db, CACHE_MAX_STALENESS).await
    }

    /// [`RegistryStore::new`] with another bound on the cache's staleness
    /// (zero turns the cache off).
    pub async fn with_cache_staleness(
        db: Database,
        max_staleness: std::time::Duration,
    ) -> Result<Self, RegistryError> {
        let began = std::time::Instant::now();
        let head = Self::read_head(&db).await?;
        let (latest_revision, _) = watch::channel(head);
        Ok(Self {
            db,
            latest_revision,
            cache: std::sync::Arc::new(ReadCache::with_bounds(
                head,
                began,
                max_staleness,
                cache::MAX_BYTES,
            )),
        })
    }

    async fn read_head(db: &Database) -> Result<i64, RegistryError> {
        Ok(airt_kit::with_pool!(db, pool => {
            sqlx::query_scalar::<_, i64>(SELECT_HEAD).fetch_one(pool).await?
        }))
    }

    /// Notified with the newest revision after every change committed by
    /// this process. Changes by other replicas are found by polling.
    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.latest_revision.subscribe()
    }

    pub async fn head_revision(&self) -> Result<i64, RegistryError> {
        Self::read_head(&self.db).await
    }

    /// Ids held by the read cache and the spec bytes they cost.
    pub fn cache_size(&self) -> (usize, usize) {
        self.cache.size()
    }

    /// Capabilities by the lifecycle of their current version.
    pub async fn count_by_lifecycle(&self) -> Result<Vec<(String, i64)>, RegistryError> {
        Ok(airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as::<_, (String, i64)>(COUNT_BY_LIFECYCLE).fetch_all(pool).await?
        }))
    }

    fn head_lock_sql(&self) -> &'static str {
        match self.db.backend() {
            Backend::Sqlite => SELECT_HEAD,
            Backend::Postgres => SELECT_HEAD_FOR_UPDATE,
        }
    }

    /// Stores a validated spec as a new revision. Identical content is a
    /// no-op; the same id and version with other content is `AlreadyExists`.
    pub async fn register(
        &self,
        spec: &CapabilitySpec,
        lifecycle: Lifecycle,
        actor: &Principal,
        request_id: &str,
    ) -> Result<Registered, RegistryError> {
        let spec_json = spec.canonical_json();
        let digest = spec.content_digest();
        let version = &spec.metadata.version;
        let head_sql = self.head_lock_sql();
        let select_existing = select_revision();
        let outcome = airt_kit::write_tx!(&self.db, tx => {
            let head: i64 = sqlx::query_scalar(head_sql).fetch_one(&mut *tx).await?;
            let existing: Option<RevisionRow> = sqlx::query_as(sqlx::AssertSqlSafe(select_existing.as_str()))
                .bind(&spec.id)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(existing) = existing {
                if existing.content_digest != digest {
                    return Err(RegistryError::AlreadyExists { id: spec.id.clone(), version: version.clone() });
                }
                Registered::Unchanged(existing.into_stored()?)
            } else {
                let revision = head + 1;
                let now = airt_kit::clock::now_micros();
                sqlx::query(INSERT_REVISION)
                    .bind(&spec.id)
                    .bind(version)
                    .bind(&spec_json)
                    .bind(&digest)
                    .bind(spec.risk.level.as_str())
                    .bind(lifecycle.as_str())
                    .bind(actor.to_string())
                    .bind(revision)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                for tag in &spec.metadata.tags {
                    sqlx::query(INSERT_TAG).bind(&spec.id).bind(version).bind(tag).execute(&mut *tx).await?;
                }
                refresh_current!(tx, &spec.id);
                sqlx::query(INSERT_CHANGE)
                    .bind(revision)
                    .bind(&spec.id)
                    .bind(version)
                    .bind(ChangeType::Registered.as_str())
                    .bind(lifecycle.as_str())
                    .bind("")
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(UPDATE_HEAD).bind(revision).execute(&mut *tx).await?;
                tx.append_audit(
                    &NewAuditEvent::new(actor, "capability.registered", "capability", &spec.id).with_details(json!({
                        "version": version,
                        "content_digest": digest,
                        "risk_level": spec.risk.level.as_str(),
                        "lifecycle": lifecycle.as_str(),
                        "registry_revision": revision,
                        "request_id": request_id,
                    })),
                )
                .await?;
                Registered::Created(StoredCapability {
                    spec: spec.clone(),
                    lifecycle,
                    lifecycle_reason: String::new(),
                    content_digest: digest.clone(),
                    registry_revision: revision,
                    registered_by: actor.to_string(),
                    created_at_us: now,
                    updated_at_us: now,
                })
            }
        })?;
        if let Registered::Created(stored) = &outcome {
            self.cache.invalidate(&stored.spec.id);
            self.latest_revision.send_replace(stored.registry_revision);
        }
        Ok(outcome)
    }

    /// The current revision of `id` (see [`current_version`]), or one exact
    /// version: from the read cache when it holds it, else from the database.
    pub async fn get(
        &self,
        id: &str,
        version: Option<&str>,
    ) -> Result<Option<std::sync::Arc<StoredCapability>>, RegistryError> {
        if let Some(hit) = self.cache.get(id, version) {
            return Ok(Some(hit));
        }
        let began = self.cache.epoch();
        let Some((stored, bytes)) = self.read(id, version).await? else {
            return Ok(None);
        };
        let stored = std::sync::Arc::new(stored);
        self.cache.fill(began, version, &stored, bytes);
        Ok(Some(stored))
    }

    /// [`RegistryStore::get`] from the database, with the size of the spec.
    async fn read(
        &self,
        id: &str,
        version: Option<&str>,
    ) -> Result<Option<(StoredCapability, usize)>, RegistryError> {
        let row: Option<RevisionRow> = match version {
            Some(version) => {
                let sql = select_revision();
                airt_kit::with_pool!(&self.db, pool => {
                    sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(id).bind(version).fetch_optional(pool).await?
                })
            }
            None => {
                let sql = select_current();
                airt_kit::with_pool!(&self.db, pool => {
                    sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(id).fetch_optional(pool).await?
                })
            }
        };
        row.map(|row| {
            let bytes = row.spec_json.len();
            Ok((row.into_stored()?, bytes))
        })
        .transpose()
    }

    /// Every revision of `id`, highest version first.
    pub async fn versions(&self, id: &str) -> Result<Vec<StoredCapability>, RegistryError> {
        let sql = select_versions();
        let rows: Vec<RevisionRow> = airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str())).bind(id).fetch_all(pool).await?
        });
        let mut revisions = rows
            .into_iter()
            .map(|row| {
                let stored = row.into_stored()?;
                Ok((parse_version(&stored.spec.metadata.version)?, stored))
            })
            .collect::<Result<Vec<_>, RegistryError>>()?;
        revisions.sort_by(|(a, _), (b, _)| b.cmp_precedence(a).then_with(|| b.cmp(a)));
        Ok(revisions.into_iter().map(|(_, stored)| stored).collect())
    }

    /// The current revision of each id after `after_id`, in id order.
    pub async fn list(
        &self,
        filter: &ListFilter,
        after_id: &str,
        limit: i64,
    ) -> Result<Vec<StoredCapability>, RegistryError> {
        let sql = select_list();
        let rows: Vec<RevisionRow> = airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(after_id)
                .bind(&filter.id_prefix)
                .bind(filter.risk_level.map_or("", RiskLevel::as_str))
                .bind(filter.lifecycle.map_or("", Lifecycle::as_str))
                .bind(&filter.tag)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter().map(RevisionRow::into_stored).collect()
    }

    /// Moves one revision (the given version, or the current one) to a
    /// lifecycle. Setting the lifecycle and reason it already has changes nothing.
    pub async fn set_lifecycle(
        &self,
        id: &str,
        version: Option<&str>,
        lifecycle: Lifecycle,
        reason: &str,
        actor: &Principal,
        request_id: &str,
    ) -> Result<StoredCapability, RegistryError> {
        // From the database: the cache may not know another replica's change yet.
        let (target, _) = self
            .read(id, version)
            .await?
            .ok_or_else(|| RegistryError::NotFound(describe(id, version)))?;
        if target.lifecycle == lifecycle && target.lifecycle_reason == reason {
            return Ok(target);
        }
        let version = target.spec.metadata.version.clone();
        let head_sql = self.head_lock_sql();
        let select_target = select_revision();
        let updated = airt_kit::write_tx!(&self.db, tx => {
            let head: i64 = sqlx::query_scalar(head_sql).fetch_one(&mut *tx).await?;
            let revision = head + 1;
            let now = airt_kit::clock::now_micros();
            let changed = sqlx::query(UPDATE_LIFECYCLE)
                .bind(id)
                .bind(&version)
                .bind(lifecycle.as_str())
                .bind(reason)
                .bind(revision)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            if changed.rows_affected() != 1 {
                return Err(RegistryError::NotFound(describe(id, Some(&version))));
            }
            refresh_current!(tx, id);
            sqlx::query(INSERT_CHANGE)
                .bind(revision)
                .bind(id)
                .bind(&version)
                .bind(ChangeType::LifecycleChanged.as_str())
                .bind(lifecycle.as_str())
                .bind(reason)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            sqlx::query(UPDATE_HEAD).bind(revision).execute(&mut *tx).await?;
            tx.append_audit(
                &NewAuditEvent::new(actor, "capability.lifecycle_changed", "capability", id).with_details(json!({
                    "version": version,
                    "from": target.lifecycle.as_str(),
                    "to": lifecycle.as_str(),
                    "reason": reason,
                    "registry_revision": revision,
                    "request_id": request_id,
                })),
            )
            .await?;
            let row: RevisionRow = sqlx::query_as(sqlx::AssertSqlSafe(select_target.as_str()))
                .bind(id)
                .bind(&version)
                .fetch_one(&mut *tx)
                .await?;
            row.into_stored()?
        })?;
        self.cache.invalidate(id);
        self.latest_revision.send_replace(updated.registry_revision);
        Ok(updated)
    }

    /// Changes after `since_revision`, oldest first, at most `limit`.
    pub async fn changes_since(
        &self,
        since_revision: i64,
        id_prefix: &str,
        limit: i64,
    ) -> Result<Vec<Change>, RegistryError> {
        let sql = select_changes();
        let rows: Vec<ChangeRow> = airt_kit::with_pool!(&self.db, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(since_revision)
                .bind(id_prefix)
                .bind(limit)
                .fetch_all(pool)
                .await?
        });
        rows.into_iter()
            .map(|row| {
                let change_type = match row.change_type.as_str() {
                    "REGISTERED" => ChangeType::Registered,
                    "LIFECYCLE_CHANGED" => ChangeType::LifecycleChanged,
                    other => return Err(RegistryError::Corrupt(format!("change type {other:?}"))),
                };
                let mut capability = row.revision.into_stored()?;
                capability.lifecycle =
                    Lifecycle::parse(&row.change_lifecycle).ok_or_else(|| {
                        RegistryError::Corrupt(format!("lifecycle {:?}", row.change_lifecycle))
                    })?;
                capability.lifecycle_reason = row.change_reason;
                capability.registry_revision = row.change_revision;
                Ok(Change {
                    registry_revision: row.change_revision,
                    change_type,
                    capability,
                })
            })
            .collect()
    }
}

fn describe(id: &str, version: Option<&str>) -> String {
    match version {
        Some(version) => format!("{id} version {version}"),
        None => id.to_owned(),
    }
}
