//! Following the streams: one task per node reads, with a single blocking `XREAD`, every stream of
//! a document this node has loaded, from where each room is, and hands the entries to the rooms in
//! stream order. Its own entries come back too: the room skips applying them but still advances
//! its position, which is what makes a compaction's "everything up to here" exact.
//!
//! Why one task and one connection for all documents, not one per room: a blocking read holds its
//! connection, and a node with a thousand loaded documents must not hold a thousand Redis
//! connections. The price: a document loaded while a read blocks is first read when that read
//! returns, so the block is kept short ([`BLOCK_MS`]).

use super::{keys, Cluster, ClusterError, REDIS_TIMEOUT};
use bytes::Bytes;
use commonpad_core::hub::Hub;
use commonpad_core::room::Cmd;
use commonpad_core::store::{batch, Position, RemoteEntry};
use redis::streams::{StreamId, StreamReadReply};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How long one `XREAD` waits for new entries when nothing arrives.
const BLOCK_MS: u64 = 100;
/// Entries read per stream per round. Each entry is a whole group-committed batch, possibly of
/// several multi-MiB updates, so this bounds one reply's size; a round trip on loopback is ~0.1 ms,
/// so a small count costs little throughput.
const COUNT: usize = 32;
/// Most documents one `XREAD` asks about; more are read in several rounds.
const STREAMS_PER_READ: usize = 512;

/// Decodes one stream entry. The stream is ours, but a damaged or foreign entry must not take the
/// node down: lengths are checked against what is there before anything is sliced.
pub fn decode_entry(entry: &StreamId, me: &str) -> Result<RemoteEntry, String> {
    let position: Position = entry.id.parse()?;
    let node = match entry.map.get("node") {
        Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => return Err(format!("stream entry {} has no node field", entry.id)),
    };
    let raw = match entry.map.get("u") {
        Some(redis::Value::BulkString(b)) => b.as_slice(),
        _ => return Err(format!("stream entry {} has no updates field", entry.id)),
    };
    let updates = batch::decode(raw).map_err(|e| format!("stream entry {}: {e}", entry.id))?;
    let updates = updates.into_iter().map(Bytes::copy_from_slice).collect();
    Ok(RemoteEntry { position, own: node == me, updates })
}

/// The follower task; ends at shutdown.
pub async fn run(cluster: Arc<Cluster>, hub: Hub, mut shutdown: watch::Receiver<bool>) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut failures = 0u32;
    loop {
        if *shutdown.borrow() {
            return;
        }
        let followed = cluster.followed();
        if followed.is_empty() {
            tokio::select! {
                _ = cluster.follows_changed.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return,
            }
            continue;
        }
        if conn.is_none() {
            // Its own connection: a blocking XREAD would stall every other command queued behind
            // it on a shared multiplexed one.
            let config = redis::AsyncConnectionConfig::new()
                .set_response_timeout(Some(REDIS_TIMEOUT + Duration::from_millis(BLOCK_MS)))
                .set_connection_timeout(Some(Duration::from_secs(3)));
            match cluster.redis.get_multiplexed_async_connection_with_config(&config).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    backoff(&mut failures, &e.into(), &mut shutdown).await;
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        for chunk in followed.chunks(STREAMS_PER_READ) {
            match read(c, chunk).await {
                Ok(reply) => {
                    failures = 0;
                    deliver(&cluster, &hub, chunk, reply).await;
                }
                Err(e) => {
                    conn = None;
                    backoff(&mut failures, &e, &mut shutdown).await;
                    break;
                }
            }
        }
    }
}

async fn read(
    conn: &mut redis::aio::MultiplexedConnection,
    followed: &[(String, Position, u64)],
) -> Result<Option<StreamReadReply>, ClusterError> {
    let mut cmd = redis::cmd("XREAD");
    cmd.arg("COUNT").arg(COUNT).arg("BLOCK").arg(BLOCK_MS).arg("STREAMS");
    for (doc, _, _) in followed {
        cmd.arg(keys::stream(doc));
    }
    for (_, pos, _) in followed {
        cmd.arg(pos.to_string());
    }
    Ok(cmd.query_async(conn).await?)
}

