//! Yjs updates and state vectors through the guard: real updates (text edits and formats, maps,
//! arrays, nested types, XML, two clients) must pass and round-trip; mutated and arbitrary ones
//! may be refused, and whatever the guard lets through must not make yrs panic (the room catches
//! such a panic, but then reloads the document: a client must not be able to cause it at will).

use crate::mutate;
use commonpad_core::sync::guard;
use commonpad_core::sync::protocol::write_var_u64;
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use yrs::types::ToJson;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{
    Any, Array, ArrayPrelim, Doc, GetString, Map, MapPrelim, Number, ReadTxn, StateVector, Text, TextPrelim, Transact,
    Update, XmlElementPrelim, XmlFragment, XmlTextPrelim,
};

#[derive(Debug, Clone)]
enum Op {
    Insert(Index, String),
    Delete(Index, u32),
    Format(Index, u32, bool),
    Embed(Index, Any),
    MapSet(u8, Any),
    MapNested(u8, u8, Any, String),
    MapDelete(u8),
    ArrayInsert(Index, Any),
    ArrayText(Index, String),
    ArrayRemove(Index, u32),
    Xml(String, String),
}

fn any_value() -> impl Strategy<Value = Any> {
    let leaf = prop_oneof![
        Just(Any::Null),
        Just(Any::Undefined),
        any::<bool>().prop_map(Any::Bool),
        (-(1i64 << 53)..(1i64 << 53)).prop_map(|n| Any::Number(Number::Int(n))),
        (-1e12f64..1e12).prop_map(|f| Any::Number(Number::Float(f))),
        ".{0,12}".prop_map(|s| Any::String(s.into())),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(|b| Any::Buffer(b.into())),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(|v| Any::Array(v.into())),
            prop::collection::hash_map("[a-z]{1,4}", inner, 0..4).prop_map(|m| Any::Map(Arc::new(m))),
        ]
    })
}

fn op() -> impl Strategy<Value = Op> {
    // Text positions are UTF-8 byte offsets in yrs's default mode: ASCII keeps every one valid.
    let ascii = "[ -~]{1,12}";
    prop_oneof![
        4 => (any::<Index>(), ascii).prop_map(|(i, s)| Op::Insert(i, s)),
        2 => (any::<Index>(), 1..8u32).prop_map(|(i, n)| Op::Delete(i, n)),
        1 => (any::<Index>(), 1..8u32, any::<bool>()).prop_map(|(i, n, b)| Op::Format(i, n, b)),
        1 => (any::<Index>(), any_value()).prop_map(|(i, v)| Op::Embed(i, v)),
        2 => (0..4u8, any_value()).prop_map(|(k, v)| Op::MapSet(k, v)),
        2 => (0..4u8, 0..3u8, any_value(), ".{0,8}").prop_map(|(k, kind, v, s)| Op::MapNested(k, kind, v, s)),
        1 => (0..4u8).prop_map(Op::MapDelete),
        2 => (any::<Index>(), any_value()).prop_map(|(i, v)| Op::ArrayInsert(i, v)),
        1 => (any::<Index>(), ".{0,8}").prop_map(|(i, s)| Op::ArrayText(i, s)),
        1 => (any::<Index>(), 1..4u32).prop_map(|(i, n)| Op::ArrayRemove(i, n)),
        1 => ("[a-z]{1,6}", ".{0,8}").prop_map(|(t, s)| Op::Xml(t, s)),
    ]
}

fn at(i: &Index, len: u32) -> u32 {
    i.index(len as usize + 1) as u32
}

