//! The monitoring files of `deploy/` kept true: the alert rules
//! (`deploy/prometheus/alerts.yml`) and the Grafana dashboard (`deploy/grafana/minoots.json`)
//! read only metrics and labels that a running `minoots serve` exports.
//!
//! The live test starts `minoots serve --demo`, delivers one webhook to a receiver on
//! loopback and runs the demo key into its per-minute limit, so the counters that only
//! get series once something happened have them; then it scrapes `/metrics` and checks
//! every PromQL expression of both files: each metric name is an exported family (a
//! histogram's `_bucket`, `_sum` and `_count` stand for it; its bare name does not, as
//! Prometheus stores no series under it), a recording rule of `alerts.yml`, or `up`;
//! each label of a matcher, a `by`/`without`/`on`/`ignoring` clause, a legend or an
//! annotation exists on the metrics the expression reads (or is a target label: `job`,
//! `instance`); and an `=` matcher's value is one some series has. The expressions are
//! read by a small PromQL scanner ([`scan`]): strings, ranges and numbers are skipped, an
//! identifier followed by `(` must be a PromQL function or aggregation, grouping keywords
//! take their label list, other keywords are skipped, and every other identifier is a
//! metric name with its optional `{...}` matchers.
//!
//! It also checks that each alert has a summary, a description and a runbook section in
//! docs/operations.md, that `alerts_test.yml` has a firing and a quiet case for each
//! alert, and that the dashboard reads its data source from a variable. A second test runs
//! `promtool check rules`, `promtool test rules` and `promtool check config`, and prints
//! "skipped: promtool not installed" where it is missing (CI installs it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::pg::Receiver;
use common::yaml::{Yaml, parse_yaml};
use common::{KillOnDrop, WAIT, free_port, scrape, start_serve};

/// Labels Prometheus adds to every series it scrapes.
const TARGET_LABELS: &[&str] = &["job", "instance"];

const DEMO_KEY: &str = "mnt_demo_key_free";

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// ---------------------------------------------------------------------------------------
// What `/metrics` exports.

/// One metric family of the exposition: its type, and each label's values over its
/// series (`le` included for a histogram's buckets).
#[derive(Debug, Default)]
struct Family {
    kind: String,
    labels: BTreeMap<String, BTreeSet<String>>,
}

/// Reads the OpenMetrics text format: families from `# TYPE`, labels from the series.
/// A counter is kept under the name of its series, `NAME_total` (what PromQL reads; its
/// `# TYPE` line names the family without `_total`). A series whose family has no
/// `# TYPE` line fails the test.
fn parse_exposition(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("# TYPE NAME KIND");
            let name = if kind == "counter" {
                format!("{name}_total")
            } else {
                name.to_string()
            };
            families.entry(name).or_default().kind = kind.to_string();
        }
    }
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let end = line.find(['{', ' ']).expect("NAME VALUE");
        let series = &line[..end];
        let family = if families.contains_key(series) {
            series
        } else {
            ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|s| series.strip_suffix(s))
                .find(|base| families.get(*base).is_some_and(|f| f.kind == "histogram"))
                .unwrap_or_else(|| panic!("series {series} has no # TYPE line"))
        };
        let family = families.get_mut(family).unwrap();
        if line[end..].starts_with('{') {
            let body = &line[end + 1..line.rfind('}').expect("closed labels")];
            for (label, value) in parse_label_pairs(body) {
                family.labels.entry(label).or_default().insert(value);
            }
        }
    }
    families
}

/// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes in values.
fn parse_label_pairs(body: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || *c == ' ') {
            chars.next();
        }
        let label: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=')).collect();
        if label.is_empty() {
            return out;
        }
        assert_eq!(chars.next(), Some('='));
        assert_eq!(chars.next(), Some('"'), "a quoted value for {label}");
        let mut value = String::new();
        loop {
            match chars.next().expect("a closed value") {
                '"' => break,
                '\\' => value.push(match chars.next() {
                    Some('n') => '\n',
                    Some(c) => c,
                    None => panic!("a dangling escape"),
                }),
                c => value.push(c),
            }
        }
        out.push((label, value));
    }
}

// ---------------------------------------------------------------------------------------
// A PromQL scanner: the metric names, matchers and grouping labels of an expression.

