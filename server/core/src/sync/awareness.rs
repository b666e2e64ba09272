//! Awareness (presence: cursors, names) for one document, kept by the room task that owns it.
//!
//! Why our own and not `yrs::sync::Awareness`: that one owns a `Doc` of its own, has no timer to
//! expire states, and does not record which connection set which client's state, all three of which
//! the hub needs (expire after 30 s, remove a connection's states when it closes, cap how many states
//! one connection may hold). The wire format is y-protocols' `awareness.js`:
//! `varuint n, then n x (varuint clientID, varuint clock, varstring JSON state)`; a JSON `null`
//! state means "gone".

use super::protocol::{write_string, write_var_u64, DecodeError, Reader};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// y-protocols' `outdatedTimeout`: clients renew their state every 15 s.
pub const AWARENESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Owner of the states the server publishes itself: no connection has this id.
const SERVER_OWNER: u64 = u64::MAX;

struct Entry {
    clock: u32,
    /// The JSON text, or `None` once removed (we keep the clock so old updates stay old).
    state: Option<String>,
    updated: Instant,
    owner: u64,
}

#[derive(Default)]
pub struct Awareness {
    entries: HashMap<u64, Entry>,
}

/// What applying one update did.
pub struct Applied {
    /// Whether anything changed.
    pub changed: bool,
    /// The accepted entries, re-encoded: what to broadcast (never the client's raw bytes).
    pub update: Vec<u8>,
}

impl Awareness {
    /// Applies a client's awareness update with y-protocols' rules (a higher clock wins; a `null`
    /// state at the same clock removes). Every entry is checked (valid JSON, sane sizes) before
    /// anything is applied, so a hostile frame changes nothing and can be refused whole.
    pub fn apply(
        &mut self,
        update: &[u8],
        conn: u64,
        max_clients_per_conn: usize,
        now: Instant,
    ) -> Result<Applied, DecodeError> {
        let mut r = Reader::new(update);
        let n = r.read_count(3)?;
        let mut parsed = Vec::with_capacity(n);
        for _ in 0..n {
            let client = r.read_var_u64()?;
            let clock = r.read_var_u32()?;
            let json = r.read_string()?;
            let value: serde_json::Value =
                serde_json::from_str(json).map_err(|_| DecodeError::Invalid("awareness state json"))?;
            parsed.push((client, clock, if value.is_null() { None } else { Some(json) }));
        }
        let owned = self.entries.values().filter(|e| e.owner == conn && e.state.is_some()).count();
        let new_clients = parsed
            .iter()
            .filter(|(c, _, s)| s.is_some() && self.entries.get(c).is_none_or(|e| e.owner != conn))
            .count();
        if owned + new_clients > max_clients_per_conn {
            return Err(DecodeError::Invalid("awareness: too many clients on one connection"));
        }
        // Entries for ids the server publishes itself are dropped, not refused: stock y-websocket
        // clients send every change they receive back to the server, ours included.
        parsed.retain(|(c, _, _)| self.entries.get(c).is_none_or(|e| e.owner != SERVER_OWNER));
        let mut out = Vec::new();
        write_var_u64(&mut out, parsed.len() as u64);
        for (client, clock, state) in &parsed {
            write_var_u64(&mut out, *client);
            write_var_u64(&mut out, u64::from(*clock));
            write_string(&mut out, state.unwrap_or("null"));
        }
        let mut changed = false;
        for (client, clock, state) in parsed {
            let (cur_clock, has_state) = self.entries.get(&client).map_or((0, false), |e| (e.clock, e.state.is_some()));
            if cur_clock < clock || (cur_clock == clock && state.is_none() && has_state) {
                changed = true;
                self.entries
                    .insert(client, Entry { clock, state: state.map(str::to_owned), updated: now, owner: conn });
            } else if cur_clock == clock && state.is_some() {
                // a renewal at the same clock keeps the state alive
                if let Some(e) = self.entries.get_mut(&client) {
                    e.updated = now;
                }
            }
        }
        Ok(Applied { changed, update: out })
    }

    /// Sets a state the server itself publishes (never expires, owned by no connection) and
    /// returns the update announcing it.
    pub fn set_server_state(&mut self, client: u64, json: &str, now: Instant) -> Vec<u8> {
        let clock = self.entries.get(&client).map_or(1, |e| e.clock.saturating_add(1));
        self.entries.insert(client, Entry { clock, state: Some(json.to_owned()), updated: now, owner: SERVER_OWNER });
        let mut out = Vec::new();
        write_var_u64(&mut out, 1);
        write_var_u64(&mut out, client);
        write_var_u64(&mut out, u64::from(clock));
        write_string(&mut out, json);
        out
    }

