//! The gate between client bytes and yrs: a validating walk over an update (v1) or state vector
//! that checks every count against the bytes left and bounds the nesting of `Any` values, before
//! yrs decodes anything.
//!
//! Why: yrs 0.28.1 decodes `Any` recursively with no depth limit, so ~20 KB of arrays nested 10,000
//! deep overflows a 2 MiB thread stack and aborts the whole process (no `catch_unwind` catches a
//! stack overflow). And although yrs now uses `try_reserve` for counts, a count that fits in memory
//! still reserves it. The walk mirrors yrs's own v1 decoder (`Update::decode`, `Item` content,
//! `Any::decode`) byte for byte, so that what it checks is what yrs then reads.

use super::protocol::{DecodeError, Reader};
use yrs::updates::decoder::Decode;
use yrs::{StateVector, Update};

/// How deep `Any` values (plain JSON-like data in maps and arrays) may nest. Real documents stay in
/// single digits; each level costs yrs a stack frame.
pub const MAX_ANY_DEPTH: usize = 64;

/// Decodes a client's state vector after checking that its entry count fits the bytes present.
pub fn decode_state_vector(bytes: &[u8]) -> Result<StateVector, DecodeError> {
    let mut r = Reader::new(bytes);
    let n = r.read_count(2)?;
    for _ in 0..n {
        read_client(&mut r)?;
        r.read_var_u32()?; // clock
    }
    StateVector::decode_v1(bytes).map_err(|e| DecodeError::Yrs(e.to_string()))
}

/// Validates then decodes a v1 update.
pub fn decode_update(bytes: &[u8]) -> Result<Update, DecodeError> {
    decode_update_counted(bytes).map(|(u, _)| u)
}

/// Validates then decodes a v1 update, and counts the shared types (Y.Array, Y.Map, XML
/// elements...) it creates. Rooms cap that count per document: yrs deletes nested types
/// recursively, so nesting is bounded by the number of types, and the count is what keeps a
/// deep enough chain from overflowing the stack when its outer type is deleted.
pub fn decode_update_counted(bytes: &[u8]) -> Result<(Update, usize), DecodeError> {
    let types = check_update(bytes)?;
    let update = Update::decode_v1(bytes).map_err(|e| DecodeError::Yrs(e.to_string()))?;
    Ok((update, types))
}

/// Walks a v1 update without building anything; returns how many shared types it creates.
pub fn check_update(bytes: &[u8]) -> Result<usize, DecodeError> {
    let mut types = 0;
    let mut r = Reader::new(bytes);
    // Each client group holds at least a block count, a client id and a clock.
    let clients = r.read_count(3)?;
    for _ in 0..clients {
        // Every block takes at least two bytes (info plus a length or content).
        let blocks = r.read_count(2)?;
        read_client(&mut r)?;
        // yrs adds block lengths to the clock in u32, and its block search fails on clocks from
        // 2^31 up (found by fuzzing): a range must stay below that. Two billion changes from one
        // client is no real document.
        let mut clock = u64::from(r.read_var_u32()?);
        for _ in 0..blocks {
            clock += check_block(&mut r, &mut types)?;
            if clock > MAX_CLOCK {
                return Err(DecodeError::Invalid("clock range past 2^31"));
            }
        }
    }
    // Delete set: clients, each with ranges of (clock, len).
    let ds_clients = r.read_count(2)?;
    for _ in 0..ds_clients {
        read_client(&mut r)?;
        let ranges = r.read_count(2)?;
        for _ in 0..ranges {
            let (clock, len) = (r.read_var_u32()?, r.read_var_u32()?);
            if u64::from(clock) + u64::from(len) > MAX_CLOCK {
                return Err(DecodeError::Invalid("deleted range past 2^31"));
            }
        }
    }
    Ok(types)
}

/// The highest clock a range may reach (see the update walk).
const MAX_CLOCK: u64 = 1 << 31;

const HAS_ORIGIN: u8 = 0b1000_0000;
const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
const HAS_PARENT_SUB: u8 = 0b0010_0000;

/// A client id: Yjs ids are 53-bit (they must fit a JavaScript number), and yrs asserts it
/// (a debug assertion the fuzz targets hit with larger ones), so anything wider is refused here.
fn read_client(r: &mut Reader<'_>) -> Result<u64, DecodeError> {
    let id = r.read_var_u64()?;
    if id >= 1 << 53 {
        return Err(DecodeError::Invalid("client id wider than 53 bits"));
    }
    Ok(id)
}

fn check_id(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    read_client(r)?;
    if u64::from(r.read_var_u32()?) >= MAX_CLOCK {
        return Err(DecodeError::Invalid("clock past 2^31"));
    }
    Ok(())
}

/// Checks one block; returns at least its length in clock units (so that a client's clock range
/// can be bounded).
fn check_block(r: &mut Reader<'_>, types: &mut usize) -> Result<u64, DecodeError> {
    let info = r.read_u8()?;
    match info {
        // skip and GC ranges: a non-zero length
        10 | 0 => {
            let len = r.read_var_u32()?;
            if len == 0 {
                return Err(DecodeError::Invalid("empty block"));
            }
            Ok(u64::from(len))
        }
        info => {
            let cant_copy_parent = info & (HAS_ORIGIN | HAS_RIGHT_ORIGIN) == 0;
            if info & HAS_ORIGIN != 0 {
                check_id(r)?;
            }
            if info & HAS_RIGHT_ORIGIN != 0 {
                check_id(r)?;
            }
            if cant_copy_parent {
                if r.read_var_u32()? == 1 {
                    r.read_string()?; // root type name
                } else {
                    check_id(r)?;
                }
                if info & HAS_PARENT_SUB != 0 {
                    r.read_string()?;
                }
            }
            if info & 0b1111 == 7 {
                *types += 1;
            }
            check_content(r, info & 0b1111)
        }
    }
}

