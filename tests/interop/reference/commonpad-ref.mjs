#!/usr/bin/env node
// A stand-in for the `commonpad` binary built on the reference Node server
// (@y/websocket-server, a devDependency). It exists only to check that the
// interop tests themselves are right, independent of our Rust server:
//
//   COMMONPAD_BIN=$PWD/reference/commonpad-ref.mjs npm test
//
// It mimics exactly the CLI surface the tests rely on, so the tests need no
// special cases for it:
//   commonpad serve --addr 127.0.0.1:0 --data DIR [--open]
//   prints `listening on http://127.0.0.1:PORT` once bound
//   ws://HOST:PORT/sync/{doc}  (y-websocket protocol v1, handled by the
//                               reference implementation's setupWSConnection)
//   GET /healthz -> 200 `ok`
//   SIGTERM -> exit 0
// Persistence is a deliberately naive "full state file per document" so that
// the restart test has something to restart from.
import fs from 'node:fs'
import path from 'node:path'
import http from 'node:http'
import { WebSocketServer } from 'ws'
import * as Y from 'yjs'
import { setupWSConnection, setPersistence } from '@y/websocket-server/utils'

const args = process.argv.slice(2)
const opt = (name) => {
  const i = args.indexOf(name)
  return i >= 0 ? args[i + 1] : undefined
}
if (args[0] !== 'serve') {
  console.error('usage: commonpad-ref.mjs serve --addr HOST:PORT --data DIR [--open]')
  process.exit(2)
}
const addr = opt('--addr') ?? '127.0.0.1:0'
const dataDir = opt('--data')
if (!dataDir) {
  console.error('--data is required')
  process.exit(2)
}
fs.mkdirSync(dataDir, { recursive: true })
const sep = addr.lastIndexOf(':')
const host = addr.slice(0, sep)
const port = Number(addr.slice(sep + 1))

const docFile = (docName) => path.join(dataDir, encodeURIComponent(docName) + '.ydoc')
setPersistence({
  provider: null,
  bindState: async (docName, ydoc) => {
    const file = docFile(docName)
    if (fs.existsSync(file)) Y.applyUpdate(ydoc, fs.readFileSync(file))
    // Synchronous writes: by the time the update has been relayed, it is on
    // disk, so SIGTERM never loses anything.
    ydoc.on('update', () => fs.writeFileSync(file, Y.encodeStateAsUpdate(ydoc)))
  },
  writeState: async () => {}
})

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/healthz') {
    res.writeHead(200, { 'Content-Type': 'text/plain' })
    res.end('ok')
  } else {
    res.writeHead(404)
    res.end()
  }
})
const wss = new WebSocketServer({ noServer: true })
server.on('upgrade', (req, socket, head) => {
  const { pathname } = new URL(req.url, 'http://x')
  if (!pathname.startsWith('/sync/') || pathname.length <= '/sync/'.length) {
    socket.destroy()
    return
  }
  const docName = decodeURIComponent(pathname.slice('/sync/'.length))
  wss.handleUpgrade(req, socket, head, (ws) => setupWSConnection(ws, req, { docName }))
})
server.listen(port, host, () => {
  const a = server.address()
  console.log(`listening on http://${a.address}:${a.port}`)
})
process.on('SIGTERM', () => {
  for (const ws of wss.clients) ws.terminate()
  server.close(() => process.exit(0))
})
