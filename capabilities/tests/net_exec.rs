//! `net.http.*` behind the SSRF guard and `sys.exec.run` behind its
//! allow-list, against a local HTTP server and real programs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use airt_capabilities::exec::ExecPolicy;
use airt_capabilities::net::NetworkPolicy;
use airt_capabilities::{
    Catalogue, CatalogueConfig, ErrorKind, Execution, ExecutionContext, HandlerError, Workspace,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A tiny HTTP/1.1 server on 127.0.0.1 that answers by path.
async fn http_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                let head_end = text.find("\r\n\r\n").unwrap_or(text.len());
                let length: usize = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse().unwrap_or(0))
                    })
                    .unwrap_or(0);
                while request.len() < head_end + 4 + length {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buffer[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&request).into_owned();
                let path = text.split_whitespace().nth(1).unwrap_or("/").to_owned();
                let key = text
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .starts_with("idempotency-key:")
                            .then(|| l[16..].trim().to_owned())
                    })
                    .unwrap_or_default();
                let body = text.get(head_end + 4..).unwrap_or("").to_owned();
                let (status, extra, content) = match path.as_str() {
                    "/ok" => ("200 OK", String::new(), "hello".to_owned()),
                    "/echo" => (
                        "200 OK",
                        String::new(),
                        json!({"key": key, "body": body}).to_string(),
                    ),
                    "/fail" => (
                        "503 Service Unavailable",
                        String::new(),
                        "try later".to_owned(),
                    ),
                    "/missing" => ("404 Not Found", String::new(), "no such thing".to_owned()),
                    "/big" => ("200 OK", String::new(), "x".repeat(2 * 1024 * 1024)),
                    "/to-private" => (
                        "302 Found",
                        "Location: http://10.0.0.1/\r\n".to_owned(),
                        String::new(),
                    ),
                    "/to-metadata" => (
                        "302 Found",
                        "Location: http://169.254.169.254/latest/meta-data/\r\n".to_owned(),
                        String::new(),
                    ),
                    _ => ("404 Not Found", String::new(), String::new()),
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{content}",
                    content.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    addr
}

struct Fixture {
    _root: tempfile::TempDir,
    workspace: Arc<Workspace>,
    catalogue: Catalogue,
}

