//! Hostile sizes and depths are refused before any work, without starving
//! other clients: documents nested 100,000 deep or megabytes long answer
//! INVALID_ARGUMENT while `Evaluate` and `ListWorkflows` from another client
//! keep answering; list pages stay under a message's size and a caller who
//! may see few approvals reads a bounded number of rows per call. The
//! latencies are printed (`--nocapture`), not asserted: timing belongs to
//! benchmarks, not to tests.

use std::time::Instant;

use airt_kit::testing::{TestDb, as_principal};
use airt_proto::policy::v1 as policy;
use airt_proto::policy::v1::policy_service_client::PolicyServiceClient;
use airt_proto::registry::v1 as registry;
use airt_proto::registry::v1::registry_service_client::RegistryServiceClient;
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
use airt_proto::workflow::v1::workflow_service_client::WorkflowServiceClient;
use airt_system_tests::Stack;
use tonic::transport::Channel;

const ALLOW_ALL: &str = "rules:\n  - {id: allow-all, decision: ALLOW}\n";
const HOSTILE_ROUNDS: usize = 10;

async fn approval_client(stack: &Stack) -> ApprovalServiceClient<Channel> {
    ApprovalServiceClient::new(stack.workflow.channel().await)
}

/// Submits `text` as an admin `n` times; each must be accepted.
async fn submit_times(client: &mut WorkflowServiceClient<Channel>, text: &str, n: usize) {
    for _ in 0..n {
        client
            .submit_workflow(admin(pb::SubmitWorkflowRequest {
                source: Some(pb::submit_workflow_request::Source::SpecText(text.into())),
                request_id: String::new(),
            }))
            .await
            .expect("a 1 MB workflow is accepted");
    }
}

fn admin<T>(message: T) -> tonic::Request<T> {
    as_principal(message, "user:root", &["admin"])
}

