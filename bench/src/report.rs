//! Results: each benchmark's figures beside its baseline, written as Markdown and JSON.

use std::{fmt::Write as _, path::Path, time::Duration};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// A latency histogram in microseconds, 1 µs to 60 s at 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// Records a duration, clamped into the histogram's range.
pub fn record(histogram: &mut Histogram<u64>, elapsed: Duration) {
    let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX).clamp(1, 60_000_000);
    histogram.saturating_record(micros);
}

/// p50, p99, p999 and max of a histogram, in milliseconds.
pub fn percentiles(histogram: &Histogram<u64>) -> Value {
    let ms = |micros: u64| micros as f64 / 1000.0;
    json!({
        "count": histogram.len(),
        "p50_ms": ms(histogram.value_at_quantile(0.50)),
        "p99_ms": ms(histogram.value_at_quantile(0.99)),
        "p999_ms": ms(histogram.value_at_quantile(0.999)),
        "max_ms": ms(histogram.max()),
    })
}

/// `measured / baseline`, rounded; `null` when the baseline is zero.
pub fn ratio(measured: f64, baseline: f64) -> Value {
    if baseline > 0.0 { json!((measured / baseline * 100.0).round() / 100.0) } else { Value::Null }
}

/// One benchmark's outcome: its figures, its baseline, their ratios, the goal and whether it
/// was met (information only: a missed goal never fails the run).
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: &'static str,
    pub title: String,
    /// Free-form lines shown under the title (setup, what was measured).
    pub notes: Vec<String>,
    /// `[label, measured, baseline, ratio]` rows for the Markdown table.
    pub rows: Vec<[String; 4]>,
    pub goal: Option<String>,
    /// Whether chatmesh's figures reach the goal (see [`Outcome::goal_met`]).
    pub figures_meet_goal: Option<bool>,
    /// chatmesh's calls (or deliveries) that failed or answered wrongly. Latency figures leave
    /// them out, so any one of them means the goal is not met.
    pub failed: u64,
    /// Every figure, for the JSON file.
    pub data: Value,
}

impl Outcome {
    /// Met: the figures reach the goal and nothing failed (a run whose calls all fail has no
    /// latency left to judge, and must not read "met"). `None` without a goal.
    pub fn goal_met(&self) -> Option<bool> {
        self.figures_meet_goal.map(|met| met && self.failed == 0)
    }
}

/// Formats a float for the table.
pub fn num(value: f64) -> String {
    if value >= 100.0 { format!("{value:.0}") } else { format!("{value:.2}") }
}

/// Formats a JSON ratio for the table.
pub fn show_ratio(ratio: &Value) -> String {
    ratio.as_f64().map_or_else(|| "—".into(), |r| format!("{r:.2}×"))
}

/// The machine the run measured on.
pub fn machine(cores: usize) -> Value {
    let kernel = std::fs::read_to_string("/proc/version").unwrap_or_default().trim().to_owned();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    json!({ "cores": cores, "kernel": kernel, "cpu": cpu })
}

/// Writes `<stamp>.md` and `<stamp>.json` into `out`; returns the Markdown path.
pub fn write(
    out: &Path,
    stamp: &str,
    mode: &str,
    machine: &Value,
    outcomes: &[Outcome],
    failures: &[(String, String)],
) -> anyhow::Result<std::path::PathBuf> {
    std::fs::create_dir_all(out)?;
    let json = json!({
        "date": stamp,
        "mode": mode,
        "machine": machine,
        "benchmarks": outcomes.iter().map(|o| json!({
            "id": o.id,
            "title": o.title,
            "goal": o.goal,
            "goal_met": o.goal_met(),
            "failed": o.failed,
            "notes": o.notes,
            "figures": o.data,
        })).collect::<Vec<_>>(),
        "could_not_run": failures.iter().map(|(id, why)| json!({"id": id, "error": why})).collect::<Vec<_>>(),
    });
    std::fs::write(out.join(format!("{stamp}.json")), serde_json::to_string_pretty(&json)? + "\n")?;

    let mut md = String::new();
    writeln!(md, "# chatmesh benchmarks — {stamp} ({mode})\n")?;
    writeln!(md, "- cores: {}", machine["cores"])?;
    writeln!(md, "- cpu: {}", machine["cpu"].as_str().unwrap_or(""))?;
    writeln!(md, "- kernel: {}", machine["kernel"].as_str().unwrap_or(""))?;
    writeln!(md, "\nEvery figure stands beside a baseline measured in the same run; the ratio is figure ÷ baseline.")?;
    writeln!(md, "Goals are information: a missed goal never fails the run. See bench/README.md.\n")?;
    for o in outcomes {
        writeln!(md, "## ({}) {}\n", o.id, o.title)?;
        for note in &o.notes {
            writeln!(md, "- {note}")?;
        }
        if let Some(goal) = &o.goal {
            let met = match o.goal_met() {
                Some(true) => "met",
                Some(false) => "NOT met",
                None => "not judged",
            };
            let failed = if o.failed > 0 { format!(" ({} failed)", o.failed) } else { String::new() };
            writeln!(md, "- goal: {goal} — **{met}**{failed}")?;
        }
        writeln!(md, "\n| figure | chatmesh | baseline | ratio |\n|---|---|---|---|")?;
        for [label, measured, baseline, ratio] in &o.rows {
            writeln!(md, "| {label} | {measured} | {baseline} | {ratio} |")?;
        }
        writeln!(md)?;
    }
    if !failures.is_empty() {
        writeln!(md, "## Could not run\n")?;
        for (id, why) in failures {
            writeln!(md, "- ({id}): {why}")?;
        }
    }
    let path = out.join(format!("{stamp}.md"));
    std::fs::write(&path, md)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(failed: u64) -> Outcome {
        Outcome {
            id: "e",
            title: "history".into(),
            notes: Vec::new(),
            rows: Vec::new(),
            goal: Some("p99 ≤ 2 ms".into()),
            figures_meet_goal: Some(true),
            failed,
            data: Value::Null,
        }
    }

    #[test]
    fn a_goal_is_never_met_when_a_call_failed() {
        assert_eq!(outcome(0).goal_met(), Some(true));
        assert_eq!(outcome(1).goal_met(), Some(false));
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "stamp", "smoke", &machine(2), &[outcome(3)], &[]).unwrap();
        let md = std::fs::read_to_string(path).unwrap();
        assert!(md.contains("- goal: p99 ≤ 2 ms — **NOT met** (3 failed)"), "{md}");
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.path().join("stamp.json")).unwrap()).unwrap();
        assert_eq!((&json["benchmarks"][0]["goal_met"], &json["benchmarks"][0]["failed"]), (&json!(false), &json!(3)));
    }
}
