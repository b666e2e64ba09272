//! The automerge-paper editing trace (CC BY 4.0, Martin Kleppmann and Alastair R. Beresford, via
//! josephg/editing-traces), read in place from `../shared/traces`. Shared by the tests and the
//! storage figures example.

use serde::Deserialize;
use std::io::Read;

pub const AUTOMERGE_PAPER: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/traces/sequential_traces/automerge-paper.json.gz");

#[derive(Deserialize)]
pub struct Trace {
    #[serde(rename = "endContent")]
    pub end_content: String,
    pub txns: Vec<Txn>,
}

#[derive(Deserialize)]
pub struct Txn {
    /// `(position in code points, characters deleted, text inserted)`
    pub patches: Vec<(u32, u32, String)>,
}

pub fn automerge_paper() -> Result<Trace, String> {
    let file = std::fs::File::open(AUTOMERGE_PAPER).map_err(|e| format!("opening {AUTOMERGE_PAPER}: {e}"))?;
    let mut json = Vec::new();
    flate2::read::GzDecoder::new(file).read_to_end(&mut json).map_err(|e| format!("reading {AUTOMERGE_PAPER}: {e}"))?;
    serde_json::from_slice(&json).map_err(|e| format!("parsing {AUTOMERGE_PAPER}: {e}"))
}
