//! Crash points for testing recovery: `WEIR_FAILPOINTS=name=N,...` makes the process
//! kill itself with SIGKILL the N-th time it reaches point `name`, exactly as
//! `kill -9` would, so tests can crash Weir at a precise step of the checkpoint cycle.
//!
//! Points: `checkpoint.before-commit` (outputs and changelog flushed, transaction not
//! committed), `checkpoint.after-commit` (Kafka committed, local state not written),
//! `restore.block` (after applying one changelog block during a restore).
//!
//! Unset (the normal case), a point costs one relaxed atomic load.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable that arms crash points.
pub const ENV: &str = "WEIR_FAILPOINTS";

struct Armed {
    points: HashMap<String, (u64, AtomicU64)>,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let spec = std::env::var(ENV).ok()?;
            let points = spec
                .split(',')
                .filter_map(|item| {
                    let (name, n) = item.trim().split_once('=')?;
                    Some((name.to_owned(), (n.parse().ok()?, AtomicU64::new(0))))
                })
                .collect();
            Some(Armed { points })
        })
        .as_ref()
}

/// Reach point `name`: dies here if it is armed and this is its N-th hit.
pub fn hit(name: &str) {
    let Some((at, count)) = armed().and_then(|a| a.points.get(name)) else {
        return;
    };
    if count.fetch_add(1, Ordering::Relaxed) + 1 == *at {
        tracing::warn!(point = name, "failpoint reached: killing the process");
        // SAFETY: getpid and kill have no preconditions.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
    }
}