async fn deliver(cluster: &Cluster, hub: &Hub, followed: &[(String, Position, u64)], reply: Option<StreamReadReply>) {
    let Some(reply) = reply else { return };
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    for key in reply.keys {
        let Some(doc) = key.key.strip_prefix(keys::STREAM_PREFIX) else { continue };
        let Some((_, _, generation)) = followed.iter().find(|(d, _, _)| d == doc) else { continue };
        let mut entries = Vec::with_capacity(key.ids.len());
        let mut last = None;
        for id in &key.ids {
            match decode_entry(id, &cluster.node) {
                Ok(entry) => {
                    last = Some(entry.position);
                    entries.push(entry);
                }
                Err(e) => {
                    // Skipping it is all we can do; the room cannot apply what nobody can read.
                    tracing::error!(doc, error = %e, "unreadable stream entry skipped");
                    if let Ok(p) = id.id.parse::<Position>() {
                        last = Some(p);
                    }
                }
            }
        }
        let Some(last) = last else { continue };
        if !cluster.advance(doc, *generation, last, now_ms.saturating_sub(last.ms)) {
            continue; // unloaded (or reloaded) meanwhile: the new room loaded these itself
        }
        // Waits when the room's queue is full: a room must never miss an entry (it would diverge
        // from the other nodes), and a slow room slowing the follower is the lesser harm.
        hub.send_if_loaded(doc, Cmd::Remote(entries)).await;
    }
}

async fn backoff(failures: &mut u32, e: &ClusterError, shutdown: &mut watch::Receiver<bool>) {
    *failures += 1;
    if *failures == 1 || failures.is_power_of_two() {
        tracing::warn!(error = %e, failures = *failures, "reading the Redis streams failed; retrying");
    }
    let wait = Duration::from_millis(100u64.saturating_mul(1 << (*failures).min(4)));
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = shutdown.changed() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn entry(id: &str, node: &[u8], u: Option<Vec<u8>>) -> StreamId {
        let mut map = HashMap::new();
        map.insert("node".to_owned(), redis::Value::BulkString(node.to_vec()));
        if let Some(u) = u {
            map.insert("u".to_owned(), redis::Value::BulkString(u));
        }
        StreamId { id: id.to_owned(), map, milliseconds_elapsed_from_delivery: None, delivered_count: None }
    }

    #[test]
    fn a_batch_round_trips_and_knows_whose_it_is() {
        let updates = vec![Bytes::from_static(b"one"), Bytes::new(), Bytes::from(vec![7u8; 70_000])];
        let e = entry("1700000000000-3", b"n1", Some(batch::encode(&updates)));
        let mine = decode_entry(&e, "n1").unwrap();
        assert!(mine.own);
        assert_eq!(mine.position, Position { ms: 1_700_000_000_000, seq: 3 });
        assert_eq!(mine.updates, updates);
        assert!(!decode_entry(&e, "n2").unwrap().own);
    }

    #[test]
    fn damaged_entries_are_errors_not_panics() {
        // A length larger than what follows, a truncated length, missing fields, a bad id.
        let mut lying = 1_000_000u32.to_le_bytes().to_vec();
        lying.extend_from_slice(b"short");
        for e in [
            entry("1-0", b"n", Some(lying)),
            entry("1-0", b"n", Some(vec![1, 0])),
            entry("1-0", b"n", None),
            entry("nonsense", b"n", Some(Vec::new())),
        ] {
            assert!(decode_entry(&e, "n").is_err());
        }
        let mut no_node = entry("1-0", b"n", Some(Vec::new()));
        no_node.map.remove("node");
        assert!(decode_entry(&no_node, "n").is_err());
    }

    #[test]
    fn positions_order_like_redis_ids() {
        let p = |s: &str| s.parse::<Position>().unwrap();
        assert!(p("5-0") < p("5-1"));
        assert!(p("5-9") < p("10-0")); // numeric, not lexical
        assert_eq!(p("12-34").to_string(), "12-34");
        assert!("12".parse::<Position>().is_err());
        assert!("a-1".parse::<Position>().is_err());
    }
}
