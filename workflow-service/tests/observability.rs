//! The admin listeners of the three services, seen from outside: metrics
//! that count what happened, and liveness/readiness while a dependency is
//! down. The workflow service is the real binary; the registry and the
//! policy service run in-process with their own admin listeners. And the
//! binary's traces, exported over OTLP to an in-process receiver.

// A test is one scenario, told in order; it may be long.
#![allow(clippy::too_many_lines)]

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use airt_kit::config::ServiceConfig;
use airt_kit::testing::otlp::Collector;
use airt_kit::testing::{ServiceProcess, TestDb, TestServer, as_principal};
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

mod common;

/// `GET url` over HTTP/1.1: (status, body).
async fn get(url: &str) -> (u16, String) {
    let rest = url.strip_prefix("http://").expect("http URL");
    let (host, path) = rest.split_at(rest.find('/').expect("path"));
    let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    let (head, body) = answer.split_once("\r\n\r\n").expect("headers end");
    let status = head
        .split(' ')
        .nth(1)
        .expect("status")
        .parse()
        .expect("code");
    (status, body.to_owned())
}

/// Samples of a Prometheus text exposition: `name{labels}` → value. Every
/// line must be a comment or a well-formed sample.
fn samples(text: &str) -> HashMap<String, f64> {
    let mut samples = HashMap::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix("# ") {
            assert!(
                comment.starts_with("HELP ") || comment.starts_with("TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line}"));
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end]
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            "{line}"
        );
        samples.insert(series.to_owned(), value);
    }
    samples
}

/// A metric's documented name: histogram series name their family.
fn family_of(series: &str) -> String {
    let name = &series[..series.find('{').unwrap_or(series.len())];
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(family) = name.strip_suffix(suffix)
            && family.ends_with("_seconds")
        {
            return family.to_owned();
        }
    }
    name.to_owned()
}

/// The metric names docs/OPERATIONS.md documents (its metrics table).
fn documented() -> HashSet<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/OPERATIONS.md"
    ))
    .expect("OPERATIONS.md");
    let mut names = HashSet::new();
    for row in text.lines().filter(|l| l.starts_with("| `airt_")) {
        let first_cell = row.split('|').nth(1).expect("cell");
        for quoted in first_cell.split('`').skip(1).step_by(2) {
            names.insert(quoted.to_owned());
        }
    }
    names
}

/// Every PromQL expression of the alert rules and the dashboard parses and
/// names only documented metrics.
fn check_deploy_files(documented: &HashSet<String>) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/observability");
    let rules: serde_json::Value = serde_norway::from_str(
        &std::fs::read_to_string(format!("{dir}/alerts.yaml")).expect("alerts"),
    )
    .expect("alerts.yaml is YAML");
    let mut exprs = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            assert!(rule["alert"].is_string(), "{rule}");
            assert!(rule["annotations"]["summary"].is_string(), "{rule}");
            exprs.push(rule["expr"].as_str().expect("expr").to_owned());
        }
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{dir}/grafana-dashboard.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_owned());
        }
    }
    assert!(exprs.len() > 20, "{} expressions", exprs.len());
    for expr in exprs {
        promql_parser::parser::parse(&expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if word.starts_with("airt_") {
                assert!(
                    documented.contains(&family_of(word)),
                    "{word} in {expr} is not a documented metric"
                );
            }
        }
    }
}

/// The workflow-service binary on `db` in development auth mode, with the
/// in-process registry and policy service, and `extra` arguments.
fn spawn_workflow(
    db: &TestDb,
    registry: &TestServer,
    policy: &TestServer,
    workspace: &std::path::Path,
    extra: &[&str],
) -> ServiceProcess {
    let (registry_url, policy_url) = (registry.url(), policy.url());
    let workspace = workspace.to_string_lossy();
    let mut args = vec![
        "--auth-dev-mode",
        "--registry-addr",
        &registry_url,
        "--policy-addr",
        &policy_url,
        "--workspace",
        &workspace,
    ];
    args.extend_from_slice(extra);
    ServiceProcess::spawn(env!("CARGO_BIN_EXE_workflow-service"), db.url(), &args)
}

fn free_port() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr")
}

