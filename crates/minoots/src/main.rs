//! The `minoots` binary: parses flags and wires the libraries together. The logic lives
//! in the library crates; this file only chooses what to start.

mod actions;
mod bench;
mod client_cmd;
mod config_file;
mod control_plane_cmd;
mod health;
mod kernel_cmd;
mod mcp_cmd;
mod migrate_cmd;
mod orchestrator_cmd;
mod telemetry;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "minoots",
    version,
    about = "MINOOTS: durable timers as a service"
)]
struct Cli {
    /// Log format: "text" for people, "json" for log collectors.
    #[arg(
        long,
        global = true,
        env = "MINOOTS_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: String,
    /// A TOML file of settings, below flags and environment variables in precedence.
    #[arg(long, global = true, env = "MINOOTS_CONFIG")]
    config: Option<PathBuf>,
    /// Export traces (the spans of each timer's life) to this OTLP/gRPC receiver, like
    /// http://127.0.0.1:4317. Read by serve, kernel, control-plane and orchestrator (and by
    /// bench, to measure the cost); unset, no span is collected or exported.
    #[arg(long, global = true, env = "MINOOTS_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process: kernel (embedded SQLite), orchestrator and REST API.
    Serve(control_plane_cmd::ServeArgs),
    /// Run the REST API against a kernel reached over gRPC.
    ControlPlane(control_plane_cmd::ControlPlaneArgs),
    /// Run the horology kernel alone: embedded store and the gRPC API.
    Kernel(kernel_cmd::KernelCmdArgs),
    /// Run the action orchestrator against a kernel reached over gRPC.
    Orchestrator(orchestrator_cmd::OrchestratorArgs),
    /// Move a stopped embedded store (--data-dir) into an empty PostgreSQL database or
    /// schema (--database-url, --database-schema), all or nothing, verified.
    MigrateStore(migrate_cmd::MigrateStoreArgs),
    /// Timers on a running server: create, list, get, cancel, wait, deliveries, events.
    Timers {
        #[command(flatten)]
        client: client_cmd::ClientArgs,
        #[command(subcommand)]
        command: client_cmd::TimersCommand,
    },
    /// Schedules on a running server: preview, create, list, get, runs, pause, resume,
    /// delete, trigger.
    Schedules {
        #[command(flatten)]
        client: client_cmd::ClientArgs,
        #[command(subcommand)]
        command: client_cmd::SchedulesCommand,
    },
    /// API keys on a running server (admin).
    Keys {
        #[command(flatten)]
        client: client_cmd::ClientArgs,
        #[command(subcommand)]
        command: client_cmd::KeysCommand,
    },
    /// Tenants on a running server (admin).
    Tenants {
        #[command(flatten)]
        client: client_cmd::ClientArgs,
        #[command(subcommand)]
        command: client_cmd::TenantsCommand,
    },
    /// Configuration: `minoots config print` shows the effective settings, secrets masked.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Serve MINOOTS's MCP tools on stdin/stdout for an agent, through a server's REST API.
    Mcp(mcp_cmd::McpArgs),
    /// Print the REST API's OpenAPI document (the same as GET /openapi.json).
    Openapi,
    /// Run a benchmark and print its results as JSON lines and a summary.
    Bench {
        /// Run the in-process workloads on PostgreSQL, each store in a scratch schema of
        /// this database that is dropped afterwards (default: the embedded store in a
        /// temporary directory). `bench crash` and `bench all` start processes of their
        /// own and ignore it.
        #[arg(long, env = "MINOOTS_BENCH_DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        #[command(subcommand)]
        workload: bench::Workload,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print the settings from the environment and the configuration file.
    Print,
}

#[derive(clap::Args, Debug, Clone)]
pub struct KernelArgs {
    /// Directory of the embedded store (created if missing; locked while running).
    /// Unused with --database-url.
    #[arg(long, env = "MINOOTS_DATA_DIR", default_value = "./minoots-data")]
    pub data_dir: PathBuf,
    /// Keep timers in PostgreSQL instead of the embedded store:
    /// postgres://user[:password]@host[:port]/database. Several kernels may share one
    /// database (or schema): they share its shards of timers.
    #[arg(long, env = "MINOOTS_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// With --database-url: the schema holding MINOOTS' tables (created if missing);
    /// the server's search path (normally `public`) when unset.
    #[arg(long, env = "MINOOTS_DATABASE_SCHEMA", requires = "database_url")]
    pub database_schema: Option<String>,
    /// With --database-url: most connections this process opens to PostgreSQL.
    #[arg(
        long,
        env = "MINOOTS_DATABASE_MAX_CONNECTIONS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u16).range(1..=256)
    )]
    pub database_max_connections: u16,
    /// Address of the kernel's gRPC API.
    #[arg(long, env = "MINOOTS_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Bearer token required on every gRPC call; mandatory when not listening on loopback.
    #[arg(long, env = "MINOOTS_KERNEL_TOKEN", hide_env_values = true)]
    pub kernel_token: Option<String>,
    /// Days of events kept in the event log.
    #[arg(long, env = "MINOOTS_EVENT_RETENTION_DAYS", default_value_t = 7)]
    pub event_retention_days: u32,
    /// The length of a billing meter bucket, like 1h: timers created and successful
    /// deliveries are counted per tenant and bucket, and each closed bucket is sent to
    /// Stripe once. Shorter buckets send more meter events.
    #[arg(long, env = "MINOOTS_BILLING_METER_BUCKET", default_value = "1h")]
    pub billing_meter_bucket: String,
    #[command(flatten)]
    pub actions: actions::ActionArgs,
}

