//! Round trips through real documents, and hostile or odd documents: reading never panics and
//! substitutes defaults, validation names every problem.

mod common;

use commonpad_schema::*;
use std::collections::HashMap;
use std::sync::Arc;
use yrs::types::Attrs;
use yrs::updates::decoder::Decode;
use yrs::{
    Any, Array, ArrayPrelim, Doc, Map, MapPrelim, Out, Text, TextPrelim, Transact, TransactionMut, WriteTxn, Xml,
    XmlElementPrelim, XmlElementRef, XmlFragment, XmlTextPrelim,
};

fn problems_at(problems: &[Problem], path: &str) -> Vec<String> {
    problems.iter().filter(|p| p.path == path).map(|p| p.message.clone()).collect()
}

fn has(problems: &[Problem], path: &str, needle: &str) -> bool {
    problems_at(problems, path).iter().any(|m| m.contains(needle))
}

// ------------------------------------------------------------------------------------------------
// Creation and round trips

#[test]
fn init_session_writes_meta_and_the_outline() {
    let doc = common::doc();
    init_session(&mut doc.transact_mut(), &common::new_session(), &Template::builtin());
    let txn = doc.transact();
    let s = read_session(&txn);
    assert_eq!(
        s.meta,
        Meta {
            title: "OER Dynamic Coalition: \"Africa\" regional session".into(),
            event: "OE Global 2026, Nairobi".into(),
            date: "2026-03-10".into(),
            language: "en".into(),
            status: "draft".into(),
        }
    );
    // The title placeholder of the template is filled in.
    assert_eq!(
        s.outline[0],
        Block::Heading { level: 1, content: vec![Inline::plain("OER Dynamic Coalition: \"Africa\" regional session")] }
    );
    assert_eq!(s.outline.len(), Template::builtin().blocks().len());
    assert!(s.needs.is_empty() && s.resources.is_empty() && s.partners.is_empty() && s.collaborators.is_empty());
    assert_eq!(validate(&txn), vec![]);
}

#[test]
fn the_template_is_applied_once() {
    let doc = common::doc();
    let template = Template::builtin();
    init_session(&mut doc.transact_mut(), &common::new_session(), &template);
    let once = read_session(&doc.transact());
    // A second call (a retried request, a bug) does not add a second outline or reset the status.
    doc.get_or_insert_map("meta").insert(&mut doc.transact_mut(), "status", "live");
    init_session(&mut doc.transact_mut(), &NewSession { title: "Other".into(), ..NewSession::default() }, &template);
    let twice = read_session(&doc.transact());
    assert_eq!(twice.outline, once.outline);
    assert_eq!(twice.meta.title, once.meta.title);
    assert_eq!(twice.meta.status, "live");
    // ...also when the document came back from storage, with untyped roots.
    let stored = common::decode(&common::encode(&doc));
    init_session(&mut stored.transact_mut(), &common::new_session(), &template);
    assert_eq!(read_session(&stored.transact()).outline, once.outline);
}

#[test]
fn a_session_survives_encoding_as_a_server_stores_it() {
    let doc = common::sample_doc();
    let before = read_session(&doc.transact());
    let after_doc = common::decode(&common::encode(&doc));
    let after = read_session(&after_doc.transact());
    assert_eq!(after, before);
    assert_eq!(validate(&after_doc.transact()), vec![]);
    assert_eq!(before.needs.len(), 3);
    assert_eq!(before.needs[0].votes, vec!["p-jose".to_owned(), "p-wang".to_owned()]);
    assert_eq!(before.needs[1].text, "Training for ministry staff on \"open licences\",\nwith follow-up");
}

#[test]
fn the_json_export_deserialises_back_into_the_session() {
    let s = read_session(&common::sample_doc().transact());
    let json = render_json(&s);
    assert_eq!(json["version"], 1);
    assert_eq!(json["needs"][0]["createdAt"], serde_json::json!(1_767_225_600_000u64));
    assert!(json["needs"][0].get("kind").is_none(), "extra fields of other lists are absent");
    assert_eq!(json["resources"][1]["kind"], "service");
    let back: Session = serde_json::from_value(json).expect("deserialises");
    assert_eq!(back, s);
}