/// One round of hostile requests to the three services; each must be
/// INVALID_ARGUMENT.
async fn hostile_round(workflow: Channel, policy_channel: Channel, registry_channel: Channel) {
    let deep_flow = format!("name: x\nsteps: {}", "[".repeat(100_000));
    let deep_map = format!("rules: {}", "{a: ".repeat(100_000));
    let deep_json = format!("{{\"id\": {}", "[".repeat(100_000));
    let huge = format!("name: x\ndescription: \"{}\"\n", "x".repeat(3 << 20));
    let mut workflows = WorkflowServiceClient::new(workflow);
    let mut policies = PolicyServiceClient::new(policy_channel);
    let mut registry = RegistryServiceClient::new(registry_channel);
    let check = |what: &str, started: Instant, result: Result<tonic::Code, tonic::Status>| {
        let code = result.expect_err("accepted").code();
        let took = started.elapsed();
        assert_eq!(code, tonic::Code::InvalidArgument, "{what}");
        println!("{what} refused in {took:?}");
    };
    for text in [&deep_flow, &huge] {
        let started = Instant::now();
        let result = workflows
            .submit_workflow(admin(pb::SubmitWorkflowRequest {
                source: Some(pb::submit_workflow_request::Source::SpecText(text.clone())),
                request_id: String::new(),
            }))
            .await
            .map(|_| tonic::Code::Ok);
        check("SubmitWorkflow", started, result);
    }
    let started = Instant::now();
    let result = policies
        .put_policy_set(admin(policy::PutPolicySetRequest {
            source_yaml: deep_map.clone(),
            ..Default::default()
        }))
        .await
        .map(|_| tonic::Code::Ok);
    check("PutPolicySet", started, result);
    let started = Instant::now();
    let result = policies
        .test_policy_set(as_principal(
            policy::TestPolicySetRequest {
                target: Some(policy::test_policy_set_request::Target::Active(true)),
                tests_yaml: deep_map,
                ..Default::default()
            },
            "agent:anyone",
            &[],
        ))
        .await
        .map(|_| tonic::Code::Ok);
    check("TestPolicySet", started, result);
    let started = Instant::now();
    let result = registry
        .register_capability(admin(registry::RegisterCapabilityRequest {
            source: Some(registry::register_capability_request::Source::SpecText(
                deep_json,
            )),
            validate_only: true,
            request_id: String::new(),
        }))
        .await
        .map(|_| tonic::Code::Ok);
    check("RegisterCapability", started, result);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_and_huge_documents_are_refused_and_others_keep_being_served() {
    let stack = Stack::start(TestDb::sqlite(), ALLOW_ALL).await;
    let workflow = stack.workflow.channel().await;
    let policy_channel = stack.policy.as_ref().expect("policy").channel().await;
    let registry_channel = stack.registry.as_ref().expect("registry").channel().await;

    let attacker = {
        let (w, p, r) = (
            workflow.clone(),
            policy_channel.clone(),
            registry_channel.clone(),
        );
        tokio::spawn(async move {
            for _ in 0..HOSTILE_ROUNDS {
                hostile_round(w.clone(), p.clone(), r.clone()).await;
            }
        })
    };
    // Another client, on its own connections, meanwhile.
    let mut latencies = Vec::new();
    let mut policies =
        PolicyServiceClient::new(stack.policy.as_ref().expect("policy").channel().await);
    let mut workflows = WorkflowServiceClient::new(stack.workflow.channel().await);
    while !attacker.is_finished() || latencies.len() < 100 {
        let started = Instant::now();
        policies
            .evaluate(as_principal(
                policy::EvaluateRequest {
                    context: Some(policy::PolicyContext {
                        principal: Some(airt_proto::common::v1::Principal {
                            r#type: "agent".into(),
                            id: "bystander".into(),
                            roles: vec![],
                        }),
                        capability_id: "sys.info.get_time".into(),
                        risk_level: airt_proto::common::v1::RiskLevel::Low as i32,
                        ..Default::default()
                    }),
                    explain: false,
                    any_inputs: false,
                    purpose: Default::default(),
                },
                "agent:bystander",
                &[],
            ))
            .await
            .expect("evaluate");
        let listed = Instant::now();
        workflows
            .list_workflows(as_principal(
                pb::ListWorkflowsRequest::default(),
                "agent:bystander",
                &[],
            ))
            .await
            .expect("list");
        latencies.push(listed - started);
        latencies.push(listed.elapsed());
    }
    attacker.await.expect("every hostile request refused");
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    println!("bystander p99 {p99:?} over {} calls", latencies.len());
    stack.stop().await;
}

/// Sends bytes as they are and returns the bytes of the answer.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

#[derive(Debug)]
struct Raw;

impl tonic::codec::Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

async fn call_raw(channel: Channel, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    grpc.unary(
        as_principal(body, "user:root", &["admin"]),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .expect_err("a malformed message must be refused")
}

/// Messages that do not decode — invalid UTF-8 in a string, a Struct nested
/// beyond the decoder's limit — are INVALID_ARGUMENT, not INTERNAL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_invalid_arguments() {
    use prost::Message as _;
    let stack = Stack::start(TestDb::sqlite(), ALLOW_ALL).await;
    let channel = stack.workflow.channel().await;
    // GetWorkflowRequest{workflow_id: <0xff 0xfe>}: not UTF-8.
    let status = call_raw(
        channel.clone(),
        "/airt.workflow.v1.WorkflowService/GetWorkflow",
        vec![0x0a, 0x02, 0xff, 0xfe],
    )
    .await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    // A workflow whose initial state nests 200 Structs deep.
    let mut state = prost_types::Struct::default();
    for _ in 0..200 {
        let inner = prost_types::Value {
            kind: Some(prost_types::value::Kind::StructValue(state)),
        };
        state = prost_types::Struct {
            fields: [("a".to_owned(), inner)].into(),
        };
    }
    let request = pb::SubmitWorkflowRequest {
        source: Some(pb::submit_workflow_request::Source::Spec(
            pb::WorkflowSpec {
                name: "deep".into(),
                initial_state: Some(state),
                ..Default::default()
            },
        )),
        request_id: String::new(),
    };
    let status = call_raw(
        channel,
        "/airt.workflow.v1.WorkflowService/SubmitWorkflow",
        request.encode_to_vec(),
    )
    .await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    stack.stop().await;
}

/// What a step stores must be servable: an output nested too deep fails the
/// step with a clear reason, an initial state too deep is refused at
/// submission, and workflows of a megabyte each never break listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_values_stay_servable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let deep = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buffer = [0u8; 65536];
            let _ = stream.read(&mut buffer).await;
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{deep}",
                deep.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        }
    });
    let stack = Stack::start_with(TestDb::sqlite(), ALLOW_ALL, |config| {
        config.catalogue.network =
            workflow_service::capabilities::net::NetworkPolicy::parse(&["127.0.0.1".to_owned()])
                .expect("allow");
    })
    .await;
    let registry_channel = stack.registry.as_ref().expect("registry").channel().await;
    airt_system_tests::register_capability(
        registry_channel,
        format!(
            "id: agent.deep\nname: Deep\noperation_type: READ\nrisk: {{level: LOW}}\n\
             side_effects: {{reversible: true, scope: NETWORK}}\ncompensation: {{supported: false, strategy: NONE}}\n\
             metadata: {{version: 1.0.0}}\nhandler: \"http:http://127.0.0.1:{port}/deep\"\n"
        ),
    )
    .await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let deep = airt_system_tests::run_workflow(
        &mut client,
        "user:root",
        "name: deep\nsteps:\n  - {name: d, capability: agent.deep}\n",
    )
    .await;
    assert_eq!(deep.status, pb::WorkflowStatus::Failed as i32, "{deep:?}");
    assert!(
        deep.failure_reason.contains("cannot be stored"),
        "{}",
        deep.failure_reason
    );

    let too_deep = format!(
        "name: w\ninitial_state: {{x: {}1{}}}\nsteps:\n  - {{name: t, capability: sys.info.get_time}}\n",
        "[".repeat(40),
        "]".repeat(40)
    );
    let refused = client
        .submit_workflow(admin(pb::SubmitWorkflowRequest {
            source: Some(pb::submit_workflow_request::Source::SpecText(too_deep)),
            request_id: String::new(),
        }))
        .await
        .expect_err("too deep to serve back");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");

    let big = format!(
        "name: big\ninitial_state: {{blob: \"{}\"}}\nsteps:\n  - {{name: t, capability: sys.info.get_time}}\n",
        "x".repeat(1000 * 1024)
    );
    submit_times(&mut client, &big, 5).await;
    let mut seen = 0;
    let mut page_token = String::new();
    loop {
        let page = client
            .list_workflows(admin(pb::ListWorkflowsRequest {
                page_token: page_token.clone(),
                ..Default::default()
            }))
            .await
            .expect("listing never outgrows a message")
            .into_inner();
        seen += page
            .workflows
            .iter()
            .filter(|w| w.spec.as_ref().is_some_and(|s| s.name == "big"))
            .count();
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, 5);
    stack.stop().await;
}