fn run(doc: &Doc, ops: &[Op]) {
    let (text, map, arr) =
        (doc.get_or_insert_text("text"), doc.get_or_insert_map("map"), doc.get_or_insert_array("arr"));
    let xml = doc.get_or_insert_xml_fragment("xml");
    let mut txn = doc.transact_mut();
    for op in ops {
        let (tlen, alen) = (text.len(&txn), arr.len(&txn));
        match op.clone() {
            Op::Insert(i, s) => text.insert(&mut txn, at(&i, tlen), &s),
            Op::Delete(..) | Op::Format(..) if tlen == 0 => {}
            Op::Delete(i, n) => {
                let from = at(&i, tlen - 1);
                text.remove_range(&mut txn, from, n.min(tlen - from));
            }
            Op::Format(i, n, bold) => {
                let from = at(&i, tlen - 1);
                let attrs = HashMap::from([(Arc::from("bold"), if bold { Any::Bool(true) } else { Any::Null })]);
                text.format(&mut txn, from, n.min(tlen - from), attrs);
            }
            Op::Embed(i, v) => drop(text.insert_embed(&mut txn, at(&i, tlen), v)),
            Op::MapSet(k, v) => drop(map.insert(&mut txn, format!("k{k}"), v)),
            Op::MapNested(k, kind, v, s) => {
                let key = format!("k{k}");
                match kind {
                    0 => drop(map.insert(&mut txn, key, MapPrelim::from([("v", v)]))),
                    1 => drop(map.insert(&mut txn, key, ArrayPrelim::from([v]))),
                    _ => drop(map.insert(&mut txn, key, MapPrelim::from([("t", TextPrelim::new(s))]))),
                }
            }
            Op::MapDelete(k) => drop(map.remove(&mut txn, &format!("k{k}"))),
            Op::ArrayInsert(i, v) => drop(arr.insert(&mut txn, at(&i, alen), v)),
            Op::ArrayText(i, s) => drop(arr.insert(&mut txn, at(&i, alen), TextPrelim::new(s))),
            Op::ArrayRemove(_, _) if alen == 0 => {}
            Op::ArrayRemove(i, n) => {
                let from = at(&i, alen - 1);
                arr.remove_range(&mut txn, from, n.min(alen - from));
            }
            Op::Xml(tag, s) => {
                xml.push_back(&mut txn, XmlElementPrelim::empty(tag));
                xml.push_back(&mut txn, XmlTextPrelim::new(s));
            }
        }
    }
}

/// What a reader of the document sees.
fn contents(doc: &Doc) -> (String, Any, Any, String) {
    // The root types first: getting one takes a write transaction.
    let (text, map, arr) =
        (doc.get_or_insert_text("text"), doc.get_or_insert_map("map"), doc.get_or_insert_array("arr"));
    let xml = doc.get_or_insert_xml_fragment("xml");
    let txn = doc.transact();
    (text.get_string(&txn), map.to_json(&txn), arr.to_json(&txn), xml.get_string(&txn))
}

const CLIENT_IDS: [u64; 4] = [1, 2, (1 << 53) - 1, (1 << 32) + 7];

/// Two clients editing in turn: the second's whole state (both clients' blocks, their delete
/// sets) and the second's own changes as a diff against the first's state.
#[derive(Debug, Clone)]
struct Edits {
    ids: (usize, usize),
    first: Vec<Op>,
    second: Vec<Op>,
}

fn edits() -> impl Strategy<Value = Edits> {
    let ops = || prop::collection::vec(op(), 0..12);
    ((0..4usize, 1..4usize), ops(), ops()).prop_map(|((a, b), first, second)| Edits {
        ids: (a, (a + b) % 4),
        first,
        second,
    })
}

struct Built {
    doc: Doc,
    first_state: Vec<u8>,
    full: Vec<u8>,
    diff: Vec<u8>,
}

fn build(e: &Edits) -> Built {
    let a = Doc::with_client_id(CLIENT_IDS[e.ids.0]);
    run(&a, &e.first);
    let first_state = a.transact().encode_state_as_update_v1(&StateVector::default());
    let b = Doc::with_client_id(CLIENT_IDS[e.ids.1]);
    b.transact_mut().apply_update(Update::decode_v1(&first_state).unwrap()).unwrap();
    run(&b, &e.second);
    let full = b.transact().encode_state_as_update_v1(&StateVector::default());
    let diff = b.transact().encode_diff_v1(&a.transact().state_vector());
    Built { doc: b, first_state, full, diff }
}

