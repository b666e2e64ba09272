//! Awareness (presence: cursors, names) for one document, kept by the room task that owns it.
//!
//! Why our own and not `yrs::sync::Awareness`: that one owns a `Doc` of its own, has no timer to
//! expire states, and does not record which connection set which client's state, all three of which
//! the hub needs (expire after 30 s, remove a connection's states when it closes, cap how many states
//! one connection may hold). It also keeps presence honest on a public server: a connection may
//! change only the client ids it introduced (or that nobody holds any more), the server's own
//! entry is reserved from the start, and states, ids and bytes per connection are bounded
//! ([`PresenceLimits`]). The wire format is y-protocols' `awareness.js`:
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

/// What one owner (a connection, or another node's clients) may hold in a room's presence.
#[derive(Debug, Clone, Copy)]
pub struct PresenceLimits {
    /// Client ids one owner holds, removed ones included (a tab uses one; removals count so
    /// that setting and removing fresh ids cannot grow the map without end).
    pub max_clients: usize,
    /// Bytes of one state's JSON. A real presence state (a name, a colour, a cursor) is a few
    /// hundred bytes.
    pub max_state_bytes: usize,
    /// Bytes of all of one owner's live states together.
    pub max_bytes: usize,
}

/// Most bytes of one greeting frame of presence (see [`Awareness::encode_all`]): a room's whole
/// presence may be larger than a client's queue allows in one frame, never in several.
pub const GREETING_FRAME_BYTES: usize = 64 << 10;

/// What applying one update did.
pub struct Applied {
    /// Whether anything changed.
    pub changed: bool,
    /// The accepted entries, re-encoded: what to broadcast (never the client's raw bytes).
    pub update: Vec<u8>,
}

impl Awareness {
    /// An awareness whose entry `id` is the server's from the start, so that no client can take
    /// it before the server first publishes there.
    pub fn with_reserved(id: u64) -> Awareness {
        let mut a = Awareness::default();
        a.entries.insert(id, Entry { clock: 0, state: None, updated: Instant::now(), owner: SERVER_OWNER });
        a
    }

