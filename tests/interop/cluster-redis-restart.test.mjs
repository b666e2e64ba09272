// Cluster mode (issue 7): Redis (appendonly yes, appendfsync always) is SIGKILLed under load from
// clients of two nodes, and started again on the same port and directory, so it replays its AOF.
// The nodes reconnect by themselves; stock clients may see their connection closed and reconnect
// by themselves too.
//
// Two documents, so that a loss cannot hide behind a client re-sending its own copy:
// - "acked": its writers leave at the moment Redis dies (tabs closed). What they had received back
//   from a server must be served afterwards by a node that loads the document from Redis and
//   PostgreSQL, with no client left that could bring it back.
// - "live": its writers stay through the outage and keep writing; after the restart every edit
//   they made goes through (each comes back to its writer) and all converge, each edit once.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { waitFor, waitSynced, uniqueDocName, sleep } from './server.mjs'
import { startCluster, nodeLogs, missingFrom, duplicatesIn, redisXlen } from './infra.mjs'

test('Redis killed and restarted (AOF) under load: nothing acknowledged is lost, writes go through again', { timeout: 150_000 }, async (t) => {
  const c = await startCluster(t, { nodes: 2 })
  const [A, B] = c.nodes
  const logs = () => nodeLogs(...c.nodes) + `\n--- redis ---\n${c.redis.log().slice(-2_000)}`
  const ackedDoc = uniqueDocName('cluster-aof-acked')
  const liveDoc = uniqueDocName('cluster-aof-live')

  const leaving = [c.tappedClient(A, ackedDoc), c.tappedClient(B, ackedDoc)]
  const staying = [c.tappedClient(A, liveDoc), c.tappedClient(B, liveDoc)]
  await Promise.all([...leaving, ...staying].map((cl) => waitSynced(cl)))
  const leavingLoops = leaving.map((cl, i) => c.writer(cl, `gone${i}`, { intervalMs: 10 }))
  const stayingLoops = staying.map((cl, i) => c.writer(cl, `live${i}`, { intervalMs: 10 }))

  // Under load: every writer has had 30 of its edits back, and sees the other node's writer.
  const all = [...leaving, ...staying]
  const prefixes = ['gone0-', 'gone1-', 'live0-', 'live1-']
  await waitFor(() => all.every((cl, i) => cl.ackedItems().filter((x) => x.startsWith(prefixes[i])).length >= 30 &&
    cl.ackedItems().some((x) => x.startsWith(prefixes[i ^ 1]))), 20_000,
  () => `every writer to get 30 of its edits back and see the other node's: ${all.map((cl) => cl.ackedItems().length)}\n${logs()}`)

  await c.redis.kill('SIGKILL')
  // Echoes of appends that Redis answered just before it died may still be on their way.
  await sleep(300)
  const acked = new Set(leaving.flatMap((cl) => cl.ackedItems()))
  for (const l of leavingLoops) await l.stop()
  for (const cl of leaving) cl.destroy()
  const ackedLiveBefore = new Set(staying.flatMap((cl) => cl.ackedItems()))
  t.diagnostic(`after the kill: ${acked.size} edits of "acked" received back, ${ackedLiveBefore.size} of "live"`)

  // Redis stays down for a second while the "live" writers keep writing: nothing can be echoed.
  await sleep(1_000)
  const echoedWhileDown = missingFrom(new Set(staying.flatMap((cl) => cl.ackedItems())), ackedLiveBefore)
  await c.redis.restart()
  t.diagnostic(`redis back (pid ${c.redis.pid}); XLEN acked ${await redisXlen(c.redis, `cp:stream:${ackedDoc}`)}, live ${await redisXlen(c.redis, `cp:stream:${liveDoc}`)}`)
  assert.deepEqual(echoedWhileDown, [], 'no edit can have been acknowledged while Redis was down (echo before the append)')

  // Writes after the restart go through: 2 s more of them, then every edit of each staying writer
  // comes back to it from its node.
  await sleep(2_000)
  for (const l of stayingLoops) await l.stop()
  for (const [i, cl] of staying.entries()) {
    await waitFor(() => missingFrom(stayingLoops[i].written, cl.ackedItems()).length === 0, 30_000, () => {
      const missing = missingFrom(stayingLoops[i].written, cl.ackedItems())
      return `writer live${i} (on ${cl.node.nodeId}, connected ${cl.provider.wsconnected}) to get all ${stayingLoops[i].written.length} of its edits back after the restart; ${missing.length} missing, e.g. ${missing.slice(0, 5).join(', ')}\n${logs()}`
    })
  }
  const liveWritten = stayingLoops.flatMap((l) => l.written)
  await waitFor(() => staying.every((cl) => cl.items.length === liveWritten.length &&
    JSON.stringify(cl.items.toArray()) === JSON.stringify(staying[0].items.toArray())), 20_000,
  () => `the "live" writers to converge on ${liveWritten.length} items: ${staying.map((cl) => cl.items.length)}`)
  assert.deepEqual(duplicatesIn(staying[0].items.toArray()), [])

  // A node started now loads both documents from Redis + PostgreSQL.
  const C = await c.addNode()
  const ackedReader = c.tappedClient(C, ackedDoc)
  const liveReader = c.tappedClient(C, liveDoc)
  await Promise.all([waitSynced(ackedReader), waitSynced(liveReader)])
  await waitFor(() => missingFrom(acked, ackedReader.items.toArray()).length === 0, 10_000, () => {
    const missing = missingFrom(acked, ackedReader.items.toArray())
    return `a fresh node to serve every edit acknowledged before Redis died; ${missing.length} of ${acked.size} missing, e.g. ${missing.slice(0, 10).join(', ')}\n${logs()}`
  })
  assert.deepEqual(duplicatesIn(ackedReader.items.toArray()), [])
  await waitFor(() => liveReader.items.length === liveWritten.length, 10_000,
    () => `a fresh node to serve all ${liveWritten.length} "live" items (has ${liveReader.items.length})`)
  assert.deepEqual(liveReader.items.toArray(), staying[0].items.toArray())
  assert.deepEqual(missingFrom(ackedLiveBefore, liveReader.items.toArray()), [])
})
