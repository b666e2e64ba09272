//! Awareness updates from several connections: `Awareness::apply` on arbitrary and mutated bytes,
//! and sequences of applies, removals and expiries, checked against what presence promises
//! (bounded states per owner and per state, the reserved server id untouched, refusals changing
//! nothing, greeting frames that decode).

use crate::mutate::{self, Mutation};
use commonpad_core::sync::awareness::{Awareness, PresenceLimits, AWARENESS_TIMEOUT};
use commonpad_core::sync::protocol::{write_string, write_var_u64, Reader};
use proptest::prelude::*;
use std::time::{Duration, Instant};

const LIMITS: PresenceLimits = PresenceLimits { max_clients: 3, max_state_bytes: 48, max_bytes: 100 };
/// What another node holds a connection's broadcast to: the same state size, no count or total
/// (a broadcast may name entries that changed nothing here, a removal at the clock already held,
/// and that are new to a peer).
const PEER: PresenceLimits = PresenceLimits { max_clients: usize::MAX, max_bytes: usize::MAX, ..LIMITS };
const OWNERS: u64 = 3;
/// The server's id: inside the range clients use, so that they try to take it.
const RESERVED: u64 = 2;

type Entry = (u64, u32, String);

fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    write_var_u64(&mut out, entries.len() as u64);
    for (client, clock, state) in entries {
        write_var_u64(&mut out, *client);
        write_var_u64(&mut out, u64::from(*clock));
        write_string(&mut out, state);
    }
    out
}

/// Reads an update as a peer would; `None` unless it is entirely well-formed.
fn parse(bytes: &[u8]) -> Option<Vec<Entry>> {
    let mut r = Reader::new(bytes);
    let n = r.read_count(3).ok()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let client = r.read_var_u64().ok()?;
        let clock = r.read_var_u32().ok()?;
        let state = r.read_string().ok()?;
        serde_json::from_str::<serde_json::Value>(state).ok()?;
        out.push((client, clock, state.to_owned()));
    }
    r.is_empty().then_some(out)
}

fn state() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("null".to_owned()),
        Just("{}".to_owned()),
        "[a-z]{0,50}".prop_map(|s| format!(r#"{{"user":"{s}"}}"#)),
        ".{0,6}",
        "[0-9]{1,3}",
    ]
}

fn entries() -> impl Strategy<Value = Vec<Entry>> {
    let clock = prop_oneof![4 => 0..4u32, 1 => Just(u32::MAX), 1 => Just(u32::MAX - 1)];
    prop::collection::vec((0..8u64, clock, state()), 0..6)
}

#[derive(Debug, Clone)]
enum Step {
    Apply { owner: u64, entries: Vec<Entry>, mutations: Vec<Mutation> },
    Advance(u64),
    Expire,
    Remove(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (1..=OWNERS, entries(), prop::collection::vec(mutate::mutation(), 0..2))
            .prop_map(|(owner, entries, mutations)| Step::Apply { owner, entries, mutations }),
        2 => (0..40u64).prop_map(Step::Advance),
        1 => Just(Step::Expire),
        1 => (1..=OWNERS).prop_map(Step::Remove),
    ]
}

/// Every live state, sorted, after checking that the greeting frames are well-formed, hold each id
/// once, never the reserved id, and no state over the limits.
fn live(a: &Awareness) -> Result<Vec<Entry>, TestCaseError> {
    let mut all = Vec::new();
    for frame in a.encode_all() {
        let entries = parse(&frame).ok_or_else(|| TestCaseError::fail("encode_all frame does not decode"))?;
        prop_assert!(!entries.is_empty());
        all.extend(entries);
    }
    all.sort();
    prop_assert!(all.windows(2).all(|w| w[0].0 != w[1].0), "an id twice in the greeting: {:?}", all);
    prop_assert_eq!(all.len(), a.live_count());
    prop_assert!(all.iter().all(|(c, _, s)| *c != RESERVED && s != "null" && s.len() <= LIMITS.max_state_bytes));
    prop_assert!(all.len() <= OWNERS as usize * LIMITS.max_clients, "{} live states", all.len());
    let bytes: usize = all.iter().map(|(_, _, s)| s.len()).sum();
    prop_assert!(bytes <= OWNERS as usize * LIMITS.max_bytes, "{} bytes of live states", bytes);
    Ok(all)
}