async fn wait_for_status(url: &str, want: u16) -> String {
    for _ in 0..200 {
        let (status, body) = get(url).await;
        if status == want {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} never answered {want}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_happened_and_readiness_follows_the_dependencies() {
    let (registry_admin, policy_admin) = (free_port(), free_port());
    let config = |identity, db: &TestDb, admin| ServiceConfig {
        admin_listen: Some(admin),
        ..db.dev_config(identity)
    };
    let (registry_db, policy_db, workflow_db) =
        (TestDb::sqlite(), TestDb::sqlite(), TestDb::sqlite());
    let registry_config = config(&registry_service::IDENTITY, &registry_db, registry_admin);
    let registry =
        TestServer::start(move |l, s| registry_service::serve_on(registry_config, l, s)).await;
    let policy_config = config(&policy_service::IDENTITY, &policy_db, policy_admin);
    let policy_server =
        TestServer::start(move |l, s| policy_service::serve_on(policy_config, l, s)).await;
    airt_kit::testing::activate_policy(policy_server.channel().await, "escalate_high_risk: false\nrules:\n  - {id: deny-deletes, when: {capability: io.fs.delete}, decision: DENY, reason: no deletes}\n  - {id: allow-all, decision: ALLOW}\n").await;
    let workspace = tempfile::tempdir().expect("workspace");
    let service = spawn_workflow(
        &workflow_db,
        &registry,
        &policy_server,
        workspace.path(),
        &[],
    );
    let admin = service.admin_url();
    // Ready once the built-ins are published and both dependencies answer.
    let ready = wait_for_status(&format!("{admin}/readyz"), 200).await;
    assert_eq!(
        ready,
        "[+]serving ok\n[+]database ok\n[+]registry ok\n[+]policy ok\n"
    );

    let channel = service.channel().await;
    let specs = [
        "name: write\nsteps:\n  - {name: w, capability: io.fs.write_file, inputs: {path: a.txt, content: hi}}\n",
        "name: delete\nsteps:\n  - {name: d, capability: io.fs.delete, inputs: {path: a.txt}}\n",
    ];
    for spec in specs {
        let submitted = common::submit(channel.clone(), "user:alice", spec).await;
        let id = submitted.expect("submit").workflow_id;
        common::rested(channel.clone(), "user:alice", &id).await;
    }

    let (status, text) = get(&format!("{admin}/metrics")).await;
    assert_eq!(status, 200);
    let workflow = samples(&text);
    for (series, want) in [
        ("airt_workflow_submissions_total", 2.0),
        (
            r#"airt_workflow_steps_total{capability="io.fs.write_file",status="SUCCEEDED"}"#,
            1.0,
        ),
        (
            r#"airt_workflow_steps_total{capability="io.fs.delete",status="DENIED"}"#,
            1.0,
        ),
        (r#"airt_workflows{status="COMPLETED"}"#, 1.0),
        (r#"airt_workflows{status="FAILED"}"#, 1.0),
        (r#"airt_workflows{status="RUNNING"}"#, 0.0),
        ("airt_workflow_approvals_pending", 0.0),
        ("airt_workflow_active_runs_limit", 1024.0),
        (
            r#"airt_grpc_server_handled_total{grpc_service="airt.workflow.v1.WorkflowService",grpc_method="SubmitWorkflow",grpc_code="OK"}"#,
            2.0,
        ),
    ] {
        assert_eq!(workflow.get(series), Some(&want), "{series} in\n{text}");
    }
    assert!(workflow["airt_audit_chain_events"] > 0.0, "{text}");
    assert!(
        workflow[r#"airt_db_transaction_seconds_count{outcome="committed"}"#] >= 4.0,
        "each workflow committed its submission, decisions and outcome: {text}"
    );

    let (_, text) = get(&format!("http://{policy_admin}/metrics")).await;
    let decisions = samples(&text);
    // The write was asked about before the run (preflight) and at its step.
    assert!(
        decisions[r#"airt_policy_decisions_total{decision="ALLOW",rule="allow-all"}"#] >= 1.0,
        "{text}"
    );
    assert_eq!(
        decisions.get(r#"airt_policy_decisions_total{decision="DENY",rule="deny-deletes"}"#),
        Some(&1.0),
        "{text}"
    );
    assert!(
        decisions["airt_policy_evaluation_seconds_count"] >= 2.0,
        "{text}"
    );
    let (_, text) = get(&format!("http://{registry_admin}/metrics")).await;
    let capabilities = samples(&text);
    assert!(
        capabilities[r#"airt_registry_capabilities{lifecycle="ACTIVE"}"#] >= 9.0,
        "the built-ins are registered: {text}"
    );

    // Every exposed metric is documented; the alerts and the dashboard
    // name only documented metrics.
    let documented = documented();
    for series in workflow
        .keys()
        .chain(decisions.keys())
        .chain(capabilities.keys())
    {
        assert!(
            documented.contains(&family_of(series)),
            "{series} is not in docs/OPERATIONS.md"
        );
    }
    check_deploy_files(&documented);

    // The registry goes away: the workflow service is alive, not ready.
    registry.stop().await.expect("registry stops");
    let not_ready = wait_for_status(&format!("{admin}/readyz"), 503).await;
    assert!(not_ready.contains("[-]registry failed"), "{not_ready}");
    assert!(not_ready.contains("[+]policy ok"), "{not_ready}");
    assert_eq!(
        get(&format!("{admin}/livez")).await,
        (200, "ok\n".to_owned())
    );
    policy_server.stop().await.expect("policy stops");
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_traced_binary_exports_its_runs_and_its_logs_name_the_trace() {
    let collector = Collector::start().await;
    let (registry_db, policy_db, workflow_db) =
        (TestDb::sqlite(), TestDb::sqlite(), TestDb::sqlite());
    let registry_config = registry_db.dev_config(&registry_service::IDENTITY);
    let registry =
        TestServer::start(move |l, s| registry_service::serve_on(registry_config, l, s)).await;
    let policy_config = policy_db.dev_config(&policy_service::IDENTITY);
    let policy_server =
        TestServer::start(move |l, s| policy_service::serve_on(policy_config, l, s)).await;
    airt_kit::testing::activate_policy(
        policy_server.channel().await,
        "rules:\n  - {id: allow-all, decision: ALLOW}\n",
    )
    .await;
    let workspace = tempfile::tempdir().expect("workspace");
    let endpoint = collector.endpoint();
    let service = spawn_workflow(
        &workflow_db,
        &registry,
        &policy_server,
        workspace.path(),
        &["--otlp-endpoint", &endpoint],
    );
    wait_for_status(&format!("{}/readyz", service.admin_url()), 200).await;

    let channel = service.channel().await;
    let mut request = as_principal(
        pb::SubmitWorkflowRequest {
            source: Some(pb::submit_workflow_request::Source::SpecText(
                "name: traced\nsteps:\n  - {name: w, capability: io.fs.write_file, inputs: {path: a.txt, content: hi}}\n".into(),
            )),
            request_id: String::new(),
        },
        "user:alice",
        &[],
    );
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{PARENT_SPAN}-01").parse().unwrap(),
    );
    let submitted = WorkflowServiceClient::new(channel.clone())
        .submit_workflow(request)
        .await
        .expect("submit")
        .into_inner()
        .workflow
        .expect("workflow");
    let rested = common::rested(channel, "user:alice", &submitted.workflow_id).await;
    assert_eq!(rested.trace_id, TRACE_ID, "GetWorkflow names the trace");

    // The submission's log line names the trace and its span.
    let logs = service.logs();
    let submitted_line = logs
        .iter()
        .find(|line| line["fields"]["message"] == "workflow submitted")
        .expect("a submission log line");
    assert_eq!(submitted_line["trace_id"], TRACE_ID, "{submitted_line}");
    assert_eq!(
        submitted_line["span_id"].as_str().map(str::len),
        Some(16),
        "{submitted_line}"
    );

    // Stopping flushes what is queued for export.
    let status = service.terminate(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let spans = collector
        .wait_until(Duration::from_secs(10), |spans| {
            spans.iter().any(|s| s.name == "workflow.run")
        })
        .await;
    let traced: Vec<_> = spans.iter().filter(|s| s.trace_id == TRACE_ID).collect();
    let find = |name: &str| {
        traced
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span exported: {spans:#?}"))
    };
    let submit = traced
        .iter()
        .find(|s| s.name == "rpc" && s.attributes["method"].ends_with("/SubmitWorkflow"))
        .expect("the submission's span");
    assert_eq!(submit.parent_span_id, PARENT_SPAN);
    assert_eq!(submit.service, "workflow-service");
    let run = find("workflow.run");
    assert_eq!(run.parent_span_id, submit.span_id);
    assert_eq!(run.attributes["to"], "COMPLETED");
    let step = find("workflow.step");
    assert_eq!(step.parent_span_id, run.span_id);
    assert_eq!(step.attributes["decision"], "ALLOW");
    assert_eq!(step.attributes["status"], "SUCCEEDED");
    find("workflow.commit");
    registry.stop().await.expect("registry stops");
    policy_server.stop().await.expect("policy stops");
}