#[test]
fn add_item_writes_a_complete_item_with_a_fresh_id() {
    let doc = common::doc();
    let before =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as f64).unwrap_or(0.0);
    let (a, b) = {
        let mut txn = doc.transact_mut();
        init_session(&mut txn, &common::new_session(), &Template::builtin());
        let a = add_item(&mut txn, ListKind::Resources, common::item("A handout", "Ana", "p-ana"));
        let b = add_item(
            &mut txn,
            ListKind::Partners,
            NewItem {
                organization: Some("UNESCO".into()),
                format: Some("video".into()),
                ..common::item("UNESCO", "Ana", "p-ana")
            },
        );
        (a, b)
    };
    assert_ne!(a, b);
    for id in [&a, &b] {
        // A UUID v4, like crypto.randomUUID().
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert!(matches!(id.as_bytes()[19], b'8' | b'9' | b'a' | b'b'));
    }
    let txn = doc.transact();
    let s = read_session(&txn);
    let r = &s.resources[0];
    assert_eq!(
        (r.id.as_str(), r.text.as_str(), r.author.as_str(), r.author_id.as_str()),
        (a.as_str(), "A handout", "Ana", "p-ana")
    );
    assert!(r.created_at >= before && r.created_at < before + 60_000.0);
    // Defaults from schema.json for the list's own extra fields...
    assert_eq!((r.kind.as_deref(), r.format.as_deref()), (Some("resource"), Some("other")));
    // ...and other lists' fields are not written.
    let p = common::map_of(&txn, ListKind::Partners, 0).expect("item");
    assert!(p.get(&txn, "format").is_none());
    assert_eq!(s.partners[0].organization.as_deref(), Some("UNESCO"));
    assert_eq!(s.partners[0].website.as_deref(), Some(""));
    // The text is a Y.Text, so that concurrent edits merge.
    assert!(matches!(p.get(&txn, "text"), Some(Out::YText(_))));
    assert!(matches!(p.get(&txn, "votes"), Some(Out::YMap(_))));
    assert_eq!(validate(&txn), vec![]);
}

#[test]
fn concurrent_items_and_votes_merge() {
    let server = common::decode(&common::encode(&common::sample_doc()));
    let alice = common::decode(&common::encode(&server));
    let bob = common::decode(&common::encode(&server));
    add_item(&mut alice.transact_mut(), ListKind::Needs, common::item("from alice", "Alice", "p-alice"));
    add_item(&mut bob.transact_mut(), ListKind::Needs, common::item("from bob", "Bob", "p-bob"));
    common::vote(&mut alice.transact_mut(), ListKind::Needs, "n3", "p-alice");
    common::vote(&mut bob.transact_mut(), ListKind::Needs, "n3", "p-bob");
    for peer in [&alice, &bob] {
        let update = yrs::Update::decode_v1(&common::encode(peer)).expect("update");
        server.transact_mut().apply_update(update).expect("apply");
    }
    let s = read_session(&server.transact());
    assert_eq!(s.needs.len(), 5);
    assert_eq!(s.needs[2].votes, vec!["p-alice".to_owned(), "p-bob".to_owned()]);
    assert_eq!(validate(&server.transact()), vec![]);
}

#[test]
fn emails_live_in_the_private_document() {
    let private = common::doc();
    set_email(&mut private.transact_mut(), "c1", "a@example.org");
    set_email(&mut private.transact_mut(), "c2", "b@example.org");
    set_email(&mut private.transact_mut(), "c1", "new@example.org");
    let emails = read_emails(&private.transact());
    assert_eq!(
        emails.into_iter().collect::<Vec<_>>(),
        vec![("c1".into(), "new@example.org".into()), ("c2".into(), "b@example.org".into())]
    );
    // An empty email forgets the address.
    set_email(&mut private.transact_mut(), "c2", "");
    assert_eq!(read_emails(&private.transact()).len(), 1);
    // The session document never holds them.
    let session = common::sample_doc();
    let json = render_json(&read_session(&session.transact()));
    assert!(json["collaborators"][0].is_object() && json["collaborators"][0].get("email").is_none());
    assert!(!json.to_string().contains("amina.diallo@"));
    assert_eq!(private_doc_name("abc"), "abc.private");
}

#[test]
fn template_outline_survives_the_document() {
    let md = "# {{title}} ({{event}})\n\nText with **bold**, *italic*, ***both*** and [a link](https://example.org).\n\n- one\n  1. nested\n  2. **nested bold**\n- two\n\n1) first\n";
    let template = Template::from_markdown(md).expect("parses");
    let doc = common::doc();
    init_session(
        &mut doc.transact_mut(),
        &NewSession { title: "T".into(), event: "E".into(), ..NewSession::default() },
        &template,
    );
    let outline = read_session(&doc.transact()).outline;
    let mut expected = template.blocks().to_vec();
    expected[0] = Block::Heading { level: 1, content: vec![Inline::plain("T (E)")] };
    assert_eq!(outline, expected);
}

