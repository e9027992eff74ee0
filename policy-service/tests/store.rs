//! The policy store's conformance suite: the same behaviour on SQLite and PostgreSQL.

use airt_kit::Principal;
use airt_kit::audit::AuditLog;
use airt_kit::db::Database;
use airt_kit::testing::TestDb;
use policy_service::domain::{CompiledPolicySet, parse_policy_set};
use policy_service::error::PolicyError;
use policy_service::store::{MIGRATIONS, PolicyStore};

fn admin() -> Principal {
    Principal::new("user", "root", vec!["admin".into()])
}

fn compiled(yaml: &str) -> CompiledPolicySet {
    CompiledPolicySet::compile(parse_policy_set(yaml).expect("valid"))
}

#[tokio::test]
async fn sets_are_versioned_activated_and_rolled_back() {
    for db in TestDb::all().await {
        let database = Database::connect(db.url(), Some(MIGRATIONS))
            .await
            .expect("connect");
        let store = PolicyStore::new(database.clone());
        let initial = store.state().await.expect("state");
        assert_eq!(
            (initial.active_revision.as_str(), initial.activation_seq),
            ("", 0)
        );

        let a = compiled("default: DENY\n");
        let b = compiled("default: ALLOW\n");
        let (stored_a, created) = store
            .put(&a, "default: DENY\n", "first", &admin(), true, "")
            .await
            .expect("put a");
        assert!(created);
        assert_eq!(stored_a.revision, a.revision());
        let (_, created_again) = store
            .put(&a, "# same\ndefault: DENY\n", "again", &admin(), false, "")
            .await
            .expect("put a again");
        assert!(
            !created_again,
            "{:?}: same revision stored once",
            db.backend()
        );
        store
            .put(&b, "default: ALLOW\n", "second", &admin(), true, "")
            .await
            .expect("put b");
        let state = store.state().await.expect("state");
        assert_eq!(
            (state.active_revision.as_str(), state.activation_seq),
            (b.revision(), 2)
        );

        store
            .activate(a.revision(), &admin(), "roll back", "")
            .await
            .expect("activate a");
        let state = store.state().await.expect("state");
        assert_eq!(
            (state.active_revision.as_str(), state.activation_seq),
            (a.revision(), 3)
        );
        // Activating the active set again changes nothing.
        store
            .activate(a.revision(), &admin(), "again", "")
            .await
            .expect("no-op");
        assert_eq!(store.state().await.expect("state").activation_seq, 3);
        assert!(matches!(
            store.activate("nope", &admin(), "", "").await,
            Err(PolicyError::NotFound(_))
        ));

        let newest_first: Vec<String> = store
            .list(0, 10)
            .await
            .expect("list")
            .into_iter()
            .map(|s| s.revision)
            .collect();
        assert_eq!(newest_first, [b.revision(), a.revision()]);
        let page = store.list(0, 1).await.expect("page");
        let next = store.list(page[0].seq, 1).await.expect("next page");
        assert_eq!(next[0].revision, a.revision());
        assert_eq!(
            store
                .get(a.revision())
                .await
                .expect("get")
                .expect("found")
                .description,
            "first"
        );

        // stored a, activated a, stored b, activated b, activated a
        let report = AuditLog::new(database.clone())
            .verify()
            .await
            .expect("verify");
        assert!(report.intact());
        assert_eq!(report.events_checked, 5, "{:?}", db.backend());
        database.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budgets_never_count_past_their_maximum_under_concurrency() {
    use policy_service::domain::budget::BudgetUse;
    for db in TestDb::all().await {
        let database = Database::connect(db.url(), Some(MIGRATIONS))
            .await
            .expect("connect");
        // Two stores on one database: two replicas' pools.
        let stores = [
            PolicyStore::new(database.clone()),
            PolicyStore::new(
                Database::connect(db.url(), Some(MIGRATIONS))
                    .await
                    .expect("second pool"),
            ),
        ];
        let budget = BudgetUse {
            rule_id: "capped".into(),
            scope: "agent=mailer".into(),
            max: 7,
            per_secs: 3600,
            over_budget: policy_service::domain::Decision::Deny,
            window_start: 1_800_000_000,
            window_end: 1_800_003_600,
            used: 0,
            exceeded: false,
            counted: false,
        };
        assert_eq!(stores[0].peek_budget(&budget).await.expect("peek"), 0);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40 {
            let (store, budget) = (stores[i % 2].clone(), budget.clone());
            tasks.spawn(async move { store.consume_budget(&budget).await.expect("consume") });
        }
        let mut counted = Vec::new();
        while let Some(consumed) = tasks.join_next().await {
            let consumed = consumed.expect("task");
            if !consumed.exceeded {
                counted.push(consumed.used);
            } else {
                assert_eq!(consumed.used, 7);
            }
        }
        counted.sort_unstable();
        assert_eq!(counted, (1..=7).collect::<Vec<u32>>(), "{:?}", db.backend());
        assert_eq!(stores[1].peek_budget(&budget).await.expect("peek"), 7);

        // Another scope and the next window count on their own.
        let other = BudgetUse {
            scope: "agent=other".into(),
            ..budget.clone()
        };
        assert_eq!(
            stores[0].consume_budget(&other).await.expect("other").used,
            1
        );
        let next = BudgetUse {
            window_start: budget.window_end,
            window_end: budget.window_end + 3600,
            ..budget.clone()
        };
        assert_eq!(stores[0].consume_budget(&next).await.expect("next").used, 1);

        // Ended windows are purged; the current one stays.
        assert_eq!(
            stores[0]
                .purge_budgets(budget.window_end)
                .await
                .expect("purge"),
            2
        );
        assert_eq!(stores[0].peek_budget(&budget).await.expect("peek"), 0);
        assert_eq!(stores[0].peek_budget(&next).await.expect("peek"), 1);
    }
}
