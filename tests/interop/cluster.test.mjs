// Cluster mode (issue 7), three nodes sharing documents through one Redis and one PostgreSQL:
// stock y-websocket clients spread over the nodes converge, awareness crosses nodes, share links
// made through one node work (and stay read-only) on every node, and rotating a link on one node
// cuts the old link everywhere. Failures (a node or Redis killed, compaction) are in the other
// cluster-*.test.mjs files. Every process here is started by this file and stopped by its PID.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { waitFor, waitSynced, uniqueDocName, sleep, prng } from './server.mjs'
import { startCluster, metricsText, metricLines, nodeLogs, psql } from './infra.mjs'

const ADMIN = 'cluster-admin-token-0123456789'
let c
before(async () => {
  c = await startCluster(null, { nodes: 3, nodeArgs: ['--admin-token', ADMIN] })
})
after(async () => { await c?.stop() })

const logs = () => nodeLogs(...c.nodes)

async function api (node, method, path, { token = ADMIN, body } = {}) {
  const res = await fetch(`${node.baseUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined
  })
  const text = await res.text()
  let json = null
  try { json = JSON.parse(text) } catch {}
  return { status: res.status, json, text }
}

async function createSession (node, title) {
  const res = await api(node, 'POST', '/api/sessions', { body: { title } })
  assert.equal(res.status, 201, `POST /api/sessions on ${node.nodeId}: ${res.text}`)
  return { id: res.json.id, edit: res.json.edit_url.split('#edit=')[1], view: res.json.view_url.split('#view=')[1] }
}

/** The document's text as the server at `node` holds it (GET .../update). */
async function serverText (node, id, token) {
  const res = await fetch(`${node.baseUrl}/api/sessions/${id}/update`, { headers: { authorization: `Bearer ${token}` } })
  assert.equal(res.status, 200, `GET update on ${node.nodeId}`)
  const doc = new Y.Doc()
  Y.applyUpdate(doc, new Uint8Array(await res.arrayBuffer()))
  return { text: doc.getText('text').toString(), items: doc.getArray('items').toArray() }
}

/**
 * A raw WebSocket on /sync/{doc}: resolves {ws, closed: Promise<code>} once open, or
 * {refused: status} when the upgrade is answered with an HTTP error.
 */
function rawSocket (node, doc, token) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`${node.syncUrl}/${doc}?token=${encodeURIComponent(token)}`)
    const closed = new Promise((resolveClose) => ws.on('close', (code) => resolveClose(code)))
    ws.on('open', () => resolve({ ws, closed }))
    ws.on('unexpected-response', (req, res) => { resolve({ refused: res.statusCode }); res.resume(); req.destroy() })
    ws.on('error', (err) => reject(err))
  })
}

const stateOf = (cl) => JSON.stringify({ text: cl.text.toString(), items: cl.doc.getArray('items').toArray() })

test('stock clients spread over three nodes converge on concurrent Y.Text and Y.Array edits', { timeout: 90_000 }, async () => {
  const doc = uniqueDocName('cluster-converge')
  const clients = []
  for (const node of c.nodes) for (let k = 0; k < 2; k++) clients.push(c.client(node, doc))
  await Promise.all(clients.map((cl) => waitSynced(cl)))

  const seed = 7001
  const rand = prng(seed)
  const expected = []
  const rounds = 12
  for (let r = 0; r < rounds; r++) {
    // Every client edits in the same tick, so none has seen the others' edits of this round; the
    // rounds themselves overlap, since nobody waits for convergence in between.
    clients.forEach((cl, i) => {
      const tok = `c${i}r${r}`
      const text = cl.text.toString()
      const bounds = [0]
      for (let j = 0; j < text.length; j++) if (text[j] === ']') bounds.push(j + 1)
      cl.text.insert(bounds[Math.floor(rand() * bounds.length)], `[${tok}]`)
      const items = cl.doc.getArray('items')
      items.insert(Math.floor(rand() * (items.length + 1)), [tok])
      expected.push(tok)
    })
    await sleep(Math.floor(rand() * 30))
  }

  const describe = () => clients.map((cl, i) => `client ${i} (${cl.provider.url}): ${stateOf(cl)}`).join('\n') + '\n' + logs()
  await waitFor(() => clients.every((cl) => stateOf(cl) === stateOf(clients[0])), 30_000,
    () => `all six clients (seed ${seed}) to hold the same state\n${describe()}`)

  const text = clients[0].text.toString()
  const items = clients[0].doc.getArray('items').toArray()
  for (const tok of expected) {
    assert.equal(text.split(`[${tok}]`).length - 1, 1, `[${tok}] exactly once in the text`)
  }
  assert.deepEqual([...items].sort(), [...expected].sort(), 'every array insert exactly once')

  // A client that arrives afterwards, on any node, gets that same state.
  for (const node of c.nodes) {
    const late = c.client(node, doc)
    await waitSynced(late)
    await waitFor(() => stateOf(late) === stateOf(clients[0]), 10_000,
      () => `a late client on ${node.nodeId} to get the converged state: ${stateOf(late)}`)
    late.destroy()
  }
})

test('awareness set on a client of node 1 reaches clients of nodes 2 and 3, and so does its removal', { timeout: 60_000 }, async () => {
  const doc = uniqueDocName('cluster-awareness')
  const [n1, n2, n3] = c.nodes
  const ana = c.client(n1, doc)
  const watchers = [c.client(n1, doc), c.client(n2, doc), c.client(n3, doc)]
  await Promise.all([ana, ...watchers].map((cl) => waitSynced(cl)))

  const id = ana.doc.clientID
  ana.awareness.setLocalStateField('user', { name: 'Ana', color: '#30bced' })
  for (const w of watchers) {
    await waitFor(() => w.awareness.getStates().get(id)?.user?.name === 'Ana', 10_000,
      () => `Ana's presence on the client of ${w.provider.url}; it has ${JSON.stringify([...w.awareness.getStates()])}\n${logs()}`)
  }
  ana.awareness.setLocalStateField('cursor', { index: 42 })
  for (const w of watchers) {
    await waitFor(() => w.awareness.getStates().get(id)?.cursor?.index === 42, 10_000,
      () => `Ana's cursor update on ${w.provider.url}`)
  }

  // Ana's connection ends without a goodbye (as when a tab is killed): the server removes her
  // entry, on every node. Well under the 30 s after which clients would drop it by themselves.
  const gone = Date.now()
  ana.destroy()
  for (const w of watchers) {
    await waitFor(() => !w.awareness.getStates().has(id), 10_000,
      () => `Ana's presence to be removed on ${w.provider.url} after her client disconnected\n${logs()}`)
  }
  assert.ok(Date.now() - gone < 15_000)
})

