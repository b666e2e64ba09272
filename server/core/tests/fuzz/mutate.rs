//! Mutations of valid inputs: random bytes rarely get past a decoder's first length check, while a
//! valid frame or update with a few bytes changed reaches every branch behind it.

use proptest::prelude::*;
use proptest::sample::Index;

/// Varints that lie: lengths and counts far beyond any frame, and overlong encodings.
const LIES: &[&[u8]] = &[
    &[0xff, 0xff, 0xff, 0xff, 0x0f],                               // u32::MAX
    &[0x80, 0x80, 0x80, 0x80, 0x10],                               // 2^32
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // u64::MAX
    &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f], // overflows u64
    &[0x80; 11],                                                   // never ends
    &[0xff, 0xff, 0xff, 0x0f],                                     // 2^28 - 1
    &[0x80, 0x01],                                                 // 128
];

#[derive(Debug, Clone)]
pub enum Mutation {
    Flip(Index, u8),
    Set(Index, u8),
    Truncate(Index),
    Insert(Index, Vec<u8>),
    Remove(Index, u8),
    Lie(Index, Index),
}

pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<Index>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        2 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        1 => (any::<Index>(), 1..16u8).prop_map(|(i, n)| Mutation::Remove(i, n)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, l)| Mutation::Lie(i, l)),
    ]
}

/// One to four mutations.
pub fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 1..=4)
}

pub fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len();
        match m {
            Mutation::Flip(i, mask) if len > 0 => bytes[i.index(len)] ^= mask,
            Mutation::Set(i, b) if len > 0 => bytes[i.index(len)] = *b,
            Mutation::Truncate(i) => bytes.truncate(i.index(len + 1)),
            Mutation::Insert(i, b) => {
                let at = i.index(len + 1);
                bytes.splice(at..at, b.iter().copied());
            }
            Mutation::Remove(i, n) if len > 0 => {
                let at = i.index(len);
                bytes.drain(at..(at + usize::from(*n)).min(len));
            }
            Mutation::Lie(i, l) => {
                let at = i.index(len + 1);
                bytes.splice(at..at, l.get(LIES).iter().copied());
            }
            _ => {}
        }
    }
    bytes
}
