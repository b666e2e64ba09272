// A probe, not a test (npm test runs *.test.mjs only): how much memory the server keeps per idle
// client after each client synced a large document. One writer puts 250,000 characters into a
// document; then 100 stock y-websocket clients sync it from scratch and stay connected. Prints the
// server's VmRSS before and after, and the growth per client. Used in docs/benchmarks.md.
//
//   node probe-large-sync.mjs ws://127.0.0.1:PORT/sync SERVER_PID
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'
import fs from 'node:fs'

const [url, pid] = [process.argv[2], Number(process.argv[3])]
if (!url || !pid) {
  console.error('usage: node probe-large-sync.mjs ws://HOST:PORT/sync SERVER_PID')
  process.exit(2)
}
const rss = () => Number(fs.readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1])
const synced = (p) => new Promise((resolve) => (p.synced ? resolve() : p.once('sync', (s) => s && resolve())))
const open = (doc) => new WebsocketProvider(url, 'probe-large-sync', doc, { WebSocketPolyfill: WebSocket, disableBc: true })
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

const writer = open(new Y.Doc())
await synced(writer)
writer.doc.getText('t').insert(0, 'x'.repeat(250_000))
await sleep(1500)
const before = rss()
const clients = Array.from({ length: 100 }, () => open(new Y.Doc()))
await Promise.all(clients.map(synced))
await sleep(3000)
const after = rss()
const ok = clients.every((c) => c.doc.getText('t').length === 250_000)
console.log(JSON.stringify({ rssBeforeKiB: before, rssAfterKiB: after, perClientKiB: (after - before) / clients.length, allSynced: ok }))
for (const p of [writer, ...clients]) p.destroy()
process.exit(ok ? 0 : 1)
