// Interop: real Yjs clients (y-websocket 3.x over `ws`) against the server
// under test. Each test uses its own document on one shared server instance;
// persistence across restarts lives in persistence.test.mjs.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  startServer, stopServer, openClient, waitFor, waitSynced, uniqueDocName,
  connectAndSnapshotFirstSync, contentOf, sleep, prng
} from './server.mjs'

const TEST_TIMEOUT = 20_000
const here = path.dirname(fileURLToPath(import.meta.url))

let server
before(async () => { server = await startServer() })
after(async () => { if (server) await stopServer(server) })

/** Both replicas have the same text and map. */
const converged = (...clients) => {
  const [first, ...rest] = clients.map(contentOf).map((c) => JSON.stringify(c))
  return rest.every((c) => c === first)
}
const describeAll = (...clients) => () =>
  clients.map((c, i) => `client ${i}: ${JSON.stringify(contentOf(c))}`).join('\n')

/**
 * Positions in `s` that are not inside a `[...]` token. Inserting only there
 * keeps every token contiguous, so "each insert is present" is a substring
 * check rather than a character-soup comparison.
 */
const tokenBoundaries = (s) => {
  const out = [0]
  for (let i = 0; i < s.length; i++) if (s[i] === ']') out.push(i + 1)
  return out
}

test('GET /healthz answers 200 ok', { timeout: TEST_TIMEOUT }, async () => {
  const res = await fetch(`${server.baseUrl}/healthz`)
  assert.equal(res.status, 200)
  assert.equal((await res.text()).trim(), 'ok')
})

test('two clients converge on concurrent Y.Text inserts and Y.Map sets', { timeout: TEST_TIMEOUT }, async (t) => {
  const docName = uniqueDocName('concurrent')
  const a = openClient(server, docName, { t })
  const b = openClient(server, docName, { t })
  await Promise.all([waitSynced(a), waitSynced(b)])

  // Lock-step rounds: in each round both clients insert in the same tick, so
  // neither has seen the other's insert yet (true concurrency, same or
  // different positions), then we wait for convergence.
  const placements = [
    ['start', (n) => 0, (n) => 0],
    ['end', (n) => n, (n) => n],
    ['start/end', (n) => 0, (n) => n],
    ['end/start', (n) => n, (n) => 0],
    ['middle', (n) => tokenBoundaries(a.text.toString()).at(-2) ?? 0, (n) => tokenBoundaries(b.text.toString()).at(-2) ?? 0]
  ]
  const expected = []
  for (const [round, [label, posA, posB]] of placements.entries()) {
    const ta = `[A${round}]`
    const tb = `[B${round}]`
    a.text.insert(posA(a.text.length), ta)
    b.text.insert(posB(b.text.length), tb)
    expected.push(ta, tb)
    await waitFor(
      () => converged(a, b) && a.text.toString().includes(ta) && a.text.toString().includes(tb),
      5_000, () => `round ${round} (${label}) to converge\n${describeAll(a, b)()}`)
  }

  // A free-running burst: both sides keep inserting at random token
  // boundaries while the other side's updates stream in between batches.
  const rand = prng(0xC0FFEE)
  for (let i = 0; i < 30; i++) {
    for (const [who, c] of [['a', a], ['b', b]]) {
      const bounds = tokenBoundaries(c.text.toString())
      const token = `[${who}${i}]`
      c.text.insert(bounds[Math.floor(rand() * bounds.length)], token)
      expected.push(token)
    }
    if (i % 5 === 4) await sleep(5)
  }
  await waitFor(() => converged(a, b) && a.text.length === expected.join('').length,
    10_000, describeAll(a, b))
  const finalText = a.text.toString()
  for (const token of expected) {
    assert.equal(finalText.split(token).length - 1, 1, `token ${token} exactly once in ${finalText}`)
  }

  // Y.Map: the same key set concurrently must resolve to one of the two values
  // on both sides; different keys must both survive.
  a.map.set('shared', 'from-A')
  b.map.set('shared', 'from-B')
  a.map.set('only-a', 1)
  b.map.set('only-b', { nested: [1, 2, 3] })
  await waitFor(() => converged(a, b) && a.map.has('only-b') && b.map.has('only-a'),
    5_000, describeAll(a, b))
  const map = a.map.toJSON()
  assert.ok(['from-A', 'from-B'].includes(map.shared), `shared=${map.shared}`)
  assert.equal(map['only-a'], 1)
  assert.deepEqual(map['only-b'], { nested: [1, 2, 3] })
  assert.deepEqual(contentOf(b), contentOf(a))
})

test('a client that edited while disconnected converges after reconnecting', { timeout: TEST_TIMEOUT }, async (t) => {
  const docName = uniqueDocName('offline')
  const a = openClient(server, docName, { t })
  const b = openClient(server, docName, { t })
  await Promise.all([waitSynced(a), waitSynced(b)])
  a.text.insert(0, 'base.')
  await waitFor(() => b.text.toString() === 'base.', 5_000, describeAll(a, b))

  a.provider.disconnect()
  assert.equal(a.provider.wsconnected, false)
  a.text.insert(a.text.length, '[A-offline]')
  a.map.set('offline-a', true)
  b.text.insert(0, '[B-online]')
  b.map.set('online-b', true)
  // Give the server time to relay B's edit; A must not get it while offline,
  // otherwise this test would not be exercising the reconnect path at all.
  await sleep(300)
  assert.equal(a.text.toString(), 'base.[A-offline]')

  // On reconnect y-websocket only sends sync step 1. A's offline edits reach
  // the server only if the server sends its own step 1 and A answers with
  // step 2, so this checks the server side of the handshake too.
  a.provider.connect()
  await waitSynced(a)
  await waitFor(() => converged(a, b) && b.text.toString().includes('[A-offline]') &&
    a.text.toString().includes('[B-online]'), 5_000, describeAll(a, b))
  assert.equal(a.text.toString(), '[B-online]base.[A-offline]')
  assert.deepEqual(a.map.toJSON(), { 'offline-a': true, 'online-b': true })
})