impl Fixture {
    fn new(net_allow: &[&str]) -> Self {
        let root = tempfile::tempdir().expect("root");
        let workspace = Arc::new(Workspace::open(root.path()).expect("workspace"));
        let allow: Vec<String> = net_allow.iter().map(|s| (*s).to_owned()).collect();
        let programs: Vec<String> = [
            "echo", "cat", "false", "ls", "sleep", "head", "sort", "uniq",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let search_path = std::env::var("PATH").unwrap_or_default();
        let catalogue = Catalogue::new(&CatalogueConfig {
            env_allow_list: Vec::new(),
            network: NetworkPolicy::parse(&allow).expect("allow-list"),
            exec: ExecPolicy::resolve(&programs, &search_path).expect("programs"),
            ..CatalogueConfig::default()
        });
        Self {
            _root: root,
            workspace,
            catalogue,
        }
    }

    async fn run(&self, capability: &str, inputs: Value) -> Result<Execution, HandlerError> {
        let ctx = ExecutionContext::new(
            "wf-net",
            "step",
            1,
            Instant::now() + Duration::from_secs(30),
            self.workspace.clone(),
        );
        self.catalogue
            .execute(capability, &ctx, inputs.as_object().expect("object"))
            .await
    }
}

fn refused(result: Result<Execution, HandlerError>) -> HandlerError {
    let error = result.expect_err("must be refused");
    assert_eq!(error.kind, ErrorKind::SandboxViolation, "{error}");
    assert!(!error.retryable);
    error
}

#[tokio::test]
async fn internal_targets_are_refused_by_default() {
    let addr = http_server().await;
    let f = Fixture::new(&[]);
    for url in [
        format!("http://127.0.0.1:{}/ok", addr.port()),
        format!("http://[::1]:{}/ok", addr.port()),
        format!("http://localhost:{}/ok", addr.port()),
        "http://10.0.0.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::ffff:127.0.0.1]/".to_owned(),
        "http://0.0.0.0/".to_owned(),
        "http://192.168.1.1/".to_owned(),
    ] {
        refused(f.run("net.http.get", json!({"url": url})).await);
        refused(
            f.run("net.http.post", json!({"url": url, "body": "x"}))
                .await,
        );
    }
    refused(
        f.run("net.http.get", json!({"url": "file:///etc/passwd"}))
            .await,
    );
}

#[tokio::test]
async fn allow_listed_targets_work_and_redirects_are_checked_again() {
    let addr = http_server().await;
    let f = Fixture::new(&["127.0.0.1"]);
    let ok = f
        .run(
            "net.http.get",
            json!({"url": format!("http://127.0.0.1:{}/ok", addr.port())}),
        )
        .await
        .expect("allowed");
    assert_eq!(
        (ok.outputs["status"].as_u64(), ok.outputs["body"].as_str()),
        (Some(200), Some("hello"))
    );
    // Allow-listing the literal 127.0.0.1 does not allow another name for it.
    refused(
        f.run(
            "net.http.get",
            json!({"url": format!("http://localhost:{}/ok", addr.port())}),
        )
        .await,
    );
    // A redirect from the allowed host to an internal one is refused.
    refused(
        f.run(
            "net.http.get",
            json!({"url": format!("http://127.0.0.1:{}/to-private", addr.port())}),
        )
        .await,
    );
    refused(
        f.run(
            "net.http.get",
            json!({"url": format!("http://127.0.0.1:{}/to-metadata", addr.port())}),
        )
        .await,
    );

    // A CIDR allows by address, whatever the name.
    let by_range = Fixture::new(&["127.0.0.0/8"]);
    let named = by_range
        .run(
            "net.http.get",
            json!({"url": format!("http://localhost:{}/ok", addr.port())}),
        )
        .await
        .expect("allowed by range");
    assert_eq!(named.outputs["body"], "hello");
}

#[tokio::test]
async fn failures_are_typed_errors_with_details() {
    let addr = http_server().await;
    let f = Fixture::new(&["127.0.0.1"]);
    let base = format!("http://127.0.0.1:{}", addr.port());
    let unavailable = f
        .run("net.http.get", json!({"url": format!("{base}/fail")}))
        .await
        .expect_err("503");
    assert_eq!(
        (unavailable.kind, unavailable.retryable),
        (ErrorKind::ActionFailed, true)
    );
    assert_eq!(unavailable.details["status"], 503);
    assert_eq!(unavailable.details["body_excerpt"], "try later");
    let missing = f
        .run("net.http.get", json!({"url": format!("{base}/missing")}))
        .await
        .expect_err("404");
    assert_eq!(
        (missing.details["status"].as_u64(), missing.retryable),
        (Some(404), false)
    );
    let big = f
        .run("net.http.get", json!({"url": format!("{base}/big")}))
        .await
        .expect_err("too big");
    assert_eq!(big.kind, ErrorKind::ActionFailed);
    // The caller cannot raise the server's ceiling.
    let asked_for_more = f
        .run(
            "net.http.get",
            json!({"url": format!("{base}/big"), "max_bytes": 10_000_000_000_u64}),
        )
        .await
        .expect_err("still too big");
    assert_eq!(
        asked_for_more.details["max_bytes"],
        1024 * 1024,
        "{asked_for_more}"
    );
    // A POST that failed on the server is not retried blindly.
    let post = f
        .run(
            "net.http.post",
            json!({"url": format!("{base}/fail"), "body": "x"}),
        )
        .await
        .expect_err("503");
    assert!(!post.retryable);
    // POST sends the body and an idempotency key.
    let echo = f
        .run(
            "net.http.post",
            json!({"url": format!("{base}/echo"), "json": {"a": 1}}),
        )
        .await
        .expect("post");
    let answer: Value =
        serde_json::from_str(echo.outputs["body"].as_str().expect("body")).expect("json");
    assert_eq!(answer, json!({"key": "wf-net/step", "body": "{\"a\":1}"}));
}

#[tokio::test]
async fn shells_and_interpreters_are_refused_and_arguments_are_literal() {
    let f = Fixture::new(&[]);
    for program in [
        "sh",
        "bash",
        "python3",
        "/bin/sh",
        "/bin/echo",
        "env",
        "perl",
        "node",
    ] {
        refused(
            f.run(
                "sys.exec.run",
                json!({"program": program, "args": ["-c", "echo pwned"]}),
            )
            .await,
        );
    }
    refused(f.run("sys.exec.run", json!({"program": "uname"})).await);
    let literal = f
        .run(
            "sys.exec.run",
            json!({"program": "echo", "args": ["a;", "rm -rf /", "&&", "$(id)", "`id`", "$HOME"]}),
        )
        .await
        .expect("echo");
    assert_eq!(
        literal.outputs["stdout"],
        "a; rm -rf / && $(id) `id` $HOME\n"
    );
    assert_eq!(literal.outputs["exit_code"], 0);
    for bad in [
        vec!["sh".to_owned()],
        vec!["/usr/bin/python3".to_owned()],
        vec!["python3".to_owned()],
    ] {
        assert!(
            ExecPolicy::resolve(&bad, "/usr/bin:/bin").is_err(),
            "{bad:?} must not be allow-listable"
        );
    }
}

#[tokio::test]
async fn exec_runs_in_the_workspace_with_a_clean_environment_timeouts_and_typed_failures() {
    let f = Fixture::new(&[]);
    std::fs::write(f.workspace.root_path().join("note.txt"), "inside").expect("write");
    let cat = f
        .run(
            "sys.exec.run",
            json!({"program": "cat", "args": ["note.txt"]}),
        )
        .await
        .expect("cat");
    assert_eq!(cat.outputs["stdout"], "inside");
    refused(
        f.run("sys.exec.run", json!({"program": "ls", "cwd": "../"}))
            .await,
    );

    let failed = f
        .run(
            "sys.exec.run",
            json!({"program": "cat", "args": ["missing.txt"]}),
        )
        .await
        .expect_err("non-zero");
    assert_eq!(failed.kind, ErrorKind::ActionFailed);
    assert_eq!(failed.details["exit_code"], 1);
    assert!(
        failed.details["stderr_excerpt"]
            .as_str()
            .expect("stderr")
            .contains("missing.txt")
    );
    let as_data = f
        .run(
            "sys.exec.run",
            json!({"program": "false", "allow_nonzero_exit": true}),
        )
        .await
        .expect("opt-in");
    assert_eq!(as_data.outputs["exit_code"], 1);

    let slow = f
        .run(
            "sys.exec.run",
            json!({"program": "sleep", "args": ["30"], "timeout_ms": 200}),
        )
        .await
        .expect_err("killed");
    assert_eq!(slow.kind, ErrorKind::Timeout);
}

/// An allow-listed program's arguments are as hostile as any input: the
/// operating-system sandbox keeps them inside the workspace.
#[tokio::test]
async fn arguments_of_allow_listed_programs_cannot_leave_the_workspace() {
    let f = Fixture::new(&[]);
    let outside = tempfile::tempdir().expect("outside");
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "s3cret").expect("secret");
    let ws = f.workspace.root_path();
    std::fs::write(ws.join("note.txt"), "b\na\na\n").expect("note");
    let denied = |result: Result<Execution, HandlerError>| {
        let error = result.expect_err("the sandbox must refuse");
        assert_eq!(error.kind, ErrorKind::ActionFailed, "{error}");
        let stderr = error.details["stderr_excerpt"].as_str().unwrap_or_default();
        assert!(!stderr.contains("s3cret"), "{stderr}");
        error
    };