    /// Applies an owner's awareness update with y-protocols' rules (a higher clock wins; a `null`
    /// state at the same clock removes). Every entry is checked (valid JSON, sizes, clock) before
    /// anything is applied, so a hostile frame changes nothing and is refused whole. Entries the
    /// owner may not change (the server's, another live owner's) are dropped, not refused: stock
    /// y-websocket clients send every change they receive back to the server.
    pub fn apply(
        &mut self,
        update: &[u8],
        owner: u64,
        limits: &PresenceLimits,
        now: Instant,
    ) -> Result<Applied, DecodeError> {
        let mut r = Reader::new(update);
        let n = r.read_count(3)?;
        let mut parsed = Vec::with_capacity(n);
        for _ in 0..n {
            let client = r.read_var_u64()?;
            let clock = r.read_var_u32()?;
            let json = r.read_string()?;
            if json.len() > limits.max_state_bytes {
                return Err(DecodeError::Invalid("awareness: state too large"));
            }
            if clock == u32::MAX {
                // Nothing could ever supersede it, not even its own removal.
                return Err(DecodeError::Invalid("awareness: clock at its maximum"));
            }
            let value: serde_json::Value =
                serde_json::from_str(json).map_err(|_| DecodeError::Invalid("awareness state json"))?;
            parsed.push((client, clock, if value.is_null() { None } else { Some(json) }));
        }
        parsed.retain(|(c, _, _)| self.may_change(*c, owner));
        self.check_owner_limits(&parsed, owner, limits)?;
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
                self.entries.insert(client, Entry { clock, state: state.map(str::to_owned), updated: now, owner });
            } else if cur_clock == clock && state.is_some() {
                // a renewal at the same clock keeps the state alive
                if let Some(e) = self.entries.get_mut(&client) {
                    e.updated = now;
                }
            }
        }
        Ok(Applied { changed, update: out })
    }

    /// An owner may change the ids it holds, and ids nobody holds (new, or removed and not the
    /// server's): never a state another owner holds live.
    fn may_change(&self, client: u64, owner: u64) -> bool {
        self.entries.get(&client).is_none_or(|e| e.owner == owner || (e.state.is_none() && e.owner != SERVER_OWNER))
    }

    /// Refuses an update after which the owner would hold more ids or bytes than it may: what it
    /// would hold is worked out by applying the update's entries with the clock rule (an entry with
    /// an older clock changes nothing, so its bytes do not replace what is held).
    fn check_owner_limits(
        &self,
        parsed: &[(u64, u32, Option<&str>)],
        owner: u64,
        limits: &PresenceLimits,
    ) -> Result<(), DecodeError> {
        let mut after: HashMap<u64, (u32, Option<usize>)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.owner == owner)
            .map(|(c, e)| (*c, (e.clock, e.state.as_ref().map(String::len))))
            .collect();
        for (client, clock, state) in parsed {
            let (cur_clock, has_state) = after
                .get(client)
                .map(|(c, s)| (*c, s.is_some()))
                .or_else(|| self.entries.get(client).map(|e| (e.clock, e.state.is_some())))
                .unwrap_or((0, false));
            if cur_clock < *clock || (cur_clock == *clock && state.is_none() && has_state) {
                after.insert(*client, (*clock, state.map(str::len)));
            }
        }
        if after.len() > limits.max_clients {
            return Err(DecodeError::Invalid("awareness: too many clients on one connection"));
        }
        if after.values().filter_map(|(_, len)| *len).sum::<usize>() > limits.max_bytes {
            return Err(DecodeError::Invalid("awareness: states too large together"));
        }
        Ok(())
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

    /// Every live state, as awareness updates of at most about [`GREETING_FRAME_BYTES`] each (one
    /// state larger than that gets a frame of its own); empty when nobody is present.
    pub fn encode_all(&self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut batch: Vec<(u64, &Entry)> = Vec::new();
        let mut batch_bytes = 0;
        for (client, e) in self.entries.iter().filter(|(_, e)| e.state.is_some()) {
            let len = e.state.as_ref().map_or(0, String::len) + 16;
            if !batch.is_empty() && batch_bytes + len > GREETING_FRAME_BYTES {
                frames.push(encode_entries(&batch));
                batch.clear();
                batch_bytes = 0;
            }
            batch.push((*client, e));
            batch_bytes += len;
        }
        if !batch.is_empty() {
            frames.push(encode_entries(&batch));
        }
        frames
    }

    /// Removes the states a closed connection set, returning the update that tells the others.
    pub fn remove_connection(&mut self, conn: u64) -> Option<Vec<u8>> {
        self.remove_where(|e| e.owner == conn)
    }

    /// Removes states not renewed within `timeout` (clients that vanished without a goodbye), and
    /// forgets removals older than that: nobody still sends a clock that old, and the map must not
    /// keep every id a room ever saw.
    pub fn expire(&mut self, now: Instant, timeout: Duration) -> Option<Vec<u8>> {
        let stale = |e: &Entry| e.owner != SERVER_OWNER && now.saturating_duration_since(e.updated) >= timeout;
        let removal = self.remove_where(|e| stale(e));
        self.entries.retain(|_, e| e.state.is_some() || !stale(e));
        if self.entries.capacity() > 4 * self.entries.len() + 16 {
            self.entries.shrink_to_fit();
        }
        removal
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
                e.updated = Instant::now();
                removed.push((*client, e.clock));
            }
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

