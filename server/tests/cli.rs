//! The maintenance commands against the real binary: import, export, compact, and the data
//! directory lock that keeps them away from a running server.

use std::process::{Command, Stdio};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, ReadTxn, StateVector, Text, Transact, Update};

const BIN: &str = env!("CARGO_BIN_EXE_commonpad");

fn text_update(s: &str) -> Vec<u8> {
    let doc = Doc::new();
    let t = doc.get_or_insert_text("text");
    t.insert(&mut doc.transact_mut(), 0, s);
    let u = doc.transact().encode_state_as_update_v1(&StateVector::default());
    u
}

fn text_of(update: &[u8]) -> String {
    let doc = Doc::new();
    doc.transact_mut().apply_update(Update::decode_v1(update).unwrap()).unwrap();
    let t = doc.get_or_insert_text("text");
    let s = t.get_string(&doc.transact());
    s
}

#[test]
fn import_export_compact_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("u.bin");
    std::fs::write(&file, text_update("imported outcome list")).unwrap();
    let out = Command::new(BIN).args(["import", "--data"]).arg(&data).arg("notes").arg(&file).output().unwrap();
    assert!(out.status.success(), "import failed: {}", String::from_utf8_lossy(&out.stderr));

    // A second import merges rather than replaces.
    std::fs::write(&file, text_update("second ")).unwrap();
    let out = Command::new(BIN).args(["import", "--data"]).arg(&data).arg("notes").arg(&file).output().unwrap();
    assert!(out.status.success());

    let out = Command::new(BIN).args(["export", "--data"]).arg(&data).arg("notes").output().unwrap();
    assert!(out.status.success());
    let text = text_of(&out.stdout);
    assert!(text.contains("imported outcome list") && text.contains("second "), "{text:?}");

    let out = Command::new(BIN).args(["compact", "--data"]).arg(&data).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(BIN).args(["check", "--data"]).arg(&data).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("1 documents checked, 0 damaged"));
    let again = Command::new(BIN).args(["export", "--data"]).arg(&data).arg("notes").output().unwrap();
    assert_eq!(text_of(&again.stdout), text);
}

#[test]
fn import_refuses_garbage_and_bad_names_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("garbage.bin");
    std::fs::write(&file, [0x80, 0x80, 0x80, 0x80, 0x0f, 1, 2, 3]).unwrap();
    let out = Command::new(BIN).args(["import", "--data"]).arg(&data).arg("notes").arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a valid Yjs v1 update"));
    std::fs::write(&file, text_update("x")).unwrap();
    let out = Command::new(BIN).args(["import", "--data"]).arg(&data).arg("../escape").arg(&file).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid document name"));
    assert!(!dir.path().join("escape").exists());
}

#[test]
fn maintenance_commands_refuse_a_directory_in_use() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Command::new(BIN)
        .args(["serve", "--addr", "127.0.0.1:0", "--data"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.take().unwrap()), &mut line).unwrap();
    assert!(line.starts_with("listening on http://127.0.0.1:"), "{line:?}");
    let out = Command::new(BIN).args(["compact", "--data"]).arg(&data).output().unwrap();
    // Export only reads, so it works beside a running server.
    let export = Command::new(BIN).args(["export", "--data"]).arg(&data).arg("notes").output().unwrap();
    let _ = server.kill();
    assert!(export.status.success(), "{}", String::from_utf8_lossy(&export.stderr));
    assert_eq!(text_of(&export.stdout), "");
    let _ = server.wait();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another CommonPad process"));
}