/// PromQL's functions and aggregation operators: an identifier followed by `(` must be
/// one of these (so a misspelt function fails too).
const FUNCTIONS: &[&str] = &[
    "abs",
    "absent",
    "absent_over_time",
    "avg",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "count",
    "count_over_time",
    "count_values",
    "day_of_month",
    "day_of_week",
    "delta",
    "deriv",
    "exp",
    "floor",
    "group",
    "histogram_quantile",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log2",
    "log10",
    "max",
    "max_over_time",
    "min",
    "min_over_time",
    "minute",
    "month",
    "predict_linear",
    "quantile",
    "quantile_over_time",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sort",
    "sort_desc",
    "sqrt",
    "stddev",
    "stddev_over_time",
    "stdvar",
    "stdvar_over_time",
    "sum",
    "sum_over_time",
    "time",
    "timestamp",
    "topk",
    "bottomk",
    "vector",
    "year",
];
/// Keywords followed by a list of label names.
const GROUPING: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
/// Other keywords: binary operators and modifiers.
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
];

#[derive(Debug, PartialEq)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

#[derive(Debug, Default, PartialEq)]
struct Scanned {
    /// (metric name, its matchers), in order of appearance.
    selectors: Vec<(String, Vec<Matcher>)>,
    /// Labels of `by`, `without`, `on`, `ignoring`, `group_left` and `group_right`.
    grouping: BTreeSet<String>,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// Scans one PromQL expression (Grafana's `$variables` allowed in ranges and as values).
fn scan(expr: &str) -> Result<Scanned, String> {
    let b = expr.as_bytes();
    let mut out = Scanned::default();
    let mut i = 0;
    let skip_space = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    let ident_end = |mut i: usize| {
        while i < b.len() && is_ident(b[i]) {
            i += 1;
        }
        i
    };
    let string_end = |i: usize| -> Result<usize, String> {
        let quote = b[i];
        let mut j = i + 1;
        while j < b.len() {
            match b[j] {
                b'\\' => j += 2,
                c if c == quote => return Ok(j + 1),
                _ => j += 1,
            }
        }
        Err(format!("an unterminated string in `{expr}`"))
    };
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = string_end(i)?;
        } else if c == b'[' {
            i += expr[i..]
                .find(']')
                .ok_or(format!("an unclosed [ in `{expr}`"))?
                + 1;
        } else if c == b'$' {
            i = ident_end(i + 1);
        } else if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit))
        {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
        } else if c == b'{' {
            return Err(format!("a selector without a metric name in `{expr}`"));
        } else if is_ident_start(c) {
            let end = ident_end(i);
            let word = &expr[i..end];
            let next = skip_space(end);
            i = end;
            if GROUPING.contains(&word) {
                if b.get(next) == Some(&b'(') {
                    let close = expr[next..]
                        .find(')')
                        .ok_or(format!("an unclosed label list in `{expr}`"))?;
                    for label in expr[next + 1..next + close].split(',') {
                        let label = label.trim();
                        if !label.is_empty() {
                            out.grouping.insert(label.to_string());
                        }
                    }
                    i = next + close + 1;
                }
            } else if KEYWORDS.contains(&word) || FUNCTIONS.contains(&word) {
                // An aggregation may take its `by (...)` before its arguments.
            } else if b.get(next) == Some(&b'(') {
                return Err(format!("`{word}(` is not a PromQL function in `{expr}`"));
            } else {
                let mut matchers = Vec::new();
                if b.get(next) == Some(&b'{') {
                    let mut j = next + 1;
                    loop {
                        j = skip_space(j);
                        match b.get(j) {
                            Some(b'}') => break,
                            Some(b',') => {
                                j += 1;
                                continue;
                            }
                            None => return Err(format!("an unclosed {{ in `{expr}`")),
                            _ => {}
                        }
                        let label_end = ident_end(j);
                        let label = expr[j..label_end].to_string();
                        let op_start = skip_space(label_end);
                        let op_len = ["=~", "!~", "!=", "="]
                            .iter()
                            .find(|op| expr[op_start..].starts_with(*op))
                            .ok_or(format!(
                                "a matcher of {label} without an operator in `{expr}`"
                            ))?
                            .len();
                        let value_start = skip_space(op_start + op_len);
                        if label.is_empty() || !matches!(b.get(value_start), Some(b'"' | b'\'')) {
                            return Err(format!("a malformed matcher in `{expr}`"));
                        }
                        let value_end = string_end(value_start)?;
                        push_matcher(
                            &mut matchers,
                            label,
                            &expr[op_start..op_start + op_len],
                            &expr[value_start + 1..value_end - 1],
                        );
                        j = value_end;
                    }
                    i = j + 1;
                }
                out.selectors.push((word.to_string(), matchers));
            }
        } else {
            i += 1;
        }
    }
    Ok(out)
}