    /// Every live state, as one awareness update, or `None` when nobody is present.
    pub fn encode_all(&self) -> Option<Vec<u8>> {
        let live: Vec<_> = self.entries.iter().filter(|(_, e)| e.state.is_some()).collect();
        if live.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        write_var_u64(&mut out, live.len() as u64);
        for (client, e) in live {
            write_var_u64(&mut out, *client);
            write_var_u64(&mut out, u64::from(e.clock));
            write_string(&mut out, e.state.as_deref().unwrap_or("null"));
        }
        Some(out)
    }

    /// Removes the states a closed connection set, returning the update that tells the others.
    pub fn remove_connection(&mut self, conn: u64) -> Option<Vec<u8>> {
        self.remove_where(|e| e.owner == conn)
    }

    /// Removes states not renewed within `timeout` (clients that vanished without a goodbye).
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Option<Vec<u8>> {
        self.remove_where(|e| e.owner != SERVER_OWNER && now.saturating_duration_since(e.updated) >= timeout)
    }

    pub fn live_count(&self) -> usize {
        self.entries.values().filter(|e| e.state.is_some()).count()
    }

    fn remove_where(&mut self, pred: impl Fn(&Entry) -> bool) -> Option<Vec<u8>> {
        let mut removed = Vec::new();
        for (client, e) in self.entries.iter_mut() {
            if e.state.is_some() && pred(e) {
                e.state = None;
                e.clock = e.clock.saturating_add(1);
                removed.push((*client, e.clock));
            }
        }
        // Forget removed entries for good once nobody could still send an older clock: keeping the
        // tombstones bounded matters more than rejecting a replay of a long-gone state.
        if self.entries.len() > 4096 {
            self.entries.retain(|_, e| e.state.is_some());
        }
        if removed.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        write_var_u64(&mut out, removed.len() as u64);
        for (client, clock) in removed {
            write_var_u64(&mut out, client);
            write_var_u64(&mut out, u64::from(clock));
            write_string(&mut out, "null");
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(entries: &[(u64, u32, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        write_var_u64(&mut out, entries.len() as u64);
        for (c, clock, s) in entries {
            write_var_u64(&mut out, *c);
            write_var_u64(&mut out, u64::from(*clock));
            write_string(&mut out, s);
        }
        out
    }

    #[test]
    fn higher_clock_wins_and_connection_close_removes() {
        let mut a = Awareness::default();
        let now = Instant::now();
        assert!(a.apply(&update(&[(7, 1, r#"{"user":"ana"}"#)]), 1, 8, now).unwrap().changed);
        assert!(!a.apply(&update(&[(7, 0, r#"{"user":"old"}"#)]), 1, 8, now).unwrap().changed);
        assert_eq!(a.live_count(), 1);
        let removal = a.remove_connection(1).expect("a removal to broadcast");
        assert_eq!(removal, update(&[(7, 2, "null")]));
        assert_eq!(a.live_count(), 0);
        assert!(a.encode_all().is_none());
    }

    #[test]
    fn expiry_removes_stale_states_only() {
        let mut a = Awareness::default();
        let t0 = Instant::now();
        a.apply(&update(&[(1, 1, "{}")]), 1, 8, t0).unwrap();
        a.apply(&update(&[(2, 1, "{}")]), 2, 8, t0 + Duration::from_secs(20)).unwrap();
        let removal = a.expire(t0 + Duration::from_secs(31), AWARENESS_TIMEOUT).unwrap();
        assert_eq!(removal, update(&[(1, 2, "null")]));
        assert_eq!(a.live_count(), 1);
    }

    #[test]
    fn echoes_of_the_server_entry_are_dropped_not_refused() {
        let mut a = Awareness::default();
        let now = Instant::now();
        a.set_server_state(0, r#"{"server":{"viewers":1}}"#, now);
        // A stock client sends the server's entry back along with its own.
        let applied = a.apply(&update(&[(0, 5, r#"{"server":{"viewers":99}}"#), (7, 1, "{}")]), 1, 8, now).unwrap();
        assert_eq!(applied.update, update(&[(7, 1, "{}")]));
        assert!(a.encode_all().unwrap().windows(11).any(|w| w == br#""viewers":1"#));
    }

    #[test]
    fn hostile_updates_change_nothing() {
        let mut a = Awareness::default();
        let now = Instant::now();
        assert!(a.apply(&update(&[(1, 1, "{not json")]), 1, 8, now).is_err());
        let many: Vec<_> = (0..9).map(|c| (c, 1, "{}")).collect();
        assert!(a.apply(&update(&many), 1, 8, now).is_err());
        assert!(a.apply(&[0x80, 0x80, 0x80, 0x80, 0x0f], 1, 8, now).is_err());
        assert_eq!(a.live_count(), 0);
    }
}