test('a view link made through node 1 is read-only on every node; the edit link works on every node', { timeout: 60_000 }, async () => {
  const nodes = c.nodes
  const s = await createSession(nodes[0], 'Cluster read-only')
  for (const node of nodes) {
    const res = await api(node, 'GET', `/api/sessions/${s.id}`, { token: s.view })
    assert.equal(res.status, 200, `the view link on ${node.nodeId}: ${res.text}`)
    assert.equal(res.json.role, 'view')
  }

  const editors = nodes.map((n) => c.client(n, s.id, { params: { token: s.edit } }))
  const viewers = nodes.map((n) => c.client(n, s.id, { params: { token: s.view } }))
  await Promise.all([...editors, ...viewers].map((cl) => waitSynced(cl)))

  editors[0].text.insert(0, 'from node 1. ')
  for (const cl of [...editors, ...viewers]) {
    await waitFor(() => cl.text.toString().includes('from node 1.'), 10_000,
      () => `${cl.provider.url} to see the edit made on node 1\n${logs()}`)
  }

  // Each viewer forces an edit of its own copy (a stock client sends it to its node).
  viewers.forEach((v, i) => {
    v.text.insert(0, `VIEWER${i + 1} `)
    v.doc.getArray('items').push([`viewer-${i + 1}`])
  })
  // Meanwhile an editor on each node writes: every editor and viewer on every node gets all three.
  editors.forEach((e, i) => e.text.insert(e.text.length, ` edit via node ${i + 1}.`))
  for (const cl of [...editors, ...viewers]) {
    await waitFor(() => [1, 2, 3].every((k) => cl.text.toString().includes(`edit via node ${k}.`)), 10_000,
      () => `${cl.provider.url} to see the edits of the editors on all three nodes: ${JSON.stringify(cl.text.toString())}\n${logs()}`)
  }
  await sleep(1_500)

  for (const [i, e] of editors.entries()) {
    assert.ok(!e.text.toString().includes('VIEWER'), `a viewer's edit reached the editor on node ${i + 1}: ${e.text.toString()}`)
    assert.equal(e.doc.getArray('items').length, 0, `a viewer's array insert reached the editor on node ${i + 1}`)
  }
  for (const [i, v] of viewers.entries()) {
    const others = [1, 2, 3].filter((k) => k !== i + 1).map((k) => `VIEWER${k}`)
    assert.ok(others.every((o) => !v.text.toString().includes(o)), `another viewer's edit reached the viewer on node ${i + 1}: ${v.text.toString()}`)
  }
  for (const node of nodes) {
    const held = await serverText(node, s.id, s.edit)
    assert.ok(!held.text.includes('VIEWER'), `a viewer's edit is in ${node.nodeId}'s state: ${held.text}`)
    assert.deepEqual(held.items, [], `a viewer's array insert is in ${node.nodeId}'s state`)
    assert.ok(held.text.includes('edit via node 3.'))
  }
})