proptest! {
    #![proptest_config(crate::config(1000))]

    #[test]
    fn arbitrary_updates_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), owner in any::<u64>()) {
        let mut a = Awareness::with_reserved(RESERVED);
        if a.apply(&bytes, owner, &LIMITS, Instant::now()).is_err() {
            prop_assert_eq!(a.live_count(), 0);
        }
        live(&a)?;
    }

    #[test]
    fn sequences_from_several_owners_keep_the_invariants(steps in prop::collection::vec(step(), 1..24)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut a = Awareness::with_reserved(RESERVED);
        for step in steps {
            let before = live(&a)?;
            match step {
                Step::Apply { owner, entries, mutations } => {
                    let bytes = mutate::apply(encode(&entries), &mutations);
                    match a.apply(&bytes, owner, &LIMITS, now) {
                        Ok(applied) => {
                            // What is broadcast is well-formed, holds no state over the size limit,
                            // and is acceptable as a whole to a peer that has none of this state.
                            let out = parse(&applied.update)
                                .ok_or_else(|| TestCaseError::fail("the re-encoded update does not decode"))?;
                            prop_assert!(out.iter().all(|(c, _, s)| *c != RESERVED && s.len() <= LIMITS.max_state_bytes));
                            let peer = Awareness::default().apply(&applied.update, owner, &PEER, now);
                            prop_assert!(peer.is_ok(), "a peer refuses the broadcast {:?}", out);
                            if !applied.changed {
                                prop_assert_eq!(live(&a)?, before);
                            }
                        }
                        // A refused update changes nothing.
                        Err(_) => prop_assert_eq!(live(&a)?, before),
                    }
                }
                Step::Advance(secs) => now += Duration::from_secs(secs),
                Step::Expire => {
                    if let Some(removal) = a.expire(now, AWARENESS_TIMEOUT) {
                        let gone = parse(&removal).ok_or_else(|| TestCaseError::fail("removal does not decode"))?;
                        prop_assert!(!gone.is_empty() && gone.iter().all(|(_, _, s)| s == "null"));
                    }
                }
                Step::Remove(owner) => {
                    if let Some(removal) = a.remove_connection(owner) {
                        let gone = parse(&removal).ok_or_else(|| TestCaseError::fail("removal does not decode"))?;
                        prop_assert!(gone.len() <= LIMITS.max_clients, "owner {} held {:?}", owner, gone);
                        prop_assert!(gone.iter().all(|(_, _, s)| s == "null"));
                        // What the owner held is what its removal took away.
                        let held: Vec<_> = before.iter().filter(|b| gone.iter().any(|g| g.0 == b.0)).collect();
                        let bytes: usize = held.iter().map(|(_, _, s)| s.len()).sum();
                        prop_assert!(bytes <= LIMITS.max_bytes, "owner {} held {} bytes: {:?}", owner, bytes, held);
                    }
                }
            }
            live(&a)?;
        }
        // Once nobody renewed for a timeout, nobody is present.
        a.expire(now + AWARENESS_TIMEOUT, AWARENESS_TIMEOUT);
        prop_assert_eq!(a.live_count(), 0);
        prop_assert!(a.encode_all().is_empty());
    }
}

/// Found while fuzzing: `apply` counts an update's state, in place of the one the owner keeps, for
/// every id the update names, even one whose stale clock means it will not be applied; so an owner
/// can hold up to `max_clients * max_state_bytes`, past `max_bytes`.
#[test]
fn an_owner_never_holds_more_than_max_bytes() {
    let now = Instant::now();
    let state = |n: usize| format!(r#"{{"user":"{}"}}"#, "a".repeat(n - 11));
    let mut a = Awareness::default();
    let _ = a.apply(&encode(&[(4, 3, state(45)), (5, 1, state(45))]), 7, &LIMITS, now);
    // id 4 again with a stale clock and a tiny state (ignored), and a new id 6 with a full one
    let _ = a.apply(&encode(&[(4, 0, "{}".into()), (6, 1, state(48))]), 7, &LIMITS, now);
    let bytes: usize = a.encode_all().iter().flat_map(|f| parse(f).unwrap()).map(|(_, _, s)| s.len()).sum();
    assert!(bytes <= LIMITS.max_bytes, "owner 7 holds {bytes} bytes of state, max_bytes is {}", LIMITS.max_bytes);
}
