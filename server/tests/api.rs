//! The sessions API and share links: tokens, roles, rotation, deletion, exports, bad input.

mod common;

use common::*;
use commonpad_core::sync::protocol;
use futures_util::StreamExt;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;
use yrs::{Map, ReadTxn, Transact};

/// Tokens required: the default configuration.
fn closed_config() -> commonpad_server::server::Config {
    commonpad_server::server::Config { open: false, max_message_bytes: 256 * 1024, ..test_config() }
}

fn outline_len(v: &serde_json::Value) -> usize {
    v["session"]["outline"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn creating_a_session_needs_the_admin_token_and_good_input() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), closed_config()).await;
    let a = server.addr;
    let good = br#"{"title":"OER workshop"}"#;
    assert_eq!(http(a, "POST", "/api/sessions", None, good).await.status, 401);
    let wrong = http(a, "POST", "/api/sessions", Some("not-the-admin-token"), good).await;
    assert_eq!(wrong.status, 403);
    assert_eq!(wrong.json()["error"], "invalid_token");
    let bad = http(a, "POST", "/api/sessions", Some(ADMIN), b"{not json").await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"], "malformed_json");
    let unknown_field = http(a, "POST", "/api/sessions", Some(ADMIN), br#"{"title":"x","colour":"red"}"#).await;
    assert_eq!(unknown_field.status, 400);
    let empty = http(a, "POST", "/api/sessions", Some(ADMIN), br#"{"title":"   "}"#).await;
    assert_eq!(empty.status, 400);
    assert_eq!(empty.json()["error"], "invalid_field");
    let huge = format!(r#"{{"title":"x","template":"{}"}}"#, "a".repeat(300 * 1024));
    let too_big = http(a, "POST", "/api/sessions", Some(ADMIN), huge.as_bytes()).await;
    assert_eq!(too_big.status, 413);
    let created = http(a, "POST", "/api/sessions", Some(ADMIN), good).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let v = created.json();
    let id = v["id"].as_str().unwrap();
    assert!(v["edit_url"].as_str().unwrap().starts_with(&format!("http://{a}/s/{id}#edit=")));
    assert!(v["view_url"].as_str().unwrap().starts_with(&format!("http://{a}/s/{id}#view=")));
    server.shutdown().await;
}

#[tokio::test]
async fn tokens_decide_who_reads_and_who_writes() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), closed_config()).await;
    let a = server.addr;
    let (id, edit, view) = create_session(a, "Roles").await;
    // Reading the session.
    let as_edit = http(a, "GET", &format!("/api/sessions/{id}"), Some(&edit), b"").await;
    assert_eq!(as_edit.status, 200);
    let v = as_edit.json();
    assert_eq!(v["role"], "edit");
    assert!(v["links"]["edit_url"].is_string() && v["links"]["view_url"].is_string());
    assert_eq!(v["session"]["meta"]["title"], "Roles");
    assert!(outline_len(&v) > 0, "the template was not applied: {v}");
    let as_view = http(a, "GET", &format!("/api/sessions/{id}"), Some(&view), b"").await.json();
    assert_eq!(as_view["role"], "view");
    assert!(as_view["links"].get("edit_url").is_none(), "a view link must not reveal the edit link");
    assert_eq!(http(a, "GET", &format!("/api/sessions/{id}"), None, b"").await.status, 401);
    assert_eq!(http(a, "GET", &format!("/api/sessions/{id}"), Some("bogus"), b"").await.status, 403);
    assert_eq!(http(a, "GET", "/api/sessions/nosuchsession", Some(&edit), b"").await.status, 404);
    // The edit token of one session opens no other.
    let (other, _, _) = create_session(a, "Other").await;
    assert_eq!(http(a, "GET", &format!("/api/sessions/{other}"), Some(&edit), b"").await.status, 403);

    // WebSocket: tokens before the upgrade.
    assert_eq!(ws_status(a, &format!("/sync/{id}")).await, 401);
    assert_eq!(ws_status(a, &format!("/sync/{id}?token=bogus")).await, 403);
    assert_eq!(ws_status(a, &format!("/sync/{id}.private?token={view}")).await, 403, "view link opened private data");
    assert_eq!(ws_status(a, &format!("/sync/{id}.private?token={edit}")).await, 101);
    assert_eq!(ws_status(a, &format!("/sync/nosuch?token={edit}")).await, 404);
    assert_eq!(ws_status(a, "/sync/anything").await, 401, "without --open a token is needed");
    server.shutdown().await;
}