test('rotating the view link on node 2 cuts the old link on every node (4403, final); the new link works everywhere', { timeout: 60_000 }, async () => {
  const nodes = c.nodes
  const s = await createSession(nodes[0], 'Cluster rotation')
  const editor = c.client(nodes[0], s.id, { params: { token: s.edit } })
  await waitSynced(editor)
  let editorCloses = 0
  editor.provider.on('connection-close', () => { editorCloses++ })
  editor.text.insert(0, 'before rotation')

  const old = []
  for (const node of nodes) {
    const sock = await rawSocket(node, s.id, s.view)
    assert.ok(sock.ws, `the view link opens a socket on ${node.nodeId} (got ${JSON.stringify(sock)})`)
    old.push(sock)
  }

  const rotated = await api(nodes[1], 'POST', `/api/sessions/${s.id}/rotate`, { body: { role: 'view' } })
  assert.equal(rotated.status, 200, `rotate on node 2: ${rotated.text}`)
  const newView = rotated.json.url.split('#view=')[1]
  assert.ok(newView && newView !== s.view)

  for (const [i, sock] of old.entries()) {
    let timer
    const code = await Promise.race([sock.closed, new Promise((resolve) => { timer = setTimeout(() => resolve('still open'), 15_000) })])
    clearTimeout(timer)
    assert.equal(code, 4403, `the old view link's socket on node ${i + 1} after rotating on node 2\n${logs()}`)
  }
  for (const node of nodes) {
    const again = await rawSocket(node, s.id, s.view)
    again.ws?.terminate()
    assert.equal(again.refused, 403, `the old view link on ${node.nodeId} after rotation`)
  }
  for (const node of nodes) {
    const v = c.client(node, s.id, { params: { token: newView } })
    await waitSynced(v)
    await waitFor(() => v.text.toString() === 'before rotation', 10_000, () => `the new view link on ${node.nodeId} to get the text`)
    v.destroy()
  }
  assert.equal(editorCloses, 0, 'rotating the view link closed an editor\'s connection')
  assert.ok(editor.provider.wsconnected)
})

test('/metrics on every node has the cluster lines', { timeout: 30_000 }, async () => {
  for (const node of c.nodes) {
    const text = await metricsText(node)
    for (const name of ['commonpad_cluster_peers', 'commonpad_stream_lag', 'commonpad_lease_held']) {
      assert.ok(metricLines(text, name).length > 0 || text.includes(`# TYPE ${name}`),
        `${node.nodeId}'s /metrics has no ${name}\n${text.slice(0, 3_000)}`)
    }
  }
})

test('a rotation whose announcement was lost still cuts the old link on every node within the refresh period', { timeout: 60_000 }, async () => {
  const nodes = c.nodes
  const s = await createSession(nodes[0], 'Lost announcement')
  const old = []
  for (const node of nodes) {
    const sock = await rawSocket(node, s.id, s.view)
    assert.ok(sock.ws, `the view link opens a socket on ${node.nodeId}`)
    sock.ws.send(new Uint8Array([0, 0, 1, 0])) // SyncStep1, empty state vector: a client that syncs
    old.push(sock)
  }
  // Rotate in PostgreSQL directly: no node hears of it over pub/sub (as when the message is lost).
  await psql(c.postgres, `UPDATE commonpad_sessions SET record = jsonb_set(record, '{view_generation}', to_jsonb(COALESCE((record->>'view_generation')::bigint, 0) + 1)) WHERE id = '${s.id}'`)
  for (const [i, sock] of old.entries()) {
    let timer
    const code = await Promise.race([sock.closed, new Promise((resolve) => { timer = setTimeout(() => resolve('still open'), 25_000) })])
    clearTimeout(timer)
    assert.equal(code, 4403, `the stale view link's socket on node ${i + 1}, with no announcement\n${logs()}`)
  }
})
