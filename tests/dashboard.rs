//! `docs/grafana-dashboard.json` against a real `/metrics`: every metric a panel queries must
//! be one a broker and a worker export, with the suffix its type gives it, and the panels
//! must cover the figures an operator looks at first.
#![cfg(feature = "metrics")]

#[path = "common/http.rs"]
mod http;

use std::collections::BTreeSet;
use std::thread;
use std::time::Duration;

use http::get;
use majordomo_worker::broker::{Broker, BrokerConfig};
use majordomo_worker::client::{Client, ClientConfig};
use majordomo_worker::metrics::Metrics;
use majordomo_worker::{Message, Worker, WorkerConfig};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(5);

/// What an operator must find on the dashboard.
const KEY_METRICS: [&str; 13] = [
    "mdp_worker_replies_total",
    "mdp_worker_request_duration_seconds_bucket",
    "mdp_worker_in_flight",
    "mdp_worker_registered",
    "mdp_worker_reconnects_total",
    "mdp_worker_panics_total",
    "mdp_worker_timeouts_total",
    "mdp_broker_service_queue_length",
    "mdp_broker_service_waiting_workers",
    "mdp_broker_queue_time_seconds_bucket",
    "mdp_broker_requests_dropped_total",
    "mdp_broker_malformed_dropped_total",
    "mdp_broker_auth_denied_total",
];

/// PromQL words followed by a list of labels in parentheses, not by arguments.
const GROUPINGS: [&str; 6] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// PromQL words that are not metrics even when not followed by `(` (aggregations may be
/// followed by `by (…)` first).
const KEYWORDS: [&str; 24] = [
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "and",
    "or",
    "unless",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
    "atan2",
];

fn dashboard() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/grafana-dashboard.json");
    let text = std::fs::read_to_string(path).expect("read the dashboard");
    serde_json::from_str(&text).expect("the dashboard is JSON")
}

/// Every panel query (`expr`, at any depth: rows nest panels) and every `label_values`
/// variable query, as PromQL.
fn queries(dashboard: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_exprs(&dashboard["panels"], &mut found);
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        let query = match &variable["query"] {
            Value::Object(query) => query.get("query").and_then(Value::as_str),
            other => other.as_str(),
        };
        if let Some(inner) = query.and_then(|q| q.strip_prefix("label_values(")) {
            // label_values(EXPR, label): the expression is everything before the last comma.
            let expr = inner.rsplit_once(',').map_or(inner, |(expr, _)| expr);
            found.push(expr.to_string());
        }
    }
    found
}

fn collect_exprs(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr", Value::String(expr)) => found.push(expr.clone()),
                    _ => collect_exprs(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_exprs(item, found)),
        _ => {}
    }
}

/// The metric names of a PromQL expression: identifiers outside label matchers `{…}`,
/// ranges `[…]`, strings and `by`/`without` groupings, that are not function calls,
/// keywords or numbers.
fn metric_names(expr: &str) -> Vec<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let word_end = |from: usize| {
            (from..chars.len())
                .find(|&j| !(chars[j].is_ascii_alphanumeric() || "_:.".contains(chars[j])))
                .unwrap_or(chars.len())
        };
        if let Some(close) = closing(c) {
            i = skip_past(&chars, i, close);
        } else if c.is_ascii_digit() {
            i = word_end(i); // a number or a duration (`0.99`, `5m`)
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            i = word_end(i);
            let word = chars[start..i].iter().collect::<String>().to_lowercase();
            let next = (i..chars.len()).find(|&j| !chars[j].is_whitespace());
            let called = next.is_some_and(|j| chars[j] == '(');
            match next {
                Some(open) if called && GROUPINGS.contains(&word.as_str()) => {
                    i = skip_past(&chars, open, ')');
                }
                _ if called || KEYWORDS.contains(&word.as_str()) => {}
                _ => names.push(chars[start..i].iter().collect()),
            }
        } else {
            i += 1;
        }
    }
    names
}

/// The character that ends a part to skip whole: label matchers, ranges, strings.
fn closing(open: char) -> Option<char> {
    match open {
        '{' => Some('}'),
        '[' => Some(']'),
        '"' => Some('"'),
        '\'' => Some('\''),
        '`' => Some('`'),
        _ => None,
    }
}

/// The index after the `close` that ends the part opened at `open`, quotes respected.
fn skip_past(chars: &[char], open: usize, close: char) -> usize {
    let mut i = open + 1;
    while i < chars.len() && chars[i] != close {
        if let Some(quote) = closing(chars[i]).filter(|_| "\"'`".contains(chars[i])) {
            i = skip_past(chars, i, quote);
        } else {
            i += if chars[i] == '\\' { 2 } else { 1 };
        }
    }
    i + 1
}

