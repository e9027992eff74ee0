//! The workflow engine against real registry and policy services (over
//! gRPC), with real files: the Grand Unified scenario and the saga.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use airt_kit::Principal;
use airt_kit::audit::{AuditFilter, AuditLog};
use airt_kit::db::Database;
use airt_kit::testing::{TestDb, TestServer, as_principal};
use airt_proto::policy::v1 as policy;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use airt_proto::registry::v1 as registry;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use airt_system_tests::{register_capability, start_policy, start_registry};
use serde_json::Value;
use tonic::transport::Endpoint;
use workflow_service::capabilities::net::NetworkPolicy;
use workflow_service::capabilities::{Catalogue, CatalogueConfig, Workspace};
use workflow_service::domain::{WorkflowDraft, WorkflowStatus};
use workflow_service::engine::{Engine, EngineConfig};
use workflow_service::gate::policy::PolicyGate;
use workflow_service::gate::registry::RegistryGate;
use workflow_service::publish::{development_credentials, publish_all};
use workflow_service::store::{MIGRATIONS, WorkflowRow, WorkflowStore};

const POLICY: &str = r#"
default: DENY
rules:
  - id: deny-high-risk
    when: {risk_level: [HIGH, CRITICAL], capability: ["io.*", "crm.*", "ghost.*"]}
    decision: DENY
    reason: High-risk operations are not allowed
  - id: approve-risky-crm
    when: {capability: "risky.*"}
    decision: ALLOW
  - id: allow-the-rest
    when: {risk_level: [LOW, MEDIUM]}
    decision: ALLOW
    reason: low and medium risk are fine
"#;

struct Stack {
    registry: Option<TestServer>,
    policy: Option<TestServer>,
    _registry_db: TestDb,
    _policy_db: TestDb,
    workspace_dir: tempfile::TempDir,
    engine: Engine,
    database: Database,
    _db: TestDb,
}

async fn stack(db: TestDb, step_timeout: Duration) -> Stack {
    stack_with(db, step_timeout, NetworkPolicy::default()).await
}

async fn stack_with(db: TestDb, step_timeout: Duration, network: NetworkPolicy) -> Stack {
    let registry_db = TestDb::sqlite();
    let policy_db = TestDb::sqlite();
    let registry_server = start_registry(&registry_db).await;
    let policy_server = start_policy(&policy_db).await;
    let catalogue = Arc::new(Catalogue::new(&CatalogueConfig::default()));
    let registry_channel = Endpoint::from_shared(registry_server.url())
        .expect("url")
        .connect_lazy();
    publish_all(
        &catalogue,
        registry_channel.clone(),
        &development_credentials(),
    )
    .await
    .expect("publish built-ins");
    let mut registrar = RegistryServiceClient::new(registry_server.channel().await);
    let risky = "id: risky.operation\nname: Risky\noperation_type: WRITE\nrisk: {level: HIGH}\nside_effects: {reversible: false, scope: EXTERNAL}\n\
                 compensation: {supported: true, strategy: MANUAL}\nmetadata: {version: 1.0.0}\nhandler: \"http:https://risky.example/op\"\n";
    registrar
        .register_capability(as_principal(
            registry::RegisterCapabilityRequest {
                source: Some(registry::register_capability_request::Source::SpecText(
                    risky.into(),
                )),
                validate_only: false,
                request_id: String::new(),
            },
            "user:root",
            &["admin"],
        ))
        .await
        .expect("register risky");
    PolicyServiceClient::new(policy_server.channel().await)
        .put_policy_set(as_principal(
            policy::PutPolicySetRequest {
                source_yaml: POLICY.into(),
                activate: true,
                ..Default::default()
            },
            "user:root",
            &["admin"],
        ))
        .await
        .expect("policy");

    let workspace_dir = tempfile::tempdir().expect("workspace");
    let workspace = Arc::new(Workspace::open(workspace_dir.path()).expect("workspace"));
    let database = Database::connect(db.url(), Some(MIGRATIONS))
        .await
        .expect("workflow db");
    let engine = Engine::new(
        WorkflowStore::new(database.clone()),
        catalogue,
        workspace,
        RegistryGate::new(registry_channel, development_credentials()),
        PolicyGate::new(
            Endpoint::from_shared(policy_server.url())
                .expect("url")
                .connect_lazy(),
            development_credentials(),
        ),
        Arc::new(network),
        EngineConfig {
            default_step_timeout: step_timeout,
            compensation_attempts: 2,
            // Undo data is collected whenever a test asks.
            undo_retention: Duration::ZERO,
            ..EngineConfig::default()
        },
    );
    Stack {
        registry: Some(registry_server),
        policy: Some(policy_server),
        _registry_db: registry_db,
        _policy_db: policy_db,
        workspace_dir,
        engine,
        database,
        _db: db,
    }
}