fn push_matcher(matchers: &mut Vec<Matcher>, label: String, op: &str, value: &str) {
    matchers.push(Matcher {
        label,
        op: op.to_string(),
        value: value.replace("\\\"", "\"").replace("\\\\", "\\"),
    });
}

#[test]
fn the_promql_scanner_finds_names_matchers_and_grouping_labels() {
    let s = scan(
        r#"histogram_quantile(0.99, sum by (le, action) (rate(a_bucket{x="1", y=~"b.*"}[$__rate_interval]))) > 2 * b:rec and on(job) c offset 1d"#,
    )
    .unwrap();
    let names: Vec<&str> = s.selectors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["a_bucket", "b:rec", "c"]);
    assert_eq!(
        s.selectors[0].1,
        [
            Matcher {
                label: "x".into(),
                op: "=".into(),
                value: "1".into()
            },
            Matcher {
                label: "y".into(),
                op: "=~".into(),
                value: "b.*".into()
            }
        ]
    );
    assert_eq!(
        s.grouping,
        BTreeSet::from(["le".into(), "action".into(), "job".into()])
    );
    assert_eq!(scan("sum(rate(x[5m])) by (a)").unwrap().grouping.len(), 1);
    assert!(
        scan("rates(x[5m])")
            .unwrap_err()
            .contains("not a PromQL function")
    );
    assert!(scan("x{a=}").is_err());
    assert!(scan(r#"{__name__="x"}"#).is_err());
    assert!(
        scan(r#"label_replace(x, "dst", "$1", "src", "(.*)")"#)
            .unwrap()
            .selectors
            .len()
            == 1
    );
}

// ---------------------------------------------------------------------------------------
// Checking expressions against the export.

/// What the expressions may read: the exported families, the recording rules (their
/// labels: what their expression keeps) and Prometheus's `up`.
struct Known {
    families: BTreeMap<String, Family>,
    recorded: BTreeMap<String, BTreeSet<String>>,
}

/// What a checked expression yields: the labels its series may carry.
struct Checked {
    labels: BTreeSet<String>,
}

impl Known {
    /// The labels of the series `name` reads, or why it reads none.
    fn labels_of(&self, name: &str) -> Result<BTreeSet<String>, String> {
        let targets = || TARGET_LABELS.iter().map(|l| l.to_string()).collect();
        if name == "up" {
            return Ok(targets());
        }
        if let Some(labels) = self.recorded.get(name) {
            return Ok(labels.clone());
        }
        let histogram_base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).map(|base| (base, *s)));
        if let Some(f) = self.families.get(name) {
            if f.kind == "histogram" {
                return Err(format!(
                    "{name} is a histogram: it has no series under its bare name (read {name}_bucket, _sum or _count)"
                ));
            }
            return Ok(f.labels.keys().cloned().collect());
        }
        if let Some((base, suffix)) = histogram_base
            && let Some(f) = self.families.get(base)
            && f.kind == "histogram"
        {
            let mut labels: BTreeSet<String> = f.labels.keys().cloned().collect();
            if suffix != "_bucket" {
                labels.remove("le");
            }
            return Ok(labels);
        }
        Err(format!("{name} is not exported by `minoots serve`"))
    }

    /// Checks `expr` (from `source`); returns the labels its result may carry.
    fn check(&mut self, source: &str, expr: &str) -> Result<Checked, String> {
        let scanned = scan(expr).map_err(|e| format!("{source}: {e}"))?;
        let mut checked = Checked {
            labels: TARGET_LABELS.iter().map(|l| l.to_string()).collect(),
        };
        for (name, matchers) in &scanned.selectors {
            let labels = self.labels_of(name).map_err(|e| format!("{source}: {e}"))?;
            for m in matchers {
                let on_target = TARGET_LABELS.contains(&m.label.as_str()) || m.label == "__name__";
                if !on_target && !labels.contains(&m.label) {
                    return Err(format!(
                        "{source}: {name} has no label {} (it has {labels:?})",
                        m.label
                    ));
                }
                let values = self
                    .families
                    .get(name.as_str())
                    .and_then(|f| f.labels.get(&m.label));
                if m.op == "=" && values.is_some_and(|v| !v.contains(&m.value)) {
                    return Err(format!(
                        "{source}: no series of {name} has {}=\"{}\" (values: {:?})",
                        m.label,
                        m.value,
                        values.unwrap()
                    ));
                }
            }
            checked.labels.extend(labels);
        }
        for label in &scanned.grouping {
            if !checked.labels.contains(label) {
                return Err(format!(
                    "{source}: groups by {label}, which none of its metrics has ({:?})",
                    checked.labels
                ));
            }
        }
        checked.labels.extend(scanned.grouping);
        Ok(checked)
    }
}

