//! The MCP gateway in front of a stack, through the Rust MCP SDK's client:
//! callers are authenticated, listings are the policy's view for each
//! caller, calls are governed actions (allowed, denied, waiting for an
//! approval, then their result).

use std::time::Duration;

use airt_kit::testing::{TestDb, as_principal};
use airt_proto::workflow::v1 as pb;
use airt_proto::workflow::v1::approval_service_client::ApprovalServiceClient;
use airt_system_tests::{Stack, gateway};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::{RoleClient, RunningService};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POLICY: &str = r#"
default: DENY
rules:
  - {id: no-deletes, when: {capability: io.fs.delete}, decision: DENY, reason: Agents never delete}
  - {id: copies-need-a-look, when: {capability: io.fs.copy}, decision: REQUIRE_APPROVAL, reason: Copies need a look}
  - {id: reads, when: {operation_type: READ}, decision: ALLOW}
  - {id: writers, roles: [writer], when: {capability: "io.fs.*"}, decision: ALLOW}
"#;

fn call(tool: &str, arguments: Value) -> CallToolRequestParams {
    CallToolRequestParams::new(tool.to_owned())
        .with_arguments(arguments.as_object().cloned().expect("an object"))
}

fn text(result: &CallToolResult) -> String {
    serde_json::to_string(&result.content).expect("json")
}

async fn tool_names(client: &RunningService<RoleClient, ()>) -> Vec<String> {
    client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|t| t.name.to_string())
        .collect()
}

/// The HTTP status the gateway answers a bare POST with.
async fn status_without_identity(url: &str) -> String {
    let authority = url.trim_start_matches("http://").trim_end_matches("/mcp");
    let mut stream = tokio::net::TcpStream::connect(authority)
        .await
        .expect("connect");
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let request = format!(
        "POST /mcp HTTP/1.1\r\nhost: {authority}\r\ncontent-type: application/json\r\n\
         accept: application/json, text/event-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_are_the_callers_governed_capabilities() {
    airt_kit::tls::install_crypto();
    let stack = Stack::start(TestDb::sqlite(), POLICY).await;
    let gateway = gateway::start(&stack, Duration::from_millis(300)).await;
    assert!(
        status_without_identity(&gateway.url)
            .await
            .contains(" 401 "),
        "a caller without identity is refused"
    );

    let alice = gateway::client(&gateway.url, "user:alice", "writer").await;
    let names = tool_names(&alice).await;
    assert!(names.contains(&"io.fs.write_file".to_owned()), "{names:?}");
    assert!(
        names.contains(&"airt_action_status".to_owned()),
        "{names:?}"
    );
    assert!(
        !names.contains(&"io.fs.delete".to_owned()),
        "denied whatever the inputs: {names:?}"
    );
    let bob = gateway::client(&gateway.url, "user:bob", "").await;
    let bobs = tool_names(&bob).await;
    assert!(
        bobs.contains(&"io.fs.read_file".to_owned())
            && !bobs.contains(&"io.fs.write_file".to_owned())
    );

    let done = alice
        .call_tool(call(
            "io.fs.write_file",
            json!({"path": "a.txt", "content": "hi"}),
        ))
        .await
        .expect("tools/call");
    assert_eq!(done.is_error, Some(false), "{}", text(&done));
    assert_eq!(
        std::fs::read(stack.root().join("a.txt")).expect("written"),
        b"hi"
    );

    let denied = alice
        .call_tool(call("io.fs.delete", json!({"path": "a.txt"})))
        .await
        .expect("tools/call");
    assert_eq!(denied.is_error, Some(true));
    assert!(text(&denied).contains("no-deletes"), "{}", text(&denied));
    assert!(stack.root().join("a.txt").exists(), "a denied delete ran");

    let unknown = alice.call_tool(call("no.such.tool", json!({}))).await;
    assert!(
        unknown.is_err(),
        "an unknown tool is a protocol error: {unknown:?}"
    );

    let pending = alice
        .call_tool(call("io.fs.copy", json!({"from": "a.txt", "to": "b.txt"})))
        .await
        .expect("tools/call");
    let details = pending.structured_content.clone().expect("status");
    assert_eq!(details["status"], "AWAITING_APPROVAL", "{}", text(&pending));
    assert!(
        !stack.root().join("b.txt").exists(),
        "ran before its approval"
    );
    ApprovalServiceClient::new(stack.workflow.channel().await)
        .approve_step(as_principal(
            pb::ApproveStepRequest {
                approval_id: details["approval_id"].as_str().expect("id").to_owned(),
                comment: "fine".into(),
                request_id: String::new(),
            },
            "user:carol",
            &["approver"],
        ))
        .await
        .expect("approve");
    let status = alice
        .call_tool(call(
            "airt_action_status",
            json!({"action_id": details["action_id"], "wait_seconds": 20}),
        ))
        .await
        .expect("status");
    let now = status.structured_content.expect("status");
    assert_eq!(now["status"], "SUCCEEDED", "{now}");
    assert_eq!(
        std::fs::read(stack.root().join("b.txt")).expect("copied"),
        b"hi"
    );

    let _ = alice.cancel().await;
    let _ = bob.cancel().await;
    stack.stop().await;
}
