// Share links with stock clients: a y-websocket provider holding a view token may edit its own
// copy, but nothing of it reaches the server's state, its disk, or other clients; it never gets
// the private document; editors see how many are viewing but not who.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import { startServer, stopServer, openClient, waitFor, waitSynced, sleep } from './server.mjs'

const ADMIN = 'interop-admin-token-0123456789'
let server

async function createSession (title) {
  const res = await fetch(`${server.baseUrl}/api/sessions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${ADMIN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ title })
  })
  assert.equal(res.status, 201)
  const body = await res.json()
  return {
    id: body.id,
    edit: body.edit_url.split('#edit=')[1],
    view: body.view_url.split('#view=')[1]
  }
}

async function serverText (id, token) {
  const res = await fetch(`${server.baseUrl}/api/sessions/${id}/update`, { headers: { authorization: `Bearer ${token}` } })
  assert.equal(res.status, 200)
  const doc = new Y.Doc()
  Y.applyUpdate(doc, new Uint8Array(await res.arrayBuffer()))
  return doc.getText('text').toString()
}

before(async () => { server = await startServer({ open: false, args: ['--admin-token', ADMIN] }) })
after(async () => { if (server) await stopServer(server) })

test('a view link edits locally and nothing reaches the server or other clients', { timeout: 30_000 }, async (t) => {
  const s = await createSession('Read-only interop')
  const editor = openClient(server, s.id, { t, params: { token: s.edit } })
  const viewer = openClient(server, s.id, { t, params: { token: s.view } })
  await waitSynced(editor)
  await waitSynced(viewer)

  editor.text.insert(0, 'from the editor. ')
  await waitFor(() => viewer.text.toString().includes('from the editor.'), 10_000, 'viewer sees live edits')

  viewer.text.insert(0, 'VIEWER WAS HERE ')
  viewer.map.set('sneaky', 'value')
  await sleep(1_000)
  assert.ok(!editor.text.toString().includes('VIEWER'), 'a viewer edit reached an editor')
  assert.equal(editor.map.get('sneaky'), undefined)
  assert.ok(!(await serverText(s.id, s.edit)).includes('VIEWER'), 'a viewer edit reached the server state')

  // Viewer presence stays private; editors get the count from the server's entry (client id 0).
  // Stock clients send that entry back to the server; it must not cost them their connection.
  let editorDrops = 0
  editor.provider.on('status', ({ status }) => { if (status === 'disconnected') editorDrops++ })
  viewer.awareness.setLocalStateField('user', { name: 'Lurker' })
  editor.awareness.setLocalStateField('user', { name: 'Ana' })
  await waitFor(() => editor.awareness.getStates().get(0)?.server?.viewers === 1, 10_000, 'viewer count published')
  await sleep(500)
  const names = [...editor.awareness.getStates().values()].map((st) => st.user?.name).filter(Boolean)
  assert.deepEqual(names, ['Ana'])
  await sleep(1_000)
  assert.equal(editorDrops, 0, 'the editor was disconnected after echoing the server entry')

  // After a restart (from disk), still nothing of the viewer.
  editor.destroy()
  viewer.destroy()
  const stopped = await stopServer(server, { removeDataDir: false })
  assert.equal(stopped.code, 0)
  server = await startServer({ dataDir: server.dataDir, open: false, args: ['--admin-token', ADMIN] })
  const fresh = openClient(server, s.id, { t, params: { token: s.edit } })
  await waitSynced(fresh)
  assert.ok(fresh.text.toString().includes('from the editor.'))
  assert.ok(!fresh.text.toString().includes('VIEWER'), 'a viewer edit reached the disk')
})

test('a view link never receives the private document', { timeout: 20_000 }, async (t) => {
  const s = await createSession('Private interop')
  const editorPrivate = openClient(server, `${s.id}.private`, { t, params: { token: s.edit } })
  await waitSynced(editorPrivate)
  editorPrivate.doc.getMap('contacts').set('item-1', 'ana@example.org')
  await sleep(300)
  const viewerPrivate = openClient(server, `${s.id}.private`, { t, params: { token: s.view } })
  await sleep(2_000)
  assert.equal(viewerPrivate.provider.synced, false)
  assert.equal(viewerPrivate.doc.getMap('contacts').size, 0, 'private data reached a view link')
})
