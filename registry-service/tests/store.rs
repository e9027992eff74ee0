//! The registry store's conformance suite: the same behaviour on SQLite and
//! PostgreSQL.

use airt_kit::Principal;
use airt_kit::audit::AuditLog;
use airt_kit::db::Database;
use airt_kit::testing::TestDb;
use airt_kit::vocabulary::RiskLevel;
use registry_service::domain::{CapabilitySpec, Lifecycle, SpecDraft, validate};
use registry_service::error::RegistryError;
use registry_service::store::{ChangeType, ListFilter, MIGRATIONS, Registered, RegistryStore};

fn admin() -> Principal {
    Principal::new("user", "root", vec!["admin".into()])
}

/// A valid spec; `risk` LOW/MEDIUM make it reversible, HIGH/CRITICAL irreversible.
fn spec(id: &str, version: &str, risk: &str, tags: &[&str]) -> CapabilitySpec {
    let reversible = matches!(risk, "LOW" | "MEDIUM");
    let yaml = format!(
        "id: {id}\nname: {id}\noperation_type: WRITE\nrisk: {{level: {risk}}}\n\
         side_effects: {{reversible: {reversible}, scope: LOCAL}}\n\
         compensation: {{supported: true, strategy: MANUAL}}\n\
         metadata: {{version: \"{version}\", tags: [{}]}}\nhandler: \"builtin:test.noop\"\n",
        tags.join(", ")
    );
    validate(&SpecDraft::from_text(&yaml).expect("yaml"))
        .expect("valid")
        .0
}

async fn open(db: &TestDb) -> (Database, RegistryStore) {
    let database = Database::connect(db.url(), Some(MIGRATIONS))
        .await
        .expect("connect");
    let store = RegistryStore::new(database.clone()).await.expect("store");
    (database, store)
}

async fn register(store: &RegistryStore, spec: &CapabilitySpec) -> Registered {
    store
        .register(spec, Lifecycle::Active, &admin(), "")
        .await
        .expect("register")
}

#[tokio::test]
async fn registration_is_idempotent_and_published_versions_are_immutable() {
    for db in TestDb::all().await {
        let (database, store) = open(&db).await;
        let first = spec("crm.create_account", "1.0.0", "MEDIUM", &["crm"]);
        let Registered::Created(created) = register(&store, &first).await else {
            panic!("created")
        };
        assert_eq!(created.registry_revision, 1);
        let Registered::Unchanged(again) = register(&store, &first).await else {
            panic!("unchanged")
        };
        assert_eq!(again.content_digest, created.content_digest);
        assert_eq!(
            store.head_revision().await.expect("head"),
            1,
            "no revision for a no-op"
        );

        let mut changed = first.clone();
        changed.description = "different".into();
        let error = store
            .register(&changed, Lifecycle::Active, &admin(), "")
            .await
            .expect_err("immutable");
        assert!(
            matches!(error, RegistryError::AlreadyExists { .. }),
            "{error:?}"
        );

        // One audit event per real change, in the same database.
        let report = AuditLog::new(database.clone())
            .verify()
            .await
            .expect("verify");
        assert!(
            report.intact() && report.events_checked == 1,
            "{:?}: {report:?}",
            db.backend()
        );
        database.close().await;
    }
}

#[tokio::test]
async fn get_returns_the_highest_active_version_or_an_exact_one() {
    for db in TestDb::all().await {
        let (database, store) = open(&db).await;
        for version in ["1.2.0", "1.10.0", "1.9.0"] {
            register(&store, &spec("io.fs.write_file", version, "MEDIUM", &[])).await;
        }
        let current = store
            .get("io.fs.write_file", None)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(
            current.spec.metadata.version,
            "1.10.0",
            "{:?}",
            db.backend()
        );
        let exact = store
            .get("io.fs.write_file", Some("1.2.0"))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(exact.spec.metadata.version, "1.2.0");
        assert!(
            store
                .get("io.fs.write_file", Some("3.0.0"))
                .await
                .expect("get")
                .is_none()
        );
        assert!(
            store
                .get("io.fs.unknown", None)
                .await
                .expect("get")
                .is_none()
        );

        let versions: Vec<String> = store
            .versions("io.fs.write_file")
            .await
            .expect("versions")
            .into_iter()
            .map(|c| c.spec.metadata.version)
            .collect();
        assert_eq!(versions, ["1.10.0", "1.9.0", "1.2.0"]);
        database.close().await;
    }
}

