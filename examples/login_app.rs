//! The login app: `cargo run --example login_app`, then open
//! <http://127.0.0.1:3000>. `SESSION_STORE=cookie` or `SESSION_STORE=redis`
//! selects another session store. See `examples::login_app` for the
//! environment variables and the pages.

use std::process::ExitCode;

use examples::login_app::{self, Settings};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    match login_app::run(settings, ctrl_c()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Completes on Ctrl-C, which starts the graceful shutdown.
async fn ctrl_c() {
    match tokio::signal::ctrl_c().await {
        Ok(()) => tracing::info!("Ctrl-C received; shutting down"),
        Err(error) => {
            // Without a signal handler the server runs until it is killed.
            tracing::error!(%error, "could not listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}
