//! chatmesh-bench: the load generator and benchmark suite. Starts the real `chatmesh` binary
//! itself, measures each benchmark beside a bare baseline in the same run, and writes
//! `<UTC date-time>.md` and `.json`. Exits non-zero only when a benchmark could not run, never
//! because a figure is low.

mod coldstart;
mod fanout;
mod feed;
mod history;
mod idle;
mod ingest;
mod latency;
mod report;
mod server;
mod social;

use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, bail};
use clap::Parser;

/// Runs chatmesh's benchmarks, each beside a baseline measured in the same run.
#[derive(Debug, Parser)]
#[command(name = "chatmesh-bench", version, about, long_about = None)]
struct Cli {
    /// The short version CI runs (under a minute) so the harness cannot rot (figures mean nothing).
    #[arg(long)]
    smoke: bool,
    /// Only these benchmarks, comma-separated (built so far: a, b, c, d, e, g, social, feed).
    #[arg(long, value_delimiter = ',')]
    only: Option<Vec<String>>,
    /// The chatmesh binary [default: `chatmesh` beside this executable].
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Where results go [default: bench/results; with --smoke a temporary dir].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Internal: serve the bare WebSocket baseline of (d) and print its address.
    #[arg(long, hide = true)]
    serve_idle_baseline: bool,
    /// Internal: serve the bare broadcast baseline of (b) and print its address.
    #[arg(long, hide = true)]
    serve_broadcast_baseline: bool,
}

/// The benchmarks built so far, in the order they run (cold start first, on a quiet machine).
/// (e) also reports (f) and (g) with data: they share its loaded chats. `social` reports
/// followers, user search and follows over one loaded graph; `feed` fan-out, home timelines and
/// likes over another.
const BUILT: [&str; 8] = ["g", "c", "a", "b", "d", "e", "social", "feed"];

/// `YYYY-MM-DDTHH-MM-SSZ` for now (UTC), usable as a file name.
fn utc_stamp() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // why: Howard Hinnant's days-to-civil, so no date crate is needed for one timestamp.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}-{:02}-{:02}Z", rest / 3600, rest % 3600 / 60, rest % 60)
}

