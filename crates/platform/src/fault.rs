//! Fault injection for the crash tests: `CHATMESH_FAULT=<point>:<n>` makes the process abort
//! (no cleanup, like SIGKILL) the n-th time it reaches `<point>`. Read once; unset costs one
//! relaxed load per point reached.

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

struct Armed {
    point: String,
    at: u64,
    hits: AtomicU64,
}

fn armed() -> Option<&'static Armed> {
    static ARMED: OnceLock<Option<Armed>> = OnceLock::new();
    ARMED
        .get_or_init(|| {
            let value = std::env::var("CHATMESH_FAULT").ok()?;
            let (point, at) = value.rsplit_once(':')?;
            Some(Armed { point: point.to_owned(), at: at.parse().ok()?, hits: AtomicU64::new(0) })
        })
        .as_ref()
}

/// Aborts the process here if the armed fault names `point` and this is its n-th hit.
pub fn point(point: &str) {
    if let Some(armed) = armed()
        && armed.point == point
        && armed.hits.fetch_add(1, Ordering::Relaxed) + 1 == armed.at
    {
        eprintln!("chatmesh: fault {point} injected, aborting");
        std::process::abort();
    }
}