#[tokio::test]
async fn lifecycle_changes_move_the_current_revision_and_are_recorded() {
    for db in TestDb::all().await {
        let (database, store) = open(&db).await;
        register(&store, &spec("crm.sync", "1.0.0", "LOW", &[])).await;
        register(&store, &spec("crm.sync", "2.0.0", "LOW", &[])).await;
        let frozen = store
            .set_lifecycle(
                "crm.sync",
                None,
                Lifecycle::Frozen,
                "bug in 2.0.0",
                &admin(),
                "",
            )
            .await
            .expect("freeze");
        assert_eq!(
            (frozen.spec.metadata.version.as_str(), frozen.lifecycle),
            ("2.0.0", Lifecycle::Frozen)
        );
        assert_eq!(frozen.lifecycle_reason, "bug in 2.0.0");

        let current = store
            .get("crm.sync", None)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(
            current.spec.metadata.version,
            "1.0.0",
            "{:?}: falls back to the active version",
            db.backend()
        );
        let pinned = store
            .get("crm.sync", Some("2.0.0"))
            .await
            .expect("get")
            .expect("found");
        assert_eq!(pinned.lifecycle, Lifecycle::Frozen);

        // Same lifecycle and reason again: nothing changes.
        let head = store.head_revision().await.expect("head");
        store
            .set_lifecycle(
                "crm.sync",
                Some("2.0.0"),
                Lifecycle::Frozen,
                "bug in 2.0.0",
                &admin(),
                "",
            )
            .await
            .expect("no-op");
        assert_eq!(store.head_revision().await.expect("head"), head);

        // Freeze the last active one: the highest revision is current again, so callers see FROZEN.
        store
            .set_lifecycle(
                "crm.sync",
                Some("1.0.0"),
                Lifecycle::Frozen,
                "retired",
                &admin(),
                "",
            )
            .await
            .expect("freeze");
        let current = store
            .get("crm.sync", None)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(
            (current.spec.metadata.version.as_str(), current.lifecycle),
            ("2.0.0", Lifecycle::Frozen)
        );

        let missing = store
            .set_lifecycle("crm.nothing", None, Lifecycle::Frozen, "x", &admin(), "")
            .await;
        assert!(matches!(missing, Err(RegistryError::NotFound(_))));

        let changes = store.changes_since(0, "", 100).await.expect("changes");
        let kinds: Vec<(i64, ChangeType, Lifecycle)> = changes
            .iter()
            .map(|c| (c.registry_revision, c.change_type, c.capability.lifecycle))
            .collect();
        assert_eq!(
            kinds,
            [
                (1, ChangeType::Registered, Lifecycle::Active),
                (2, ChangeType::Registered, Lifecycle::Active),
                (3, ChangeType::LifecycleChanged, Lifecycle::Frozen),
                (4, ChangeType::LifecycleChanged, Lifecycle::Frozen),
            ]
        );
        assert_eq!(changes[3].capability.spec.metadata.version, "1.0.0");
        database.close().await;
    }
}

#[tokio::test]
async fn list_pages_by_id_and_filters_without_wildcards() {
    for db in TestDb::all().await {
        let (database, store) = open(&db).await;
        register(
            &store,
            &spec(
                "crm.create_account",
                "1.0.0",
                "MEDIUM",
                &["crm", "onboarding"],
            ),
        )
        .await;
        register(
            &store,
            &spec("crm.delete_account", "1.0.0", "HIGH", &["crm"]),
        )
        .await;
        register(&store, &spec("crmx.other", "1.0.0", "LOW", &[])).await;
        register(&store, &spec("io.fs.read_file", "1.0.0", "LOW", &["fs"])).await;
        register(&store, &spec("io.fs_extra.read", "1.0.0", "LOW", &["fs"])).await;

        let ids = |page: Vec<registry_service::store::StoredCapability>| {
            page.into_iter().map(|c| c.spec.id).collect::<Vec<_>>()
        };
        let all = ids(store
            .list(&ListFilter::default(), "", 100)
            .await
            .expect("list"));
        assert_eq!(all.len(), 5);
        let mut pages = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = ids(store
                .list(&ListFilter::default(), &cursor, 2)
                .await
                .expect("page"));
            let Some(last) = page.last().cloned() else {
                break;
            };
            pages.extend(page);
            cursor = last;
        }
        assert_eq!(
            pages,
            all,
            "{:?}: keyset pages cover everything once",
            db.backend()
        );

        let store_ref = &store;
        let filter = |f: ListFilter| async move {
            let mut v = ids(store_ref.list(&f, "", 100).await.expect("list"));
            v.sort();
            v
        };
        assert_eq!(
            filter(ListFilter {
                id_prefix: "crm.".into(),
                ..Default::default()
            })
            .await,
            ["crm.create_account", "crm.delete_account"]
        );
        assert_eq!(
            filter(ListFilter {
                id_prefix: "io.fs_".into(),
                ..Default::default()
            })
            .await,
            ["io.fs_extra.read"],
            "_ is not a wildcard"
        );
        assert_eq!(
            filter(ListFilter {
                risk_level: Some(RiskLevel::High),
                ..Default::default()
            })
            .await,
            ["crm.delete_account"]
        );
        assert_eq!(
            filter(ListFilter {
                tag: "onboarding".into(),
                ..Default::default()
            })
            .await,
            ["crm.create_account"]
        );
        store
            .set_lifecycle(
                "crmx.other",
                None,
                Lifecycle::Deprecated,
                "use crm.*",
                &admin(),
                "",
            )
            .await
            .expect("deprecate");
        assert_eq!(
            filter(ListFilter {
                lifecycle: Some(Lifecycle::Deprecated),
                ..Default::default()
            })
            .await,
            ["crmx.other"]
        );
        database.close().await;
    }
}

#[tokio::test]
async fn everything_survives_reopening_the_database() {
    for db in TestDb::all().await {
        {
            let (database, store) = open(&db).await;
            register(&store, &spec("crm.create_account", "1.0.0", "MEDIUM", &[])).await;
            store
                .set_lifecycle(
                    "crm.create_account",
                    None,
                    Lifecycle::Deprecated,
                    "v2 coming",
                    &admin(),
                    "",
                )
                .await
                .expect("deprecate");
            database.close().await;
        }
        let (database, store) = open(&db).await;
        let stored = store
            .get("crm.create_account", None)
            .await
            .expect("get")
            .expect("found");
        assert_eq!(stored.lifecycle, Lifecycle::Deprecated);
        assert_eq!(store.head_revision().await.expect("head"), 2);
        assert_eq!(
            store
                .changes_since(0, "crm.", 10)
                .await
                .expect("changes")
                .len(),
            2
        );
        assert!(
            store
                .changes_since(0, "io.", 10)
                .await
                .expect("changes")
                .is_empty()
        );
        database.close().await;
    }
}
