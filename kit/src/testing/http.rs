//! A minimal HTTP/1.1 server on loopback that records every request: the
//! far end of remote capabilities and webhooks in tests and benchmarks.
//! Every path answers `200 {"ok": true, "path": ..., "calls": n}` unless it
//! was told to fail its next requests with 500, to always answer another
//! status, or to take its time.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    /// Header names in lower case.
    pub headers: HashMap<String, String>,
    pub body: String,
    /// When its headers were read.
    pub at: Instant,
}

#[derive(Debug, Default)]
struct State {
    requests: Vec<Recorded>,
    failures: HashMap<String, usize>,
    statuses: HashMap<String, u16>,
    delays: HashMap<String, std::time::Duration>,
    bodies: HashMap<String, String>,
    /// Clients whose connection is open (accepted, not yet at its end).
    open: HashSet<SocketAddr>,
}

/// The server; it stops when dropped with the runtime.
#[derive(Debug, Clone)]
pub struct Recorder {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
    /// Signalled when a connection is accepted or ends.
    connections: Arc<Notify>,
}

impl Recorder {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let recorder = Self {
            addr,
            state: Arc::default(),
            arrived: Arc::default(),
            connections: Arc::default(),
        };
        let server = recorder.clone();
        tokio::spawn(async move {
            while let Ok((stream, peer)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                server.lock().open.insert(peer);
                server.connections.notify_waiters();
                let connection = server.clone();
                tokio::spawn(async move {
                    connection.clone().serve(stream).await;
                    connection.lock().open.remove(&peer);
                    connection.connections.notify_waiters();
                });
            }
        });
        recorder
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The next `n` requests to `path` answer 500.
    pub fn fail_next(&self, path: &str, n: usize) {
        self.lock().failures.insert(path.to_owned(), n);
    }

    /// Every request to `path` answers `status` (with a JSON error body).
    pub fn always_answer(&self, path: &str, status: u16) {
        self.lock().statuses.insert(path.to_owned(), status);
    }

    /// Requests to `path` are answered `delay` after they arrive.
    /// Answers 200 with `body` (JSON) at `path` from now on.
    pub fn serve_body(&self, path: &str, body: impl Into<String>) {
        self.lock().bodies.insert(path.to_owned(), body.into());
    }

    pub fn delay(&self, path: &str, delay: std::time::Duration) {
        self.lock().delays.insert(path.to_owned(), delay);
    }

    /// Every request so far, in arrival order.
    pub fn all_requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Requests to `path` so far, in arrival order.
    pub fn requests(&self, path: &str) -> Vec<Recorded> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until `path` has received `n` requests; returns the `n`th.
    pub async fn wait_for(&self, path: &str, n: usize, within: std::time::Duration) -> Recorded {
        let deadline = Instant::now() + within;
        loop {
            let arrived = self.arrived.notified();
            let seen = self.requests(path);
            if seen.len() >= n {
                return seen[n - 1].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{path} received {} of {n} requests within {within:?}",
                seen.len()
            );
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }

    /// Waits until every client that connected so far has hung up and
    /// everything it sent has been recorded: after killing a client process,
    /// its last requests are in [`Self::requests`] once this returns. A
    /// probe connection, accepted after every connection already queued,
    /// shows that none is still waiting to be accepted.
    pub async fn drain(&self, within: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + within;
        let probe = tokio::net::TcpStream::connect(self.addr)
            .await
            .expect("connect a probe to the recorder");
        let probe_addr = probe.local_addr().expect("probe address");
        self.wait_connections(deadline, |open| open.contains(&probe_addr))
            .await;
        drop(probe);
        self.wait_connections(deadline, HashSet::is_empty).await;
    }

    async fn wait_connections(
        &self,
        deadline: tokio::time::Instant,
        done: impl Fn(&HashSet<SocketAddr>) -> bool,
    ) {
        loop {
            let changed = self.connections.notified();
            let open = self.lock().open.clone();
            if done(&open) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "connections still open on the recorder: {open:?}"
            );
            let _ = tokio::time::timeout_at(deadline, changed).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn serve(self, mut stream: tokio::net::TcpStream) {
        let mut buffer = Vec::new();
        let mut chunk = [0u8; 8192];
        // Keep-alive: serve requests on this connection until it closes.
        loop {
            let (head_end, length) = loop {
                if let Some(end) = find(&buffer, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buffer[..end]).to_ascii_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0usize);
                    break (end, length);
                }
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            };
            let at = Instant::now();
            while buffer.len() < head_end + 4 + length {
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
            let body =
                String::from_utf8_lossy(&buffer[head_end + 4..head_end + 4 + length]).into_owned();
            buffer.drain(..head_end + 4 + length);
            let mut lines = head.lines();
            let path = lines
                .next()
                .and_then(|l| l.split_whitespace().nth(1))
                .unwrap_or("/")
                .to_owned();
            let headers = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let (status, content, delay) = {
                let mut state = self.lock();
                state.requests.push(Recorded {
                    path: path.clone(),
                    headers,
                    body,
                    at,
                });
                let calls = state.requests.iter().filter(|r| r.path == path).count();
                let delay = state.delays.get(&path).copied();
                let fixed = state.statuses.get(&path).copied();
                let (status, content) = match state.failures.get_mut(&path) {
                    Some(left) if *left > 0 => {
                        *left -= 1;
                        (
                            "500 Internal Server Error".to_owned(),
                            "{\"error\": \"failing on purpose\"}".to_owned(),
                        )
                    }
                    _ => match fixed {
                        Some(code) => (
                            format!("{code} Status"),
                            "{\"error\": \"answering as told\"}".to_owned(),
                        ),
                        None => (
                            "200 OK".to_owned(),
                            state.bodies.get(&path).cloned().unwrap_or_else(|| {
                                format!(
                                    "{{\"ok\": true, \"path\": \"{path}\", \"calls\": {calls}}}"
                                )
                            }),
                        ),
                    },
                };
                (status, content, delay)
            };
            self.arrived.notify_waiters();
            if let Some(delay) = delay {
                // A client that hangs up (or is killed) while its answer is
                // held is gone: its connection closes at once instead of
                // being held for the rest of the delay.
                let until = tokio::time::Instant::now() + delay;
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => break,
                        read = stream.read(&mut chunk) => match read {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                        },
                    }
                }
            }
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{content}",
                content.len()
            );
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
