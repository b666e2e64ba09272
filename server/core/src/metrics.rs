//! Counters for `/metrics` (Prometheus text format). Plain atomics: they are bumped on hot paths by
//! many tasks at once and read rarely, so a lock would cost more than it buys.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the fsync latency histogram, in seconds.
const FSYNC_BUCKETS: [f64; 10] = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 2.0];

/// Why a message or connection was refused; each gets its own counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    Malformed,
    TooLarge,
    TextFrame,
    UnknownType,
    Awareness,
    PingTimeout,
    SlowClient,
    DocEditorLimit,
    DocViewerLimit,
    AddressLimit,
    TotalLimit,
    BadName,
    SyncRequests,
    PendingLimit,
    FirstSyncTimeout,
    DocumentFull,
    UpdateRate,
    OpenCreations,
    MessageTimeout,
    MessageBudget,
}

impl Reject {
    const ALL: [Reject; 20] = [
        Reject::Malformed,
        Reject::TooLarge,
        Reject::TextFrame,
        Reject::UnknownType,
        Reject::Awareness,
        Reject::PingTimeout,
        Reject::SlowClient,
        Reject::DocEditorLimit,
        Reject::DocViewerLimit,
        Reject::AddressLimit,
        Reject::TotalLimit,
        Reject::BadName,
        Reject::SyncRequests,
        Reject::PendingLimit,
        Reject::FirstSyncTimeout,
        Reject::DocumentFull,
        Reject::UpdateRate,
        Reject::OpenCreations,
        Reject::MessageTimeout,
        Reject::MessageBudget,
    ];

    fn label(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::TooLarge => "too_large",
            Reject::TextFrame => "text_frame",
            Reject::UnknownType => "unknown_type",
            Reject::Awareness => "awareness",
            Reject::PingTimeout => "ping_timeout",
            Reject::SlowClient => "slow_client",
            Reject::DocEditorLimit => "doc_editor_limit",
            Reject::DocViewerLimit => "doc_viewer_limit",
            Reject::AddressLimit => "address_doc_limit",
            Reject::TotalLimit => "total_connection_limit",
            Reject::BadName => "bad_document_name",
            Reject::SyncRequests => "sync_requests",
            Reject::PendingLimit => "http_connection_limit",
            Reject::FirstSyncTimeout => "first_sync_timeout",
            Reject::DocumentFull => "document_full",
            Reject::UpdateRate => "update_rate",
            Reject::OpenCreations => "open_document_creations",
            Reject::MessageTimeout => "message_timeout",
            Reject::MessageBudget => "message_budget",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    pub docs_loaded: AtomicU64,
    pub connections_open_edit: AtomicU64,
    pub connections_open_view: AtomicU64,
    pub connections_total: AtomicU64,
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub frames_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub updates_durable: AtomicU64,
    /// Cluster mode: updates other nodes made durable, applied here from the shared log.
    pub updates_remote: AtomicU64,
    pub storage_failures: AtomicU64,
    pub compactions: AtomicU64,
    rejected: [AtomicU64; Reject::ALL.len()],
    fsync_buckets: [AtomicU64; 10],
    fsync_count: AtomicU64,
    fsync_micros: AtomicU64,
    /// More lines for `/metrics` from a part that keeps its own state (the cluster's peers, lag
    /// and leases), set once at start.
    pub extra: std::sync::OnceLock<Box<dyn Fn() -> String + Send + Sync>>,
}

impl Metrics {
    pub fn reject(&self, why: Reject) {
        if let Some(i) = Reject::ALL.iter().position(|r| *r == why) {
            self.rejected[i].fetch_add(1, Relaxed);
        }
    }

    pub fn rejected(&self, why: Reject) -> u64 {
        Reject::ALL.iter().position(|r| *r == why).map_or(0, |i| self.rejected[i].load(Relaxed))
    }

    pub fn observe_fsync(&self, took: Duration) {
        let secs = took.as_secs_f64();
        for (i, bound) in FSYNC_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.fsync_buckets[i].fetch_add(1, Relaxed);
            }
        }
        self.fsync_count.fetch_add(1, Relaxed);
        self.fsync_micros.fetch_add(took.as_micros() as u64, Relaxed);
    }

    pub fn connections_open(&self, role: crate::Role) -> &AtomicU64 {
        match role {
            crate::Role::Edit => &self.connections_open_edit,
            crate::Role::View => &self.connections_open_view,
        }
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut counter = |name: &str, help: &str, kind: &str, v: u64| {
            let _ = writeln!(s, "# HELP commonpad_{name} {help}\n# TYPE commonpad_{name} {kind}\ncommonpad_{name} {v}");
        };
        counter("documents_loaded", "Documents loaded in memory.", "gauge", self.docs_loaded.load(Relaxed));
        counter(
            "connections_total",
            "WebSocket connections accepted.",
            "counter",
            self.connections_total.load(Relaxed),
        );
        counter("messages_in_total", "Messages received from clients.", "counter", self.messages_in.load(Relaxed));
        counter("bytes_in_total", "Bytes received from clients.", "counter", self.bytes_in.load(Relaxed));
        counter("frames_out_total", "Frames queued to clients.", "counter", self.frames_out.load(Relaxed));
        counter("bytes_out_total", "Bytes queued to clients.", "counter", self.bytes_out.load(Relaxed));
        counter("updates_durable_total", "Updates made durable.", "counter", self.updates_durable.load(Relaxed));
        counter(
            "updates_remote_total",
            "Updates other nodes made durable, applied here from the shared log.",
            "counter",
            self.updates_remote.load(Relaxed),
        );
        counter(
            "storage_failures_total",
            "Failed appends, fsyncs or compactions.",
            "counter",
            self.storage_failures.load(Relaxed),
        );
        counter("compactions_total", "Snapshots written.", "counter", self.compactions.load(Relaxed));
        let _ = writeln!(s, "# HELP commonpad_connections_open Open WebSocket connections, by role.\n# TYPE commonpad_connections_open gauge");
        for role in crate::Role::ALL {
            let _ = writeln!(
                s,
                "commonpad_connections_open{{role=\"{role}\"}} {}",
                self.connections_open(role).load(Relaxed)
            );
        }
        let _ = writeln!(s, "# HELP commonpad_rejected_total Messages or connections refused, by reason.\n# TYPE commonpad_rejected_total counter");
        for (i, r) in Reject::ALL.iter().enumerate() {
            let _ =
                writeln!(s, "commonpad_rejected_total{{reason=\"{}\"}} {}", r.label(), self.rejected[i].load(Relaxed));
        }
        let _ = writeln!(s, "# HELP commonpad_fsync_seconds Latency of one group-commit append (write + fsync).\n# TYPE commonpad_fsync_seconds histogram");
        for (i, b) in FSYNC_BUCKETS.iter().enumerate() {
            let _ = writeln!(s, "commonpad_fsync_seconds_bucket{{le=\"{b}\"}} {}", self.fsync_buckets[i].load(Relaxed));
        }
        let count = self.fsync_count.load(Relaxed);
        let _ = writeln!(s, "commonpad_fsync_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(s, "commonpad_fsync_seconds_sum {}", self.fsync_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(s, "commonpad_fsync_seconds_count {count}");
        if let Some(extra) = self.extra.get() {
            s.push_str(&extra());
        }
        s
    }
}