    // Reading a file outside, the service's own environment, the shadow file.
    let secret_path = secret.display().to_string();
    denied(
        f.run(
            "sys.exec.run",
            json!({"program": "cat", "args": [secret_path]}),
        )
        .await,
    );
    let environ = format!("/proc/{}/environ", std::process::id());
    denied(
        f.run("sys.exec.run", json!({"program": "cat", "args": [environ]}))
            .await,
    );
    denied(
        f.run(
            "sys.exec.run",
            json!({"program": "head", "args": ["/etc/shadow"]}),
        )
        .await,
    );
    denied(
        f.run(
            "sys.exec.run",
            json!({"program": "ls", "args": [outside.path()]}),
        )
        .await,
    );

    // Writing outside through an output operand.
    let target = outside.path().join("written.txt");
    denied(
        f.run(
            "sys.exec.run",
            json!({"program": "uniq", "args": ["note.txt", target.display().to_string()]}),
        )
        .await,
    );
    assert!(!target.exists(), "uniq wrote outside the workspace");

    // Starting a shell through an option: sort compresses its temporary
    // files with the named program, which then reads the lines as a script
    // (each creates `pwned`); the sandbox refuses to execute it at all.
    let lines: String = (0..40_000).map(|i| format!(": > pwned # {i}\n")).collect();
    std::fs::write(ws.join("big.txt"), lines).expect("big");
    let marker = ws.join("pwned");
    let shell = denied(
        f.run(
            "sys.exec.run",
            json!({"program": "sort", "args": [
                "-S", "16K", "-T", ".", "--compress-program=sh", "big.txt"
            ]}),
        )
        .await,
    );
    assert!(!marker.exists(), "{shell}");

