//! The batch codec (disk log records, cluster stream entries): whatever `encode` writes, `decode`
//! gives back; whatever bytes `decode` is given, it answers without panicking, and what it accepts
//! is exactly what `encode` would have written.

use bytes::Bytes;
use commonpad_core::store::batch;
use proptest::prelude::*;

proptest! {
    #![proptest_config(crate::config(2000))]

    #[test]
    fn decode_inverts_encode(updates in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..12)) {
        let batch: Vec<Bytes> = updates.iter().cloned().map(Bytes::from).collect();
        let encoded = batch::encode(&batch);
        let decoded = batch::decode(&encoded).expect("an encoded batch decodes");
        prop_assert_eq!(decoded, updates.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }

    #[test]
    fn arbitrary_batches_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(updates) = batch::decode(&bytes) {
            let again: Vec<Bytes> = updates.into_iter().map(Bytes::copy_from_slice).collect();
            prop_assert_eq!(batch::encode(&again), bytes);
        }
    }

    #[test]
    fn mutated_batches_never_panic(
        updates in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..64), 1..6),
        m in crate::mutate::mutations(),
    ) {
        let batch: Vec<Bytes> = updates.into_iter().map(Bytes::from).collect();
        let bytes = crate::mutate::apply(batch::encode(&batch), &m);
        if let Ok(updates) = batch::decode(&bytes) {
            let again: Vec<Bytes> = updates.into_iter().map(Bytes::copy_from_slice).collect();
            prop_assert_eq!(batch::encode(&again), bytes);
        }
    }
}
