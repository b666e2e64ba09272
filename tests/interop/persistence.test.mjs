// Durability across a graceful restart: what a client wrote before SIGTERM is
// served to a fresh client by a new process on the same --data directory.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import {
  startServer, stopServer, makeDataDir, openClient, waitFor, waitSynced,
  uniqueDocName, connectAndSnapshotFirstSync, contentOf, sleep
} from './server.mjs'

test('content survives SIGTERM and restart on the same data dir', { timeout: 30_000 }, async (t) => {
  const dataDir = makeDataDir()
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }))
  const servers = []
  t.after(async () => { for (const s of servers) await stopServer(s) })

  const first = await startServer({ dataDir })
  servers.push(first)

  // Two documents: one with a single edit, one with many small transactions
  // (many stored updates rather than one).
  const small = uniqueDocName('persist-small')
  const many = uniqueDocName('persist-many')
  const w1 = openClient(first, small, { t })
  const w2 = openClient(first, many, { t })
  await Promise.all([waitSynced(w1), waitSynced(w2)])
  w1.text.insert(0, 'durable text')
  w1.map.set('k', 'v')
  for (let i = 0; i < 100; i++) w2.text.insert(w2.text.length, `${i},`)
  const want1 = contentOf(w1)
  const want2 = contentOf(w2)

  // y-websocket does not acknowledge updates, so prove the server has them by
  // reading them back through an independent client, then leave a little time
  // for a write-behind store.
  for (const [name, want] of [[small, want1], [many, want2]]) {
    const probe = openClient(first, name, { t })
    await waitFor(() => JSON.stringify(contentOf(probe)) === JSON.stringify(want), 10_000,
      () => `server to hold ${name}: probe has ${JSON.stringify(contentOf(probe))}`)
    probe.destroy()
  }
  await sleep(300)

  // The writers stay connected: shutdown must not wait for clients to leave.
  const exit = await stopServer(first, { graceMs: 10_000 })
  assert.deepEqual({ code: exit.code, signal: exit.signal, killed: exit.killed },
    { code: 0, signal: null, killed: false },
    `SIGTERM should exit 0 within 10 s (took ${exit.ms} ms)\n--- server output ---\n${first.log()}`)
  w1.destroy()
  w2.destroy()

  const second = await startServer({ dataDir })
  servers.push(second)
  for (const [name, want] of [[small, want1], [many, want2]]) {
    const reader = openClient(second, name, { t, connect: false })
    assert.deepEqual(await connectAndSnapshotFirstSync(reader), want, `${name} after restart, at first sync`)
  }
})
