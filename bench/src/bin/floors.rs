//! This machine's physical floors, to read every other figure against:
//! how long a durable write, a committed transaction and a loopback round
//! trip take at the least.
//!
//! Run: `cd bench && cargo run --release --bin floors` (PostgreSQL rows
//! need `AIRT_TEST_POSTGRES_URL`).
//!
//! - `fdatasync`: a 4 KiB append then `fdatasync`, in the directory the
//!   SQLite databases of the other benchmarks use (the system temp dir);
//! - SQLite commit: a one-row `INSERT` in its own transaction, with the
//!   services' settings (WAL, `synchronous=NORMAL`: a commit writes the WAL
//!   without waiting for the disk; the WAL is synced at checkpoints);
//! - PostgreSQL commit: the same on the local server (its defaults:
//!   `synchronous_commit=on`, so each commit waits for its WAL flush);
//! - loopback TCP: a one-byte ping-pong between two tasks over 127.0.0.1;
//! - loopback gRPC: the empty `grpc.health.v1.Health/Check` on a tonic
//!   server in this process (its own runtime), one call at a time.

use std::io::Write as _;
use std::time::{Duration, Instant};

use airt_bench::workflows::percentile;
use airt_kit::testing::TestDb;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const ROUNDS: usize = 2_000;

fn row(label: &str, mut samples: Vec<Duration>) {
    samples.sort_unstable();
    println!(
        "| {label} | {} | {:.1} µs | {:.1} µs |",
        samples.len(),
        percentile(&samples, 0.5).as_secs_f64() * 1e6,
        percentile(&samples, 0.99).as_secs_f64() * 1e6
    );
}

fn fdatasync() -> anyhow::Result<Vec<Duration>> {
    let dir = tempfile::tempdir()?;
    let mut file = std::fs::File::create(dir.path().join("sync"))?;
    let block = [7u8; 4096];
    let mut samples = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(started.elapsed());
    }
    Ok(samples)
}

async fn commits(db: &TestDb) -> anyhow::Result<Vec<Duration>> {
    let database = airt_kit::db::Database::connect(db.url(), None).await?;
    airt_kit::with_pool!(&database, pool => {
        sqlx::query("CREATE TABLE floor (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
            .execute(pool)
            .await
            .map(drop)
    })?;
    let mut samples = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS + 100 {
        let id = i64::try_from(i)?;
        let started = Instant::now();
        airt_kit::with_pool!(&database, pool => {
            sqlx::query("INSERT INTO floor (id, v) VALUES ($1, 'x')")
                .bind(id)
                .execute(pool)
                .await
                .map(drop)
        })?;
        if i >= 100 {
            samples.push(started.elapsed());
        }
    }
    database.close().await;
    Ok(samples)
}

async fn tcp_round_trips() -> anyhow::Result<Vec<Duration>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let mut byte = [0u8; 1];
        while socket.read_exact(&mut byte).await.is_ok() {
            socket.write_all(&byte).await?;
        }
        anyhow::Ok(())
    });
    let mut client = tokio::net::TcpStream::connect(addr).await?;
    client.set_nodelay(true)?;
    let mut samples = Vec::with_capacity(ROUNDS * 5);
    let mut byte = [1u8; 1];
    for i in 0..ROUNDS * 5 + 100 {
        let started = Instant::now();
        client.write_all(&byte).await?;
        client.read_exact(&mut byte).await?;
        if i >= 100 {
            samples.push(started.elapsed());
        }
    }
    drop(client);
    echo.await??;
    Ok(samples)
}

fn grpc_round_trips() -> anyhow::Result<Vec<Duration>> {
    let server = tokio::runtime::Runtime::new()?;
    let listener = server.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    server.spawn(async move {
        let (_reporter, health) = tonic_health::server::health_reporter();
        let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
        let _ = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(incoming)
            .await;
    });
    let client = tokio::runtime::Runtime::new()?;
    client.block_on(async move {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect()
            .await?;
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        let mut samples = Vec::with_capacity(ROUNDS * 5);
        for i in 0..ROUNDS * 5 + 100 {
            let started = Instant::now();
            health
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await?;
            if i >= 100 {
                samples.push(started.elapsed());
            }
        }
        Ok(samples)
    })
}

fn main() -> anyhow::Result<()> {
    println!("| floor | samples | p50 | p99 |");
    println!("|---|---:|---:|---:|");
    row("fdatasync of a 4 KiB append (temp dir)", fdatasync()?);
    let runtime = tokio::runtime::Runtime::new()?;
    row(
        "SQLite commit, one-row INSERT (WAL, synchronous=NORMAL)",
        runtime.block_on(commits(&TestDb::sqlite()))?,
    );
    match runtime.block_on(TestDb::postgres()) {
        Some(db) => row(
            "PostgreSQL commit, one-row INSERT (synchronous_commit=on)",
            runtime.block_on(commits(&db))?,
        ),
        None => eprintln!("PostgreSQL skipped: set AIRT_TEST_POSTGRES_URL"),
    }
    row(
        "loopback TCP round trip (1 byte)",
        runtime.block_on(tcp_round_trips())?,
    );
    drop(runtime);
    row(
        "loopback gRPC round trip (empty Health/Check)",
        grpc_round_trips()?,
    );
    Ok(())
}