/// Applies what the guard accepts to a new document and to one already holding `base`, then
/// encodes both as a room would (a state vector, a sync answer or snapshot) and loads the snapshot
/// again as a restart would. `Err` says which step failed, with the panic message if yrs panicked.
/// The contents are not read here (see docs/fuzzing.md): yrs's `to_json` can panic or loop forever
/// on documents built from such updates.
fn apply_accepted(bytes: &[u8], base: &[u8]) -> Result<(), String> {
    if guard::decode_update_counted(bytes).is_err() {
        return Ok(());
    }
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        for prefill in [&[][..], base] {
            let doc = Doc::new();
            if !prefill.is_empty() {
                doc.transact_mut().apply_update(Update::decode_v1(prefill).unwrap()).unwrap();
            }
            let (update, _types) = guard::decode_update_counted(bytes).unwrap();
            let _ = doc.transact_mut().apply_update(update); // refused or not, as a room does
            doc.transact().state_vector().encode_v1();
            let snapshot = doc.transact().encode_state_as_update_v1(&StateVector::default());
            let reloaded = Doc::new();
            let update = Update::decode_v1(&snapshot).map_err(|e| format!("the snapshot does not decode: {e}"))?;
            reloaded.transact_mut().apply_update(update).map_err(|e| format!("the snapshot does not apply: {e}"))?;
        }
        Ok(())
    }));
    outcome.unwrap_or_else(|p| {
        let msg = p.downcast_ref::<String>().cloned().or(p.downcast_ref::<&str>().map(|s| s.to_string()));
        Err(format!("yrs panicked: {}", msg.unwrap_or_default()))
    })
}

proptest! {
    #![proptest_config(crate::config(300))]

    #[test]
    fn real_updates_pass_and_round_trip(e in edits()) {
        let built = build(&e);
        let (update, _types) = guard::decode_update_counted(&built.full).expect("the guard accepts what yrs writes");
        let doc = Doc::new();
        doc.transact_mut().apply_update(update).unwrap();
        prop_assert_eq!(contents(&doc), contents(&built.doc));
        prop_assert!(guard::decode_update_counted(&built.diff).is_ok());
        prop_assert!(guard::decode_update_counted(&built.first_state).is_ok());
        let sv = built.doc.transact().state_vector();
        prop_assert_eq!(guard::decode_state_vector(&sv.encode_v1()).expect("a real state vector"), sv);
    }

    #[test]
    fn mutated_updates_never_make_yrs_panic(e in edits(), diff in any::<bool>(), m in mutate::mutations()) {
        let built = build(&e);
        let bytes = mutate::apply(if diff { built.diff.clone() } else { built.full.clone() }, &m);
        let outcome = apply_accepted(&bytes, &built.first_state);
        prop_assert!(outcome.is_ok(), "{:?} on an update the guard accepted: {:?}", outcome, bytes);
        let sv = mutate::apply(built.doc.transact().state_vector().encode_v1(), &m);
        let _ = guard::decode_state_vector(&sv);
    }

    #[test]
    fn arbitrary_updates_and_state_vectors_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let outcome = apply_accepted(&bytes, &[]);
        prop_assert!(outcome.is_ok(), "{:?} on an update the guard accepted: {:?}", outcome, bytes);
        let _ = guard::decode_state_vector(&bytes);
    }
}

/// Found by `mutated_updates_never_make_yrs_panic`: yrs 0.28 client ids have 53 bits
/// (`ClientID::new` debug-asserts it, and in release folds a larger id onto its low 53 bits), so
/// an id from 2^53 up must be refused by the guard, in a state vector as in an update.
#[test]
fn client_ids_past_53_bits_are_refused() {
    const CLIENT_2_53: [u8; 8] = [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10];
    let sv = [&[1u8][..], &CLIENT_2_53, &[0]].concat(); // one entry: client 2^53, clock 0
    let sv = catch_unwind(|| guard::decode_state_vector(&sv).is_ok());
    // one client group holding one GC block of length 1, then an empty delete set
    let update = [&[1u8, 1][..], &CLIENT_2_53, &[0, 0, 1, 0]].concat();
    let update = catch_unwind(|| guard::decode_update_counted(&update).is_ok());
    assert_eq!(
        (sv.ok(), update.ok()),
        (Some(false), Some(false)),
        "(state vector, update): Some(accepted) or None if it panicked"
    );
}