test('awareness: state propagates, and is removed when the provider is destroyed', { timeout: TEST_TIMEOUT }, async (t) => {
  const docName = uniqueDocName('awareness')
  const a = openClient(server, docName, { t })
  const b = openClient(server, docName, { t })
  await Promise.all([waitSynced(a), waitSynced(b)])
  const aId = a.doc.clientID

  a.awareness.setLocalState({ user: { name: 'Ana' } })
  await waitFor(() => b.awareness.getStates().get(aId)?.user?.name === 'Ana', 5_000,
    () => `A's awareness at B; B sees ${JSON.stringify([...b.awareness.getStates()])}`)
  assert.deepEqual(b.awareness.getStates().get(aId), { user: { name: 'Ana' } })

  a.provider.destroy()
  // Yjs' own timeout for stale awareness is 30 s; "a few seconds" means the
  // removal was relayed.
  await waitFor(() => !b.awareness.getStates().has(aId), 5_000,
    () => `A's awareness to disappear at B; B sees ${JSON.stringify([...b.awareness.getStates()])}`)
})

test('awareness: a peer that dies without a goodbye is removed by the server', { timeout: TEST_TIMEOUT }, async (t) => {
  // A killed process sends no awareness "null" update (unlike
  // provider.destroy()); only the server, seeing the connection drop, can tell
  // the others that its clients are gone.
  const docName = uniqueDocName('awareness-crash')
  const b = openClient(server, docName, { t })
  await waitSynced(b)

  const peer = spawn(process.execPath, [path.join(here, 'js_peer.mjs'),
    '--url', server.syncUrl, '--doc', docName, '--awareness-name', 'Crash', '--hold', '--timeout', '15000'],
  { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => { if (peer.exitCode === null && peer.signalCode === null) peer.kill('SIGKILL') })
  const exited = new Promise((resolve) => peer.once('exit', resolve))

  let out = ''
  peer.stdout.setEncoding('utf8').on('data', (chunk) => { out += chunk })
  const ready = await waitFor(() => out.split('\n').map((l) => l.trim() && JSON.parse(l)).find((m) => m?.event === 'synced'),
    10_000, () => `js_peer to sync; stdout=${out}`)
  const peerId = ready.clientID

  await waitFor(() => b.awareness.getStates().get(peerId)?.user?.name === 'Crash', 5_000,
    () => `peer's awareness at B; B sees ${JSON.stringify([...b.awareness.getStates()])}`)
  peer.kill('SIGKILL')
  await exited
  await waitFor(() => !b.awareness.getStates().has(peerId), 5_000,
    () => `killed peer's awareness to disappear at B; B sees ${JSON.stringify([...b.awareness.getStates()])}`)
})

test('a client joining a document with content has it on its first sync', { timeout: TEST_TIMEOUT }, async (t) => {
  const docName = uniqueDocName('join')
  const a = openClient(server, docName, { t })
  const b = openClient(server, docName, { t })
  await Promise.all([waitSynced(a), waitSynced(b)])
  a.text.insert(0, 'hello from A. ')
  b.map.set('title', 'joined')
  await waitFor(() => converged(a, b) && a.map.has('title') && b.text.length > 0, 5_000, describeAll(a, b))
  b.text.insert(b.text.length, 'hello from B.')
  await waitFor(() => converged(a, b) && a.text.toString().endsWith('B.'), 5_000, describeAll(a, b))
  const want = contentOf(a)

  // Third client while the document is live in the server.
  const c = openClient(server, docName, { t, connect: false })
  assert.deepEqual(await connectAndSnapshotFirstSync(c), want, 'content at C\'s first sync')

  // And once nobody is connected any more, which lets a server unload the
  // document; the next joiner must still get it on first sync.
  a.destroy(); b.destroy(); c.destroy()
  await sleep(500)
  const d = openClient(server, docName, { t, connect: false })
  assert.deepEqual(await connectAndSnapshotFirstSync(d), want, 'content at D\'s first sync after everyone left')
})

test('clients connecting to a brand-new document at the same instant all sync and converge', { timeout: TEST_TIMEOUT }, async (t) => {
  // Several fresh documents at once, several clients each, every client with
  // its own pre-connection edit: this is the race where a server creates or
  // loads the same document twice.
  const DOCS = 4
  const CLIENTS = 3
  const groups = []
  for (let d = 0; d < DOCS; d++) {
    const docName = uniqueDocName('race')
    const clients = []
    for (let c = 0; c < CLIENTS; c++) {
      const client = openClient(server, docName, { t, connect: false })
      client.text.insert(0, `[d${d}c${c}]`)
      client.map.set(`c${c}`, c)
      clients.push(client)
    }
    groups.push(clients)
  }
  // All connections are opened in the same tick.
  for (const clients of groups) for (const c of clients) c.provider.connect()

  await Promise.all(groups.flat().map((c) => waitSynced(c)))
  for (const [d, clients] of groups.entries()) {
    await waitFor(() => converged(...clients) && clients[0].text.length === CLIENTS * `[d${d}c0]`.length,
      10_000, describeAll(...clients))
    const text = clients[0].text.toString()
    for (let c = 0; c < CLIENTS; c++) {
      assert.ok(text.includes(`[d${d}c${c}]`), `doc ${d}: client ${c}'s insert in ${text}`)
      assert.equal(clients[0].map.get(`c${c}`), c)
    }
  }
})
