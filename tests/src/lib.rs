//! Helpers for the cross-service system tests in `tests/`: start the real
//! services in-process, each with its own database, and wait for them.

pub use airt_kit::testing::http;

pub mod gateway;

use std::path::Path;
use std::time::{Duration, Instant};

use airt_kit::testing::{TestDb, TestServer, health_status};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;

/// The registry in development auth mode.
pub async fn start_registry(db: &TestDb) -> TestServer {
    let config = db.dev_config(&registry_service::IDENTITY);
    TestServer::start(move |listener, shutdown| {
        registry_service::serve_on(config, listener, shutdown)
    })
    .await
}

/// The policy service in development auth mode.
pub async fn start_policy(db: &TestDb) -> TestServer {
    let config = db.dev_config(&policy_service::IDENTITY);
    TestServer::start(move |listener, shutdown| {
        policy_service::serve_on(config, listener, shutdown)
    })
    .await
}

/// The workflow service in development auth mode, publishing to
/// `registry_url` (the policy service is not reachable).
pub async fn start_workflow(db: &TestDb, registry_url: &str, workspace: &Path) -> TestServer {
    start_workflow_with_policy(db, registry_url, "http://127.0.0.1:9", workspace).await
}

/// The workflow service in development auth mode, with its registry and policy service.
pub async fn start_workflow_with_policy(
    db: &TestDb,
    registry_url: &str,
    policy_url: &str,
    workspace: &Path,
) -> TestServer {
    let workflow = workflow_config(registry_url, policy_url, workspace);
    start_workflow_with_config(db, workflow).await
}

/// The configuration of a workflow service in development auth mode.
pub fn workflow_config(
    registry_url: &str,
    policy_url: &str,
    workspace: &Path,
) -> workflow_service::WorkflowConfig {
    workflow_service::WorkflowConfig {
        registry_addr: registry_url.to_owned(),
        policy_addr: policy_url.to_owned(),
        client_tls: Default::default(),
        resolve_interval: Duration::from_millis(200),
        workspace: workspace.to_path_buf(),
        credentials: workflow_service::publish::development_credentials(),
        catalogue: Default::default(),
        approval_timeout: Duration::from_secs(3600),
        webhooks: Default::default(),
        instance_id: "test-instance".into(),
        lease_ttl: Duration::from_secs(15),
        undo_retention: Duration::from_secs(24 * 3600),
        watch_poll: Duration::from_millis(100),
        max_active_workflows: 1024,
        environment: String::new(),
        max_watchers: (10_000, 64),
    }
}

/// The workflow service in development auth mode with `workflow` as its own configuration.
pub async fn start_workflow_with_config(
    db: &TestDb,
    workflow: workflow_service::WorkflowConfig,
) -> TestServer {
    let config = db.dev_config(&workflow_service::IDENTITY);
    TestServer::start(move |listener, shutdown| {
        workflow_service::serve_on(config, workflow, listener, shutdown)
    })
    .await
}

/// Submits `spec` as `principal` and follows it until it rests (finished or
/// PAUSED); at most 30 s between updates.
pub async fn run_workflow(
    client: &mut airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient<Channel>,
    principal: &str,
    spec: &str,
) -> airt_proto::workflow::v1::Workflow {
    use airt_proto::workflow::v1 as pb;
    let id = client
        .submit_workflow(airt_kit::testing::as_principal(
            pb::SubmitWorkflowRequest {
                source: Some(pb::submit_workflow_request::Source::SpecText(spec.into())),
                request_id: String::new(),
            },
            principal,
            &[],
        ))
        .await
        .expect("submit")
        .into_inner()
        .workflow
        .expect("workflow")
        .workflow_id;
    let mut stream = client
        .watch_workflow(airt_kit::testing::as_principal(
            pb::WatchWorkflowRequest {
                workflow_id: id,
                after_sequence: 0,
            },
            principal,
            &[],
        ))
        .await
        .expect("watch")
        .into_inner();
    loop {
        let update = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .unwrap_or_else(|_| panic!("no update within 30 s for {spec}"))
            .expect("ok")
            .expect("open");
        let workflow = update.workflow.expect("snapshot");
        use pb::WorkflowStatus as S;
        if matches!(
            S::try_from(workflow.status),
            Ok(S::Completed
                | S::Failed
                | S::RolledBack
                | S::CompensationFailed
                | S::Cancelled
                | S::Paused)
        ) {
            return workflow;
        }
    }
}

