//! The hash-chained audit log on both backends: intact chains verify, and
//! any edit, deletion or reordering is reported at the first broken event.

use airt_kit::audit::{AuditFilter, AuditLog, AuditWriter, GENESIS_HASH, NewAuditEvent};
use airt_kit::db::Database;
use airt_kit::testing::TestDb;
use serde_json::json;

async fn log_with_events(test_db: &TestDb, count: i64) -> (Database, AuditLog) {
    let db = Database::connect(test_db.url(), None)
        .await
        .expect("connect");
    let log = AuditLog::new(db.clone());
    for i in 1..=count {
        log.append(
            &NewAuditEvent::new(
                "user:alice",
                "capability.registered",
                "capability",
                format!("demo.cap_{i}"),
            )
            .with_details(json!({"version": "1.0.0", "n": i})),
        )
        .await
        .expect("append");
    }
    (db, log)
}

async fn exec(db: &Database, sql: &'static str) {
    airt_kit::with_pool!(db, pool => { sqlx::query(sql).execute(pool).await.expect(sql); });
}

async fn broken_at(log: &AuditLog) -> Option<(i64, String)> {
    let report = log.verify().await.expect("verify");
    report.broken.map(|b| (b.sequence, b.problem))
}

#[tokio::test]
async fn an_intact_chain_verifies_and_links_every_event() {
    for test_db in TestDb::all().await {
        let (db, log) = log_with_events(&test_db, 5).await;
        let report = log.verify().await.expect("verify");
        assert!(report.intact(), "{:?}: {report:?}", test_db.backend());
        assert_eq!(report.events_checked, 5);

        let events = log
            .list(&AuditFilter::default(), 0, 100)
            .await
            .expect("list");
        assert_eq!(
            events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(events[0].prev_hash, GENESIS_HASH);
        for pair in events.windows(2) {
            assert_eq!(pair[1].prev_hash, pair[0].hash);
        }
        assert_eq!(report.head_hash, events[4].hash);
        db.close().await;
    }
}

#[tokio::test]
async fn an_edited_event_is_named() {
    for test_db in TestDb::all().await {
        let (db, log) = log_with_events(&test_db, 5).await;
        exec(&db, "UPDATE audit_events SET details = '{\"n\":3,\"version\":\"9.9.9\"}' WHERE sequence = 3").await;
        let (sequence, problem) = broken_at(&log).await.expect("broken");
        assert_eq!(sequence, 3, "{:?}", test_db.backend());
        assert!(problem.contains("hash does not match"), "{problem}");

        db.close().await;

        // Editing the actor (not the details) is caught the same way.
        let (db, log) = log_with_events(&test_db, 0).await;
        exec(
            &db,
            "UPDATE audit_events SET actor = 'user:mallory' WHERE sequence = 2",
        )
        .await;
        assert_eq!(
            broken_at(&log).await.map(|b| b.0),
            Some(2),
            "{:?}",
            test_db.backend()
        );
        db.close().await;
    }
}

#[tokio::test]
async fn a_recomputed_hash_still_breaks_the_next_link() {
    for test_db in TestDb::all().await {
        let (db, log) = log_with_events(&test_db, 5).await;
        // An attacker rewrites event 2 and its own hash; event 3 still points at the old hash.
        let mut events = log
            .list(&AuditFilter::default(), 0, 10)
            .await
            .expect("list");
        let mut forged = events.remove(1);
        forged.actor = "user:mallory".into();
        let forged_hash = forged.compute_hash().expect("hash");
        airt_kit::with_pool!(&db, pool => {
            sqlx::query("UPDATE audit_events SET actor = $1, hash = $2 WHERE sequence = 2")
                .bind(&forged.actor)
                .bind(&forged_hash)
                .execute(pool)
                .await
                .expect("forge");
        });
        let (sequence, problem) = broken_at(&log).await.expect("broken");
        assert_eq!(sequence, 3, "{:?}", test_db.backend());
        assert!(problem.contains("prev_hash"), "{problem}");
        db.close().await;
    }
}

#[tokio::test]
async fn a_deleted_event_is_named() {
    for test_db in TestDb::all().await {
        let (db, log) = log_with_events(&test_db, 5).await;
        exec(&db, "DELETE FROM audit_events WHERE sequence = 2").await;
        let (sequence, problem) = broken_at(&log).await.expect("broken");
        assert_eq!(sequence, 2, "{:?}", test_db.backend());
        assert!(problem.contains("missing event"), "{problem}");
        db.close().await;
    }
}

#[tokio::test]
async fn deleting_the_newest_event_is_detected_through_the_head() {
    for test_db in TestDb::all().await {
        let (db, log) = log_with_events(&test_db, 5).await;
        exec(&db, "DELETE FROM audit_events WHERE sequence = 5").await;
        let (sequence, problem) = broken_at(&log).await.expect("broken");
        assert_eq!(sequence, 5, "{:?}", test_db.backend());
        assert!(problem.contains("missing event"), "{problem}");
        db.close().await;
    }
}

#[tokio::test]
async fn reordered_events_are_named() {
    for test_db in TestDb::all().await {
        let (db, log) = log_with_events(&test_db, 5).await;
        // Swap events 3 and 4.
        exec(
            &db,
            "UPDATE audit_events SET sequence = -3 WHERE sequence = 3",
        )
        .await;
        exec(
            &db,
            "UPDATE audit_events SET sequence = 3 WHERE sequence = 4",
        )
        .await;
        exec(
            &db,
            "UPDATE audit_events SET sequence = 4 WHERE sequence = -3",
        )
        .await;
        let (sequence, _) = broken_at(&log).await.expect("broken");
        assert_eq!(sequence, 3, "{:?}", test_db.backend());
        db.close().await;
    }
}

#[tokio::test]
async fn a_batch_of_several_inserts_extends_the_chain_and_its_head() {
    for test_db in TestDb::all().await {
        let (db, log) = log_with_events(&test_db, 2).await;
        // 250 events: more than one insert statement (128, 64, 58 rows).
        let batch: Vec<NewAuditEvent> = (0..250)
            .map(|i| NewAuditEvent::new("service:test", "test.batched", "test", format!("b-{i}")))
            .collect();
        log.append_batch(&batch).await.expect("batch");
        log.append(&NewAuditEvent::new(
            "service:test",
            "test.after",
            "test",
            "a",
        ))
        .await
        .expect("append after the batch");
        let report = log.verify().await.expect("verify");
        assert!(report.intact(), "{:?}: {report:?}", test_db.backend());
        assert_eq!(report.events_checked, 253);
        let last = log
            .list(&AuditFilter::default(), 252, 10)
            .await
            .expect("list");
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].action, "test.after");
        assert_eq!(report.head_hash, last[0].hash);
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_form_one_gapless_chain() {
    for test_db in TestDb::all().await {
        let db = Database::connect(test_db.url(), None)
            .await
            .expect("connect");
        let log = AuditLog::new(db.clone());
        let mut tasks = Vec::new();
        for task in 0..4 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..25 {
                    log.append(&NewAuditEvent::new(
                        "service:test",
                        "test.appended",
                        "test",
                        format!("{task}-{i}"),
                    ))
                    .await
                    .expect("append");
                }
            }));
        }
        for task in tasks {
            task.await.expect("task");
        }
        let report = log.verify().await.expect("verify");
        assert!(report.intact(), "{:?}: {report:?}", test_db.backend());
        assert_eq!(report.events_checked, 100);
        db.close().await;
    }
}

