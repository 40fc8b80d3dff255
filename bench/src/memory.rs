//! Memory per live session of an in-process store, measured as the growth
//! of the process's resident set while sessions are created.

use serde::{Deserialize, Serialize};

use crate::rss::resident_bytes;
use crate::{BenchApp, BenchEnv, Scenario};

/// Sessions created before the first reading, so that lazily allocated
/// structures (caches, the allocator's arenas) exist before measuring.
const WARM_UP_SESSIONS: u64 = 1_000;

/// Resident memory growth while `sessions` sessions were created.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MemoryResult {
    /// Sessions created in the measured step.
    pub sessions: u64,
    /// Resident set growth in bytes.
    pub rss_growth_bytes: u64,
    /// Growth divided by the number of sessions.
    pub bytes_per_session: f64,
}

/// Creates `sessions` sessions through `POST /login?user=N`, one user each,
/// and returns the resident set growth.
///
/// Run it in a fresh process (`loadgen` starts a child for it): memory
/// freed by earlier work would otherwise be reused and hide the growth.
///
/// # Errors
///
/// A message when a login fails or `/proc/self/statm` cannot be read.
pub async fn measure(scenario: Scenario, sessions: u64) -> Result<MemoryResult, String> {
    let app = BenchApp::build(scenario, &BenchEnv::from_env()).await?;
    for user in 0..WARM_UP_SESSIONS {
        app.login(Some(user)).await?;
    }

    let before = resident_bytes()?;
    for user in WARM_UP_SESSIONS..WARM_UP_SESSIONS + sessions {
        app.login(Some(user)).await?;
    }
    let after = resident_bytes()?;

    let growth = after.saturating_sub(before);
    // Keep the app, and so the store, alive until after the second reading.
    drop(app);
    Ok(MemoryResult {
        sessions,
        rss_growth_bytes: growth,
        bytes_per_session: growth as f64 / sessions.max(1) as f64,
    })
}