#[tokio::test]
async fn a_view_connection_cannot_write_and_stays_invisible() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), closed_config()).await;
    let a = server.addr;
    let (id, edit, view) = create_session(a, "Read-only").await;
    let mut editor = connect_token(a, &id, &edit).await;
    let mut viewer = connect_token(a, &id, &view).await;
    let before = http(a, "GET", &format!("/api/sessions/{id}/update"), Some(&edit), b"").await.body;

    // The viewer edits locally and sends it, twice, as an update and as a SyncStep2.
    let update = viewer.insert_text("sneaky", 0, "written through a view link").await;
    viewer.send_raw(protocol::encode_sync_step2(&update)).await;
    // It is told once that it is read-only: [2, 0, "read-only"].
    let denied = protocol::encode_permission_denied("read-only");
    let mut got_denied = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(200), viewer.ws.next()).await {
            Ok(Some(Ok(Message::Binary(b)))) if b.as_ref() == denied.as_slice() => got_denied += 1,
            Ok(None) | Ok(Some(Err(_))) => panic!("viewer disconnected"),
            _ => {}
        }
    }
    assert_eq!(got_denied, 1);
    // Viewer presence is not shown to editors.
    let mut aw = Vec::new();
    protocol::write_var_u64(&mut aw, 1);
    protocol::write_var_u64(&mut aw, 777);
    protocol::write_var_u64(&mut aw, 1);
    protocol::write_string(&mut aw, r#"{"user":{"name":"Lurker"}}"#);
    viewer.send_raw(protocol::encode_awareness(&aw)).await;
    editor.pump_until(|_| false, Duration::from_millis(500)).await;
    assert!(editor.updates_received.is_empty(), "a viewer's write reached an editor");
    assert!(!editor.awareness.iter().any(|u| u.windows(6).any(|w| w == b"Lurker")), "viewer presence leaked");
    // ...but the editors learn how many are viewing, from the server's awareness entry.
    assert!(editor.awareness.iter().any(|u| String::from_utf8_lossy(u).contains(r#""viewers":1"#)));
    let after = http(a, "GET", &format!("/api/sessions/{id}/update"), Some(&edit), b"").await.body;
    assert_eq!(before, after, "the server state changed after a viewer wrote");
    // The editor's edits reach the viewer live.
    editor.insert_text("live", 0, "hello viewers").await;
    assert!(viewer.pump_until(|c| c.text("live") == "hello viewers", STEP).await);
    server.shutdown().await;
}

#[tokio::test]
async fn rotation_cuts_old_links_and_deletion_removes_everything() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), closed_config()).await;
    let a = server.addr;
    let (id, edit, view) = create_session(a, "Rotate me").await;
    let mut old_viewer = connect_token(a, &id, &view).await;
    let mut editor = connect_token(a, &id, &edit).await;
    assert_eq!(
        http(a, "POST", &format!("/api/sessions/{id}/rotate"), Some(&edit), br#"{"role":"view"}"#).await.status,
        403
    );
    assert_eq!(
        http(a, "POST", &format!("/api/sessions/{id}/rotate"), Some(ADMIN), br#"{"role":"owner"}"#).await.status,
        400
    );
    let rotated = http(a, "POST", &format!("/api/sessions/{id}/rotate"), Some(ADMIN), br#"{"role":"view"}"#).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let new_view = rotated.json()["url"].as_str().unwrap().split("#view=").nth(1).unwrap().to_owned();
    assert_ne!(new_view, view);
    // The open view connection is closed for good (a 44xx code: stock clients stop retrying); the
    // old link no longer works; the new one does.
    match old_viewer.expect_closed().await {
        Closed::Code(code, _) => assert_eq!(code, commonpad_core::close::LINK_REPLACED),
        other => panic!("{other:?}"),
    }
    assert_eq!(ws_status(a, &format!("/sync/{id}?token={view}")).await, 403);
    assert_eq!(http(a, "GET", &format!("/api/sessions/{id}"), Some(&view), b"").await.status, 403);
    assert_eq!(http(a, "GET", &format!("/api/sessions/{id}"), Some(&new_view), b"").await.status, 200);
    // Editors were not affected.
    editor.pump_until(|_| false, Duration::from_millis(200)).await;
    assert!(editor.closed.is_none());

    assert_eq!(http(a, "DELETE", &format!("/api/sessions/{id}"), Some(&edit), b"").await.status, 403);
    assert_eq!(http(a, "DELETE", &format!("/api/sessions/{id}"), Some(ADMIN), b"").await.status, 204);
    assert!(matches!(editor.expect_closed().await, Closed::Code(commonpad_core::close::SESSION_DELETED, _)));
    // Gone, and its names stay reserved.
    assert_eq!(http(a, "GET", &format!("/api/sessions/{id}"), Some(&edit), b"").await.status, 410);
    assert_eq!(ws_status(a, &format!("/sync/{id}?token={edit}")).await, 410);
    assert!(!dir.path().join("docs").join(&id).exists(), "the document's files are still there");
    assert_eq!(http(a, "DELETE", &format!("/api/sessions/{id}"), Some(ADMIN), b"").await.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn updates_over_http_are_durable_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), closed_config()).await;
    let a = server.addr;
    let (id, edit, view) = create_session(a, "HTTP writes").await;
    let mut listener = connect_token(a, &id, &edit).await;
    // Start from the server's state, as a client would: a set on a fresh document would be
    // concurrent with the template's and could lose.
    let doc = yrs::Doc::new();
    let state = http(a, "GET", &format!("/api/sessions/{id}/update"), Some(&edit), b"").await.body;
    doc.transact_mut()
        .apply_update(<yrs::Update as yrs::updates::decoder::Decode>::decode_v1(&state).unwrap())
        .unwrap();
    let before = doc.transact().state_vector();
    let m = doc.get_or_insert_map("meta");
    m.insert(&mut doc.transact_mut(), "status", "live");
    let update = doc.transact().encode_state_as_update_v1(&before);
    let path = format!("/api/sessions/{id}/update");
    assert_eq!(http(a, "POST", &path, Some(&view), &update).await.status, 403);
    let garbage = http(a, "POST", &path, Some(&edit), &[0x80, 0x80, 0x80, 0x80, 0x0f]).await;
    assert_eq!(garbage.status, 400);
    assert_eq!(garbage.json()["error"], "invalid_update");
    assert_eq!(http(a, "POST", &path, Some(&edit), &update).await.status, 204);
    // Live clients receive it, and the state holds it.
    assert!(listener.pump_until(|c| !c.updates_received.is_empty(), STEP).await);
    let v = http(a, "GET", &format!("/api/sessions/{id}"), Some(&view), b"").await.json();
    assert_eq!(v["session"]["meta"]["status"], "live");
    // Bad export requests.
    for q in ["format=pdf", "format=csv", "format=csv&list=wishes"] {
        let r = http(a, "GET", &format!("/api/sessions/{id}/export?{q}"), Some(&view), b"").await;
        assert_eq!(r.status, 400, "{q}: {}", r.text());
    }
    let md = http(a, "GET", &format!("/api/sessions/{id}/export?format=md"), Some(&view), b"").await;
    assert_eq!(md.status, 200);
    assert_eq!(md.header("content-type"), Some("text/markdown; charset=utf-8"));
    assert_eq!(md.header("content-disposition"), Some(format!("attachment; filename=\"{id}.md\"").as_str()));
    assert!(md.text().contains("HTTP writes"));
    let csv = http(a, "GET", &format!("/api/sessions/{id}/export?format=csv&list=needs"), Some(&view), b"").await;
    assert_eq!(csv.status, 200);
    assert_eq!(csv.header("content-disposition"), Some(format!("attachment; filename=\"{id}-needs.csv\"").as_str()));
    let json = http(a, "GET", &format!("/api/sessions/{id}/export?format=json"), Some(&view), b"").await;
    assert_eq!(json.header("content-type"), Some("application/json"));
    assert_eq!(json.json()["meta"]["status"], "live");
    // Unknown routes and methods.
    assert_eq!(http(a, "PUT", &format!("/api/sessions/{id}"), Some(ADMIN), b"").await.status, 405);
    assert_eq!(http(a, "GET", &format!("/api/sessions/{id}/nope"), Some(ADMIN), b"").await.status, 404);
    server.shutdown().await;
}

#[tokio::test]
async fn the_template_is_applied_once_only() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), closed_config()).await;
    let (id, edit, _) = create_session(server.addr, "Once").await;
    let first = http(server.addr, "GET", &format!("/api/sessions/{id}"), Some(&edit), b"").await.json();
    let n = outline_len(&first);
    assert!(n > 0);
    // A client syncs, keeps its copy "offline" across a restart, and reconnects with it.
    let offline = connect_token(server.addr, &id, &edit).await;
    let kept = offline.doc;
    assert!(server.shutdown().await);
    let server = start_with(dir.path(), closed_config()).await;
    let back = Client::connect_with(server.addr, &format!("{id}?token={edit}"), kept).await;
    drop(back);
    let after = http(server.addr, "GET", &format!("/api/sessions/{id}"), Some(&edit), b"").await.json();
    assert_eq!(outline_len(&after), n, "the outline changed length: the template was applied again");
    assert_eq!(first["session"]["outline"], after["session"]["outline"]);
    server.shutdown().await;
}

