#!/usr/bin/env node
// A stand-alone y-websocket client, run as a child process by tests that need
// a Yjs (JavaScript) peer outside their own process: the Python interop test,
// and the awareness test that kills a peer without a goodbye.
//
//   node js_peer.mjs --url ws://127.0.0.1:PORT/sync --doc NAME
//        [--insert TEXT]          append TEXT to Y.Text 'text' once synced
//        [--wait-for MARKER]      then wait until 'text' contains MARKER
//        [--awareness-name NAME]  set awareness state {user: {name: NAME}}
//        [--hold]                 stay connected until killed
//        [--timeout MS]           give up (exit 1) after MS, default 20000
//
// Stdout carries one JSON object per line:
//   {"event":"synced","clientID":N}            after the first sync (+ insert)
//   {"event":"done","clientID":N,"text":"...","stateVector":{id:clock}}
//                                              final state, then exit 0
// Anything else (diagnostics) goes to stderr.
import { parseArgs } from 'node:util'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

const { values: opts } = parseArgs({
  options: {
    url: { type: 'string' },
    doc: { type: 'string' },
    insert: { type: 'string' },
    'wait-for': { type: 'string' },
    'awareness-name': { type: 'string' },
    hold: { type: 'boolean', default: false },
    timeout: { type: 'string', default: '20000' }
  }
})
if (!opts.url || !opts.doc) {
  console.error('js_peer: --url and --doc are required')
  process.exit(2)
}

const timeoutMs = Number(opts.timeout)
// Whatever happens, this process ends: the parent test must never hang on us.
const giveUp = setTimeout(() => {
  console.error(`js_peer: timed out after ${timeoutMs} ms; text=${JSON.stringify(text.toString())}`)
  process.exit(1)
}, timeoutMs)

const emit = (obj) => process.stdout.write(JSON.stringify(obj) + '\n')

const doc = new Y.Doc()
const text = doc.getText('text')
// disableBc: see server.mjs; not strictly needed in a lone process, but keeps
// the peer honest if it is ever imported next to other providers.
const provider = new WebsocketProvider(opts.url, opts.doc, doc, {
  WebSocketPolyfill: WebSocket,
  disableBc: true
})
if (opts['awareness-name'] !== undefined) {
  provider.awareness.setLocalState({ user: { name: opts['awareness-name'] } })
}

const synced = new Promise((resolve) => {
  const onSync = (isSynced) => {
    if (isSynced) {
      provider.off('sync', onSync)
      resolve()
    }
  }
  provider.on('sync', onSync)
})

await synced
if (opts.insert !== undefined) text.insert(text.length, opts.insert)
emit({ event: 'synced', clientID: doc.clientID })

if (opts.hold) {
  // Keep running until the parent kills us; the giveUp timer still bounds it.
  await new Promise(() => {})
}

const marker = opts['wait-for']
if (marker !== undefined) {
  await new Promise((resolve) => {
    const check = () => {
      if (text.toString().includes(marker)) {
        text.unobserve(check)
        resolve()
      }
    }
    text.observe(check)
    check()
  })
}

// The state vector (client id -> clock) shows which peers' edits we hold and
// that foreign client ids (e.g. pycrdt's 53-bit ones) were decoded intact.
const stateVector = Object.fromEntries(
  [...Y.decodeStateVector(Y.encodeStateVector(doc))].map(([id, clock]) => [String(id), clock]))
emit({ event: 'done', clientID: doc.clientID, text: text.toString(), stateVector })
clearTimeout(giveUp)
// No process.exit() here: it could drop our own insert if it were still in the
// socket's userland write buffer. Closing lets node flush and exit by itself;
// the unref'd timer only caps a slow close handshake.
provider.destroy()
doc.destroy()
setTimeout(() => process.exit(0), 2000).unref()
