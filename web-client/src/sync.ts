// One Yjs document, synced with the server over y-websocket and kept in IndexedDB, or in memory
// only when this device must not keep it (see device.ts).
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { IndexeddbPersistence } from 'y-indexeddb'
import * as awarenessProtocol from 'y-protocols/awareness'
import * as encoding from 'lib0/encoding'
import { SaveTracker } from './savestate'
import { deleteDatabase } from './device'

export interface SyncedDoc {
  name: string
  doc: Y.Doc
  provider: WebsocketProvider
  /** the IndexedDB copy, null while the document is kept in memory only */
  readonly persistence: IndexeddbPersistence | null
  tracker: SaveTracker
  /** functions run just before anything from the server (an update, presence) is applied */
  beforeRemote: Set<() => void>
  /** resolves once IndexedDB's copy is loaded into `doc` */
  loaded: Promise<void>
  /** Starts keeping an IndexedDB copy (`on`), or stops and deletes it. */
  setPersistent(on: boolean): Promise<void>
  /** Stops syncing and keeping the document, and drops its change records (the page is leaving). */
  forget(): Promise<void>
  destroy(): void
}

/** `ws(s)://host/sync`, from the page's own origin. */
export function syncBase (): string {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:'
  return `${proto}//${location.host}/sync`
}

interface DocOptions { presence: boolean, readOnly: boolean, persist: boolean }

export function openDoc (name: string, token: string, { presence, readOnly, persist }: DocOptions): SyncedDoc {
  const doc = new Y.Doc()
  let persistence: IndexeddbPersistence | null = persist ? new IndexeddbPersistence(name, doc) : null
  const provider = new WebsocketProvider(syncBase(), name, doc, {
    params: { token },
    // Only when the browser says it is online: offline, a socket would sit half-open (Chromium
    // keeps WebSockets open when the network goes away) and nothing would tell the person.
    connect: false,
    // Another tab's changes come through the server like anyone else's: an update from a
    // BroadcastChannel would look like one the server holds.
    disableBc: true,
    maxBackoffTime: 5000
  })
  if (!presence) provider.awareness.setLocalState(null)
  sendOwnPresenceOnly(provider)
  // What IndexedDB applies (through this persistence or a later one) is no local change.
  const tracker = new SaveTracker(doc, name, (origin) => origin === provider || (origin !== null && origin === persistence), persist)
  tracker.attach(provider, readOnly)
  const beforeRemote = new Set<() => void>()
  const handlers = provider.messageHandlers
  for (const type of [0, 1]) {
    const inner = handlers[type]
    handlers[type] = (...args: Parameters<typeof inner>) => {
      for (const fn of beforeRemote) {
        try { fn() } catch (e) { console.warn(e) }
      }
      inner(...args)
    }
  }
  const loaded = new Promise<void>((resolve) => {
    if (!persistence) { resolve(); return }
    persistence.once('synced', () => resolve())
    // A browser without working IndexedDB (some private modes) still gets a live page.
    setTimeout(resolve, 3000)
  })
  // Connect once the local copy is in, so that the first exchange already carries it.
  void loaded.then(() => { if (navigator.onLine) provider.connect() })
  // Closes the IndexedDB copy (its connection would block the database's deletion).
  const detach = async () => {
    const p = persistence
    persistence = null
    if (p) await p.destroy()
  }
  return {
    name,
    doc,
    provider,
    get persistence () { return persistence },
    tracker,
    beforeRemote,
    loaded,
    async setPersistent (on: boolean) {
      tracker.setPersistent(on)
      if (on && !persistence) {
        // y-indexeddb stores the whole document when it starts: nothing written before is lost.
        persistence = new IndexeddbPersistence(name, doc)
      } else if (!on && persistence) {
        await detach()
        await deleteDatabase(name)
      }
    },
    async forget () {
      tracker.forget()
      provider.destroy()
      await detach()
    },
    destroy () {
      tracker.persistNow()
      provider.destroy()
      void persistence?.destroy()
      doc.destroy()
    }
  }
}

/** Follows the browser's online/offline events: disconnect when offline, reconnect when back. */
export function followNetwork (docs: SyncedDoc[], onChange: () => void): void {
  window.addEventListener('offline', () => {
    for (const d of docs) d.provider.disconnect()
    onChange()
  })
  window.addEventListener('online', () => {
    for (const d of docs) d.provider.connect()
    onChange()
  })
}

export type Connection = 'connected' | 'connecting' | 'reconnecting' | 'offline'

/**
 * What the page tells its user about the connection. `navigator.onLine` only says whether the
 * device has a network, not whether the server is on it: a venue Wi-Fi with no route out, or a page
 * the service worker served with no network at all, reports "online" (Chromium does so after an
 * offline reload). So a page that has not reached the server since it loaded and whose attempt
 * failed is offline for its user too: its edits wait on this device.
 */
export function connectionState (main: SyncedDoc, everConnected: boolean): Connection {
  if (!navigator.onLine) return 'offline'
  if (main.provider.wsconnected && main.provider.synced) return 'connected'
  if (!everConnected && main.provider.wsUnsuccessfulReconnects > 0) return 'offline'
  return everConnected ? 'reconnecting' : 'connecting'
}

/**
 * The stock provider sends every awareness change it sees, other people's and the server's
 * included, back to the server. The server already broadcasts each state to everyone, and it
 * refuses (closing the connection) a client that sends the state of the server's reserved client
 * id 0, which it publishes the counts under. So this client sends its own presence only.
 */
function sendOwnPresenceOnly (provider: WebsocketProvider): void {
  const awareness = provider.awareness
  awareness.off('update', provider._awarenessUpdateHandler)
  provider._awarenessUpdateHandler = ({ added, updated, removed }: { added: number[], updated: number[], removed: number[] }) => {
    const own = provider.doc.clientID
    if (![...added, ...updated, ...removed].includes(own)) return
    const ws = provider.ws
    if (!provider.wsconnected || !ws || ws.readyState !== ws.OPEN) return
    const encoder = encoding.createEncoder()
    encoding.writeVarUint(encoder, 1) // messageAwareness
    encoding.writeVarUint8Array(encoder, awarenessProtocol.encodeAwarenessUpdate(awareness, [own]))
    ws.send(encoding.toUint8Array(encoder))
  }
  awareness.on('update', provider._awarenessUpdateHandler)
}
