//! What a public server shows and keeps (issue 11, items 8, 11, 12): names that differ only in case
//! from a session's are refused, the web client and exports carry protective headers, and the data
//! directory is readable by its owner only.

mod common;

use common::*;
use commonpad_server::server::Config;

#[tokio::test]
async fn with_open_a_name_that_differs_only_in_case_from_a_session_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), Config { open: true, ..test_config() }).await;
    let a = server.addr;
    let (id, _, _) = create_session(a, "Case").await;
    let upper = id.to_uppercase();
    let mixed = format!("{}{}", id[..1].to_uppercase(), &id[1..]);
    for name in [upper.clone(), format!("{upper}.private"), mixed, format!("{id}.PRIVATE")] {
        let status = ws_status(a, &format!("/sync/{name}")).await;
        assert!(
            (400..500).contains(&status),
            "{name} opened with {status}: it names the session's files on some filesystems"
        );
    }
    server.shutdown().await;
}

#[tokio::test]
async fn two_names_that_differ_only_in_case_are_never_both_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await;
    let a = server.addr;
    // Loaded at the same time.
    let mut notes = Client::connect(a, "Notes").await;
    notes.insert_text("t", 0, "one document").await;
    let mut twin = raw_connect(a, "notes").await;
    assert_ne!(close_code_after(&mut twin).await, None, "a second name for the same files was served");
    drop(notes);
    // One stored, the other asked for later.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await; // the room unloads (grace 200 ms)
    let mut later = raw_connect(a, "NOTES").await;
    use futures_util::SinkExt;
    let _ = later
        .send(tokio_tungstenite::tungstenite::Message::binary(commonpad_core::sync::protocol::encode_sync_step1(&[0])))
        .await;
    assert_ne!(close_code_after(&mut later).await, None, "a case variant of a stored document was served");
    server.shutdown().await;
}

#[tokio::test]
async fn the_web_client_and_exports_carry_protective_headers() {
    let dir = tempfile::tempdir().unwrap();
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "<!doctype html><title>CommonPad</title>").unwrap();
    std::fs::write(web.path().join("app.js"), "console.log(1)").unwrap();
    let config = Config { open: false, web_dir: web.path().to_owned(), ..test_config() };
    let server = start_with(dir.path(), config).await;
    let a = server.addr;
    for path in ["/", "/s/abc", "/app.js"] {
        let r = http(a, "GET", path, None, b"").await;
        assert_eq!(r.status, 200, "{path}");
        let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP"));
        assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"), "{path}: {csp}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("referrer-policy"), Some("no-referrer"), "{path}");
    }
    let (id, edit, _) = create_session(a, "Headers").await;
    for path in [
        format!("/api/sessions/{id}"),
        format!("/api/sessions/{id}/export?format=md"),
        format!("/api/sessions/{id}/update"),
    ] {
        let r = http(a, "GET", &path, Some(&edit), b"").await;
        assert_eq!(r.status, 200, "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}: links and outcomes must not be cached");
    }
    server.shutdown().await;
}

#[tokio::test]
async fn a_new_data_directory_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("data");
    let server = start_with(&data, test_config()).await;
    let (id, edit, _) = create_session(server.addr, "Private").await;
    let mut c = connect_token(server.addr, &format!("{id}.private"), &edit).await;
    c.insert_text("emails", 0, "ana@example.org").await;
    c.pump_until(|c| !c.updates_received.is_empty(), STEP).await;
    drop(c);
    server.shutdown().await;
    let mut checked = 0;
    let mut stack = vec![data.clone()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} is {mode:o}: readable by others", p.display());
        checked += 1;
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(checked > 5, "only {checked} paths checked");
}
