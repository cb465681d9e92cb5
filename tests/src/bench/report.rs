//! Results: named metrics per run, their median across runs, a human table and a JSON file
//! whose keys stay stable so runs can be compared.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::stats::median;

/// One measured number. Names are `snake_case` and stable across versions of the tool.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub unit: &'static str,
    pub value: f64,
    /// What the project aims for, shown beside the median (never enforced: machines are noisy).
    pub goal: Option<Goal>,
}

impl Metric {
    pub fn new(name: impl Into<String>, unit: &'static str, value: f64) -> Self {
        Self {
            name: name.into(),
            unit,
            value,
            goal: None,
        }
    }

    pub fn with_goal(mut self, goal: Goal) -> Self {
        self.goal = Some(goal);
        self
    }
}

/// A target from an issue or the README, in the metric's unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Goal {
    AtLeast(f64),
    AtMost(f64),
}

impl Goal {
    fn met_by(self, value: f64) -> bool {
        match self {
            Goal::AtLeast(goal) => value >= goal,
            Goal::AtMost(goal) => value <= goal,
        }
    }

    fn label(self) -> String {
        match self {
            Goal::AtLeast(goal) => format!(">= {}", fmt(goal)),
            Goal::AtMost(goal) => format!("<= {}", fmt(goal)),
        }
    }

    /// `>= 50000 met` or `>= 50000 MISSED`, judged on `value` (the median).
    fn verdict(self, value: f64) -> String {
        let verdict = if self.met_by(value) { "met" } else { "MISSED" };
        format!("{} {verdict}", self.label())
    }
}

/// Records moved in a measured interval. MB are 10^6 bytes of payload (keys, headers and
/// protocol overhead are not counted).
#[derive(Debug, Clone)]
pub struct Throughput {
    pub records: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub partitions: i32,
}

impl Throughput {
    pub fn metrics(&self, prefix: &str) -> Vec<Metric> {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        vec![
            Metric::new(
                format!("{prefix}_msgs_per_sec"),
                "msg/s",
                self.records as f64 / secs,
            ),
            Metric::new(
                format!("{prefix}_mb_per_sec"),
                "MB/s",
                self.bytes as f64 / 1e6 / secs,
            ),
            Metric::new(format!("{prefix}_secs"), "s", secs),
        ]
    }

    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        format!(
            "{} records ({} partitions) in {:.3}s = {:.0} msg/s, {:.2} MB/s",
            self.records,
            self.partitions,
            secs,
            self.records as f64 / secs,
            self.bytes as f64 / 1e6 / secs
        )
    }
}

/// All runs of a bench invocation.
#[derive(Debug, Default)]
pub struct Report {
    runs: Vec<Vec<Metric>>,
}

/// One metric summarised over the runs that produced it.
struct Summary<'a> {
    name: &'a str,
    unit: &'static str,
    goal: Option<Goal>,
    values: Vec<f64>,
}

impl Summary<'_> {
    fn median(&self) -> f64 {
        median(&self.values).unwrap_or(f64::NAN)
    }

    fn min(&self) -> f64 {
        self.values.iter().copied().fold(f64::INFINITY, f64::min)
    }

    fn max(&self) -> f64 {
        self.values
            .iter()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max)
    }
}

impl Report {
    pub fn push_run(&mut self, metrics: Vec<Metric>) {
        self.runs.push(metrics);
    }

