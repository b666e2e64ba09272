//! Cross-language fixtures: the Rust crate and the TypeScript model read the same documents the
//! same way.
//!
//! - `fixtures/js-session.bin` is written by `fixtures/gen-js.mjs` (npm yjs + ts/session.ts);
//!   its `readSession` output is `js-session.expected.json`. Here, `read_session` + `render_json`
//!   must give exactly that, and `validate` must find nothing wrong.
//! - `fixtures/rust-session.bin` (+ `.private.bin`, + `rust-session.json`) is written here from
//!   `init_session` and `insert_item`; the JS tests read it with the model.
//!
//! To refresh the Rust fixture after a deliberate change: `COMMONPAD_UPDATE_FIXTURES=1 cargo test
//! -p commonpad-schema --test fixtures`.

mod common;

use commonpad_schema::{read_emails, read_session, render_json, validate};
use serde_json::Value;
use std::path::PathBuf;
use yrs::Transact;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e} (run `npm run fixtures` in crdt-schema)"))
}

#[test]
fn js_session_reads_as_the_typescript_model_reads_it() {
    let doc = common::decode(&read("js-session.bin"));
    let txn = doc.transact();
    let expected: Value = serde_json::from_slice(&read("js-session.expected.json")).expect("expected JSON");
    let actual = render_json(&read_session(&txn));
    assert_eq!(actual, expected, "Rust:\n{}", serde_json::to_string_pretty(&actual).unwrap_or_default());
    assert_eq!(validate(&txn), vec![]);
}

#[test]
fn js_private_document_reads() {
    let doc = common::decode(&read("js-session.private.bin"));
    let emails = read_emails(&doc.transact());
    assert_eq!(emails.len(), 1);
    assert_eq!(emails.get("js-c1").map(String::as_str), Some("zoe.odegaard@example.org"));
}

#[test]
fn rust_session_fixture_is_current() {
    let doc = common::sample_doc();
    let private = common::sample_private_doc();
    let json = render_json(&read_session(&doc.transact()));
    let pretty = serde_json::to_string_pretty(&json).expect("JSON") + "\n";
    let update = std::env::var_os("COMMONPAD_UPDATE_FIXTURES").is_some();
    let names = ["rust-session.bin", "rust-session.private.bin", "rust-session.json"];
    if update || names.iter().any(|n| !fixture(n).exists()) {
        std::fs::write(fixture(names[0]), common::encode(&doc)).expect("write");
        std::fs::write(fixture(names[1]), common::encode(&private)).expect("write");
        std::fs::write(fixture(names[2]), &pretty).expect("write");
    }
    // Compared by content, not bytes: the order in which yrs writes a run's several marks is not
    // fixed, so the same session can encode to different (equivalent) bytes.
    let stale = "rust fixtures are stale: rerun with COMMONPAD_UPDATE_FIXTURES=1 and commit them";
    let committed = common::decode(&read(names[0]));
    assert_eq!(render_json(&read_session(&committed.transact())), json, "{stale}");
    let committed_json: Value = serde_json::from_slice(&read(names[2])).expect("JSON");
    assert_eq!(committed_json, json, "{stale}");
    let committed_private = common::decode(&read(names[1]));
    assert_eq!(read_emails(&committed_private.transact()), read_emails(&private.transact()), "{stale}");
    assert_eq!(validate(&committed.transact()), vec![]);
}