/// `ExecuteAction` of `capability` with `inputs` by `user:alice` for agent
/// `planner-7`, waiting up to 20 s for its outcome.
pub fn action_request(
    capability: &str,
    inputs: serde_json::Value,
    request_id: &str,
) -> tonic::Request<airt_proto::workflow::v1::ExecuteActionRequest> {
    airt_kit::testing::as_principal(
        airt_proto::workflow::v1::ExecuteActionRequest {
            capability_id: capability.into(),
            inputs: inputs.as_object().map(airt_kit::json::to_proto_struct),
            request_id: request_id.into(),
            agent: "planner-7".into(),
            wait: Some(prost_types::Duration {
                seconds: 20,
                nanos: 0,
            }),
        },
        "user:alice",
        &[],
    )
}

/// Sends [`action_request`] and returns the answer.
pub async fn execute_action(
    client: &mut airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient<Channel>,
    capability: &str,
    inputs: serde_json::Value,
    request_id: &str,
) -> airt_proto::workflow::v1::ExecuteActionResponse {
    client
        .execute_action(action_request(capability, inputs, request_id))
        .await
        .expect("execute")
        .into_inner()
}

/// Registers the capability `spec_yaml` as an admin through `channel`.
pub async fn register_capability(channel: Channel, spec_yaml: impl Into<String>) {
    use airt_proto::registry::v1 as registry;
    registry::registry_service_client::RegistryServiceClient::new(channel)
        .register_capability(airt_kit::testing::as_principal(
            registry::RegisterCapabilityRequest {
                source: Some(registry::register_capability_request::Source::SpecText(
                    spec_yaml.into(),
                )),
                validate_only: false,
                request_id: String::new(),
            },
            "user:root",
            &["admin"],
        ))
        .await
        .expect("register the capability");
}

/// Polls `Health/Check` until it answers SERVING, at most `within`.
pub async fn wait_until_serving(channel: Channel, within: Duration) {
    let deadline = Instant::now() + within;
    while health_status(channel.clone(), "").await != ServingStatus::Serving {
        assert!(Instant::now() < deadline, "not SERVING within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// All three services in-process, the policy set `policy_yaml` active, the
/// workflow service SERVING (its built-ins published).
#[derive(Debug)]
pub struct Stack {
    pub registry: Option<TestServer>,
    pub policy: Option<TestServer>,
    pub workflow: TestServer,
    pub workspace: tempfile::TempDir,
    workflow_db: TestDb,
    workflow_config: workflow_service::WorkflowConfig,
    _dbs: Vec<TestDb>,
}

impl Stack {
    pub async fn start(workflow_db: TestDb, policy_yaml: &str) -> Self {
        Self::start_with(workflow_db, policy_yaml, |_| {}).await
    }

    /// Like [`Stack::start`], with the workflow service's configuration
    /// adjusted by `configure` (approval timeout, webhooks, ...).
    pub async fn start_with(
        workflow_db: TestDb,
        policy_yaml: &str,
        configure: impl FnOnce(&mut workflow_service::WorkflowConfig),
    ) -> Self {
        let (registry_db, policy_db) = (TestDb::sqlite(), TestDb::sqlite());
        let registry = start_registry(&registry_db).await;
        let policy_server = start_policy(&policy_db).await;
        airt_kit::testing::activate_policy(policy_server.channel().await, policy_yaml).await;
        let workspace = tempfile::tempdir().expect("workspace");
        let mut workflow_config =
            workflow_config(&registry.url(), &policy_server.url(), workspace.path());
        configure(&mut workflow_config);
        let workflow = start_workflow_with_config(&workflow_db, workflow_config.clone()).await;
        wait_until_serving(workflow.channel().await, Duration::from_secs(20)).await;
        Self {
            registry: Some(registry),
            policy: Some(policy_server),
            workflow,
            workspace,
            workflow_db,
            workflow_config,
            _dbs: vec![registry_db, policy_db],
        }
    }

    /// Stops the workflow service cleanly, waits `down_for`, and starts it
    /// again on the same database and workspace; waits until it is SERVING.
    pub async fn restart_workflow(self, down_for: Duration) -> Self {
        let Self {
            registry,
            policy,
            workflow,
            workspace,
            workflow_db,
            workflow_config,
            _dbs,
        } = self;
        workflow.stop().await.expect("workflow stops cleanly");
        tokio::time::sleep(down_for).await;
        let workflow = start_workflow_with_config(&workflow_db, workflow_config.clone()).await;
        wait_until_serving(workflow.channel().await, Duration::from_secs(20)).await;
        Self {
            registry,
            policy,
            workflow,
            workspace,
            workflow_db,
            workflow_config,
            _dbs,
        }
    }

    /// The workflow service's database (for benchmarks that read it).
    pub fn workflow_db_url(&self) -> &str {
        self.workflow_db.url()
    }

    pub fn root(&self) -> &Path {
        self.workspace.path()
    }

    pub async fn stop(mut self) {
        self.workflow.stop().await.expect("workflow stops cleanly");
        for server in [self.policy.take(), self.registry.take()]
            .into_iter()
            .flatten()
        {
            server.stop().await.expect("stops cleanly");
        }
    }
}