#[tokio::test]
async fn metrics_count_connections_by_role() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), closed_config()).await;
    let (id, edit, view) = create_session(server.addr, "Metrics").await;
    let _e = connect_token(server.addr, &id, &edit).await;
    let _v = connect_token(server.addr, &id, &view).await;
    let m = http(server.addr, "GET", "/metrics", None, b"").await.text();
    assert!(m.contains("commonpad_connections_open{role=\"edit\"} 1"), "{m}");
    assert!(m.contains("commonpad_connections_open{role=\"view\"} 1"), "{m}");
    assert!(m.contains("commonpad_fsync_seconds_count"));
    server.shutdown().await;
}

/// Exports of a known session, checked against files in `tests/expected/` (regenerate with
/// `COMMONPAD_UPDATE_EXPECTED=1`, then read the diff).
#[tokio::test]
async fn exports_match_the_expected_files() {
    use commonpad_schema::{insert_item, ListKind, NewItem};
    use yrs::updates::decoder::Decode;
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), closed_config()).await;
    let a = server.addr;
    let body = serde_json::json!({
        "title": "Golden session", "event": "OER Dynamic Coalition", "date": "2026-11-24", "language": "en",
        "template": "# Agenda\n\nWelcome and overview.\n\n- What governments need\n- Who to partner with\n"
    });
    let created = http(a, "POST", "/api/sessions", Some(ADMIN), body.to_string().as_bytes()).await;
    assert_eq!(created.status, 201, "{}", created.text());
    let v = created.json();
    let id = v["id"].as_str().unwrap().to_owned();
    let edit = v["edit_url"].as_str().unwrap().split("#edit=").nth(1).unwrap().to_owned();

    let doc = yrs::Doc::new();
    let state = http(a, "GET", &format!("/api/sessions/{id}/update"), Some(&edit), b"").await.body;
    doc.transact_mut().apply_update(yrs::Update::decode_v1(&state).unwrap()).unwrap();
    let before = doc.transact().state_vector();
    {
        let mut txn = doc.transact_mut();
        let item = |text: &str, author: &str| NewItem {
            text: text.into(),
            author: author.into(),
            author_id: format!("id-{author}"),
            ..NewItem::default()
        };
        insert_item(
            &mut txn,
            ListKind::Needs,
            "need-1",
            1_764_000_000_000.0,
            item("Guidance on open licensing, in plain language", "Ana"),
        );
        insert_item(
            &mut txn,
            ListKind::Needs,
            "need-2",
            1_764_000_060_000.0,
            item("=SUM(A1) \"quoted\", with a comma\nand a new line", "Kofi"),
        );
        let mut res = item("Policy template for OER procurement", "Mei");
        res.kind = Some("resource".into());
        res.format = Some("policy template".into());
        insert_item(&mut txn, ListKind::Resources, "res-1", 1_764_000_120_000.0, res);
        let mut partner = item("Regional university network", "Ana");
        partner.organization = Some("Université ouverte".into());
        partner.website = Some("https://example.org".into());
        insert_item(&mut txn, ListKind::Partners, "par-1", 1_764_000_180_000.0, partner);
    }
    let update = doc.transact().encode_state_as_update_v1(&before);
    assert_eq!(http(a, "POST", &format!("/api/sessions/{id}/update"), Some(&edit), &update).await.status, 204);

    let expected_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/expected");
    for (query, file) in [
        ("format=md", "session.md"),
        ("format=csv&list=needs", "needs.csv"),
        ("format=csv&list=resources", "resources.csv"),
        ("format=csv&list=partners", "partners.csv"),
        ("format=json", "session.json"),
    ] {
        let r = http(a, "GET", &format!("/api/sessions/{id}/export?{query}"), Some(&edit), b"").await;
        assert_eq!(r.status, 200, "{query}");
        let got = r.text();
        let path = expected_dir.join(file);
        if std::env::var_os("COMMONPAD_UPDATE_EXPECTED").is_some() {
            std::fs::create_dir_all(&expected_dir).unwrap();
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(got, want, "{query} differs from {}", path.display());
    }
    server.shutdown().await;
}

#[tokio::test]
async fn open_mode_still_needs_a_token_for_session_documents() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_with(dir.path(), test_config()).await; // --open
    let a = server.addr;
    let (id, edit, view) = create_session(a, "Open server").await;
    assert_eq!(ws_status(a, "/sync/any-plain-doc").await, 101, "--open lets plain documents through");
    assert_eq!(ws_status(a, &format!("/sync/{id}")).await, 401);
    assert_eq!(ws_status(a, &format!("/sync/{id}.private")).await, 401, "the private document without a token");
    assert_eq!(ws_status(a, &format!("/sync/{id}.private?token={view}")).await, 403);
    assert_eq!(ws_status(a, &format!("/sync/{id}?token={edit}")).await, 101);
    server.shutdown().await;
}
