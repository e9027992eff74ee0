//! The real `workflow-service` binary: reflection, health and SIGTERM.

// A test is one scenario, told in order; it may be long.
#![allow(clippy::too_many_lines)]

mod common;

/// With no registry reachable the built-ins cannot be published, so the
/// service is up (reflection answers) but reports NOT_SERVING; SIGTERM still
/// stops it cleanly.
#[tokio::test]
async fn binary_reports_not_serving_without_a_registry_and_exits_cleanly_on_sigterm() {
    let workspace = tempfile::tempdir().expect("workspace");
    let workspace = workspace.path().to_string_lossy().into_owned();
    airt_kit::testing::assert_binary_lifecycle(
        env!("CARGO_BIN_EXE_workflow-service"),
        &[
            "airt.workflow.v1.ApprovalService",
            "airt.workflow.v1.WorkflowService",
        ],
        &[
            "--registry-addr",
            "http://127.0.0.1:9",
            "--workspace",
            &workspace,
            "--auth-dev-mode",
        ],
        tonic_health::pb::health_check_response::ServingStatus::NotServing,
    )
    .await;
}

/// The real binary, attacked through `sys.exec.run` over gRPC: allow-listed
/// programs with hostile arguments cannot read outside the workspace (a
/// file, the service's own `/proc/<pid>/environ`), write outside it, or run
/// a shell through `sort --compress-program`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_confines_program_arguments_to_the_workspace() {
    use airt_kit::testing::{ServiceProcess, TestDb, TestServer};
    use airt_proto::workflow::v1 as pb;

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
        "escalate_high_risk: false\nrules:\n  - {id: allow-all, decision: ALLOW}\n",
    )
    .await;
    let workspace = tempfile::tempdir().expect("workspace");
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret.txt"), "s3cret-value").expect("secret");
    std::fs::write(workspace.path().join("note.txt"), "a\na\n").expect("note");
    let lines: String = (0..40_000).map(|i| format!(": > pwned # {i}\n")).collect();
    std::fs::write(workspace.path().join("big.txt"), lines).expect("big");
    let (registry_url, policy_url) = (registry.url(), policy_server.url());
    let workspace_arg = workspace.path().to_string_lossy().into_owned();
    let service = ServiceProcess::spawn(
        env!("CARGO_BIN_EXE_workflow-service"),
        workflow_db.url(),
        &[
            "--auth-dev-mode",
            "--registry-addr",
            &registry_url,
            "--policy-addr",
            &policy_url,
            "--workspace",
            &workspace_arg,
            "--exec-allow",
            "cat,uniq,sort",
        ],
    );
    let channel = service.channel().await;
    let written = outside.path().join("written.txt");
    let attempts: [Vec<String>; 5] = [
        vec![
            "cat".into(),
            outside.path().join("secret.txt").display().to_string(),
        ],
        vec!["cat".into(), format!("/proc/{}/environ", service.pid())],
        vec!["cat".into(), "/etc/shadow".into()],
        vec![
            "uniq".into(),
            "note.txt".into(),
            written.display().to_string(),
        ],
        [
            "sort",
            "-S",
            "16K",
            "-T",
            ".",
            "--compress-program=sh",
            "big.txt",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for attempt in attempts {
        let (program, args) = attempt.split_first().expect("program");
        let spec = format!(
            "name: escape\nsteps:\n  - {{name: run, capability: sys.exec.run, inputs: {{program: {program}, args: {}}}}}\n",
            serde_json::to_string(args).expect("args")
        );
        let mut workflow = None;
        // The service publishes its built-ins right after it starts serving.
        for _ in 0..200 {
            let submitted = match common::submit(channel.clone(), "user:mallory", &spec).await {
                // Refused at submission until the built-ins are registered.
                Err(status) if status.message().contains("sys.exec.run is registered") => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
                other => other.expect("submit"),
            };
            let id = submitted.workflow_id;
            let rested = common::rested(channel.clone(), "user:mallory", &id).await;
            if rested
                .failure_reason
                .contains("sys.exec.run is not registered")
                || rested.failure_reason.contains("unknown capability")
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
            workflow = Some(rested);
            break;
        }
        let workflow = workflow.expect("the built-ins were published");
        assert_eq!(
            workflow.status,
            pb::WorkflowStatus::Failed as i32,
            "{program} {args:?} escaped: {workflow:?}"
        );
        let shown = format!("{workflow:?}");
        assert!(
            !shown.contains("s3cret-value") && !shown.contains("PATH="),
            "{shown}"
        );
        assert!(
            workflow.failure_reason.contains("exited with")
                || workflow.failure_reason.contains("cannot start"),
            "{program}: {}",
            workflow.failure_reason
        );
    }
    assert!(!written.exists(), "uniq wrote outside the workspace");
    assert!(!workspace.path().join("pwned").exists(), "sort ran a shell");
    service.kill();
}
