//! The `kurz` binary: parse the command line, then serve, migrate or manage users.

use std::process::ExitCode;

use kurz::auth::Auth;
use kurz::config::{Cli, Command, DatabaseConfig, UsersCommand};
use kurz::{Application, Config, store};

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
