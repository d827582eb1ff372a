//! Metrics: the Prometheus recorder, rendered on the admin listener's `/metrics`, and the
//! description of every series natterd exports. Labels stay low-cardinality: never a user,
//! device or conversation id.
//!
//! Only the recorder and the descriptions are here; the series are recorded where things
//! happen, in this crate and in natter-core, natter-store and natter-cluster (store and bus
//! metrics). The process's own series (CPU, memory, file descriptors) are `process_metrics`.

use natter_proto::codes;
use std::sync::OnceLock;
use std::time::Duration;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets, in seconds: 1 ms to 30 s (the seed's P99 target is 10 s).
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Size buckets for syncs, in messages.
const SIZE_BUCKETS: &[f64] = &[0.0, 1.0, 10.0, 100.0, 1_000.0, 10_000.0, 100_000.0];
/// Size buckets for what is done together: appends per commit, receipts per frame.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1_024.0];

/// The process's metrics recorder, installed on first use. Every server in the process (tests
/// run several) records into it.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_messages".into()), SIZE_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("natter_store_batch_size".into()),
                        BATCH_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("natter_receipts_coalesced".into()),
                        BATCH_BUCKETS,
                    )
                })
                .expect("bucket lists are non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first, which natterd never does.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            register_known_series();
            handle
        })
        .clone()
}

/// The codes a send can be refused with (`natter_messages_rejected_total{reason}`).
const SEND_REFUSALS: &[&str] = &[
    codes::INVALID_REQUEST,
    codes::TOO_LARGE,
    codes::RATE_LIMITED,
    codes::NOT_FOUND,
    codes::NOT_MEMBER,
    codes::NOT_CONNECTED,
    codes::FORBIDDEN,
    codes::SUSPENDED,
    codes::STORE_UNAVAILABLE,
    codes::INTERNAL,
];

/// Why a connection ends (`natter_disconnects_total{reason}`, from the gateway's session).
const DISCONNECT_REASONS: &[&str] = &[
    "client closed",
    "connection error",
    "closed",
    "closed during sync",
    "device removed",
    "idle",
    "too slow",
    "server shutdown",
    "frame too large",
    "text frame is not UTF-8",
];

/// The client frame types (`natter_frames_in_total{type}`).
const FRAMES_IN: &[&str] = &[
    "auth",
    "send",
    "delivered",
    "read",
    "to_device",
    "to_device_ack",
    "sync",
    "typing",
    "ping",
];

/// The server frame types (`natter_frames_out_total{type}`).
const FRAMES_OUT: &[&str] = &[
    "ready",
    "ack",
    "message",
    "synced",
    "receipt",
    "receipts",
    "to_device",
    "typing",
    "device_list_changed",
    "pong",
    "error",
];

