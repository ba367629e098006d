//! (g) Cold start: `chatmesh up` on an empty data dir until gRPC health answers SERVING, and
//! its idle RSS; beside the same binary's `--version` (the bare cost of starting the process).
//! Also the binary's size, as built and stripped.

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

/// The goals: time to healthy and idle RSS, empty, and the stripped binary's size.
const GOAL_MS: f64 = 150.0;
const GOAL_RSS_MIB: f64 = 30.0;
const GOAL_STRIPPED_MB: f64 = 40.0;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The binary's size in bytes as built, and after `strip` of a temporary copy (symbols and
/// debug info removed: what an image would ship); `None` (with the reason printed) when
/// `strip` cannot run, as on a machine without binutils.
async fn binary_sizes(binary: &Path) -> anyhow::Result<(u64, Option<u64>)> {
    let built = std::fs::metadata(binary).with_context(|| format!("reading {}", binary.display()))?.len();
    let copy = tempfile::NamedTempFile::new().context("temporary file for the stripped copy")?;
    let stripped = match tokio::process::Command::new("strip").arg("-o").arg(copy.path()).arg(binary).output().await {
        Ok(out) if out.status.success() => Some(std::fs::metadata(copy.path())?.len()),
        Ok(out) => {
            eprintln!("  (g) stripped size unknown: strip said {}", String::from_utf8_lossy(&out.stderr).trim());
            None
        }
        Err(e) => {
            eprintln!("  (g) stripped size unknown: could not run strip: {e}");
            None
        }
    };
    Ok((built, stripped))
}

/// Runs (g): `repeats` cold starts (RSS read after the last, after a second idle), and as many
/// `--version` runs; and the binary's size.
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
    // why: after the starts, so reading the file for `strip` does not warm the page cache for them
    let (built_bytes, stripped_bytes) = binary_sizes(binary).await?;
    let (start_ms, version_ms) = (median(starts.clone()), median(versions.clone()));
    let rss_mib = rss as f64 / (1024.0 * 1024.0);
    let megabytes = |bytes: u64| bytes as f64 / 1e6;
    let stripped_mb = stripped_bytes.map(megabytes);
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
            format!(
                "binary size in MB (10⁶ bytes) of {}: the file as built, and a copy after `strip` \
                 (no symbols, no debug info)",
                binary.display()
            ),
        ],
        rows: vec![
            ["start to healthy ms (median)".into(), num(start_ms), num(version_ms), show_ratio(&r)],
            ["idle RSS MiB".into(), num(rss_mib), "—".into(), "—".into()],
            ["binary MB, as built".into(), num(megabytes(built_bytes)), "—".into(), "—".into()],
            ["binary MB, stripped".into(), stripped_mb.map_or_else(|| "—".into(), num), "—".into(), "—".into()],
        ],
        goal: Some(format!(
            "≤ {GOAL_MS:.0} ms to healthy, ≤ {GOAL_RSS_MIB:.0} MB idle RSS, ≤ {GOAL_STRIPPED_MB:.0} MB stripped binary"
        )),
        figures_meet_goal: Some(
            start_ms <= GOAL_MS && rss_mib <= GOAL_RSS_MIB && stripped_mb.is_some_and(|mb| mb <= GOAL_STRIPPED_MB),
        ),
        failed: 0,
        data: json!({
            "repeats": repeats,
            "start_ms": starts,
            "start_ms_median": start_ms,
            "idle_rss_bytes": rss,
            "baseline_version_ms": versions,
            "baseline_version_ms_median": version_ms,
            "ratio_start": r,
            "binary": binary.display().to_string(),
            "binary_bytes": built_bytes,
            "binary_stripped_bytes": stripped_bytes,
        }),
    })
}
