//! `minoots migrate-store`: moves the embedded store of a data directory into an empty
//! PostgreSQL database or schema, verified, then prints what it copied. The copy, its
//! checks and its refusals live in `minoots_store::migrate`; this file only reads the
//! flags and prints the summary. It never starts a kernel and never changes the source.

use std::path::PathBuf;

use minoots_store::PostgresConfig;
use minoots_store::migrate::migrate_sqlite_to_postgres;

/// Connections the migration opens: its copy, and the store's own while it migrates
/// the schema and reads the result back.
const MIGRATE_MAX_CONNECTIONS: usize = 2;

#[derive(clap::Args, Debug, Clone)]
pub struct MigrateStoreArgs {
    /// The embedded store to move: the --data-dir of `serve` or `kernel`, stopped. It is
    /// read, never changed, and locked while the migration runs.
    #[arg(long, env = "MINOOTS_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The PostgreSQL database to move it into:
    /// postgres://user[:password]@host[:port]/database. Its MINOOTS tables must be empty.
    #[arg(long, env = "MINOOTS_DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// The schema to move it into (created if missing); the server's search path
    /// (normally `public`) when unset. Give the same to `serve --database-schema`.
    #[arg(long, env = "MINOOTS_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
}

pub async fn run(args: MigrateStoreArgs) -> anyhow::Result<()> {
    let mut config = PostgresConfig::new(&args.database_url);
    config.schema = args.database_schema.clone();
    config.max_connections = MIGRATE_MAX_CONNECTIONS;
    config.application_name = "minoots-migrate-store".into();
    tracing::info!(
        source = %args.data_dir.display(),
        target = %config.target(),
        "moving the embedded store to PostgreSQL"
    );
    let report = migrate_sqlite_to_postgres(&args.data_dir, config).await?;
    println!("{report}");
    let schema = args
        .database_schema
        .map(|s| format!(" --database-schema {s}"))
        .unwrap_or_default();
    println!(
        "next: start MINOOTS with --database-url <the same URL>{schema} instead of --data-dir; keep {} unchanged as a backup until you have checked the new store",
        args.data_dir.display()
    );
    Ok(())
}