/// A message over the size limit is RESOURCE_EXHAUSTED and costs nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_are_resource_exhausted() {
    use prost::Message as _;
    let stack = Stack::start(TestDb::sqlite(), ALLOW_ALL).await;
    let status = call_raw(
        stack.workflow.channel().await,
        "/airt.workflow.v1.WorkflowService/SubmitWorkflow",
        pb::SubmitWorkflowRequest {
            source: Some(pb::submit_workflow_request::Source::SpecText(
                "x".repeat(5 << 20),
            )),
            request_id: String::new(),
        }
        .encode_to_vec(),
    )
    .await;
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    stack.stop().await;
}

/// A policy question is bounded too: its texts, and its inputs (kept in the
/// decision log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_policy_questions_are_invalid_arguments() {
    let stack = Stack::start(TestDb::sqlite(), ALLOW_ALL).await;
    let mut policies =
        PolicyServiceClient::new(stack.policy.as_ref().expect("policy").channel().await);
    let context = |capability_id: String, blob: usize| policy::PolicyContext {
        principal: Some(airt_proto::common::v1::Principal {
            r#type: "agent".into(),
            id: "flooder".into(),
            roles: vec![],
        }),
        capability_id,
        risk_level: airt_proto::common::v1::RiskLevel::Low as i32,
        inputs: Some(prost_types::Struct {
            fields: [(
                "blob".to_owned(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::StringValue("x".repeat(blob))),
                },
            )]
            .into(),
        }),
        ..Default::default()
    };
    for context in [context("c".repeat(300), 1), context("a.b".into(), 2 << 20)] {
        let refused = policies
            .evaluate(as_principal(
                policy::EvaluateRequest {
                    context: Some(context),
                    explain: false,
                    any_inputs: false,
                    purpose: Default::default(),
                },
                "agent:flooder",
                &[],
            ))
            .await
            .expect_err("too large");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    }
    stack.stop().await;
}

