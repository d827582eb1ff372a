//! Metrics proven with the real thing: Debian's Prometheus scrapes a test natterd's admin
//! listener (with the shipped alert rules loaded) while messages flow, and the series are
//! queried back from Prometheus.

use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::helpers::{connect_users, eventually, register, sample, scrape};
use crate::process::Natterd;
use crate::ws::{connect, message, refused, send};

/// A Prometheus server, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts Prometheus scraping `target` every second, or returns `None` where it is not
/// installed (under CI it must be: `.ci/run` installs it).
fn prometheus(target: &str) -> Option<Prometheus> {
    let here = Command::new("prometheus").arg("--version").output().is_ok();
    if !natter_test_support::installed(here, "prometheus", "metrics") {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/prometheus/alerts.yml"
    );
    let config = format!(
        "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
         rule_files: ['{rules}']\n\
         scrape_configs:\n  - job_name: natter\n    static_configs: [{{targets: ['{target}']}}]\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting prometheus");
    Some(Prometheus {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    })
}

impl Prometheus {
    /// Runs an instant query until it returns a value satisfying `accept` (Prometheus needs a
    /// few scrapes to see new samples), or fails after the patience window.
    async fn wait_for(&self, query: &str, accept: impl Fn(f64) -> bool) -> f64 {
        let http = reqwest::Client::new();
        let waiting = format!("{query} to satisfy the check");
        eventually(&waiting, async || {
            let answer = http
                .get(format!("{}/api/v1/query", self.url))
                .query(&[("query", query)])
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let body = answer.json::<Value>().await.map_err(|e| e.to_string())?;
            let value = body["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|v| v.parse::<f64>().ok());
            value.filter(|v| accept(*v)).ok_or(body.to_string())
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_series_while_messages_flow() {
    // A natterd process of its own: the test process's recorder counts every in-process
    // server's traffic, this one's only this test's, so the counts below are exact.
    let dir = tempfile::tempdir().unwrap();
    let natterd = Natterd::start(dir.path(), None, &[]).await;
    let target = natterd.admin_url.trim_start_matches("http://").to_owned();
    let Some(prometheus) = prometheus(&target) else {
        return;
    };
    let alice = register(&natterd.client, "alice").await;
    let bob = register(&natterd.client, "bob").await;
    connect_users(&alice, &bob).await;
    let direct = alice.open_direct(bob.user_id()).await.unwrap().summary.id;
    let (mut a, _) = connect(&alice).await;
    let (mut b, _) = connect(&bob).await;
    const SENT: f64 = 20.0;
    for i in 0..SENT as usize {
        send(&mut a, direct, &format!("m{i}"), "x").await;
        message(&mut b).await;
    }
    for (query, expected) in [
        ("up{job=\"natter\"}", 1.0),
        ("sum(natter_messages_accepted_total{kind=\"direct\"})", SENT),
        // Each to Bob's one device, live (Alice's device gets only its acks).
        ("sum(natter_deliveries_total{path=\"live\"})", SENT),
        ("sum(natter_send_ack_seconds_count)", SENT),
        ("sum(natter_store_op_seconds_count{op=\"append\"})", SENT),
        // Every append goes through the group commit.
        ("sum(natter_store_batch_size_sum)", SENT),
        // Alice's and Bob's logins.
        (
            "sum(natter_http_requests_total{route=\"/v1/sessions\"})",
            2.0,
        ),
        ("sum(natter_frames_in_total{type=\"send\"})", SENT),
        ("natter_connections", 2.0),
    ] {
        prometheus.wait_for(query, |v| v == expected).await;
    }
    // The latency histogram answers the SLO's quantile query (over all samples: a rate over
    // a window is empty once the test's traffic stops).
    let p99 = prometheus
        .wait_for(
            "histogram_quantile(0.99, sum by (le) (natter_accept_to_push_seconds_bucket))",
            f64::is_finite,
        )
        .await;
    assert!(p99 < 10.0, "p99 {p99} s");
    // Every query of the shipped Grafana dashboard is valid PromQL over these series.
    let dashboard: Value =
        serde_json::from_str(include_str!("../../../../deploy/grafana/natter.json")).unwrap();
    let http = reqwest::Client::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let query = target["expr"].as_str().unwrap();
            let answer: Value = http
                .get(format!("{}/api/v1/query", prometheus.url))
                .query(&[("query", query)])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert_eq!(
                answer["status"], "success",
                "{} / {query}: {answer}",
                panel["title"]
            );
        }
    }
    // The shipped rules are loaded and evaluate without errors.
    let rules: Value = reqwest::get(format!("{}/api/v1/rules", prometheus.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let groups = rules["data"]["groups"].as_array().expect("rule groups");
    assert!(groups.len() >= 5, "{rules}");
    for rule in groups.iter().flat_map(|g| g["rules"].as_array().unwrap()) {
        assert_ne!(
            rule["health"], "err",
            "rule {} fails: {}",
            rule["name"], rule["lastError"]
        );
    }
}

/// Whether a `/metrics` text has the series `name{labels}` (labels in the order it prints
/// them), whatever its value.
fn has_series(text: &str, series: &str) -> bool {
    text.lines().any(|line| {
        line.rsplit_once(' ')
            .is_some_and(|(name, _)| name == series)
    })
}

#[tokio::test]
async fn labelled_counters_exist_at_zero_before_anything_happens() {
    let dir = tempfile::tempdir().unwrap();
    let natterd = Natterd::start(dir.path(), None, &[]).await;
    let text = scrape(&natterd.admin_url).await;
    // Those the alert rules read first, then the others with labels known in advance.
    for series in [
        "natter_abuse_total{kind=\"device_typing\"}",
        "natter_abuse_total{kind=\"address_logins\"}",
        "natter_rate_limited_total{kind=\"device_messages\"}",
        "natter_rate_limited_total{kind=\"node_sends\"}",
        "natter_messages_rejected_total{reason=\"store_unavailable\"}",
        "natter_disconnects_total{reason=\"too slow\"}",
        "natter_http_requests_total{route=\"/v1/sessions\",status=\"5xx\"}",
        "natter_http_requests_total{route=\"/v1/conversations/{id}/messages\",status=\"4xx\"}",
        "natter_store_errors_total{op=\"write_probe\"}",
        "natter_rate_limit_fallbacks_total",
        "natter_frames_in_total{type=\"send\"}",
        "natter_frames_out_total{type=\"message\"}",
        "natter_deliveries_total{path=\"sync\"}",
        "natter_messages_accepted_total{kind=\"room\"}",
        "natter_connects_total",
    ] {
        assert!(has_series(&text, series), "{series} is missing:\n{text}");
        assert_eq!(sample(&text, series), 0.0, "{series}");
    }
    let version = format!(
        "natter_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &version), 1.0, "{text}");
}

#[tokio::test]
async fn every_refused_send_is_counted_once() {
    let dir = tempfile::tempdir().unwrap();
    // One message every 4 s: after the first, sends are refused, most of them held behind the
    // first refusal (its wait is short enough to hold the connection's later sends).
    let natterd = Natterd::start(dir.path(), None, &["--limit", "device_messages=0.25:1"]).await;
    let alice = register(&natterd.client, "alice").await;
    let bob = register(&natterd.client, "bob").await;
    connect_users(&alice, &bob).await;
    let direct = alice.open_direct(bob.user_id()).await.unwrap().summary.id;
    let (mut a, _) = connect(&alice).await;
    send(&mut a, direct, "first", "x").await;
    const REFUSED: usize = 50;
    for i in 0..REFUSED {
        refused(&mut a, direct, &format!("m{i}"), "x", "rate_limited").await;
    }
    let text = scrape(&natterd.admin_url).await;
    assert_eq!(
        sample(&text, "natter_rate_limited_total"),
        REFUSED as f64,
        "{text}"
    );
    // Under the limit that refused the first: the others were held behind it.
    assert_eq!(
        sample(&text, "natter_rate_limited_total{kind=\"device_messages\"}"),
        REFUSED as f64
    );
    assert_eq!(
        sample(
            &text,
            "natter_messages_rejected_total{reason=\"rate_limited\"}"
        ),
        REFUSED as f64
    );
}

#[tokio::test]
async fn process_and_build_metrics_are_exported() {
    let dir = tempfile::tempdir().unwrap();
    let natterd = Natterd::start(dir.path(), None, &[]).await;
    register(&natterd.client, "alice").await;
    let text = scrape(&natterd.admin_url).await;
    let rss = sample(&text, "process_resident_memory_bytes");
    assert!(rss > 1e6, "resident memory {rss}");
    let fds = sample(&text, "process_open_fds");
    // stdin, stdout, stderr, two listeners, the database and its WAL at least.
    assert!(fds >= 7.0, "open fds {fds}");
    let cpu = sample(&text, "process_cpu_seconds_total");
    assert!(cpu > 0.0, "cpu seconds {cpu}");
    let started = sample(&text, "process_start_time_seconds");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - 120.0..=now + 1.0).contains(&started),
        "start time {started}, now {now}"
    );
    assert!(
        text.contains("# TYPE process_cpu_seconds_total counter"),
        "{text}"
    );
}