/// Sets every counter whose labels are known in advance at zero, so that each series exists
/// from the start: Prometheus's `rate()` and `increase()` need a sample before the first
/// increment, or they miss the first burst (and alerts such as `NatterRepeatedAbuse` never fire
/// on it). Also the build's `natter_build_info{version}` gauge, at 1.
fn register_known_series() {
    use metrics::counter;
    for kind in natter_core::ratelimit::Kind::ALL.map(natter_core::ratelimit::Kind::name) {
        counter!("natter_rate_limited_total", "kind" => kind).increment(0);
        counter!("natter_abuse_total", "kind" => kind).increment(0);
    }
    for kind in [natter_core::messages::NODE_SENDS, codes::STORE_UNAVAILABLE] {
        counter!("natter_rate_limited_total", "kind" => kind).increment(0);
    }
    for reason in SEND_REFUSALS {
        counter!("natter_messages_rejected_total", "reason" => *reason).increment(0);
    }
    for reason in DISCONNECT_REASONS {
        counter!("natter_disconnects_total", "reason" => *reason).increment(0);
    }
    for kind in FRAMES_IN {
        counter!("natter_frames_in_total", "type" => *kind).increment(0);
    }
    for kind in FRAMES_OUT {
        counter!("natter_frames_out_total", "type" => *kind).increment(0);
    }
    for kind in ["direct", "room"] {
        counter!("natter_messages_accepted_total", "kind" => kind).increment(0);
    }
    for path in ["live", "sync"] {
        counter!("natter_deliveries_total", "path" => path).increment(0);
    }
    counter!("natter_connects_total").increment(0);
    counter!("natter_rate_limit_fallbacks_total").increment(0);
    counter!("natter_catch_ups_total").increment(0);
    metrics::gauge!("natter_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

/// Sets `natter_http_requests_total` at zero for each route and status class (see
/// `register_known_series`).
pub fn register_routes<'a>(routes: impl IntoIterator<Item = &'a str>) {
    for route in routes {
        for status in HTTP_STATUS_CLASSES {
            metrics::counter!("natter_http_requests_total", "route" => route.to_owned(), "status" => *status)
                .increment(0);
        }
    }
}

/// The status classes of `natter_http_requests_total{status}`.
const HTTP_STATUS_CLASSES: &[&str] = &["ok", "4xx", "5xx"];

/// The class of an HTTP status, one of `HTTP_STATUS_CLASSES`.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=399 => "ok",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Seconds as a histogram sample.
pub fn seconds(elapsed: Duration) -> f64 {
    elapsed.as_secs_f64()
}

/// Registers the help text of every metric natterd records.
fn describe() {
    describe_gauge!(
        "natter_connections",
        "WebSocket connections open on this node"
    );
    describe_counter!("natter_connects_total", "WebSocket connections accepted");
    describe_counter!(
        "natter_disconnects_total",
        "WebSocket connections ended, by reason"
    );
    describe_counter!(
        "natter_frames_in_total",
        "WebSocket frames received, by type"
    );
    describe_counter!("natter_frames_out_total", "WebSocket frames sent, by type");
    describe_counter!(
        "natter_messages_accepted_total",
        "Messages stored and acked, by conversation kind"
    );
    describe_counter!(
        "natter_messages_rejected_total",
        "Messages refused, by reason"
    );
    describe_counter!(
        "natter_deliveries_total",
        "Messages pushed to devices, by path (live or sync)"
    );
    describe_histogram!(
        "natter_send_ack_seconds",
        Unit::Seconds,
        "From a send frame's arrival to its ack"
    );
    describe_histogram!(
        "natter_accept_to_push_seconds",
        Unit::Seconds,
        "From a message's acceptance to its push to a live recipient, by locality (local or remote)"
    );
    describe_histogram!(
        "natter_sync_messages",
        Unit::Count,
        "Messages sent by one sync"
    );
    describe_histogram!("natter_sync_seconds", Unit::Seconds, "Duration of one sync");
    describe_histogram!(
        "natter_store_batch_size",
        Unit::Count,
        "Writes (message appends and cursor moves) committed by one group commit"
    );
    describe_histogram!(
        "natter_receipts_coalesced",
        Unit::Count,
        "Cursor moves sent together in one receipts frame"
    );
    describe_histogram!(
        "natter_store_op_seconds",
        Unit::Seconds,
        "Store operation latency, by operation"
    );
    describe_counter!(
        "natter_store_errors_total",
        "Store operations that failed, by operation"
    );
    describe_counter!(
        "natter_bus_published_total",
        "Events published on the fan-out bus, by bus"
    );
    describe_counter!(
        "natter_bus_received_total",
        "Events delivered to local connections, by bus"
    );
    describe_histogram!(
        "natter_bus_lag_seconds",
        Unit::Seconds,
        "From an event's publication on one node to its receipt on another (cluster)"
    );
    describe_gauge!(
        "natter_sends_per_second",
        "Sends (messages, to-device frames) received per second over the last 5 s: with natter_connections, a node's load"
    );
    describe_counter!(
        "natter_bus_dropped_total",
        "Events not published to other nodes because Redis was down or slow (recipients catch up from the store when it returns)"
    );
    describe_counter!(
        "natter_catch_ups_total",
        "Connections brought up to date from the store after a gap in the cluster bus"
    );
    describe_gauge!(
        "natter_redis_up",
        "1 when this node's last heartbeat reached Redis, 0 when it did not (cluster)"
    );
    describe_counter!(
        "natter_rate_limit_fallbacks_total",
        "Rate-limit checks answered by this node's own buckets because Redis did not answer"
    );
    describe_gauge!(
        "natter_inbox_depth",
        "To-device payloads waiting for acknowledgement, in the whole store (every node reports the same number)"
    );
    describe_gauge!(
        "natter_outbound_queued",
        "Events queued for this node's connections"
    );
    describe_counter!(
        "natter_rate_limited_total",
        "Requests refused by a rate limit, by kind (a limit, node_sends when the node is busy; sends held behind an earlier refusal count under its kind)"
    );
    describe_counter!(
        "natter_abuse_total",
        "Keys refused repeatedly (10, 100, 1000... times), by kind"
    );
    describe_counter!(
        "natter_http_requests_total",
        "HTTP requests, by route template and status class"
    );
    describe_histogram!(
        "natter_http_request_seconds",
        Unit::Seconds,
        "HTTP request latency, by route template"
    );
    describe_gauge!(
        "natter_build_info",
        "1, labelled with the version of natterd that runs"
    );
    describe_gauge!(
        "natter_up",
        "1 while this node serves; its load is natter_connections and natter_sends_per_second"
    );
}
