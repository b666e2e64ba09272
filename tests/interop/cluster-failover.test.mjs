// Cluster mode (issue 7): a node is SIGKILLed while clients write through it. Every edit that a
// server had acknowledged to any client before the kill (echoed it, or announced it in the state
// vector of a sync step 1 whose sync step 2 arrived: see openTappedClient) is durable: a client with nothing of its
// own, on another node, finds all of them before the writers come back (so a writer re-sending
// its own copy cannot hide a loss). Then the writers move to the surviving nodes with their own
// Y.Docs, as an app behind a load balancer would, and everybody converges with every edit once.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { waitFor, waitSynced, uniqueDocName, sleep } from './server.mjs'
import { startCluster, killNode, nodeLogs, missingFrom, duplicatesIn } from './infra.mjs'

test('a node killed with SIGKILL under writes loses nothing its clients had received back', { timeout: 120_000 }, async (t) => {
  const c = await startCluster(t, { nodes: 3 })
  const [A, B, C] = c.nodes
  const logs = () => nodeLogs(A, B, C)
  const doc = uniqueDocName('cluster-failover')

  const onA = [c.tappedClient(A, doc), c.tappedClient(A, doc)]
  const onB = [c.tappedClient(B, doc)]
  const writers = [...onA, ...onB]
  await Promise.all(writers.map((cl) => waitSynced(cl)))
  const loops = writers.map((cl, i) => c.writer(cl, `w${i}`, { intervalMs: 10 }))

  // Traffic flows both ways before the kill: each writer has had 30 of its own edits echoed, and
  // the client on B has received edits from both clients on A (through Redis).
  await waitFor(() => writers.every((cl, i) => cl.ackedItems().filter((x) => x.startsWith(`w${i}-`)).length >= 30), 20_000,
    () => `every writer to get 30 of its edits back: ${writers.map((cl) => cl.ackedItems().length)}\n${logs()}`)
  await waitFor(() => ['w0-', 'w1-'].every((p) => onB[0].ackedItems().some((x) => x.startsWith(p))), 10_000,
    () => `the client on node B to receive the edits made on node A\n${logs()}`)

  await killNode(A)
  assert.equal(A.exitStatus.signal, 'SIGKILL')
  await waitFor(() => onA.every((cl) => !cl.provider.wsconnected), 5_000, 'the clients of node A to notice')
  // Everything a server has acknowledged to any client up to now (node A's last frames included,
  // since they were delivered before its clients saw the close).
  const acked = new Set(writers.flatMap((cl) => cl.ackedItems()))
  const writtenAtKill = loops.reduce((n, l) => n + l.written.length, 0)
  t.diagnostic(`at the kill: ${writtenAtKill} edits written, ${acked.size} acknowledged to some client`)

  // A client with nothing of its own, on a node that never had the document loaded.
  const fresh = c.tappedClient(C, doc)
  await waitSynced(fresh)
  await waitFor(() => missingFrom(acked, fresh.items.toArray()).length === 0, 15_000, () => {
    const missing = missingFrom(acked, fresh.items.toArray())
    return `a fresh client on node C to have every acknowledged edit; ${missing.length} missing, e.g. ${missing.slice(0, 10).join(', ')}\n${logs()}`
  })

  // The clients of node A reconnect to B and C with their own documents and keep writing.
  onA[0].connect(B)
  onA[1].connect(C)
  await Promise.all(onA.map((cl) => waitSynced(cl, 15_000)))
  await sleep(1_000)
  const written = (await Promise.all(loops.map((l) => l.stop()))).flat()

  const everyone = [...writers, fresh]
  await waitFor(() => everyone.every((cl) => cl.items.length === written.length &&
    JSON.stringify(cl.items.toArray()) === JSON.stringify(everyone[0].items.toArray())), 30_000,
  () => `all clients to converge on ${written.length} items: ${everyone.map((cl) => `${cl.node.nodeId}:${cl.items.length}`).join(' ')}\n${nodeLogs(B, C)}`)
  const final = fresh.items.toArray()
  assert.deepEqual(missingFrom(written, final), [], 'every edit written is present')
  assert.deepEqual(duplicatesIn(final), [], 'no edit is present twice')
  // And the servers acknowledged them all to their writers. Not necessarily by an echo: an edit
  // node A made durable just before it died is in the next node's state vector, so the writer
  // never sends it again and it is never echoed; the web client counts it saved the same way.
  for (const [i, cl] of writers.entries()) {
    await waitFor(() => missingFrom(loops[i].written, cl.ackedItems()).length === 0, 10_000,
      () => `writer ${i} to have all its edits acknowledged by ${cl.node.nodeId}; missing ${missingFrom(loops[i].written, cl.ackedItems()).slice(0, 10).join(', ')}`)
  }
})
