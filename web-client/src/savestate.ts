// What the server holds of our own changes, computed honestly.
//
// The server sends an update to anyone (its sender included) only once it is fsynced, and answers
// SyncStep1 with a SyncStep2 only after every fsync in flight. So every update that arrives from
// the WebSocket is durable on the server. A local change (one Yjs transaction that was not applied
// from the network or from IndexedDB) is a record: the range of our clock it created, and the
// ranges it deleted. The record is "saved" once the server has sent back the clock range and
// every deleted range. "All changes saved" is shown only when no record is left.
//
// The echo of our own change does not change our document, so Yjs emits no 'update' event for
// it: the WebSocket provider's sync handler is wrapped to see the raw bytes of every SyncStep2
// and Update message the server sends.
//
// Records are kept in localStorage per document, so that after a reload (with or without a
// network) the count of changes still waiting for the server is right; the changes themselves
// are in IndexedDB. A document kept in memory only (the private one of a session not remembered
// on this device, see device.ts) keeps its records in memory too: after a reload its changes are
// gone, and records of them would wait forever.
import * as Y from 'yjs'
import * as decoding from 'lib0/decoding'
import * as encoding from 'lib0/encoding'
import type { WebsocketProvider } from 'y-websocket'

type Range = [client: number, clock: number, len: number]
interface Change {
  /** how many local transactions this record stands for */
  n: number
  /** clock range [from, to) of `client` created by the change, if it inserted anything */
  ins: [client: number, from: number, to: number] | null
  /** deleted ranges not yet seen deleted on the server */
  del: Range[]
}

/** `commonpad.pending.{document name}`: one document's records. */
export const RECORDS_PREFIX = 'commonpad.pending.'

export class SaveTracker {
  private changes: Change[] = []
  /** per client, the highest clock the server has been seen to hold */
  private serverClock = new Map<number, number>()
  /** the server's state vector from its SyncStep1, held until its SyncStep2 proves it durable */
  private announced: Map<number, number> | null = null
  private listeners = new Set<() => void>()
  private saveTimer: ReturnType<typeof setTimeout> | null = null

  constructor (readonly doc: Y.Doc, readonly name: string, private isRemote: (origin: unknown) => boolean, private persist = true) {
    if (persist) this.load()
    else forgetRecords(name)
    doc.on('update', (update: Uint8Array, origin: unknown) => {
      if (this.isRemote(origin)) return
      this.recordLocal(update)
    })
    window.addEventListener('pagehide', () => this.persistNow())
  }

  /** Number of local changes the server does not hold yet. */
  get pending (): number {
    let n = 0
    for (const c of this.changes) n += c.n
    return n
  }

  onChange (fn: () => void): () => void {
    this.listeners.add(fn)
    return () => this.listeners.delete(fn)
  }

  /**
   * Wraps the provider's sync handler to see what the server sends. A read-only client does not
   * answer the server's SyncStep1: it has nothing to give, and the server would only refuse it.
   */
  attach (provider: WebsocketProvider, readOnly = false): void {
    const handlers = provider.messageHandlers
    const original = handlers[0]
    handlers[0] = (encoder: encoding.Encoder, decoder: decoding.Decoder, prov: WebsocketProvider, emitSynced: boolean, messageType: number) => {
      // Peek at the sync message without consuming it: [syncType, payload].
      let syncType = -1
      let payload: Uint8Array | null = null
      try {
        const peek = decoding.createDecoder(decoder.arr.subarray(decoder.pos))
        syncType = decoding.readVarUint(peek)
        payload = decoding.readVarUint8Array(peek)
      } catch {
        // Not a well-formed sync message: the stock handler below deals with it; nothing to record.
      }
      const scratch = readOnly && syncType === 0 ? encoding.createEncoder() : encoder
      original(scratch, decoder, prov, emitSynced, messageType)
      // Only what came over the WebSocket (emitSynced) is what the server holds.
      if (!emitSynced || payload === null) return
      if (syncType === 0) {
        this.announced = Y.decodeStateVector(payload)
      } else if (syncType === 1 || syncType === 2) {
        if (syncType === 1 && this.announced) {
          // The server's SyncStep2 follows every fsync in flight: what it announced on connect
          // is on disk now.
          this.serverHolds(this.announced)
          this.announced = null
        }
        this.serverSent(payload)
      }
    }
  }

  private recordLocal (update: Uint8Array): void {
    const meta = Y.parseUpdateMeta(update)
    let ins: Change['ins'] = null
    for (const [client, to] of meta.to) {
      const from = meta.from.get(client) ?? 0
      if (to > from) ins = [client, from, to]
    }
    const del: Range[] = []
    const { ds } = Y.decodeUpdate(update)
    for (const [client, items] of ds.clients) {
      for (const item of items) del.push([client, item.clock, item.len])
    }
    if (!ins && del.length === 0) return
    const change: Change = { n: 1, ins, del }
    if (ins && (this.serverClock.get(ins[0]) ?? 0) >= ins[2]) change.ins = null
    if (!change.ins && change.del.length === 0) return
    this.changes.push(change)
    this.persistSoon()
    this.emit()
  }

