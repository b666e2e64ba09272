//! The editing traces (josephg/editing-traces, CC BY 4.0), read in place from `../shared/traces`.

use anyhow::{Context, Result};
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, GetString, OffsetKind, Options, ReadTxn, StateVector, Text, Transact};

pub fn traces_dir() -> PathBuf {
    if let Ok(d) = std::env::var("COMMONPAD_TRACES") {
        return d.into();
    }
    // tests/bench -> repo root -> ../shared/traces
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("../shared/traces")
}

fn read_gz_json(path: &Path) -> Result<Value> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut s = String::new();
    flate2::read::GzDecoder::new(f).read_to_string(&mut s)?;
    Ok(serde_json::from_str(&s)?)
}

/// UTF-16 offsets: equal to the traces' code-point positions, as neither trace has a character beyond the BMP.
pub fn doc_for(client: u64) -> Doc {
    let mut o = Options::with_client_id(ClientID::new(client));
    o.offset_kind = OffsetKind::Utf16;
    Doc::with_options(o)
}

pub type Patch = (u32, u32, String);

fn patches(v: &Value) -> Vec<Patch> {
    v["patches"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    (
                        p[0].as_u64().unwrap() as u32,
                        p[1].as_u64().unwrap() as u32,
                        p[2].as_str().unwrap_or("").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn apply_patches(doc: &Doc, ps: &[Patch]) {
    let text = doc.get_or_insert_text("content");
    let mut txn = doc.transact_mut();
    patch_in(&text, &mut txn, ps);
}

pub const WRITER_CLIENT: u64 = 1001;

/// automerge-paper: the first `prefix` transactions as separate updates (what the writer sends one
/// by one), the rest as one update, and the whole document.
pub struct Sequential {
    pub prefix: Vec<(u64, Vec<u8>)>, // (clock before, update)
    pub rest: Vec<u8>,
    pub full: Vec<u8>,
    pub end_content: String,
    pub txns: usize,
    pub gen_secs: f64,
}

pub fn automerge_paper(prefix: usize) -> Result<Sequential> {
    let v = read_gz_json(&traces_dir().join("sequential_traces/automerge-paper.json.gz"))?;
    let end_content = v["endContent"].as_str().context("endContent")?.to_owned();
    let txns = v["txns"].as_array().context("txns")?;
    let t0 = Instant::now();
    let doc = doc_for(WRITER_CLIENT);
    let mut out = Vec::with_capacity(prefix);
    let mut sv_prefix = StateVector::default();
    for (i, t) in txns.iter().enumerate() {
        let ps = patches(t);
        if i < prefix {
            let before = doc.transact().state_vector();
            apply_patches(&doc, &ps);
            let txn = doc.transact();
            let upd = txn.encode_diff_v1(&before);
            out.push((u64::from(before.get(&ClientID::new(WRITER_CLIENT))), upd));
            if i + 1 == prefix {
                sv_prefix = txn.state_vector();
            }
        } else {
            apply_patches(&doc, &ps);
        }
    }
    let text = doc.get_or_insert_text("content");
    let txn = doc.transact();
    let rest = txn.encode_diff_v1(&sv_prefix);
    let full = txn.encode_state_as_update_v1(&StateVector::default());
    let got = text.get_string(&txn);
    anyhow::ensure!(got == end_content, "local replay of automerge-paper does not give endContent");
    drop(txn);
    // Self-check: the updates the writer sends, then the rest, give endContent.
    let check = Doc::new();
    for (_, u) in &out {
        check.transact_mut().apply_update(yrs::Update::decode_v1(u)?)?;
    }
    check.transact_mut().apply_update(yrs::Update::decode_v1(&rest)?)?;
    let ct = check.get_or_insert_text("content");
    let ok = ct.get_string(&check.transact()) == end_content;
    anyhow::ensure!(
        ok,
        "prefix updates + rest do not give endContent (pending: {})",
        check.transact().has_missing_updates()
    );
    Ok(Sequential { prefix: out, rest, full, end_content, txns: txns.len(), gen_secs: t0.elapsed().as_secs_f64() })
}

pub struct ConcTxn {
    pub agent: usize,
    pub parents: Vec<usize>,
    pub patches: Vec<Patch>,
}

pub struct Concurrent {
    pub agents: usize,
    pub txns: Vec<ConcTxn>,
    pub end_content: String,
}

pub fn clownschool() -> Result<Concurrent> {
    let v = read_gz_json(&traces_dir().join("concurrent_traces/clownschool.json.gz"))?;
    let txns = v["txns"]
        .as_array()
        .context("txns")?
        .iter()
        .map(|t| ConcTxn {
            agent: t["agent"].as_u64().unwrap() as usize,
            parents: t["parents"].as_array().unwrap().iter().map(|p| p.as_u64().unwrap() as usize).collect(),
            patches: patches(t),
        })
        .collect();
    Ok(Concurrent {
        agents: v["numAgents"].as_u64().context("numAgents")? as usize,
        txns,
        end_content: v["endContent"].as_str().context("endContent")?.to_owned(),
    })
}

pub fn sv_bytes(doc: &Doc) -> Vec<u8> {
    doc.transact().state_vector().encode_v1()
}

/// Applies one transaction's patches (splice semantics) to `text`, inside `txn`. The text is
/// fetched by the caller before the transaction opens (fetching it takes a transaction of its own).
pub fn patch_in(text: &yrs::TextRef, txn: &mut yrs::TransactionMut, ps: &[Patch]) {
    for (pos, del, ins) in ps {
        if *del > 0 {
            text.remove_range(txn, *pos, *del);
        }
        if !ins.is_empty() {
            text.insert(txn, *pos, ins);
        }
    }
}