// ------------------------------------------------------------------------------------------------
// Hostile and odd documents

/// Every root written as every wrong type, both as typed roots (a client that defined them) and as
/// untyped roots decoded from an update (as on the server).
#[test]
fn roots_of_the_wrong_type_read_as_defaults_and_are_reported() {
    let roots = ["meta", "outline", "needs", "resources", "partners", "collaborators"];
    for root in roots {
        for kind in ["map", "array", "text", "xml"] {
            let doc = Doc::new();
            {
                let mut txn = doc.transact_mut();
                match kind {
                    "map" => {
                        txn.get_or_insert_map(root).insert(&mut txn, "title", "x");
                    }
                    "array" => {
                        txn.get_or_insert_array(root).push_back(&mut txn, "x");
                    }
                    "text" => {
                        txn.get_or_insert_text(root).insert(&mut txn, 0, "hello");
                    }
                    _ => {
                        txn.get_or_insert_xml_fragment(root).push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
                    }
                }
            }
            let expected_kind = match root {
                "meta" => "map",
                "outline" => "xml",
                _ => "array",
            };
            let decoded = common::decode(&common::encode(&doc));
            for (label, d) in [("typed", &doc), ("untyped", &decoded)] {
                let txn = d.transact();
                let s = read_session(&txn);
                let problems = validate(&txn);
                if kind == expected_kind {
                    continue;
                }
                // A sequence written where a sequence of another kind belongs (an array as the
                // outline, an XML fragment as a list) is only told apart by its entries.
                assert!(
                    problems.iter().any(|p| p.path == root || p.path.starts_with(&format!("{root}["))),
                    "{root} written as {kind} ({label}): no problem at the root in {problems:?}"
                );
                // Defaults, except what an untyped root legitimately holds when read as expected.
                assert_eq!(s.meta.status, "draft");
                if root != "meta" || kind != "map" {
                    assert_eq!(s.meta.title, "");
                }
                for list in ListKind::ALL {
                    assert!(s.list(list).is_empty(), "{root} as {kind} ({label}): {list} not empty");
                }
                if label == "typed" {
                    assert!(s.outline.is_empty() || root != "outline");
                }
                // Writes on a document like this do not panic either.
                drop(txn);
                let mut txn = d.transact_mut();
                init_session(&mut txn, &common::new_session(), &Template::builtin());
                add_item(&mut txn, ListKind::Needs, common::item("x", "y", "z"));
                set_email(&mut txn, "c1", "a@example.org");
            }
        }
    }
}

#[test]
fn a_root_used_as_two_types_by_two_clients_is_reported() {
    let a = common::doc();
    a.get_or_insert_map("meta").insert(&mut a.transact_mut(), "title", "From A");
    let b = Doc::with_client_id(2);
    b.get_or_insert_array("meta").push_back(&mut b.transact_mut(), "junk");
    let merged = common::decode(&common::encode(&a));
    merged.transact_mut().apply_update(yrs::Update::decode_v1(&common::encode(&b)).expect("update")).expect("apply");
    let txn = merged.transact();
    assert_eq!(read_session(&txn).meta.title, "From A");
    assert!(has(&validate(&txn), "meta", "sequence content"));
}

