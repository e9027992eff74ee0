//! `airt`: the operator and agent command line of AI-First Runtime.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `println!` that ends the program quietly when stdout is a closed pipe
/// (`airt approvals list | head -1`), as command-line tools do.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::print_line(format_args!($($arg)*))
    };
}

fn print_line(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {error}");
        std::process::exit(1);
    }
}

/// Whether `error` is a write to a closed pipe.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

mod approvals;
mod audit;
mod client;
mod demo;
mod exec;
mod health;
mod import_mcp;
mod mcp;
mod output;
mod policy;
mod registry;
mod token;
mod up;
mod workflow;

/// AI-First Runtime: a transactional control plane for AI agents.
#[derive(Debug, Parser)]
#[command(name = "airt", version)]
struct Cli {
    #[command(flatten)]
    connection: client::ConnectionArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole stack (registry, policy, workflow) in one process on SQLite.
    Up(Box<up::UpArgs>),
    /// Check the health of the three services.
    Health,
    /// Register, read and manage capabilities.
    #[command(subcommand)]
    Registry(registry::RegistryCommand),
    /// Put, activate, test and query policy sets.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Submit a workflow file (and follow it with --watch).
    Run(workflow::RunArgs),
    /// Run one capability as a governed action (policy, approval, audit).
    Exec(exec::ExecArgs),
    /// Show, list and cancel workflows.
    #[command(subcommand)]
    Workflow(workflow::WorkflowCommand),
    /// The approver's inbox: list, show, approve and reject approvals.
    #[command(subcommand)]
    Approvals(approvals::ApprovalsCommand),
    /// Mint an HS256 bearer token for a principal (operators; needs the
    /// services' JWT secret).
    Token(token::TokenArgs),
    /// Read, verify and export a service's audit log.
    #[command(subcommand)]
    Audit(audit::AuditCommand),
    /// Serve the capabilities as governed MCP tools (`airt mcp stdio`).
    #[command(subcommand)]
    Mcp(mcp::McpCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // SAFETY: nothing but this thread runs yet (the runtime starts later).
    #[allow(unsafe_code)]
    unsafe {
        airt_kit::config::scrub_secret_env();
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Up(args) => up::run(*args, &cli.connection).await,
            Command::Health => health::run(&cli.connection).await,
            Command::Registry(command) => registry::run(&cli.connection, command).await,
            Command::Policy(command) => policy::run(&cli.connection, command).await,
            Command::Run(args) => workflow::run(&cli.connection, args).await,
            Command::Exec(args) => exec::run(&cli.connection, args).await,
            Command::Workflow(command) => workflow::command(&cli.connection, command).await,
            Command::Approvals(command) => approvals::run(&cli.connection, command).await,
            Command::Audit(command) => audit::run(&cli.connection, command).await,
            Command::Token(args) => token::run(&args),
            Command::Mcp(command) => mcp::run(&cli.connection, command).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(error) if is_broken_pipe(&error) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