    // What stays inside works: reading and writing in the workspace.
    let inside = f
        .run(
            "sys.exec.run",
            json!({"program": "uniq", "args": ["note.txt", "out.txt"]}),
        )
        .await
        .expect("inside the workspace");
    assert_eq!(inside.outputs["exit_code"], 0);
    assert_eq!(
        std::fs::read_to_string(ws.join("out.txt")).expect("out"),
        "b\na\n"
    );
    let sorted = f
        .run(
            "sys.exec.run",
            json!({"program": "sort", "args": ["note.txt"]}),
        )
        .await
        .expect("sort");
    assert_eq!(sorted.outputs["stdout"], "a\na\nb\n");
}

/// Every special-purpose range, and every IPv6 form that reaches an IPv4
/// address through a translator or tunnel, is internal.
#[test]
fn special_purpose_and_embedded_ipv4_addresses_are_internal() {
    use airt_capabilities::net::is_internal;
    use std::net::IpAddr;
    for internal in [
        "127.0.0.1",
        "10.1.2.3",
        "169.254.169.254",
        "100.64.0.1",
        "198.18.0.1",
        "198.19.255.255",
        "240.0.0.1",
        "255.255.255.255",
        "192.0.2.1",
        "::1",
        "::ffff:169.254.169.254",
        "::169.254.169.254",
        "::8.8.8.8",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::808:808",
        "64:ff9b:1::1",
        "2002:a9fe:a9fe::1",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:db8::1",
        "fc00::1",
        "fe80::1",
        "fec0::1",
        "100::1",
    ] {
        let ip: IpAddr = internal.parse().expect("address");
        assert!(is_internal(ip), "{internal} must be internal");
    }
    for public in [
        "8.8.8.8",
        "1.1.1.1",
        "2606:4700:4700::1111",
        "::ffff:8.8.8.8",
    ] {
        let ip: IpAddr = public.parse().expect("address");
        assert!(!is_internal(ip), "{public} is public");
    }
}

/// Where the kernel has no Landlock, `sys.exec.run` is refused with a clear
/// reason instead of running unconfined. Proven in a child process whose
/// `landlock_create_ruleset` is made to fail with ENOSYS, as on a kernel
/// without Landlock.
#[test]
fn without_landlock_program_execution_fails_closed() {
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "landlock_unavailable_child", "--nocapture"])
        .env("AIRT_TEST_NO_LANDLOCK", "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("refused without Landlock"), "{stdout}");
}

/// The child of the test above (does nothing unless asked to).
#[test]
fn landlock_unavailable_child() {
    if std::env::var_os("AIRT_TEST_NO_LANDLOCK").is_none() {
        return;
    }
    let arch = if cfg!(target_arch = "aarch64") {
        seccompiler::TargetArch::aarch64
    } else {
        seccompiler::TargetArch::x86_64
    };
    let filter: seccompiler::BpfProgram = seccompiler::SeccompFilter::new(
        [(libc::SYS_landlock_create_ruleset, vec![])].into(),
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )
    .expect("filter")
    .try_into()
    .expect("compile");
    // This thread only: the runtime below runs on it.
    seccompiler::apply_filter(&filter).expect("apply");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let refused = runtime.block_on(async {
        let f = Fixture::new(&[]);
        f.run("sys.exec.run", json!({"program": "echo", "args": ["ran"]}))
            .await
            .expect_err("must not run unconfined")
    });
    assert_eq!(refused.kind, ErrorKind::SandboxViolation, "{refused}");
    assert!(
        refused.message.contains("cannot be established"),
        "{refused}"
    );
    println!("refused without Landlock: {}", refused.message);
}