#[test]
fn odd_items_read_leniently_and_are_reported() {
    let doc = common::doc();
    {
        let mut txn = doc.transact_mut();
        let needs = txn.get_or_insert_array("needs");
        needs.push_back(&mut txn, 42); // not a map
        needs.push_back(&mut txn, "a string"); // not a map
        needs.push_back(&mut txn, ArrayPrelim::default()); // not a map
        needs.push_back(&mut txn, TextPrelim::new("text")); // not a map
        let empty: yrs::MapRef = needs.push_back(&mut txn, MapPrelim::default()); // nothing in it
        let plain: yrs::MapRef = needs.push_back(&mut txn, MapPrelim::default());
        plain.insert(&mut txn, "id", "p1");
        plain.insert(&mut txn, "text", "a plain string"); // should be a Y.Text
        plain.insert(&mut txn, "author", 7); // wrong type
        plain.insert(&mut txn, "authorId", "u");
        plain.insert(&mut txn, "createdAt", "yesterday");
        plain.insert(&mut txn, "votes", Any::Array(Arc::from(vec![Any::from("u")]))); // should be a Y.Map
        let dup: yrs::MapRef = needs.push_back(&mut txn, MapPrelim::default());
        dup.insert(&mut txn, "id", "p1");
        dup.insert(&mut txn, "text", ArrayPrelim::default());
        dup.insert(&mut txn, "author", "a");
        dup.insert(&mut txn, "authorId", "u");
        dup.insert(&mut txn, "createdAt", f64::INFINITY);
        let votes: yrs::MapRef = dup.insert(&mut txn, "votes", MapPrelim::default());
        votes.insert(&mut txn, "u1", true);
        votes.insert(&mut txn, "u2", false);
        votes.insert(&mut txn, "u3", "yes");
        let _ = empty;
        let resources = txn.get_or_insert_array("resources");
        let r: yrs::MapRef = resources.push_back(&mut txn, MapPrelim::default());
        for (k, v) in [("id", "r1"), ("author", "a"), ("authorId", "u"), ("kind", "gadget"), ("format", "podcast")] {
            r.insert(&mut txn, k, v);
        }
        r.insert(&mut txn, "text", TextPrelim::new("t"));
        r.insert(&mut txn, "createdAt", 1.0);
        r.insert(&mut txn, "votes", MapPrelim::default());
        let meta = txn.get_or_insert_map("meta");
        meta.insert(&mut txn, "title", 3);
        meta.insert(&mut txn, "status", "archived");
    }
    for d in [doc.clone(), common::decode(&common::encode(&doc))] {
        let txn = d.transact();
        let s = read_session(&txn);
        // Only the maps are items.
        assert_eq!(s.needs.len(), 3);
        assert_eq!(s.needs[0], Item { votes: vec![], ..Item::default() });
        assert_eq!(s.needs[1].text, "a plain string");
        assert_eq!(s.needs[1].author, "");
        assert_eq!(s.needs[1].created_at, 0.0);
        assert!(s.needs[1].votes.is_empty());
        assert_eq!(s.needs[2].text, "");
        assert_eq!(s.needs[2].created_at, 0.0);
        assert_eq!(s.needs[2].votes, vec!["u1".to_owned()]);
        assert_eq!(
            (s.resources[0].kind.as_deref(), s.resources[0].format.as_deref()),
            (Some("resource"), Some("other"))
        );
        assert_eq!((s.meta.title.as_str(), s.meta.status.as_str()), ("", "draft"));

        let p = validate(&txn);
        for i in 0..4 {
            assert!(has(&p, &format!("needs[{i}]"), "expected a Y.Map item"), "{p:#?}");
        }
        for field in ["id", "text", "author", "authorId", "createdAt", "votes"] {
            assert!(has(&p, &format!("needs[4].{field}"), "missing"), "{field}: {p:#?}");
        }
        assert!(has(&p, "needs[5].text", "plain string"));
        assert!(has(&p, "needs[5].author", "expected a string, found a number"));
        assert!(has(&p, "needs[5].createdAt", "expected a number"));
        assert!(has(&p, "needs[5].votes", "expected a Y.Map"));
        assert!(has(&p, "needs[6].id", "duplicate id `p1` (also needs[5])"));
        assert!(has(&p, "needs[6].text", "expected a Y.Text, found a Y.Array"));
        assert!(has(&p, "needs[6].createdAt", "not a finite number"));
        assert!(has(&p, "needs[6].votes.u2", "expected true"));
        assert!(has(&p, "needs[6].votes.u3", "expected true"));
        assert!(has(&p, "resources[0].kind", "unknown kind `gadget`"));
        assert!(has(&p, "resources[0].format", "unknown format `podcast`"));
        assert!(has(&p, "meta.title", "expected a string"));
        assert!(has(&p, "meta.status", "unknown status `archived`"));
        assert!(has(&p, "meta.event", "missing"));
        assert!(has(&p, "outline", "missing"));
    }
}

fn text_with(txn: &mut TransactionMut, parent: &XmlElementRef, runs: &[(&str, Attrs)]) {
    let t = parent.push_back(txn, XmlTextPrelim::new(""));
    for (s, attrs) in runs {
        let at = t.len(txn);
        t.insert_with_attributes(txn, at, s, attrs.clone());
    }
}

fn attrs(pairs: &[(&str, Any)]) -> Attrs {
    pairs.iter().map(|(k, v)| (Arc::from(*k), v.clone())).collect()
}