/// Raises this process's open-files limit to its hard limit (thousands of sockets per run).
fn raise_open_files() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => eprintln!("chatmesh-bench: open-files limit {limit}"),
        Err(e) => eprintln!("chatmesh-bench: could not raise the open-files limit: {e}"),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if cli.serve_idle_baseline {
        return idle::serve_baseline().await;
    }
    if cli.serve_broadcast_baseline {
        return fanout::serve_baseline().await;
    }
    raise_open_files();
    let started = Instant::now();
    let binary = match cli.binary {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("chatmesh"),
    };
    if !binary.is_file() {
        bail!(
            "no chatmesh binary at {} (build it: cargo build --release -p chatmesh-cli -p chatmesh-bench, \
             or pass --binary)",
            binary.display()
        );
    }
    let selected: Vec<String> = cli.only.unwrap_or_else(|| BUILT.iter().map(|s| (*s).to_owned()).collect());
    for id in &selected {
        if !BUILT.contains(&id.as_str()) {
            bail!("benchmark {id:?} is not built yet (built: {})", BUILT.join(", "));
        }
    }
    // why: --smoke must not litter the repository; its figures only prove the harness runs.
    let out = match (cli.out, cli.smoke) {
        (Some(out), _) => out,
        (None, true) => tempfile::Builder::new().prefix("chatmesh-bench-").tempdir()?.keep(),
        (None, false) => PathBuf::from("bench/results"),
    };
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let mode = if cli.smoke { "smoke" } else { "full" };
    eprintln!("chatmesh-bench: {mode} run of {} on {cores} cores, binary {}", selected.join(","), binary.display());

    let (ingest_for, cold_repeats) = if cli.smoke { (Duration::from_secs(1), 3) } else { (Duration::from_secs(10), 5) };
    let scenarios: Vec<latency::Scenario> = if cli.smoke {
        vec![latency::Scenario { subscribers: 20, per_second: 50, duration: Duration::from_secs(1) }]
    } else {
        vec![
            latency::Scenario { subscribers: 100, per_second: 200, duration: Duration::from_secs(10) },
            // why: 20/s keeps deliveries at 20,000/s, as at 100 subscribers, so the load generator
            // (on the same two cores) is not what is measured.
            latency::Scenario { subscribers: 1000, per_second: 20, duration: Duration::from_secs(10) },
        ]
    };

    let fanouts: Vec<fanout::Scenario> = if cli.smoke {
        vec![fanout::Scenario { subscribers: 20, per_second: 20, duration: Duration::from_secs(1) }]
    } else {
        // why: 50,000 deliveries/s in both, so the two sizes differ in fan-out width only
        vec![
            fanout::Scenario { subscribers: 1000, per_second: 50, duration: Duration::from_secs(10) },
            fanout::Scenario { subscribers: 10_000, per_second: 5, duration: Duration::from_secs(10) },
        ]
    };
    // (d) idle sessions and (e) history sizes
    let (idle_sessions, history) = if cli.smoke {
        (100, history::Sizes { chats: 5_000, queries: 50, per_second: 200, searches: 24, searches_per_second: 50 })
    } else {
        let sizes = history::Sizes {
            chats: 1_000_000,
            queries: 5_000,
            per_second: 500,
            searches: 2_000,
            searches_per_second: 100,
        };
        (10_000, sizes)
    };
    let social = if cli.smoke {
        social::Sizes {
            users: 2_000,
            reads: 50,
            per_second: 200,
            searches: 24,
            searches_per_second: 100,
            toggles: 32,
            toggles_per_second: 100,
            rounds: 2,
        }
    } else {
        social::Sizes {
            users: 1_000_000,
            reads: 5_000,
            per_second: 500,
            searches: 2_000,
            searches_per_second: 200,
            toggles: 2_000,
            toggles_per_second: 200,
            rounds: 10,
        }
    };

    let feed = if cli.smoke {
        feed::Sizes {
            followers: 2_000,
            posts: 3,
            followees: 10,
            statuses_each: 5,
            reads: 50,
            per_second: 200,
            rounds: 2,
            likes_per_second: 200,
            like_secs: 1,
        }
    } else {
        feed::Sizes {
            followers: 100_000,
            posts: 20,
            followees: 50,
            statuses_each: 20,
            reads: 5_000,
            per_second: 500,
            rounds: 10,
            likes_per_second: 5_000,
            like_secs: 3,
        }
    };

    // cluster mode of (a) and (b) needs Redis; without one it is skipped (said, not failed)
    let cluster = server::redis_reachable().await;
    if !cluster && selected.iter().any(|s| s == "a" || s == "b") {
        eprintln!("chatmesh-bench: cluster mode of (a) and (b) skipped: no Redis at {}", server::redis_url());
    }

    let mut outcomes = Vec::new();
    let mut failures = Vec::new();
    for id in BUILT.iter().filter(|id| selected.iter().any(|s| s == *id)) {
        let runs: Vec<anyhow::Result<report::Outcome>> = match *id {
            "g" => vec![coldstart::run(&binary, cold_repeats).await],
            "c" => vec![ingest::run(&binary, ingest_for, cores).await],
            "b" => {
                let mut runs = Vec::new();
                for scenario in &fanouts {
                    runs.push(fanout::run(&binary, *scenario).await);
                }
                if cluster {
                    runs.push(fanout::run_cluster(&binary, fanouts[0]).await);
                }
                runs
            }
            "d" => vec![idle::run(&binary, idle_sessions).await],
            "e" => match history::run(&binary, history).await {
                Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            },
            "social" => match social::run(&binary, social).await {
                Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            },
            "feed" => match feed::run(&binary, feed).await {
                Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            },
            _ => {
                let mut runs = Vec::new();
                for scenario in &scenarios {
                    runs.push(latency::run(&binary, *scenario).await);
                }
                if cluster {
                    runs.push(latency::run_cluster(&binary, scenarios[0]).await);
                }
                runs
            }
        };
        for result in runs {
            match result {
                Ok(outcome) => {
                    eprintln!("  ({}) {} done at {:.1} s", outcome.id, outcome.title, started.elapsed().as_secs_f64());
                    outcomes.push(outcome);
                }
                Err(e) => {
                    eprintln!("  ({id}) could not run: {e:#}");
                    failures.push(((*id).to_owned(), format!("{e:#}")));
                }
            }
        }
    }

    let machine = report::machine(cores);
    let path = report::write(&out, &utc_stamp(), mode, &machine, &outcomes, &failures).context("writing results")?;
    println!("{}", std::fs::read_to_string(&path)?);
    eprintln!("chatmesh-bench: wrote {} (and .json) in {:.1} s", path.display(), started.elapsed().as_secs_f64());
    if !failures.is_empty() {
        bail!("{} benchmark(s) could not run", failures.len());
    }
    Ok(())
}