  private serverHolds (sv: Map<number, number>): void {
    for (const [client, clock] of sv) {
      if ((this.serverClock.get(client) ?? 0) < clock) this.serverClock.set(client, clock)
    }
  }

  private serverSent (update: Uint8Array): void {
    const meta = Y.parseUpdateMeta(update)
    this.serverHolds(meta.to)
    if (this.changes.length === 0) return
    let deleted: Map<number, Array<{ clock: number, len: number }>> | null = null
    if (this.changes.some((c) => c.del.length > 0)) {
      const { ds } = Y.decodeUpdate(update)
      deleted = ds.clients
    }
    const before = this.changes.length
    this.changes = this.changes.filter((c) => {
      if (c.ins && (this.serverClock.get(c.ins[0]) ?? 0) >= c.ins[2]) c.ins = null
      if (deleted && c.del.length > 0) c.del = subtract(c.del, deleted)
      return c.ins !== null || c.del.length > 0
    })
    if (this.changes.length !== before) {
      this.persistNow()
      this.emit()
    }
  }

  /** Keeps the records in localStorage from now on (`on`), or in memory only. */
  setPersistent (on: boolean): void {
    this.persist = on
    this.persistNow()
  }

  /** Drops every record, stored or not, and stores none again: the person gave up these changes. */
  forget (): void {
    this.changes = []
    this.persist = false
    this.persistNow()
    this.emit()
  }

  private emit (): void {
    for (const fn of this.listeners) fn()
  }

  private load (): void {
    try {
      const raw = localStorage.getItem(RECORDS_PREFIX + this.name)
      if (!raw) return
      const parsed = JSON.parse(raw) as Change[]
      if (Array.isArray(parsed)) this.changes = parsed.filter((c) => c && typeof c.n === 'number')
    } catch {
      // Storage blocked or a corrupt record: start with no record, as a new browser would.
    }
  }

  private persistSoon (): void {
    if (this.saveTimer) return
    this.saveTimer = setTimeout(() => this.persistNow(), 200)
  }

  persistNow (): void {
    if (this.saveTimer) clearTimeout(this.saveTimer)
    this.saveTimer = null
    if (!this.persist) { forgetRecords(this.name); return }
    try {
      if (this.changes.length === 0) localStorage.removeItem(RECORDS_PREFIX + this.name)
      else localStorage.setItem(RECORDS_PREFIX + this.name, JSON.stringify(compact(this.changes)))
    } catch {
      // Storage blocked or full: the records still count for this page, only not after a reload.
    }
  }
}

/** How many changes the stored records of document `name` stand for (0 if none or unreadable). */
export function storedPending (name: string): number {
  try {
    const parsed = JSON.parse(localStorage.getItem(RECORDS_PREFIX + name) ?? '[]') as Change[]
    return Array.isArray(parsed) ? parsed.reduce((n, c) => n + (c && typeof c.n === 'number' ? c.n : 0), 0) : 0
  } catch { return 0 }
}

export function forgetRecords (name: string): void {
  try { localStorage.removeItem(RECORDS_PREFIX + name) } catch { /* storage blocked: nothing was stored */ }
}

/** The ranges of `ranges` not covered by `deleted` (a delete set's clients map). */
function subtract (ranges: Range[], deleted: Map<number, Array<{ clock: number, len: number }>>): Range[] {
  let out: Range[] = ranges
  for (const [client, items] of deleted) {
    if (!out.some((r) => r[0] === client)) continue
    for (const d of items) {
      const next: Range[] = []
      const dEnd = d.clock + d.len
      for (const r of out) {
        const [c, clock, len] = r
        const end = clock + len
        if (c !== client || dEnd <= clock || d.clock >= end) { next.push(r); continue }
        if (d.clock > clock) next.push([c, clock, d.clock - clock])
        if (dEnd < end) next.push([c, dEnd, end - dEnd])
      }
      out = next
    }
  }
  return out
}

/** Keeps what is stored small when many changes wait: adjacent insert-only records merge. */
function compact (changes: Change[]): Change[] {
  if (changes.length < 200) return changes
  const out: Change[] = []
  for (const c of changes) {
    const last = out[out.length - 1]
    if (last && last.del.length === 0 && c.del.length === 0 && last.ins && c.ins &&
        last.ins[0] === c.ins[0] && last.ins[2] === c.ins[1]) {
      last.ins = [last.ins[0], last.ins[1], c.ins[2]]
      last.n += c.n
    } else {
      out.push({ n: c.n, ins: c.ins ? [...c.ins] : null, del: c.del.map((r) => [...r] as Range) })
    }
  }
  return out
}