#[test]
fn odd_outlines_are_read_through_and_reported() {
    let doc = common::doc();
    {
        let mut txn = doc.transact_mut();
        let meta = txn.get_or_insert_map("meta");
        for (k, v) in [("title", "t"), ("event", ""), ("date", ""), ("language", "en"), ("status", "live")] {
            meta.insert(&mut txn, k, v);
        }
        let outline = txn.get_or_insert_xml_fragment("outline");
        // 0: heading without a level; 1: level "7"; 2: level 2.5; 3: level true
        for level in [None, Some(Any::from("7")), Some(Any::from(2.5)), Some(Any::Bool(true))] {
            let h: XmlElementRef = outline.push_back(&mut txn, XmlElementPrelim::empty("heading"));
            if let Some(l) = level {
                h.insert_attribute(&mut txn, "level", l);
            }
            text_with(&mut txn, &h, &[("H", Attrs::new())]);
        }
        // 4: an unknown block node holding a paragraph
        let quote: XmlElementRef = outline.push_back(&mut txn, XmlElementPrelim::empty("blockquote"));
        let qp: XmlElementRef = quote.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        text_with(&mut txn, &qp, &[("quoted", Attrs::new())]);
        // 5: text at the top level
        let top = outline.push_back(&mut txn, XmlTextPrelim::new("loose text"));
        let _ = top;
        // 6: a paragraph with an unknown mark, a link without href, and a hardBreak element
        let p: XmlElementRef = outline.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        let empty = Any::Map(Arc::new(HashMap::new()));
        text_with(
            &mut txn,
            &p,
            &[
                ("under", attrs(&[("underline", empty.clone())])),
                (
                    "nolink",
                    attrs(&[("link", Any::Map(Arc::new(HashMap::from([("target".to_owned(), Any::from("_blank"))]))))]),
                ),
                ("bold", attrs(&[("bold--x1", empty.clone())])),
            ],
        );
        let br: XmlElementRef = p.push_back(&mut txn, XmlElementPrelim::empty("hardBreak"));
        let _ = br;
        text_with(&mut txn, &p, &[("after", attrs(&[("bold", Any::Bool(false)), ("italic", Any::Null)]))]);
        // 7: a list with a paragraph directly in it, and a listItem out of a list (8)
        let list: XmlElementRef = outline.push_back(&mut txn, XmlElementPrelim::empty("bulletList"));
        let lp: XmlElementRef = list.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        text_with(&mut txn, &lp, &[("direct", Attrs::new())]);
        let li: XmlElementRef = outline.push_back(&mut txn, XmlElementPrelim::empty("listItem"));
        let lip: XmlElementRef = li.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        text_with(&mut txn, &lip, &[("stray", Attrs::new())]);
    }
    for d in [doc.clone(), common::decode(&common::encode(&doc))] {
        let txn = d.transact();
        let s = read_session(&txn);
        let p = |t: &str| Block::Paragraph { content: vec![Inline::plain(t)] };
        let h = Block::Heading { level: 1, content: vec![Inline::plain("H")] };
        assert_eq!(
            s.outline,
            vec![
                h.clone(),
                h.clone(),
                h.clone(),
                h,
                p("quoted"),
                p("loose text"),
                Block::Paragraph {
                    content: vec![
                        Inline::plain("undernolink"),
                        Inline { text: "bold".into(), bold: true, ..Inline::default() },
                        Inline::plain("after")
                    ]
                },
                Block::BulletList { items: vec![vec![p("direct")]] },
                p("stray"),
            ]
        );
        let problems = validate(&txn);
        assert!(has(&problems, "outline[0].level", "heading without a level"));
        assert!(has(&problems, "outline[1].level", "found \"7\""));
        assert!(has(&problems, "outline[2].level", "found 2.5"));
        assert!(has(&problems, "outline[3].level", "found true"));
        assert!(has(&problems, "outline[4]", "unknown node `blockquote`"));
        assert!(has(&problems, "outline[5]", "text outside a paragraph"));
        assert!(has(&problems, "outline[6][0]", "unknown mark `underline`"));
        assert!(has(&problems, "outline[6][0]", "link without an href"));
        assert!(has(&problems, "outline[6][1]", "unexpected node `hardBreak`"));
        assert!(has(&problems, "outline[7][0]", "expected a `listItem`, found `paragraph`"));
        assert!(has(&problems, "outline[8]", "`listItem` outside a list"));
        assert_eq!(problems.len(), 11, "{problems:#?}");
    }
}

