//! The `kurz` binary: parse the command line, then serve, migrate, manage users,
//! check health, or back up and restore a SQLite store.

use std::process::ExitCode;

use kurz::auth::Auth;
use kurz::config::{Cli, Command, DatabaseConfig, HealthcheckArgs, UsersCommand};
use kurz::{Application, Config, store};

/// mimalloc rather than glibc's malloc: the click pipeline allocates and frees in
/// bursts, often on other threads than the ones that allocated, and glibc's malloc
/// and free were 14 % of kurz's CPU samples at 10,000 redirects/s. Side by side,
/// mimalloc took 12 % less CPU per redirect there and its peak RSS was 29 % lower
/// (bench/results/2026-12-05.md). Built with `no_thp`: mimalloc otherwise asks for
/// transparent huge pages, and each touched 2 MiB page then counts whole in RSS. The
/// user-agent rules alone took 60 MiB of RSS that way against 35 MiB without, and under
/// the bench's redirect load the peak was 292 MiB against 337 (bench/results/2026-12-05.md).
/// Its v2 line (`v2`) rather than v3: v3 keeps freed memory for 1 s before it returns
/// it to the OS, v2 for 10 ms (100 ms for whole arenas). Under the bench's redirect
/// load v2 peaked 14-35 MiB lower, at no more CPU per redirect
/// (bench/results/2026-12-06.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse_with_default();
    let result = match cli.command {
        Command::Serve(config) => {
            kurz::telemetry::init_logging(&config.log);
            serve(*config).await
        }
        Command::Migrate { database, log } => {
            kurz::telemetry::init_logging(&log);
            migrate(&database).await
        }
        Command::Users(UsersCommand::Create {
            email,
            tier,
            database,
            log,
        }) => {
            kurz::telemetry::init_logging(&log);
            create_user(&database, &email, &tier).await
        }
        Command::Healthcheck(args) => healthcheck(&args).await,
        Command::Backup { to, database, log } => {
            kurz::telemetry::init_logging(&log);
            store::backup::backup(&database.url, &to)
                .await
                .map(|c| {
                    println!(
                        "backup written to {}: {} links, {} bytes",
                        c.path.display(),
                        c.links,
                        c.bytes
                    )
                })
                .map_err(|e| e.to_string())
        }
        Command::Restore {
            from,
            force,
            skip_codes,
            database,
            log,
        } => {
            kurz::telemetry::init_logging(&log);
            store::backup::restore(&database.url, &from, force, skip_codes)
                .await
                .map(|c| {
                    println!(
                        "restored {} to {}: {} links; code counter moved on by {skip_codes} to {}",
                        from.display(),
                        c.path.display(),
                        c.links,
                        c.next_counter
                    )
                })
                .map_err(|e| e.to_string())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("kurz: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), String> {
    let app = Application::build(config).await.map_err(|e| e.to_string())?;
    if let Some(key) = &app.generated_admin_key {
        // Printed once, to the terminal only: it is never logged and only its hash is kept.
        println!("Created the admin user. Its API key (shown only now): {key}");
    }
    app.run_until_stopped().await;
    Ok(())
}

/// Exit 0 on a 200 from /health; otherwise the reason, on one line of stderr.
async fn healthcheck(args: &HealthcheckArgs) -> Result<(), String> {
    let timeout = std::time::Duration::from_millis(args.timeout_ms);
    kurz::http::probe::check(args.listen, args.tls_cert.as_deref(), timeout)
        .await
        .map_err(|e| format!("healthcheck: {e}"))
}

async fn migrate(database: &DatabaseConfig) -> Result<(), String> {
    let store = store::connect(database).await.map_err(|e| e.to_string())?.links;
    store.migrate().await.map_err(|e| e.to_string())?;
    println!("database is up to date");
    Ok(())
}

async fn create_user(database: &DatabaseConfig, email: &str, tier: &str) -> Result<(), String> {
    let store = store::connect(database).await.map_err(|e| e.to_string())?.links;
    store.migrate().await.map_err(|e| e.to_string())?;
    let auth = Auth::new(
        store,
        b"unused: no tokens are issued here",
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(1),
    );
    let (user, key) = auth
        .create_user_unchecked(email, tier)
        .await
        .map_err(|e| e.to_string())?;
    println!("user {} ({}, tier {})", user.id, user.email, user.tier.as_str());
    println!("API key (shown only now; store it safely): {key}");
    Ok(())
}