/// The families of an OpenMetrics text (`# TYPE name type`) and the names of its samples.
fn exported(text: &str) -> (Vec<(String, String)>, BTreeSet<String>) {
    let families = text
        .lines()
        .filter_map(|line| {
            let mut words = line.strip_prefix("# TYPE ")?.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect();
    let samples = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(str::to_string)
        .collect();
    (families, samples)
}

/// Whether `name`, as a query writes it, is a sample of an exported family of the type
/// its suffix needs (`_total` a counter, `_bucket`/`_sum`/`_count` a histogram, none a gauge).
fn is_exported(name: &str, families: &[(String, String)], samples: &BTreeSet<String>) -> bool {
    let typed = |suffix: &str, kind: &str| {
        name.strip_suffix(suffix).is_some_and(|family| {
            families
                .iter()
                .any(|(f, k)| f.as_str() == family && k.as_str() == kind)
        })
    };
    let of_its_type = typed("_total", "counter")
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| typed(s, "histogram"))
        || typed("", "gauge");
    of_its_type && samples.contains(name)
}

/// `/metrics` of a broker and an echo worker sharing one `Metrics`, after a few requests.
fn scrape_after_traffic() -> String {
    let metrics = Metrics::new();
    let http = metrics.serve("127.0.0.1:0").expect("serve");
    let broker = Broker::bind(BrokerConfig::new("tcp://127.0.0.1:*").metrics(&metrics))
        .expect("bind")
        .spawn()
        .expect("spawn");
    let config = WorkerConfig::new(broker.endpoint(), "echo")
        .heartbeat(Duration::from_millis(50))
        .metrics(&metrics);
    let mut worker = Worker::new(config, |r: Vec<Message>| r).expect("worker");
    let stop = worker.shutdown_handle();
    let running = thread::spawn(move || worker.run());
    let mut client = Client::connect(
        ClientConfig::new(broker.endpoint())
            .timeout(WAIT)
            .retries(0),
    )
    .expect("client");
    for i in 0..5 {
        let body = format!("r{i}");
        assert_eq!(
            client.request("echo", &[&body]).expect("reply"),
            vec![body.into_bytes()]
        );
    }
    let (status, text) = get(http.addr(), "/metrics");
    assert_eq!(status, 200);
    stop.shutdown();
    running.join().expect("worker thread").expect("run");
    broker.stop().expect("broker");
    text
}

#[test]
fn every_metric_the_dashboard_queries_is_exported_with_its_types_suffix() {
    let text = scrape_after_traffic();
    let (families, samples) = exported(&text);
    let queries = queries(&dashboard());
    assert!(queries.len() >= 12, "only {} queries", queries.len());
    let mut used = BTreeSet::new();
    for query in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "no metric in {query:?}");
        used.extend(names);
    }
    let missing: Vec<&String> = used
        .iter()
        .filter(|name| !is_exported(name, &families, &samples))
        .collect();
    assert!(missing.is_empty(), "not exported: {missing:?} in:\n{text}");
    let uncovered: Vec<&str> = KEY_METRICS
        .into_iter()
        .filter(|name| !used.contains(*name))
        .collect();
    assert!(uncovered.is_empty(), "no panel shows {uncovered:?}");
}

#[test]
fn panels_query_the_datasource_variable_and_have_unique_ids() {
    let dashboard = dashboard();
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(variables.iter().any(|v| v["type"] == "datasource"
        && v["query"] == "prometheus"
        && v["name"] == "datasource"));
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for panel in panels {
        assert!(ids.insert(panel["id"].as_u64().expect("id")), "{panel}");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        for target in panel["targets"].as_array().expect("targets") {
            assert_eq!(target["datasource"]["uid"], "${datasource}", "{target}");
        }
    }
}

#[test]
fn the_tokenizer_finds_metrics_but_not_functions_labels_or_ranges() {
    let expr = r#"histogram_quantile(0.99, sum by (service, le) (rate(mdp_x_bucket{service=~"a|b}"}[$__rate_interval]))) / ignoring(le) mdp_y_total offset 5m"#;
    assert_eq!(metric_names(expr), vec!["mdp_x_bucket", "mdp_y_total"]);
    assert_eq!(
        metric_names("sum(rate(a_total[5m])) by (job) > bool 0"),
        vec!["a_total"]
    );
}