impl Stack {
    fn root(&self) -> &Path {
        self.workspace_dir.path()
    }

    fn file(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.root().join(path)).ok()
    }

    async fn run(&self, yaml: &str, request_id: Option<&str>) -> WorkflowRow {
        let draft = WorkflowDraft::from_text(yaml).expect("yaml");
        let submitter = Principal::new("user", "alice", vec![]);
        let (row, _) = self
            .engine
            .submit(draft, submitter, request_id.map(str::to_owned))
            .await
            .expect("submit");
        self.settle(&row.workflow_id).await
    }

    /// Waits until the workflow is terminal or paused.
    async fn settle(&self, id: &str) -> WorkflowRow {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let row = self
                .engine
                .store()
                .get(id)
                .await
                .expect("get")
                .expect("exists");
            let status = row.status().expect("status");
            if status.is_terminal() || status == WorkflowStatus::Paused {
                return row;
            }
            assert!(Instant::now() < deadline, "workflow {id} still {status}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn steps(&self, id: &str) -> Vec<(String, String, String)> {
        self.engine
            .store()
            .steps(id)
            .await
            .expect("steps")
            .into_iter()
            .map(|s| (s.step_name, s.status, s.error))
            .collect()
    }
}

fn status(row: &WorkflowRow) -> WorkflowStatus {
    row.status().expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grand_unified_a_high_risk_step_is_denied_before_it_runs() {
    for preflight in [true, false] {
        let s = stack(TestDb::sqlite(), Duration::from_secs(10)).await;
        std::fs::write(s.root().join("precious.txt"), b"do not touch").expect("file");
        let workflow = format!(
            "name: cleanup\noptions: {{preflight: {preflight}}}\nsteps:\n  - {{name: shred, agent: janitor, capability: io.fs.delete, inputs: {{path: precious.txt}}}}\n"
        );
        let row = s.run(&workflow, None).await;
        assert_eq!(
            status(&row),
            WorkflowStatus::Failed,
            "preflight {preflight}"
        );
        assert!(
            row.failure_reason.contains(
                "policy denied: rule deny-high-risk: High-risk operations are not allowed"
            ),
            "{}",
            row.failure_reason
        );
        assert_eq!(row.failed_step, "shred");
        let steps = s
            .engine
            .store()
            .steps(&row.workflow_id)
            .await
            .expect("steps");
        assert_eq!(
            (
                steps[0].status.as_str(),
                steps[0].attempt,
                steps[0].risk_level.as_str()
            ),
            ("DENIED", 0, "HIGH"),
            "never started"
        );
        assert_eq!(
            s.file("precious.txt").as_deref(),
            Some(&b"do not touch"[..]),
            "byte-for-byte unchanged"
        );
        let log = AuditLog::new(s.database.clone());
        assert!(log.verify().await.expect("verify").intact());
        let decided = log
            .list(
                &AuditFilter {
                    action: "step.decided".into(),
                    ..Default::default()
                },
                0,
                10,
            )
            .await
            .expect("list");
        assert!(
            decided
                .iter()
                .any(|e| e.resource_id == row.workflow_id && e.details.contains("deny-high-risk")),
            "the decision is in the audit chain"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_risk_workflow_completes_with_its_outputs() {
    for db in TestDb::all().await {
        let s = stack(db, Duration::from_secs(10)).await;
        let spec = "name: hello\ninitial_state: {who: world}\nsteps:\n  - {name: write, capability: io.fs.write_file, inputs: {path: out/hello.txt, content: 'hello {{who}}', create_dirs: true}}\n  - {name: read, capability: io.fs.read_file, depends_on: [write], inputs: {path: '{{write.path}}'}}\n";
        let row = s.run(spec, Some("req-1")).await;
        assert_eq!(
            status(&row),
            WorkflowStatus::Completed,
            "{}",
            row.failure_reason
        );
        let outputs = s
            .engine
            .step_outputs(&row.workflow_id)
            .await
            .expect("outputs");
        assert_eq!(outputs["read"]["content"], "hello world");
        assert_eq!(outputs["write"]["size"], 11);
        // The same request_id returns the same workflow and runs nothing again...
        let again = s.run(spec, Some("req-1")).await;
        assert_eq!(again.workflow_id, row.workflow_id);
        // ...but never for another spec.
        let other = WorkflowDraft::from_text(
            "name: hello\nsteps:\n  - {name: other, capability: io.fs.exists, inputs: {path: x}}\n",
        )
        .expect("yaml");
        let conflict = s
            .engine
            .submit(
                other,
                Principal::new("user", "alice", vec![]),
                Some("req-1".into()),
            )
            .await
            .expect_err("a different spec under a used request_id");
        assert!(
            matches!(conflict, workflow_service::error::WorkflowError::RequestIdConflict { ref workflow_id, .. } if *workflow_id == row.workflow_id),
            "{conflict:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_third_step_rolls_back_steps_two_then_one() {
    let s = stack(TestDb::sqlite(), Duration::from_secs(10)).await;
    std::fs::write(s.root().join("config.txt"), b"v1").expect("file");
    let row = s
        .run(
            "name: saga\nsteps:\n  - {name: one, capability: io.fs.write_file, inputs: {path: config.txt, content: v2}}\n  - {name: two, capability: io.fs.write_file, depends_on: [one], inputs: {path: new.txt, content: fresh}}\n  - {name: three, capability: io.fs.read_file, depends_on: [two], inputs: {path: missing.txt}}\n",
            None,
        )
        .await;
    assert_eq!(
        status(&row),
        WorkflowStatus::RolledBack,
        "{}",
        row.failure_reason
    );
    assert_eq!(row.failed_step, "three");
    assert!(
        row.failure_reason.starts_with("NOT_FOUND: missing.txt"),
        "verbatim reason: {}",
        row.failure_reason
    );
    assert_eq!(
        s.file("config.txt").as_deref(),
        Some(&b"v1"[..]),
        "previous bytes restored"
    );
    assert_eq!(s.file("new.txt"), None, "created file removed");
    let compensations = s
        .engine
        .store()
        .compensations(&row.workflow_id)
        .await
        .expect("compensations");
    assert_eq!(
        compensations
            .iter()
            .map(|c| (c.step_name.as_str(), c.position, c.status.as_str()))
            .collect::<Vec<_>>(),
        [("two", 1, "DONE"), ("one", 2, "DONE")]
    );
    // The audit log shows the order too.
    let log = AuditLog::new(s.database.clone());
    let done: Vec<String> = log
        .list(
            &AuditFilter {
                action: "compensation.status".into(),
                resource_id: row.workflow_id.clone(),
                ..Default::default()
            },
            0,
            100,
        )
        .await
        .expect("audit")
        .into_iter()
        .filter_map(|e| serde_json::from_str::<Value>(&e.details).ok())
        .filter(|d| d["status"] == "DONE")
        .map(|d| d["step"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(done, ["two", "one"]);
    let steps = s.steps(&row.workflow_id).await;
    assert_eq!(
        steps
            .iter()
            .map(|(n, st, _)| (n.as_str(), st.as_str()))
            .collect::<Vec<_>>(),
        [
            ("one", "COMPENSATED"),
            ("two", "COMPENSATED"),
            ("three", "FAILED")
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_at_step_two_rolls_back_step_one() {
    let s = stack(TestDb::sqlite(), Duration::from_secs(10)).await;
    std::fs::write(s.root().join("victim.txt"), b"keep").expect("file");
    let row = s
        .run(
            "name: mixed\noptions: {preflight: false}\nsteps:\n  - {name: one, capability: io.fs.write_file, inputs: {path: draft.txt, content: x}}\n  - {name: two, capability: io.fs.delete, depends_on: [one], inputs: {path: victim.txt}}\n",
            None,
        )
        .await;
    assert_eq!(status(&row), WorkflowStatus::RolledBack);
    assert!(
        row.failure_reason.contains("rule deny-high-risk"),
        "{}",
        row.failure_reason
    );
    assert_eq!(s.file("draft.txt"), None);
    assert_eq!(s.file("victim.txt").as_deref(), Some(&b"keep"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_capabilities_are_refused_at_submit_and_escalated_steps_pause_without_running() {
    let s = stack(TestDb::sqlite(), Duration::from_secs(10)).await;
    let draft = WorkflowDraft::from_text(
        "name: u\noptions: {preflight: false}\nsteps:\n  - {name: mystery, capability: ghost.thing}\n",
    )
    .expect("yaml");
    let refused = s
        .engine
        .submit(draft, Principal::new("user", "alice", vec![]), None)
        .await
        .expect_err("an unknown capability is refused before anything is stored");
    let workflow_service::error::WorkflowError::InvalidWorkflow(violations) = refused else {
        panic!("INVALID_ARGUMENT, not {refused}");
    };
    assert_eq!(violations.len(), 1);
    assert_eq!(violations[0].field, "spec.steps[0].capability");
    assert!(violations[0].description.contains("ghost.thing"));

    let paused = s
        .run(
            "name: p\nsteps:\n  - {name: risky, capability: risky.operation}\n",
            None,
        )
        .await;
    assert_eq!(status(&paused), WorkflowStatus::Paused);
    let steps = s
        .engine
        .store()
        .steps(&paused.workflow_id)
        .await
        .expect("steps");
    assert_eq!(
        (steps[0].status.as_str(), steps[0].attempt),
        ("AWAITING_APPROVAL", 0),
        "not executed"
    );
    let decision: Value = serde_json::from_str(&steps[0].decision).expect("json");
    assert_eq!(
        (
            decision["decision"].as_str(),
            decision["escalated"].as_bool()
        ),
        (Some("REQUIRE_APPROVAL"), Some(true))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_compensation_gives_compensation_failed_naming_the_step() {
    let s = stack(TestDb::sqlite(), Duration::from_secs(10)).await;
    let row = s
        .run(
            "name: c\nsteps:\n  - {name: one, capability: io.fs.write_file, inputs: {path: a.txt, content: x}, compensation: {capability: io.fs.read_file, inputs: {path: nowhere.txt}}}\n  - {name: two, capability: io.fs.read_file, depends_on: [one], inputs: {path: missing.txt}}\n",
            None,
        )
        .await;
    assert_eq!(status(&row), WorkflowStatus::CompensationFailed);
    assert_eq!(row.failed_step, "one");
    assert!(
        row.failure_reason
            .contains("compensation of step one failed"),
        "{}",
        row.failure_reason
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compensation_the_policy_denies_does_not_run() {
    let s = stack(TestDb::sqlite(), Duration::from_secs(10)).await;
    std::fs::write(s.root().join("keep.txt"), b"keep").expect("file");
    // io.fs.delete is HIGH risk, which the policy denies for io.*: named as
    // a compensation it would delete a file the workflow never wrote.
    let row = s
        .run(
            "name: c\nsteps:\n  - {name: one, capability: io.fs.write_file, inputs: {path: a.txt, content: x}, compensation: {capability: io.fs.delete, inputs: {path: keep.txt}}}\n  - {name: two, capability: io.fs.read_file, depends_on: [one], inputs: {path: missing.txt}}\n",
            None,
        )
        .await;
    assert_eq!(status(&row), WorkflowStatus::CompensationFailed);
    assert_eq!(row.failed_step, "one");
    assert!(
        row.failure_reason
            .contains("compensation io.fs.delete: policy denied: rule deny-high-risk"),
        "{}",
        row.failure_reason
    );
    assert_eq!(
        s.file("keep.txt").as_deref(),
        Some(&b"keep"[..]),
        "still there"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_registry_or_policy_down_no_handler_runs_and_the_step_fails_after_its_deadline() {
    for stop_registry in [true, false] {
        let mut s = stack(TestDb::sqlite(), Duration::from_millis(800)).await;
        if stop_registry {
            s.registry
                .take()
                .expect("registry")
                .stop()
                .await
                .expect("stop");
        } else {
            s.policy.take().expect("policy").stop().await.expect("stop");
        }
        let row = s.run("name: d\nsteps:\n  - {name: write, capability: io.fs.write_file, inputs: {path: never.txt, content: x}}\n", None).await;
        assert_eq!(status(&row), WorkflowStatus::Failed);
        let dependency = if stop_registry {
            "registry"
        } else {
            "policy service"
        };
        assert!(
            row.failure_reason
                .contains(&format!("{dependency} unavailable")),
            "{}",
            row.failure_reason
        );
        assert_eq!(s.file("never.txt"), None, "no handler ran");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_shows_each_step_risk_and_decision_without_running_anything() {
    let s = stack(TestDb::sqlite(), Duration::from_secs(10)).await;
    std::fs::write(s.root().join("keep.txt"), b"keep").expect("file");
    let draft = WorkflowDraft::from_text(
        "name: plan\ninitial_state: {file: keep.txt}\nsteps:\n  - {name: read, capability: io.fs.read_file, inputs: {path: '{{file}}'}}\n  - {name: copy, capability: io.fs.write_file, depends_on: [read], inputs: {path: copy.txt, content: '{{read.content}}'}}\n  - {name: shred, capability: io.fs.delete, depends_on: [copy], inputs: {path: '{{file}}'}}\n  - {name: sign_off, type: HUMAN_APPROVAL, depends_on: [shred], approval: {message: ok}}\n",
    )
    .expect("yaml");
    let plans = s
        .engine
        .plan(&draft, Principal::new("user", "alice", vec![]))
        .await
        .expect("plan");
    let summary: Vec<(&str, Option<i32>, Option<&str>)> = plans
        .iter()
        .map(|p| {
            (
                p.step_name.as_str(),
                p.decision.as_ref().map(|d| d.decision),
                p.decision.as_ref().map(|d| d.rule_id.as_str()),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "read",
                Some(policy::Decision::Allow as i32),
                Some("allow-the-rest")
            ),
            (
                "copy",
                Some(policy::Decision::Allow as i32),
                Some("allow-the-rest")
            ),
            (
                "shred",
                Some(policy::Decision::Deny as i32),
                Some("deny-high-risk")
            ),
            ("sign_off", None, None),
        ]
    );
    assert_eq!(
        plans[1].deferred_inputs,
        ["content"],
        "outputs of earlier steps are not known yet"
    );
    assert!(
        s.engine
            .store()
            .list(&Default::default(), "", 10)
            .await
            .expect("list")
            .is_empty(),
        "nothing stored"
    );
    assert_eq!(s.file("keep.txt").as_deref(), Some(&b"keep"[..]));
    assert_eq!(s.file("copy.txt"), None);
}

/// A remote capability on loopback: answers `POST /summarize` with JSON
/// built from the request, `/reject` with 400, and `/flaky` with 503 once.
async fn remote_capability_server() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let flaky_calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let flaky_calls = flaky_calls.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 8192];
                let body = loop {
                    let n = match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).into_owned();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length: usize = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break text[end + 4..].to_owned();
                        }
                    }
                };
                let path = String::from_utf8_lossy(&request)
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("/")
                    .to_owned();
                let call: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                let (status, content) = match path.as_str() {
                    "/summarize" => ("200 OK", serde_json::json!({"summary": format!("{} words", call["inputs"]["text"].as_str().unwrap_or("").split_whitespace().count()), "step": call["context"]["step_name"]}).to_string()),
                    "/reject" => ("400 Bad Request", "{\"error\": \"no\"}".to_owned()),
                    "/flaky" if flaky_calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 => ("503 Service Unavailable", "{}".to_owned()),
                    "/flaky" => ("200 OK", "{\"ok\": true}".to_owned()),
                    _ => ("404 Not Found", "{}".to_owned()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{content}",
                    content.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_capabilities_run_over_http_with_typed_failures() {
    let addr = remote_capability_server().await;
    let s = stack_with(
        TestDb::sqlite(),
        Duration::from_secs(10),
        NetworkPolicy::parse(&["127.0.0.1".to_owned()]).expect("allow"),
    )
    .await;
    let registry_channel = s.registry.as_ref().expect("registry").channel().await;
    for (id, path) in [
        ("agent.summarize", "summarize"),
        ("agent.reject", "reject"),
        ("agent.flaky", "flaky"),
    ] {
        let spec = format!(
            "id: {id}\nname: {id}\noperation_type: READ\nrisk: {{level: LOW}}\nside_effects: {{reversible: true, scope: NETWORK}}\n\
             compensation: {{supported: false, strategy: NONE}}\nparameters: [{{name: text, type: string}}]\nmetadata: {{version: 1.0.0}}\nhandler: \"http:http://127.0.0.1:{}/{path}\"\n",
            addr.port()
        );
        register_capability(registry_channel.clone(), spec).await;
    }
    let ok = s.run("name: r\nsteps:\n  - {name: sum, capability: agent.summarize, inputs: {text: 'one two three'}}\n", None).await;
    assert_eq!(
        status(&ok),
        WorkflowStatus::Completed,
        "{}",
        ok.failure_reason
    );
    let outputs = s
        .engine
        .step_outputs(&ok.workflow_id)
        .await
        .expect("outputs");
    assert_eq!(
        outputs["sum"],
        serde_json::json!({"summary": "3 words", "step": "sum"})
    );

    let rejected = s
        .run(
            "name: r\nsteps:\n  - {name: no, capability: agent.reject, retry: {max_attempts: 3}}\n",
            None,
        )
        .await;
    assert_eq!(status(&rejected), WorkflowStatus::Failed);
    assert!(
        rejected.failure_reason.contains("400"),
        "{}",
        rejected.failure_reason
    );
    assert_eq!(
        s.engine
            .store()
            .steps(&rejected.workflow_id)
            .await
            .expect("steps")[0]
            .attempt,
        1,
        "a 4xx is not retried"
    );

    let flaky = s.run("name: r\nsteps:\n  - {name: again, capability: agent.flaky, retry: {max_attempts: 3, initial_backoff: 10ms}}\n", None).await;
    assert_eq!(
        status(&flaky),
        WorkflowStatus::Completed,
        "{}",
        flaky.failure_reason
    );
    assert_eq!(
        s.engine
            .store()
            .steps(&flaky.workflow_id)
            .await
            .expect("steps")[0]
            .attempt,
        2,
        "a 503 is retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undo_data_of_finished_workflows_is_collected_but_kept_where_an_effect_stands() {
    let s = stack(TestDb::sqlite(), Duration::from_secs(10)).await;
    let completed = s
        .run(
            "name: w\nsteps:\n  - {name: write, capability: io.fs.write_file, inputs: {path: kept.txt, content: x}}\n",
            None,
        )
        .await;
    assert_eq!(status(&completed), WorkflowStatus::Completed);
    let stands = s
        .run(
            "name: c\nsteps:\n  - {name: one, capability: io.fs.write_file, inputs: {path: a.txt, content: x}, compensation: {capability: io.fs.read_file, inputs: {path: nowhere.txt}}}\n  - {name: two, capability: io.fs.read_file, depends_on: [one], inputs: {path: missing.txt}}\n",
            None,
        )
        .await;
    assert_eq!(status(&stands), WorkflowStatus::CompensationFailed);
    let owners = || -> Vec<String> {
        let mut owners: Vec<String> = std::fs::read_dir(s.root().join(".airt/undo"))
            .expect("undo area")
            .map(|slot| {
                std::fs::read_to_string(slot.expect("slot").path().join("workflow")).expect("owner")
            })
            .collect();
        owners.sort();
        owners
    };
    let mut both = vec![completed.workflow_id.clone(), stands.workflow_id.clone()];
    both.sort();
    assert_eq!(
        owners(),
        both,
        "each write kept undo data naming its workflow"
    );

    assert_eq!(s.engine.collect_undo_once().await.expect("sweep"), 1);
    assert_eq!(
        owners(),
        std::slice::from_ref(&stands.workflow_id),
        "an operator still needs it"
    );
    assert_eq!(
        s.file("kept.txt").as_deref(),
        Some(&b"x"[..]),
        "only undo data goes"
    );
    assert_eq!(s.engine.collect_undo_once().await.expect("sweep"), 0);
}