/// The label names a template uses: `$labels.NAME` (alerts) or `{{NAME}}` (legends).
fn template_labels(template: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for piece in template.split("$labels.").skip(1) {
        out.insert(
            piece
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect(),
        );
    }
    for piece in template.split("{{").skip(1) {
        let inner = piece.split("}}").next().unwrap_or("").trim();
        if !inner.is_empty() && inner.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            out.insert(inner.to_string());
        }
    }
    out
}

fn check_template(source: &str, template: &str, checked: &Checked) -> Result<(), String> {
    for label in template_labels(template) {
        if !checked.labels.contains(&label) {
            return Err(format!(
                "{source}: shows label {label}, which its expression does not yield ({:?})",
                checked.labels
            ));
        }
    }
    Ok(())
}

/// The rules of `alerts.yml`: (alert or record name, is an alert, the rule).
fn rules() -> Vec<(String, bool, Yaml)> {
    let doc = parse_yaml(&read("deploy/prometheus/alerts.yml")).expect("alerts.yml parses");
    let mut out = Vec::new();
    for group in doc.get("groups").and_then(Yaml::seq).expect("groups") {
        for rule in group.get("rules").and_then(Yaml::seq).expect("rules") {
            let (name, alert) = match (rule.get("alert"), rule.get("record")) {
                (Some(a), None) => (a.str().unwrap().to_string(), true),
                (None, Some(r)) => (r.str().unwrap().to_string(), false),
                other => panic!("a rule is an alert or a record: {other:?}"),
            };
            out.push((name, alert, rule.clone()));
        }
    }
    out
}