/// Approvals carry the step's resolved inputs (up to 1.5 MiB each): a
/// ListApprovals page ends before it outgrows what a client decodes, and
/// paging still reaches every approval.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_listing_never_outgrows_a_message() {
    const GATE_WRITES: &str = "default: ALLOW\nrules:\n  - {id: gate, when: {capability: io.fs.write_file}, decision: REQUIRE_APPROVAL}\n";
    let stack = Stack::start(TestDb::sqlite(), GATE_WRITES).await;
    let mut client = WorkflowServiceClient::new(stack.workflow.channel().await);
    let big = format!(
        "name: big\nsteps:\n  - {{name: w, capability: io.fs.write_file, inputs: {{path: big.txt, content: \"{}\"}}}}\n",
        "x".repeat(1000 * 1024)
    );
    submit_times(&mut client, &big, 5).await;
    let mut approvals = approval_client(&stack).await;
    let deadline = Instant::now() + std::time::Duration::from_secs(20);
    let (mut seen, mut pages) = (Vec::new(), 0);
    while seen.len() < 5 {
        assert!(Instant::now() < deadline, "5 approvals listed: {seen:?}");
        (seen, pages) = (Vec::new(), 0);
        let mut page_token = String::new();
        loop {
            let page = approvals
                .list_approvals(admin(pb::ListApprovalsRequest {
                    page_token: page_token.clone(),
                    ..Default::default()
                }))
                .await
                .expect("listing never outgrows a message")
                .into_inner();
            pages += 1;
            seen.extend(page.approvals.into_iter().map(|a| a.approval_id));
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
    }
    seen.dedup();
    assert_eq!(seen.len(), 5, "each approval once");
    assert!(pages >= 2, "5 MB of approvals in one page");
    stack.stop().await;
}

/// Lists every approval `caller` may see, page by page: (ids, calls).
async fn list_all(
    approvals: &mut ApprovalServiceClient<Channel>,
    caller: &str,
    roles: &[&str],
    page_size: i32,
) -> (Vec<String>, usize) {
    let (mut ids, mut calls, mut page_token) = (Vec::new(), 0, String::new());
    loop {
        calls += 1;
        let page = approvals
            .list_approvals(as_principal(
                pb::ListApprovalsRequest {
                    page_size,
                    page_token,
                    ..Default::default()
                },
                caller,
                roles,
            ))
            .await
            .expect("page")
            .into_inner();
        ids.extend(page.approvals.into_iter().map(|a| a.approval_id));
        if page.next_page_token.is_empty() {
            return (ids, calls);
        }
        page_token = page.next_page_token;
    }
}

/// A caller who may see few approvals costs a bounded read per call: the
/// service passes over at most 1,000 rows the caller may not see, then
/// answers a short (here empty) page with a token to go on from; following
/// the tokens reaches every visible approval, and an approver sees them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_approvals_reads_a_bounded_number_of_rows_per_call() {
    // 1,500 pending approvals requested for carol, then one for dave.
    const SEED: &str = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1501) \
        INSERT INTO approvals (approval_id, workflow_id, workflow_name, step_name, capability_id, \
        capability_version, risk_level, resolved_inputs, decision, action_digest, approver_roles, message, status, \
        requested_for, decided_by, comment, status_reason, requested_at_us, expires_at_us, decided_at_us) \
        SELECT 'a-' || (100000 + i), 'w-' || i, 'seeded', 's', 'sys.info.get_time', '1.0.0', 'LOW', '{}', '{}', \
        'digest', '[\"approver\"]', 'seeded', 'PENDING', \
        CASE WHEN i = 1501 THEN 'user:dave' ELSE 'user:carol' END, '', '', '', 0, 9000000000000000, 0 FROM n";
    for db in TestDb::all().await {
        let stack = Stack::start(db, ALLOW_ALL).await;
        let database = airt_kit::db::Database::connect(stack.workflow_db_url(), None)
            .await
            .expect("database");
        airt_kit::with_pool!(&database, pool => {
            sqlx::query(SEED).execute(pool).await.expect("seed");
        });
        let mut approvals = approval_client(&stack).await;

        let first = approvals
            .list_approvals(as_principal(
                pb::ListApprovalsRequest::default(),
                "user:dave",
                &[],
            ))
            .await
            .expect("first page")
            .into_inner();
        assert!(
            first.approvals.is_empty(),
            "dave's is past the first 1,000 rows"
        );
        assert!(!first.next_page_token.is_empty(), "a token to go on from");
        let (dave, calls) = list_all(&mut approvals, "user:dave", &[], 50).await;
        assert_eq!(dave, ["a-101501"]);
        assert!(calls >= 2, "{calls} calls");
        let (everyone, _) = list_all(&mut approvals, "user:bob", &["approver"], 500).await;
        assert_eq!(everyone.len(), 1501);
        stack.stop().await;
    }
}