#[tokio::test]
async fn exported_json_lines_can_be_verified_offline() {
    use sha2::{Digest, Sha256};
    let test_db = TestDb::sqlite();
    let (db, log) = log_with_events(&test_db, 3).await;
    let mut prev = GENESIS_HASH.to_owned();
    for event in log
        .list(&AuditFilter::default(), 0, 10)
        .await
        .expect("list")
    {
        let mut line: serde_json::Value =
            serde_json::from_str(&event.json_line()).expect("json line");
        let object = line.as_object_mut().expect("object");
        let hash = object.remove("hash").expect("hash");
        let prev_hash = object.remove("prev_hash").expect("prev_hash");
        assert_eq!(prev_hash, prev.as_str());
        let body = airt_kit::json::canonical_json(&serde_json::Value::Object(object.clone()));
        let recomputed = hex::encode(Sha256::digest(format!("{prev}{body}")));
        assert_eq!(hash, recomputed.as_str());
        prev = recomputed;
    }
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_holding_a_connection_chains_with_others_and_releases_it() {
    for test_db in TestDb::all().await {
        let db = Database::connect(test_db.url(), None)
            .await
            .expect("connect");
        let log = AuditLog::new(db.clone());
        let mut writer = AuditWriter::new(&log);
        let batch = |n: usize| -> Vec<NewAuditEvent> {
            (0..n)
                .map(|i| {
                    NewAuditEvent::new("service:test", "test.batched", "test", format!("b-{i}"))
                        .with_details(json!({"i": i}))
                })
                .collect()
        };
        // Batches over the held connection interleave with appends through
        // the pool: one gapless chain either way.
        for round in 0..3 {
            writer.append_batch(&batch(40)).await.expect("batch");
            log.append(&NewAuditEvent::new(
                "user:alice",
                "test.single",
                "test",
                format!("s-{round}"),
            ))
            .await
            .expect("append");
        }
        let report = log.verify().await.expect("verify");
        assert!(report.intact(), "{:?}: {report:?}", test_db.backend());
        assert_eq!(report.events_checked, 123);
        // Given back, the connection no longer keeps the pool from closing.
        writer.release();
        tokio::time::timeout(std::time::Duration::from_secs(10), db.close())
            .await
            .expect("the pool closes once the writer released its connection");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_batches_chain_after_the_real_head_and_are_never_written_twice() {
    for test_db in TestDb::all().await {
        let (db, log) = log_with_events(&test_db, 2).await;
        let mut writer = AuditWriter::new(&log);
        let event = |i: usize| {
            NewAuditEvent::new("service:test", "test.sealed", "test", format!("e-{i}"))
                .with_details(json!({"i": i}))
        };
        // The first batch is sealed after a guessed head (the log already
        // holds two events), the second after the first.
        let mut first = writer.batch();
        (0..10).for_each(|i| first.push(&event(i)));
        writer.append_sealed(&mut first).await.expect("first");
        let mut second = writer.batch();
        (10..20).for_each(|i| second.push(&event(i)));
        writer.append_sealed(&mut second).await.expect("second");
        // A commit that reported an error but happened: the same batch
        // again writes nothing.
        writer.append_sealed(&mut second).await.expect("again");
        assert_eq!(log.length().await.expect("length"), 22);
        // … even after another appender wrote behind it.
        log.append(&NewAuditEvent::new(
            "user:alice",
            "test.single",
            "test",
            "s0",
        ))
        .await
        .expect("append");
        writer.append_sealed(&mut second).await.expect("once more");
        assert_eq!(log.length().await.expect("length"), 23);
        // Another appender moves the head between sealing and writing.
        let mut third = writer.batch();
        (20..25).for_each(|i| third.push(&event(i)));
        log.append(&NewAuditEvent::new(
            "user:alice",
            "test.single",
            "test",
            "s",
        ))
        .await
        .expect("append");
        writer.append_sealed(&mut third).await.expect("third");

        let report = log.verify().await.expect("verify");
        assert!(report.intact(), "{:?}: {report:?}", test_db.backend());
        assert_eq!(report.events_checked, 29);
        let events = log
            .list(&AuditFilter::default(), 0, 100)
            .await
            .expect("list");
        let ids: Vec<&str> = events.iter().map(|e| e.resource_id.as_str()).collect();
        let expected: Vec<String> = (0..20)
            .map(|i| format!("e-{i}"))
            .chain(["s0".to_owned(), "s".to_owned()])
            .chain((20..25).map(|i| format!("e-{i}")))
            .collect();
        assert_eq!(
            ids[2..],
            expected.iter().map(String::as_str).collect::<Vec<_>>()[..]
        );
        writer.release();
        db.close().await;
    }
}