/// Found by `mutated_updates_never_make_yrs_panic`: yrs 0.28 decodes JSON content (ref 2) as
/// count + 1 strings but encodes it as count strings, so a document holding such an item encodes
/// to bytes yrs cannot decode (a snapshot that cannot be loaded), and encoding one with such an
/// item pending panics (`merge_pending_v1` unwraps the failed decode).
#[test]
fn json_content_is_refused_or_survives_its_own_encoding() {
    // client 5, clock 0: JSON content under the root type "a", count 0 (yrs reads one string, "1")
    let integrated = [1, 1, 5, 0, 2, 1, 1, b'a', 0, 1, b'1', 0];
    // the same content after a left origin (5, 7) that never arrives: it stays pending
    let pending = [1, 1, 5, 0, 0x82, 5, 7, 0, 1, b'1', 0];
    let outcomes = (apply_accepted(&integrated, &[]), apply_accepted(&pending, &[]));
    assert_eq!(outcomes, (Ok(()), Ok(())), "(integrated, pending)");
}

/// Found by `mutated_updates_never_make_yrs_panic`: yrs 0.28 adds block lengths to a client's
/// clock, and delete-set lengths to their start, in `u32` (a panic with overflow checks, a wrap
/// without), so a clock range that passes `u32::MAX` must be refused by the guard.
#[test]
fn clock_ranges_past_u32_are_refused() {
    const MAX: [u8; 5] = [0xff, 0xff, 0xff, 0xff, 0x0f];
    // one client (1) whose first block, a GC range of length 1, starts at clock u32::MAX
    let block = [&[1u8, 1, 1][..], &MAX, &[0, 1, 0]].concat();
    // no blocks; a delete set for client 1 with one range of length 5 from clock u32::MAX
    let deleted = [&[0u8, 1, 1, 1][..], &MAX, &[5]].concat();
    let refused = |u: &[u8]| catch_unwind(|| guard::decode_update_counted(u).is_err()).ok();
    assert_eq!((refused(&block), refused(&deleted)), (Some(true), Some(true)), "Some(refused) or None if it panicked");
}

/// Found by `mutated_updates_never_make_yrs_panic` in release runs of 10^5 to 10^6 cases: blocks
/// from clock 2^31 up make yrs 0.28 index out of bounds while it integrates them
/// (`BlockStore::find_index`, block_store.rs:62; a subtraction overflow at line 70 with overflow
/// checks). The room catches that panic and reloads the document from disk, but a client can make
/// it do so at will. The same blocks from clock 2^31 - 128 apply cleanly.
#[test]
fn clocks_from_2_31_up_do_not_make_yrs_panic() {
    // an XML element under the root "xml", then text and elements with origins; no delete set
    let blocks = [
        7, 1, 3, 120, 109, 108, 3, 2, 97, 97, 135, 1, 0, 6, 4, 0, 1, 1, 1, 65, 4, 1, 4, 116, 101, 120, 116, 7, 48, 97,
        65, 48, 97, 32, 32, 135, 1, 1, 3, 5, 97, 97, 97, 97, 97, 135, 1, 10, 6, 4, 0, 1, 11, 4, 32, 65, 11, 65, 0,
    ];
    let from = |clock: u64| {
        let mut update = vec![1, 7, 1]; // one client group of 7 blocks, client 1
        write_var_u64(&mut update, clock);
        update.extend_from_slice(&blocks);
        update
    };
    let outcomes = (apply_accepted(&from((1 << 31) - 128), &[]), apply_accepted(&from((1 << 31) + 5), &[]));
    assert_eq!(outcomes, (Ok(()), Ok(())), "(below 2^31, from 2^31)");
}
