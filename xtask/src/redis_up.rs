//! `cargo xtask redis-up`: a Redis URL for local use.

use crate::redis::{self, Redis};

/// Prints the URL of a reachable Redis on stdout.
///
/// If a private redis-server had to be started, this blocks until it exits. Ctrl-C
/// reaches both processes, because they share the terminal's process group.
pub(crate) fn run() -> Result<(), String> {
    let mut redis = redis::ensure()?;
    println!("{}", redis.url());

    if let Redis::Private(server) = &mut redis {
        eprintln!("Press Ctrl-C to stop the private redis-server");
        server.wait_for_exit()?;
    }
    Ok(())
}