impl KernelArgs {
    /// `--billing-meter-bucket` in µs (1 s to 1 day).
    pub fn meter_bucket_us(&self) -> anyhow::Result<i64> {
        let ms =
            minoots_core::duration::parse_duration_ms(&self.billing_meter_bucket).map_err(|e| {
                anyhow::anyhow!("--billing-meter-bucket (MINOOTS_BILLING_METER_BUCKET): {e}")
            })?;
        if !(1_000..=86_400_000).contains(&ms) {
            anyhow::bail!(
                "--billing-meter-bucket (MINOOTS_BILLING_METER_BUCKET) must be between 1s and 1d, like 1h"
            );
        }
        Ok(ms * 1_000)
    }
}

/// Turns transparent huge pages off for this process unless `MIMALLOC_ALLOW_THP` (the
/// allocator's own setting) asks for them (a number other than 0, `on`, `true` or `yes`); then
/// they are on even if the process that started MINOOTS had them off.
///
/// With huge pages a fresh process delivering 10,000 webhooks/s stalled for tens of
/// milliseconds in its first second (most likely the kernel zeroing each new 2 MiB page
/// whole at the allocator's first touch), and a burst left 2 MiB pages partly used and
/// resident afterwards. Without them webhook lateness and memory at rest were lower and
/// throughput the same within the noise (docs/benchmarks.md, "Tenth round"). The setting
/// is the process's (`PR_SET_THP_DISABLE`), so memory the allocator reserved before `main`
/// is covered too, and the programs that command actions run inherit it.
fn huge_pages_off_unless_asked() {
    let asked = std::env::var("MIMALLOC_ALLOW_THP").is_ok_and(|v| {
        let v = v.trim().to_ascii_lowercase();
        matches!(v.as_str(), "on" | "true" | "yes") || v.parse::<i64>().is_ok_and(|n| n != 0)
    });
    let disable: libc::c_ulong = if asked { 0 } else { 1 };
    // SAFETY: prctl with PR_SET_THP_DISABLE only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, disable, 0, 0, 0) };
}

fn main() -> anyhow::Result<()> {
    huge_pages_off_unless_asked();
    // The file's settings become environment variables (where unset) before flags parse.
    let args: Vec<String> = std::env::args().collect();
    let known = config_file::known_settings(&Cli::command());
    if let Some(path) = config_file::config_path(&args) {
        config_file::apply(std::path::Path::new(&path), &known)?;
    }
    let cli = Cli::parse();
    let _ = &cli.config;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    // The server processes export traces, and a benchmark when asked (to measure what
    // tracing costs); client commands never do.
    let role = match &cli.command {
        Command::Serve(_) => Some("serve"),
        Command::ControlPlane(_) => Some("control-plane"),
        Command::Kernel(_) => Some("kernel"),
        Command::Orchestrator(_) => Some("orchestrator"),
        Command::Bench { .. } => Some("bench"),
        _ => None,
    };
    let traces = {
        let _in_runtime = runtime.enter();
        telemetry::init(
            &cli.log_format,
            role.and(cli.otlp_endpoint.as_deref()),
            role.unwrap_or("cli"),
        )?
    };
    let result = run(&runtime, cli, known);
    if let Some(traces) = traces {
        traces.shutdown();
    }
    result
}

fn run(
    runtime: &tokio::runtime::Runtime,
    cli: Cli,
    known: std::collections::BTreeSet<String>,
) -> anyhow::Result<()> {
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => control_plane_cmd::run_serve(args).await,
            Command::ControlPlane(args) => control_plane_cmd::run_control_plane(args).await,
            Command::Kernel(args) => kernel_cmd::run(args).await,
            Command::Orchestrator(args) => orchestrator_cmd::run(args).await,
            Command::MigrateStore(args) => migrate_cmd::run(args).await,
            Command::Mcp(args) => mcp_cmd::run(args).await,
            Command::Bench {
                database_url,
                workload,
            } => bench::run_on(database_url, workload).await,
            Command::Timers { client, command } => client_cmd::timers(client, command).await,
            Command::Schedules { client, command } => client_cmd::schedules(client, command).await,
            Command::Keys { client, command } => client_cmd::keys(client, command).await,
            Command::Tenants { client, command } => client_cmd::tenants(client, command).await,
            Command::Config {
                command: ConfigCommand::Print,
            } => {
                config_file::print(&Cli::command(), &known);
                Ok(())
            }
            Command::Openapi => {
                println!("{:#}", minoots_control_plane::routes::openapi_document());
                Ok(())
            }
        }
    })
}
