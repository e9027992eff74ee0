//! The read cache in front of `get`, on both backends with two stores on one
//! database (two replicas): a replica sees its own changes at once and
//! another's after reading the change feed; writes never decide from it.

use std::time::Duration;

use airt_kit::Principal;
use airt_kit::db::Database;
use airt_kit::testing::TestDb;
use registry_service::domain::{CapabilitySpec, Lifecycle, SpecDraft, validate};
use registry_service::store::{MIGRATIONS, RegistryStore};

const FOREVER: Duration = Duration::from_secs(3600);

fn admin() -> Principal {
    Principal::new("user", "root", vec!["admin".into()])
}

fn spec(id: &str, version: &str) -> CapabilitySpec {
    let yaml = format!(
        "id: {id}\nname: {id}\noperation_type: WRITE\nrisk: {{level: MEDIUM}}\n\
         side_effects: {{reversible: true, scope: LOCAL}}\n\
         compensation: {{supported: true, strategy: MANUAL}}\n\
         metadata: {{version: \"{version}\"}}\nhandler: \"builtin:test.noop\"\n"
    );
    validate(&SpecDraft::from_text(&yaml).expect("yaml"))
        .expect("valid")
        .0
}

/// A replica: its own pool on the shared database, its cache answering for `staleness`.
async fn replica(db: &TestDb, staleness: Duration) -> (Database, RegistryStore) {
    let database = Database::connect(db.url(), Some(MIGRATIONS))
        .await
        .expect("connect");
    let store = RegistryStore::with_cache_staleness(database.clone(), staleness)
        .await
        .expect("store");
    (database, store)
}

async fn register(store: &RegistryStore, version: &str) {
    store
        .register(&spec("crm.sync", version), Lifecycle::Active, &admin(), "")
        .await
        .expect("register");
}

async fn current(store: &RegistryStore, id: &str) -> (String, Lifecycle) {
    let stored = store.get(id, None).await.expect("get").expect("found");
    (stored.spec.metadata.version.clone(), stored.lifecycle)
}

async fn freeze(store: &RegistryStore, id: &str, version: Option<&str>) -> String {
    store
        .set_lifecycle(id, version, Lifecycle::Frozen, "incident", &admin(), "")
        .await
        .expect("freeze")
        .spec
        .metadata
        .version
}

#[tokio::test]
async fn a_replica_sees_its_own_changes_at_once_and_anothers_after_reading_the_feed() {
    for db in TestDb::all().await {
        let (a_db, a) = replica(&db, FOREVER).await;
        let (b_db, b) = replica(&db, FOREVER).await;
        register(&a, "1.0.0").await;
        let active = ("1.0.0".to_owned(), Lifecycle::Active);
        assert_eq!(current(&a, "crm.sync").await, active);
        assert_eq!(current(&b, "crm.sync").await, active);
        let exact = a.get("crm.sync", Some("1.0.0")).await.expect("get");
        assert_eq!(exact.expect("found").lifecycle, Lifecycle::Active);

        // B's change shows on B at once (its call returned after its cache forgot).
        assert_eq!(freeze(&b, "crm.sync", None).await, "1.0.0");
        let frozen = ("1.0.0".to_owned(), Lifecycle::Frozen);
        assert_eq!(current(&b, "crm.sync").await, frozen);
        // A answers from its cache until it reads the change feed...
        assert_eq!(current(&a, "crm.sync").await, active, "{:?}", db.backend());
        a.sync_changes().await.expect("sync");
        // ...then every cached revision of the id is read again.
        assert_eq!(current(&a, "crm.sync").await, frozen, "{:?}", db.backend());
        let exact = a.get("crm.sync", Some("1.0.0")).await.expect("get");
        assert_eq!(exact.expect("found").lifecycle, Lifecycle::Frozen);

        // A new version registered on B becomes A's current after a sync.
        register(&b, "2.0.0").await;
        a.sync_changes().await.expect("sync");
        assert_eq!(
            current(&a, "crm.sync").await,
            ("2.0.0".to_owned(), Lifecycle::Active)
        );
        a_db.close().await;
        b_db.close().await;
    }
}

#[tokio::test]
async fn a_lifecycle_change_targets_the_current_revision_in_the_database_not_the_cache() {
    for db in TestDb::all().await {
        let (a_db, a) = replica(&db, FOREVER).await;
        let (b_db, b) = replica(&db, FOREVER).await;
        register(&a, "1.0.0").await;
        assert_eq!(current(&a, "crm.sync").await.0, "1.0.0");
        register(&b, "2.0.0").await;
        // A's cache still says 1.0.0 is current; the freeze goes to 2.0.0.
        assert_eq!(freeze(&a, "crm.sync", None).await, "2.0.0");
        assert_eq!(
            current(&a, "crm.sync").await,
            ("1.0.0".to_owned(), Lifecycle::Active),
            "with 2.0.0 frozen, the highest ACTIVE version is current again"
        );
        let two = b.get("crm.sync", Some("2.0.0")).await.expect("get");
        assert_eq!(two.expect("found").lifecycle, Lifecycle::Frozen);
        a_db.close().await;
        b_db.close().await;
    }
}

#[tokio::test]
async fn a_cache_whose_feed_was_not_read_within_its_bound_never_answers() {
    for db in TestDb::all().await {
        let (a_db, a) = replica(&db, Duration::ZERO).await;
        let (b_db, b) = replica(&db, FOREVER).await;
        register(&a, "1.0.0").await;
        assert_eq!(current(&a, "crm.sync").await.1, Lifecycle::Active);
        freeze(&b, "crm.sync", None).await;
        // No sync: A's cache is past its bound, so A reads the database.
        assert_eq!(current(&a, "crm.sync").await.1, Lifecycle::Frozen);
        a_db.close().await;
        b_db.close().await;
    }
}
