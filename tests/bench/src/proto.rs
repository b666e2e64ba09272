//! A small y-websocket v1 codec (lib0 varints), written here so the harness does not depend on the
//! server crate it measures.

pub const MSG_SYNC: u64 = 0;
pub const STEP1: u64 = 0;
pub const STEP2: u64 = 1;
pub const UPDATE: u64 = 2;

pub fn write_var(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn read_var(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    let mut shift = 0;
    loop {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

pub fn sync_frame(sub: u64, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    write_var(&mut out, MSG_SYNC);
    write_var(&mut out, sub);
    write_var(&mut out, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

pub fn step1(sv: &[u8]) -> Vec<u8> {
    sync_frame(STEP1, sv)
}
pub fn step2(update: &[u8]) -> Vec<u8> {
    sync_frame(STEP2, update)
}
pub fn update(update: &[u8]) -> Vec<u8> {
    sync_frame(UPDATE, update)
}

/// What a server frame carries, borrowing it.
pub enum Msg<'a> {
    Step1(&'a [u8]),
    Step2(&'a [u8]),
    Update(&'a [u8]),
    Other,
}

pub fn decode(frame: &[u8]) -> Msg<'_> {
    let mut p = 0;
    let Some(kind) = read_var(frame, &mut p) else { return Msg::Other };
    if kind != MSG_SYNC {
        return Msg::Other;
    }
    let (Some(sub), Some(len)) = (read_var(frame, &mut p), read_var(frame, &mut p)) else { return Msg::Other };
    let Some(payload) = frame.get(p..p + len as usize) else { return Msg::Other };
    match sub {
        STEP1 => Msg::Step1(payload),
        STEP2 => Msg::Step2(payload),
        UPDATE => Msg::Update(payload),
        _ => Msg::Other,
    }
}

/// Header of a v1 update: (number of client blocks, first block's client, first block's clock).
/// Cheap: it reads three or four varints and no structs.
pub fn update_head(u: &[u8]) -> Option<(u64, u64, u64)> {
    let mut p = 0;
    let n = read_var(u, &mut p)?;
    if n == 0 {
        return Some((0, 0, 0));
    }
    let _structs = read_var(u, &mut p)?;
    let client = read_var(u, &mut p)?;
    let clock = read_var(u, &mut p)?;
    Some((n, client, clock))
}