#[test]
fn heading_levels_are_read_from_numbers_and_strings() {
    let doc = common::doc();
    {
        let mut txn = doc.transact_mut();
        let outline = txn.get_or_insert_xml_fragment("outline");
        for level in [Any::from(3), Any::from(4.0), Any::from("5"), Any::from(" 2"), Any::from(0), Any::from(9)] {
            let h: XmlElementRef = outline.push_back(&mut txn, XmlElementPrelim::empty("heading"));
            h.insert_attribute(&mut txn, "level", level);
        }
    }
    let levels: Vec<u8> = read_session(&doc.transact())
        .outline
        .iter()
        .map(|b| match b {
            Block::Heading { level, .. } => *level,
            _ => 0,
        })
        .collect();
    assert_eq!(levels, vec![3, 4, 5, 1, 1, 1]);
}

#[test]
fn deeply_nested_outlines_stop_at_the_depth_limit() {
    let doc = common::doc();
    {
        let mut txn = doc.transact_mut();
        let outline = txn.get_or_insert_xml_fragment("outline");
        let mut parent: XmlElementRef = outline.push_back(&mut txn, XmlElementPrelim::empty("bulletList"));
        for _ in 0..200 {
            let li: XmlElementRef = parent.push_back(&mut txn, XmlElementPrelim::empty("listItem"));
            parent = li.push_back(&mut txn, XmlElementPrelim::empty("bulletList"));
        }
        let li: XmlElementRef = parent.push_back(&mut txn, XmlElementPrelim::empty("listItem"));
        let p: XmlElementRef = li.push_back(&mut txn, XmlElementPrelim::empty("paragraph"));
        text_with(&mut txn, &p, &[("deep", Attrs::new())]);
    }
    let txn = doc.transact();
    let s = read_session(&txn);
    let json = serde_json::to_string(&render_json(&s)).expect("json");
    assert!(!json.contains("deep"));
    fn depth(blocks: &[Block]) -> usize {
        blocks
            .iter()
            .map(|b| match b {
                Block::BulletList { items } | Block::OrderedList { items } => {
                    1 + items.iter().map(|i| depth(i)).max().unwrap_or(0)
                }
                _ => 1,
            })
            .max()
            .unwrap_or(0)
    }
    assert!(depth(&s.outline) <= schema().max_depth);
    assert!(validate(&txn).iter().any(|p| p.message.contains("nested deeper than")));
    let _ = render_markdown(&s);
}

#[test]
fn a_flood_of_problems_is_capped() {
    let doc = common::doc();
    {
        let mut txn = doc.transact_mut();
        let needs = txn.get_or_insert_array("needs");
        for i in 0..(MAX_PROBLEMS as i64 + 500) {
            needs.push_back(&mut txn, i);
        }
    }
    let problems = validate(&doc.transact());
    assert_eq!(problems.len(), MAX_PROBLEMS + 1);
    assert!(problems.last().is_some_and(|p| p.message.contains("more problems")));
}

#[test]
fn odd_private_documents_read_leniently() {
    let doc = common::doc();
    {
        let mut txn = doc.transact_mut();
        let contacts = txn.get_or_insert_map("contacts");
        contacts.insert(&mut txn, "a", "not a map");
        contacts.insert(&mut txn, "b", MapPrelim::default());
        let c: yrs::MapRef = contacts.insert(&mut txn, "c", MapPrelim::default());
        c.insert(&mut txn, "email", 5);
        let d: yrs::MapRef = contacts.insert(&mut txn, "d", MapPrelim::default());
        d.insert(&mut txn, "email", "d@example.org");
    }
    let emails = read_emails(&common::decode(&common::encode(&doc)).transact());
    assert_eq!(emails.into_iter().collect::<Vec<_>>(), vec![("d".to_owned(), "d@example.org".to_owned())]);
    let wrong = common::doc();
    wrong.get_or_insert_array("contacts").push_back(&mut wrong.transact_mut(), "x");
    assert!(read_emails(&wrong.transact()).is_empty());
    // Nothing is written into a root of the wrong type.
    set_email(&mut wrong.transact_mut(), "c1", "a@example.org");
    assert!(read_emails(&wrong.transact()).is_empty());
}

#[test]
fn an_empty_document_reads_as_an_empty_session() {
    let doc = Doc::new();
    let txn = doc.transact();
    let s = read_session(&txn);
    assert_eq!(s, Session { meta: Meta { status: "draft".into(), ..Meta::default() }, ..Session::default() });
    let p = validate(&txn);
    assert_eq!(p.iter().map(|p| p.path.as_str()).collect::<Vec<_>>(), vec!["meta", "outline"]);
}