/// Checks an item's content; returns an upper bound of its length in clock units (a string's
/// UTF-16 length is at most its UTF-8 byte length).
fn check_content(r: &mut Reader<'_>, ref_num: u8) -> Result<u64, DecodeError> {
    let len = match ref_num {
        1 => u64::from(r.read_var_u32()?), // deleted length
        // JSON content (legacy; Yjs writes Any since 2020): yrs 0.28 reads `len + 1` strings but
        // writes `len`, so a document holding one encodes to bytes it cannot load back, and one
        // pending makes encoding panic. Refused.
        2 => return Err(DecodeError::Invalid("legacy JSON content")),
        3 => {
            r.read_var_bytes()?;
            1
        }
        4 => r.read_string()?.len() as u64,
        5 => {
            r.read_string()?; // embed, JSON text: serde_json bounds its own recursion (128)
            1
        }
        6 => {
            r.read_string()?; // format key
            r.read_string()?; // format value, JSON text
            1
        }
        7 => {
            match r.read_u8()? {
                0 | 1 | 2 | 4 | 5 | 6 | 9 | 15 => {}
                3 => {
                    r.read_string()?; // XML element tag name
                }
                _ => return Err(DecodeError::Invalid("type reference")),
            }
            1
        }
        8 => {
            let n = r.read_count(1)?;
            for _ in 0..n {
                check_any(r, 0)?;
            }
            n as u64
        }
        9 => {
            r.read_string()?; // sub-document guid
            check_any(r, 0)?; // its options
            1
        }
        _ => return Err(DecodeError::Invalid("content type")),
    };
    Ok(len)
}

/// lib0 `Any`, recursing at most [`MAX_ANY_DEPTH`] levels so that our own stack is bounded too.
fn check_any(r: &mut Reader<'_>, depth: usize) -> Result<(), DecodeError> {
    if depth > MAX_ANY_DEPTH {
        return Err(DecodeError::TooDeep);
    }
    match r.read_u8()? {
        127 | 126 | 121 | 120 => {}
        125 => r.skip_varint()?,
        124 => {
            r.read_exact(4)?;
        }
        123 | 122 => {
            r.read_exact(8)?;
        }
        119 => {
            r.read_string()?;
        }
        118 => {
            let n = r.read_count(2)?;
            for _ in 0..n {
                r.read_string()?;
                check_any(r, depth + 1)?;
            }
        }
        117 => {
            let n = r.read_count(1)?;
            for _ in 0..n {
                check_any(r, depth + 1)?;
            }
        }
        116 => {
            r.read_var_bytes()?;
        }
        _ => return Err(DecodeError::Invalid("any value")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use yrs::updates::encoder::Encode;
    use yrs::{Array, Doc, GetString, Map, ReadTxn, Text, Transact};

    fn sample_update() -> Vec<u8> {
        let doc = Doc::with_client_id((1 << 53) - 7);
        let text = doc.get_or_insert_text("text");
        let map = doc.get_or_insert_map("map");
        let arr = doc.get_or_insert_array("arr");
        let mut txn = doc.transact_mut();
        text.insert(&mut txn, 0, "hello wörld");
        text.remove_range(&mut txn, 1, 3);
        map.insert(&mut txn, "n", 42);
        map.insert(&mut txn, "f", 1.5);
        map.insert(&mut txn, "s", "str");
        map.insert(&mut txn, "b", true);
        arr.push_back(&mut txn, yrs::any!({"a": [1, 2, {"b": null}]}));
        drop(txn);
        let state = doc.transact().encode_state_as_update_v1(&StateVector::default());
        state
    }

    #[test]
    fn accepts_what_yrs_writes() {
        let update = sample_update();
        let decoded = decode_update(&update).expect("valid update");
        let doc = Doc::new();
        doc.transact_mut().apply_update(decoded).unwrap();
        let text = doc.get_or_insert_text("text");
        assert_eq!(text.get_string(&doc.transact()), "ho wörld");
        let sv = doc.transact().state_vector().encode_v1();
        assert!(decode_state_vector(&sv).is_ok());
    }

    #[test]
    fn rejects_every_truncation_without_panicking() {
        let update = sample_update();
        for cut in 0..update.len() {
            let _ = decode_update(&update[..cut]);
        }
    }

    #[test]
    fn state_vector_claiming_billions_of_entries_is_refused() {
        let sv = [0x80, 0x80, 0x80, 0x80, 0x0f];
        assert_eq!(decode_state_vector(&sv).unwrap_err(), DecodeError::LengthTooLarge);
    }

    /// An update with one Any item holding arrays nested `depth` deep.
    pub fn nested_any_update(depth: usize) -> Vec<u8> {
        let mut u = vec![1, 1]; // one client, one block
        u.push(5); // client 5
        u.push(0); // clock 0
        u.push(8); // info: Any content, no origins
        u.push(1); // parent is a root type (parent info == 1)
        u.push(1);
        u.push(b'a'); // named "a"
        u.push(1); // one Any value
        for _ in 0..depth {
            u.extend_from_slice(&[117, 1]); // array of one
        }
        u.push(126); // null
        u.push(0); // empty delete set
        u
    }

    #[test]
    fn deep_nesting_is_refused_and_shallow_accepted() {
        assert_eq!(decode_update(&nested_any_update(10_000)).unwrap_err(), DecodeError::TooDeep);
        let ok = decode_update(&nested_any_update(10)).expect("shallow nesting is fine");
        let doc = Doc::new();
        doc.transact_mut().apply_update(ok).unwrap();
        let arr = doc.get_or_insert_array("a");
        assert_eq!(arr.len(&doc.transact()), 1);
    }
}