/// Checks both files against an exposition; returns every problem found.
fn problems(families: BTreeMap<String, Family>) -> Vec<String> {
    let mut known = Known {
        families,
        recorded: BTreeMap::new(),
    };
    let mut problems = Vec::new();
    // Alerts and recording rules, in file order (a record is defined before its use).
    for (name, alert, rule) in rules() {
        let expr = rule.get("expr").and_then(Yaml::str).expect("expr");
        let source = format!("alerts.yml {name}");
        let checked = match known.check(&source, expr) {
            Ok(c) => c,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if !alert {
            known.recorded.insert(name, checked.labels);
            continue;
        }
        let annotations = rule.get("annotations").expect("annotations");
        for (key, template) in annotations.map().unwrap() {
            if let Err(e) = check_template(
                &format!("{source} {key}"),
                template.str().unwrap(),
                &checked,
            ) {
                problems.push(e);
            }
        }
    }
    // The dashboard's panels.
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/minoots.json")).expect("minoots.json parses");
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?");
            let source = format!("minoots.json panel \"{title}\"");
            let expr = target["expr"].as_str().expect("expr");
            match known.check(&source, expr) {
                Ok(checked) => {
                    let legend = target["legendFormat"].as_str().unwrap_or("");
                    if let Err(e) = check_template(&source, legend, &checked) {
                        problems.push(e);
                    }
                }
                Err(e) => problems.push(e),
            }
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------
// The tests.

/// Scrapes `{base}/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_and_label_the_alerts_and_the_dashboard_read_is_exported_by_serve() {
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start_serve(
        &dir.path().join("data"),
        free_port(),
        free_port(),
        &["--demo"],
        &[],
    );
    let _serve = KillOnDrop(child);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();

    // One webhook delivered: attempts, their durations and the lateness get values.
    let (receiver, hook) = Receiver::start().await;
    let timer = common::create_timer(
        &http,
        &base,
        DEMO_KEY,
        serde_json::json!({
            "tenantId": "test", "name": "monitoring", "duration": "1s",
            "actionBundle": {"actions": [{"type": "webhook", "url": hook}]}
        }),
    )
    .await;
    let id = timer["id"].as_str().unwrap().to_string();
    receiver.until(&id).await;
    let reported = "minoots_delivery_attempts_total{outcome=\"succeeded\"} 1";
    let deadline = Instant::now() + WAIT;
    while !scrape(&http, &base).await.contains(reported) {
        assert!(
            Instant::now() < deadline,
            "the attempt is reported: {reported}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The demo key's tier allows 60 requests a minute: the next ones are refused, and
    // the refusals counted by quota and tier.
    let mut refused = false;
    for _ in 0..200 {
        let (status, _) = common::call(
            &http,
            reqwest::Method::GET,
            format!("{base}/timers"),
            DEMO_KEY,
            None,
        )
        .await;
        if status == 429 {
            refused = true;
            break;
        }
    }
    assert!(refused, "the demo key reaches its per-minute limit");

    let text = scrape(&http, &base).await;
    let answer = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(
        answer.headers()["content-type"],
        "application/openmetrics-text; version=1.0.0; charset=utf-8"
    );
    common::openmetrics_parses(&text);
    let families = parse_exposition(&text);
    assert!(
        families.contains_key("minoots_firing_lateness_seconds"),
        "the exposition parses: {text}"
    );
    let problems = problems(families);
    assert!(
        problems.is_empty(),
        "the alerts and the dashboard read what `minoots serve` does not export:\n{}",
        problems.join("\n")
    );
}

#[test]
fn each_alert_has_a_summary_a_runbook_and_a_firing_and_a_quiet_unit_test() {
    let operations = read("docs/operations.md");
    let alerts: Vec<(String, Yaml)> = rules()
        .into_iter()
        .filter(|(_, alert, _)| *alert)
        .map(|(name, _, rule)| (name, rule))
        .collect();
    assert!(alerts.len() >= 10, "{} alerts", alerts.len());
    for (name, rule) in &alerts {
        let a = rule.get("annotations").expect("annotations");
        for key in ["summary", "description"] {
            assert!(
                a.get(key)
                    .and_then(Yaml::str)
                    .is_some_and(|s| !s.is_empty()),
                "{name} has a {key}"
            );
        }
        let runbook = format!("docs/operations.md#{}", name.to_lowercase());
        assert_eq!(
            a.get("runbook").and_then(Yaml::str),
            Some(runbook.as_str()),
            "{name}'s runbook annotation"
        );
        assert!(
            operations.contains(&format!("\n### {name}\n")),
            "docs/operations.md has a section ### {name}"
        );
        let severity = rule
            .get("labels")
            .and_then(|l| l.get("severity"))
            .and_then(Yaml::str);
        assert!(
            matches!(severity, Some("page" | "ticket")),
            "{name} has a severity: {severity:?}"
        );
    }
    // The unit tests: a case that fires and one that stays quiet, for each alert.
    let tests = parse_yaml(&read("deploy/prometheus/alerts_test.yml")).expect("alerts_test.yml");
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in tests.get("tests").and_then(Yaml::seq).expect("tests") {
        for case in t
            .get("alert_rule_test")
            .and_then(Yaml::seq)
            .into_iter()
            .flatten()
        {
            let name = case
                .get("alertname")
                .and_then(Yaml::str)
                .unwrap()
                .to_string();
            match case.get("exp_alerts").and_then(Yaml::seq) {
                Some([]) => quiet.insert(name),
                Some(_) => firing.insert(name),
                None => panic!("{name}: exp_alerts is a list"),
            };
        }
    }
    for (name, _) in &alerts {
        assert!(firing.contains(name), "alerts_test.yml fires {name}");
        assert!(
            quiet.contains(name),
            "alerts_test.yml has a quiet case for {name}"
        );
    }
    // The dashboard's data source is a variable, for every panel and query.
    let dashboard: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/minoots.json")).unwrap();
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["name"] == "DS_PROMETHEUS"
            && v["query"] == "prometheus"),
        "a data source variable DS_PROMETHEUS"
    );
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(
            panel["datasource"]["uid"], "${DS_PROMETHEUS}",
            "{}",
            panel["title"]
        );
        for t in panel["targets"].as_array().unwrap() {
            assert_eq!(
                t["datasource"]["uid"], "${DS_PROMETHEUS}",
                "{}",
                panel["title"]
            );
        }
    }
}

#[test]
fn promtool_checks_and_tests_the_rules_and_the_configuration() {
    if Command::new("promtool").arg("--version").output().is_err() {
        println!("skipped: promtool not installed");
        return;
    }
    let dir = repo_file("deploy/prometheus");
    for args in [
        &["check", "rules", "alerts.yml"][..],
        &["test", "rules", "alerts_test.yml"],
        &["check", "config", "prometheus.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("promtool runs");
        assert!(
            out.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
