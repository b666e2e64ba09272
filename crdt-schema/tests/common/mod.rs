//! A deterministic sample session shared by the tests (and written to `fixtures/rust-session.bin`).
#![allow(dead_code)]

use commonpad_schema::{init_session, insert_item, set_email, ListKind, NewItem, NewSession, Template};
use yrs::updates::decoder::Decode;
use yrs::{Array, Doc, Map, MapRef, Out, ReadTxn, StateVector, Transact, TransactionMut, Update};

pub const T0: f64 = 1_767_225_600_000.0; // 2026-01-01T00:00:00Z

/// A document with a fixed client id, so that the same calls make the same update.
pub fn doc() -> Doc {
    Doc::with_client_id(1)
}

pub fn new_session() -> NewSession {
    NewSession {
        title: "OER Dynamic Coalition: \"Africa\" regional session".into(),
        event: "OE Global 2026, Nairobi".into(),
        date: "2026-03-10".into(),
        language: "en".into(),
    }
}

/// Sets a vote the way the TypeScript model's toggleVote does.
pub fn vote(txn: &mut TransactionMut, list: ListKind, id: &str, participant: &str) {
    let Some(array) = txn.get_array(list.as_str()) else { return };
    let items: Vec<Out> = array.iter(txn).collect();
    for item in items {
        if let Out::YMap(m) = item {
            if matches!(m.get(txn, "id"), Some(Out::Any(yrs::Any::String(s))) if &*s == id) {
                if let Some(Out::YMap(votes)) = m.get(txn, "votes") {
                    votes.insert(txn, participant, true);
                }
            }
        }
    }
}

pub fn item(text: &str, author: &str, author_id: &str) -> NewItem {
    NewItem { text: text.into(), author: author.into(), author_id: author_id.into(), ..NewItem::default() }
}

/// The sample session: the built-in template, and items in all four lists with unicode, commas,
/// quotes, newlines, a formula-like text and votes.
pub fn sample_doc() -> Doc {
    let doc = doc();
    {
        let mut txn = doc.transact_mut();
        init_session(&mut txn, &new_session(), &Template::builtin());
        insert_item(
            &mut txn,
            ListKind::Needs,
            "n1",
            T0,
            item("Policy templates in French, Portuguese and Arabic", "Amina Diallo", "p-amina"),
        );
        insert_item(
            &mut txn,
            ListKind::Needs,
            "n2",
            T0 + 1000.0,
            item("Training for ministry staff on \"open licences\",\nwith follow-up", "José Núñez", "p-jose"),
        );
        insert_item(
            &mut txn,
            ListKind::Needs,
            "n3",
            T0 + 2000.0,
            item("=HYPERLINK(\"http://evil.example\",\"click\")", "Mallory", "p-mallory"),
        );
        insert_item(
            &mut txn,
            ListKind::Resources,
            "r1",
            T0 + 3000.0,
            NewItem {
                kind: Some("resource".into()),
                format: Some("policy template".into()),
                ..item("Model OER policy (adaptable)", "Amina Diallo", "p-amina")
            },
        );
        insert_item(
            &mut txn,
            ListKind::Resources,
            "r2",
            T0 + 4000.0,
            NewItem {
                kind: Some("service".into()),
                format: Some("capacity building".into()),
                ..item("Workshops for *ministry* staff — 2 days", "王芳", "p-wang")
            },
        );
        insert_item(
            &mut txn,
            ListKind::Partners,
            "pa1",
            T0 + 5000.0,
            NewItem {
                organization: Some("Commonwealth of Learning".into()),
                website: Some("https://www.col.org".into()),
                ..item("Runs OER policy workshops with governments", "José Núñez", "p-jose")
            },
        );
        insert_item(
            &mut txn,
            ListKind::Collaborators,
            "c1",
            T0 + 6000.0,
            NewItem {
                name: Some("Amina Diallo".into()),
                organization: Some("Université Cheikh Anta Diop, Dakar".into()),
                interests: Some("policy, translation".into()),
                ..item("Happy to lead the French translations", "Amina Diallo", "p-amina")
            },
        );
        vote(&mut txn, ListKind::Needs, "n1", "p-jose");
        vote(&mut txn, ListKind::Needs, "n1", "p-wang");
        vote(&mut txn, ListKind::Needs, "n2", "p-amina");
        vote(&mut txn, ListKind::Resources, "r2", "p-amina");
    }
    doc
}

/// The private document of the sample session.
pub fn sample_private_doc() -> Doc {
    let doc = Doc::with_client_id(2);
    {
        let mut txn = doc.transact_mut();
        set_email(&mut txn, "c1", "amina.diallo@example.org");
    }
    doc
}

pub fn encode(doc: &Doc) -> Vec<u8> {
    doc.transact().encode_state_as_update_v1(&StateVector::default())
}

/// A fresh document from an update: its roots are untyped, as on a server.
pub fn decode(update: &[u8]) -> Doc {
    let doc = Doc::new();
    {
        let mut txn = doc.transact_mut();
        let u = Update::decode_v1(update).expect("valid update");
        txn.apply_update(u).expect("applies");
    }
    doc
}

pub fn map_of(txn: &impl ReadTxn, list: ListKind, index: u32) -> Option<MapRef> {
    match txn.get_array(list.as_str())?.get(txn, index)? {
        Out::YMap(m) => Some(m),
        _ => None,
    }
}
