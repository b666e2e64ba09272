//! What nodes tell each other over Redis pub/sub: awareness (presence is ephemeral and renewed
//! every 15 s, so pub/sub's at-most-once delivery is enough) and control messages (a link rotated,
//! a session deleted, a document compacted). A lost control message costs staleness, never data:
//! session records are re-read every [`SESSION_REFRESH`] as well. Also the heartbeat that lists
//! the live nodes in `/metrics`.

use super::{keys, Cluster};
use crate::sessions::{lifecycle, SessionChange, Sessions};
use bytes::Bytes;
use commonpad_core::hub::Hub;
use commonpad_core::room::Cmd;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

/// How often every node re-reads all session records (the safety net for lost messages).
pub const SESSION_REFRESH: Duration = Duration::from_secs(10);
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A node whose heartbeat is older than this is not listed as a peer.
const PEER_TIMEOUT_MS: u64 = 10_000;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Control {
    /// A session record changed: re-read it, and close the connections it invalidates.
    Session(SessionChange),
    /// A node folded this document's stream into a new snapshot.
    Compacted { doc: String },
}

#[derive(Serialize)]
pub(crate) struct Envelope<'a> {
    pub node: &'a str,
    pub msg: &'a Control,
}

#[derive(Deserialize)]
struct Incoming {
    node: String,
    msg: Control,
}

/// A stable owner id for a remote node's awareness states in a room, far from connection ids
/// (small counters) and from the server's own owner id (`u64::MAX`).
pub fn remote_owner(node: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    node.hash(&mut h);
    (1 << 63) | (h.finish() >> 2)
}

/// Starts the node's background tasks: the stream follower, the subscriber, the publisher and the
/// heartbeat. They end at shutdown.
pub fn spawn(
    tasks: &TaskTracker,
    cluster: Arc<Cluster>,
    hub: Hub,
    sessions: Arc<Sessions>,
    shutdown: watch::Receiver<bool>,
) {
    tasks.spawn(super::tail::run(cluster.clone(), hub.clone(), shutdown.clone()));
    tasks.spawn(subscriber(cluster.clone(), hub.clone(), sessions.clone(), shutdown.clone()));
    if let Some(rx) = cluster.take_publish_rx() {
        tasks.spawn(publisher(cluster.clone(), rx, shutdown.clone()));
    }
    tasks.spawn(heartbeat(cluster.clone(), shutdown.clone()));
    tasks.spawn(refresh_sessions(hub, sessions, shutdown));
}

async fn publisher(
    cluster: Arc<Cluster>,
    mut rx: tokio::sync::mpsc::Receiver<(String, Vec<u8>)>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut conn = cluster.cmd.clone();
    loop {
        let (channel, payload) = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = shutdown.changed() => return,
        };
        let res: Result<i64, _> = redis::cmd("PUBLISH").arg(channel).arg(payload).query_async(&mut conn).await;
        if let Err(e) = res {
            tracing::debug!(error = %e, "awareness not published (Redis unavailable)");
        }
    }
}

async fn subscriber(cluster: Arc<Cluster>, hub: Hub, sessions: Arc<Sessions>, mut shutdown: watch::Receiver<bool>) {
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let subscribed = async {
            let mut ps = cluster.redis.get_async_pubsub().await?;
            ps.psubscribe(keys::AWARENESS_PATTERN).await?;
            ps.subscribe(keys::CONTROL).await?;
            Ok::<_, redis::RedisError>(ps)
        };
        let ps = match subscribed.await {
            Ok(ps) => ps,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(error = %e, "subscribing to Redis failed; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200 * u64::from(failures.min(10)))) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
        };
        if failures > 0 {
            tracing::info!("subscribed to Redis again");
            // Messages were lost meanwhile: catch up on session records now.
            sessions.refresh_all().await;
        }
        let mut messages = ps.into_on_message();
        loop {
            let msg = tokio::select! {
                m = messages.next() => m,
                _ = shutdown.changed() => return,
            };
            let Some(msg) = msg else {
                tracing::warn!("Redis subscription ended; resubscribing");
                failures = 1;
                break;
            };
            let channel = msg.get_channel_name().to_owned();
            let payload = msg.get_payload_bytes();
            if let Some(doc) = channel.strip_prefix(keys::AWARENESS_PREFIX) {
                on_awareness(&cluster, &hub, doc, payload);
            } else if channel == keys::CONTROL {
                on_control(&cluster, &hub, &sessions, payload).await;
            }
        }
    }
}

fn on_awareness(cluster: &Cluster, hub: &Hub, doc: &str, payload: &[u8]) {
    let Some(split) = payload.iter().position(|b| *b == b'\n') else { return };
    let (node, update) = (&payload[..split], &payload[split + 1..]);
    if node == cluster.node.as_bytes() {
        return;
    }
    let owner = remote_owner(&String::from_utf8_lossy(node));
    // Never waits: presence that cannot be delivered now is stale by the time it could be.
    hub.try_send_if_loaded(doc, Cmd::RemoteAwareness { owner, update: Bytes::copy_from_slice(update) });
}

async fn on_control(cluster: &Cluster, hub: &Hub, sessions: &Sessions, payload: &[u8]) {
    let Ok(incoming) = serde_json::from_slice::<Incoming>(payload) else {
        tracing::warn!("unreadable control message ignored");
        return;
    };
    if incoming.node == cluster.node {
        return;
    }
    match incoming.msg {
        Control::Session(change) => {
            sessions.refresh(&change.id).await;
            lifecycle::disconnect(hub, &change).await;
        }
        Control::Compacted { doc } => {
            hub.try_send_if_loaded(&doc, Cmd::PeerCompacted);
        }
    }
}

async fn heartbeat(cluster: Arc<Cluster>, mut shutdown: watch::Receiver<bool>) {
    let mut conn = cluster.cmd.clone();
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => {
                let _: Result<i64, _> = redis::cmd("HDEL").arg(keys::NODES).arg(&cluster.node).query_async(&mut conn).await;
                return;
            }
        }
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let res: Result<Vec<(String, u64)>, redis::RedisError> = async {
            let _: i64 = redis::cmd("HSET").arg(keys::NODES).arg(&cluster.node).arg(now).query_async(&mut conn).await?;
            redis::cmd("HGETALL").arg(keys::NODES).query_async(&mut conn).await
        }
        .await;
        match res {
            Ok(all) => {
                let mut live: Vec<_> =
                    all.into_iter().filter(|(_, at)| now.saturating_sub(*at) < PEER_TIMEOUT_MS).collect();
                live.sort();
                cluster.set_peers(live);
            }
            Err(e) => {
                tracing::debug!(error = %e, "heartbeat failed");
                cluster.set_peers(Vec::new());
            }
        }
    }
}

/// Re-reads every record, then closes the connections they no longer allow: the safety net for
/// a lost announcement.
async fn refresh_sessions(hub: Hub, sessions: Arc<Sessions>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SESSION_REFRESH);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {
                sessions.refresh_all().await;
                lifecycle::enforce(&hub, &sessions).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}
