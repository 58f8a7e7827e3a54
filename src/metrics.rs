//! Prometheus metrics: counters and histograms kept in process, and gauges
//! read from the database at scrape time (the database is the queue, so
//! queue depths come from there and agree across processes).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{LazyLock, Mutex};

/// Histogram bucket upper bounds, in seconds.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
    86_400.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<(&'static str, Labels), u64>,
    histograms: BTreeMap<(&'static str, Labels), Histogram>,
    help: BTreeMap<&'static str, (&'static str, &'static str)>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Mutex::default);

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

/// Adds one to a counter.
pub fn inc(name: &'static str, help: &'static str, pairs: &[(&'static str, &str)]) {
    let mut r = REGISTRY.lock().expect("metrics lock");
    r.help.insert(name, ("counter", help));
    *r.counters.entry((name, labels(pairs))).or_default() += 1;
}

/// Records one observation, in seconds.
pub fn observe(
    name: &'static str,
    help: &'static str,
    pairs: &[(&'static str, &str)],
    seconds: f64,
) {
    let mut r = REGISTRY.lock().expect("metrics lock");
    r.help.insert(name, ("histogram", help));
    let h = r.histograms.entry((name, labels(pairs))).or_default();
    if h.counts.is_empty() {
        h.counts = vec![0; BUCKETS.len()];
    }
    for (i, bound) in BUCKETS.iter().enumerate() {
        if seconds <= *bound {
            h.counts[i] += 1;
        }
    }
    h.sum += seconds;
    h.count += 1;
}

/// The sum of a counter over every label set that has `label`: what this
/// process has counted, read without a scrape.
pub fn counter_sum(name: &str, label: (&str, &str)) -> u64 {
    let r = REGISTRY.lock().expect("metrics lock");
    r.counters
        .iter()
        .filter(|((n, l), _)| *n == name && l.iter().any(|(k, v)| (*k, v.as_str()) == label))
        .map(|(_, v)| v)
        .sum()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn render_labels(l: &[(&'static str, String)], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

/// A gauge value read at scrape time.
pub struct Gauge {
    pub name: &'static str,
    pub help: &'static str,
    pub labels: Vec<(&'static str, String)>,
    pub value: f64,
}

/// The text exposition format (version 0.0.4).
pub fn render(gauges: &[Gauge]) -> String {
    let r = REGISTRY.lock().expect("metrics lock");
    let mut out = String::new();
    let mut last = "";
    for ((name, l), v) in &r.counters {
        if *name != last {
            let (kind, help) = r.help[name];
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            last = name;
        }
        let _ = writeln!(out, "{name}{} {v}", render_labels(l, None));
    }
    for ((name, l), h) in &r.histograms {
        if *name != last {
            let (kind, help) = r.help[name];
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            last = name;
        }
        for (i, bound) in BUCKETS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{} {}",
                render_labels(l, Some(("le", bound.to_string()))),
                h.counts[i]
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{} {}",
            render_labels(l, Some(("le", "+Inf".into()))),
            h.count
        );
        let _ = writeln!(out, "{name}_sum{} {}", render_labels(l, None), h.sum);
        let _ = writeln!(out, "{name}_count{} {}", render_labels(l, None), h.count);
    }
    let mut seen = std::collections::HashSet::new();
    for g in gauges {
        if seen.insert(g.name) {
            let _ = writeln!(out, "# HELP {} {}\n# TYPE {} gauge", g.name, g.help, g.name);
        }
        let _ = writeln!(
            out,
            "{}{} {}",
            g.name,
            render_labels(&g.labels, None),
            g.value
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        inc("test_things_total", "Things.", &[("kind", "a\"b")]);
        inc("test_things_total", "Things.", &[("kind", "a\"b")]);
        inc("test_things_total", "Things.", &[("kind", "c")]);
        assert_eq!(counter_sum("test_things_total", ("kind", "a\"b")), 2);
        assert_eq!(counter_sum("test_things_total", ("kind", "d")), 0);
        observe("test_wait_seconds", "Waits.", &[], 0.2);
        let text = render(&[Gauge {
            name: "test_depth",
            help: "Depth.",
            labels: vec![("state", "queued".into())],
            value: 3.0,
        }]);
        assert!(
            text.contains("# TYPE test_things_total counter\ntest_things_total{kind=\"a\\\"b\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("test_wait_seconds_bucket{le=\"0.1\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("test_wait_seconds_bucket{le=\"0.25\"} 1"),
            "{text}"
        );
        assert!(text.contains("test_wait_seconds_count 1"));
        assert!(text.contains("# TYPE test_depth gauge\ntest_depth{state=\"queued\"} 3"));
    }
}
