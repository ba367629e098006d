//! (g) Cold start: `chatmesh up` on an empty data dir until gRPC health answers SERVING, and
//! its idle RSS; beside the same binary's `--version` (the bare cost of starting the process).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use serde_json::json;

use crate::{
    report::{Outcome, num, ratio, show_ratio},
    server::Server,
};

/// The goals: time to healthy and idle RSS, empty.
const GOAL_MS: f64 = 150.0;
const GOAL_RSS_MIB: f64 = 30.0;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Runs (g): `repeats` cold starts (RSS read after the last, after a second idle), and as many
/// `--version` runs.
pub async fn run(binary: &Path, repeats: usize) -> anyhow::Result<Outcome> {
    let mut starts = Vec::new();
    let mut rss = 0u64;
    for i in 0..repeats {
        let spawned = Instant::now();
        let mut server = Server::spawn(binary)?;
        let healthy = server.wait_healthy(Duration::from_secs(30)).await?;
        starts.push(healthy.duration_since(spawned).as_secs_f64() * 1000.0);
        if i + 1 == repeats {
            tokio::time::sleep(Duration::from_secs(1)).await;
            rss = server.rss_bytes().context("reading VmRSS")?;
        }
    }
    let mut versions = Vec::new();
    for _ in 0..repeats {
        let spawned = Instant::now();
        let status = tokio::process::Command::new(binary).arg("--version").output().await?.status;
        if !status.success() {
            bail!("{} --version exited with {status}", binary.display());
        }
        versions.push(spawned.elapsed().as_secs_f64() * 1000.0);
    }
    let (start_ms, version_ms) = (median(starts.clone()), median(versions.clone()));
    let rss_mib = rss as f64 / (1024.0 * 1024.0);
    let r = ratio(start_ms, version_ms);
    Ok(Outcome {
        id: "g",
        title: "cold start and idle memory, empty".into(),
        notes: vec![
            format!(
                "median of {repeats} starts of `chatmesh up` on a fresh data dir, from spawn to gRPC health SERVING"
            ),
            "idle RSS: VmRSS of the last start after one idle second".into(),
            "baseline: wall time of `chatmesh --version` (the same binary's bare process start)".into(),
        ],
        rows: vec![
            ["start to healthy ms (median)".into(), num(start_ms), num(version_ms), show_ratio(&r)],
            ["idle RSS MiB".into(), num(rss_mib), "—".into(), "—".into()],
        ],
        goal: Some(format!("≤ {GOAL_MS:.0} ms to healthy, ≤ {GOAL_RSS_MIB:.0} MB idle RSS")),
        goal_met: Some(start_ms <= GOAL_MS && rss_mib <= GOAL_RSS_MIB),
        data: json!({
            "repeats": repeats,
            "start_ms": starts,
            "start_ms_median": start_ms,
            "idle_rss_bytes": rss,
            "baseline_version_ms": versions,
            "baseline_version_ms_median": version_ms,
            "ratio_start": r,
        }),
    })
}