fn encode_entries(entries: &[(u64, &Entry)]) -> Vec<u8> {
    let mut out = Vec::new();
    write_var_u64(&mut out, entries.len() as u64);
    for (client, e) in entries {
        write_var_u64(&mut out, *client);
        write_var_u64(&mut out, u64::from(e.clock));
        write_string(&mut out, e.state.as_deref().unwrap_or("null"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: PresenceLimits = PresenceLimits { max_clients: 8, max_state_bytes: 1024, max_bytes: 4096 };

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
        assert!(a.apply(&update(&[(7, 1, r#"{"user":"ana"}"#)]), 1, &LIMITS, now).unwrap().changed);
        assert!(!a.apply(&update(&[(7, 0, r#"{"user":"old"}"#)]), 1, &LIMITS, now).unwrap().changed);
        assert_eq!(a.live_count(), 1);
        let removal = a.remove_connection(1).expect("a removal to broadcast");
        assert_eq!(removal, update(&[(7, 2, "null")]));
        assert_eq!(a.live_count(), 0);
        assert!(a.encode_all().is_empty());
    }

    #[test]
    fn expiry_removes_stale_states_only() {
        let mut a = Awareness::default();
        let t0 = Instant::now();
        a.apply(&update(&[(1, 1, "{}")]), 1, &LIMITS, t0).unwrap();
        a.apply(&update(&[(2, 1, "{}")]), 2, &LIMITS, t0 + Duration::from_secs(20)).unwrap();
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
        let applied =
            a.apply(&update(&[(0, 5, r#"{"server":{"viewers":99}}"#), (7, 1, "{}")]), 1, &LIMITS, now).unwrap();
        assert_eq!(applied.update, update(&[(7, 1, "{}")]));
        assert!(a.encode_all().concat().windows(11).any(|w| w == br#""viewers":1"#));
    }

    #[test]
    fn hostile_updates_change_nothing() {
        let mut a = Awareness::default();
        let now = Instant::now();
        assert!(a.apply(&update(&[(1, 1, "{not json")]), 1, &LIMITS, now).is_err());
        let many: Vec<_> = (0..9).map(|c| (c, 1, "{}")).collect();
        assert!(a.apply(&update(&many), 1, &LIMITS, now).is_err());
        assert!(a.apply(&[0x80, 0x80, 0x80, 0x80, 0x0f], 1, &LIMITS, now).is_err());
        assert_eq!(a.live_count(), 0);
    }

    #[test]
    fn the_greeting_is_cut_into_frames_that_each_fit() {
        let mut a = Awareness::default();
        let now = Instant::now();
        let limits = PresenceLimits { max_clients: 1, max_state_bytes: 50_000, max_bytes: 50_000 };
        let state = format!(r#"{{"pad":"{}"}}"#, "z".repeat(40_000));
        for owner in 0..20u64 {
            a.apply(&update(&[(1000 + owner, 1, &state)]), owner, &limits, now).unwrap();
        }
        let frames = a.encode_all();
        assert!(frames.len() > 1);
        assert!(frames.iter().all(|f| f.len() <= GREETING_FRAME_BYTES + state.len() + 16));
        let total: usize = frames.iter().map(|f| Reader::new(f).read_var_u64().unwrap() as usize).sum();
        assert_eq!(total, 20, "every state is in exactly one frame");
    }

    #[test]
    fn removals_are_forgotten_after_the_timeout_and_the_map_shrinks() {
        let mut a = Awareness::default();
        let t0 = Instant::now();
        let limits = PresenceLimits { max_clients: 1, max_state_bytes: 64, max_bytes: 64 };
        for owner in 0..1000u64 {
            a.apply(&update(&[(owner, 1, "{}")]), owner, &limits, t0).unwrap();
            a.remove_connection(owner);
        }
        assert_eq!(a.entries.len(), 1000, "removals are kept while an old clock could still arrive");
        a.expire(Instant::now() + AWARENESS_TIMEOUT, AWARENESS_TIMEOUT);
        assert_eq!(a.entries.len(), 0);
        assert!(a.entries.capacity() < 64, "capacity {}", a.entries.capacity());
    }
}