    /// Metrics in the order they were first measured.
    fn summaries(&self) -> Vec<Summary<'_>> {
        let mut out: Vec<Summary<'_>> = Vec::new();
        for metric in self.runs.iter().flatten() {
            match out.iter_mut().find(|s| s.name == metric.name) {
                Some(summary) => summary.values.push(metric.value),
                None => out.push(Summary {
                    name: &metric.name,
                    unit: metric.unit,
                    goal: metric.goal,
                    values: vec![metric.value],
                }),
            }
        }
        out
    }

    /// A fixed-width table; with several runs it adds min and max beside the median, and a
    /// target column (judged on the median) when some metric has a goal.
    pub fn table(&self) -> String {
        let many = self.runs.len() > 1;
        let summaries = self.summaries();
        let goals = summaries.iter().any(|s| s.goal.is_some());
        let width = summaries.iter().map(|s| s.name.len()).fold(28, usize::max);
        let mut out = String::new();
        let head = if many { "median" } else { "value" };
        let _ = write!(out, "{:<width$} {:>14} {:<8}", "metric", head, "unit");
        if many {
            let _ = write!(out, " {:>14} {:>14}", "min", "max");
        }
        if goals {
            let _ = write!(out, "  target");
        }
        out.push('\n');
        for s in summaries {
            let _ = write!(
                out,
                "{:<width$} {:>14} {:<8}",
                s.name,
                fmt(s.median()),
                s.unit
            );
            if many {
                let _ = write!(out, " {:>14} {:>14}", fmt(s.min()), fmt(s.max()));
            }
            if let Some(goal) = s.goal {
                let _ = write!(out, "  {}", goal.verdict(s.median()));
            }
            out.push('\n');
        }
        out
    }

    /// `{"tool", "config", "runs", "metrics": {name: {unit, median, min, max, values}}}`;
    /// metrics with a goal also have `target` (e.g. `">= 50000"`) and `target_met`.
    pub fn to_json(&self, config: Value) -> Value {
        let mut metrics = Map::new();
        for s in self.summaries() {
            let mut metric = json!({
                "unit": s.unit,
                "median": s.median(),
                "min": s.min(),
                "max": s.max(),
                "values": s.values,
            });
            if let (Some(goal), Some(fields)) = (s.goal, metric.as_object_mut()) {
                fields.insert("target".to_owned(), json!(goal.label()));
                fields.insert("target_met".to_owned(), json!(goal.met_by(s.median())));
            }
            metrics.insert(s.name.to_owned(), metric);
        }
        json!({
            "tool": "runnel-bench",
            "config": config,
            "runs": self.runs.len(),
            "metrics": metrics,
        })
    }
}

fn fmt(value: f64) -> String {
    if value.abs() >= 1000.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(values: &[(&str, f64)]) -> Vec<Metric> {
        values
            .iter()
            .map(|(n, v)| Metric::new(*n, "x", *v))
            .collect()
    }

    #[test]
    fn given_three_runs_when_to_json_should_report_median_min_max() {
        let mut report = Report::default();
        report.push_run(run(&[("a", 3.0), ("b", 1.0)]));
        report.push_run(run(&[("a", 1.0), ("b", 2.0)]));
        report.push_run(run(&[("a", 2.0)]));
        let json = report.to_json(json!({}));
        assert_eq!(json["runs"], 3);
        assert_eq!(json["metrics"]["a"]["median"], 2.0);
        assert_eq!(json["metrics"]["a"]["min"], 1.0);
        assert_eq!(json["metrics"]["a"]["max"], 3.0);
        assert_eq!(json["metrics"]["b"]["median"], 1.5);
    }

    #[test]
    fn given_a_goal_when_reporting_should_judge_the_median() {
        let mut report = Report::default();
        for value in [10.0, 30.0, 40.0] {
            report.push_run(vec![
                Metric::new("rate", "msg/s", value).with_goal(Goal::AtLeast(25.0)),
                Metric::new("rss", "KiB", value).with_goal(Goal::AtMost(25.0)),
            ]);
        }
        let table = report.table();
        assert!(table.contains(">= 25.000 met"), "{table}");
        assert!(table.contains("<= 25.000 MISSED"), "{table}");
        let json = report.to_json(json!({}));
        assert_eq!(json["metrics"]["rate"]["target"], ">= 25.000");
        assert_eq!(json["metrics"]["rate"]["target_met"], true);
        assert_eq!(json["metrics"]["rss"]["target_met"], false);
    }

    #[test]
    fn given_runs_when_table_should_list_metrics_in_measured_order() {
        let mut report = Report::default();
        report.push_run(run(&[("zeta", 1.0), ("alpha", 2.0)]));
        let table = report.table();
        let zeta = table.find("zeta");
        let alpha = table.find("alpha");
        assert!(zeta.is_some() && alpha.is_some() && zeta < alpha, "{table}");
    }
}
