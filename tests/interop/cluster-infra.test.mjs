// The cluster tests' own infrastructure (infra.mjs), checked on its own: a private redis-server
// with AOF that survives SIGKILL and a restart on the same port and directory, a private
// PostgreSQL run as the `postgres` user when we are root, queries against both, nothing left
// running or on disk after stop(), and the socket tap that records what a client got back.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fs from 'node:fs'
import * as Y from 'yjs'
import {
  startRedis, startPostgres, redisCommand, redisXlen, redisXrange, redisGet, psql,
  openTappedClient, updateOfMessage, liveServicePids
} from './infra.mjs'
import { startServer, stopServer, waitFor, uniqueDocName } from './server.mjs'

const running = (pid) => { try { process.kill(pid, 0); return true } catch { return false } }

test('redis: AOF survives SIGKILL and a restart on the same port and dir; stop leaves nothing', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.after(() => redis.stop())
  assert.match(redis.url, /^redis:\/\/127\.0\.0\.1:\d+\/$/)
  const binary = Buffer.from([0, 1, 2, 0xff, 0x0d, 0x0a])
  const id = (await redisCommand(redis, ['XADD', 'cp:stream:infra', '*', 'node', 'n1', 'u', binary])).toString()
  await redisCommand(redis, ['SET', 'k', 'v'])
  assert.equal(await redisXlen(redis, 'cp:stream:infra'), 1)
  assert.equal(await redisXlen(redis, 'missing'), 0)
  assert.equal(await redisGet(redis, 'k'), 'v')
  assert.equal(await redisGet(redis, 'missing'), null)
  await assert.rejects(redisCommand(redis, ['NOSUCHCOMMAND']), /unknown command/i)

  const firstPid = redis.pid
  await redis.kill('SIGKILL')
  assert.equal(running(firstPid), false)
  await assert.rejects(redisCommand(redis, ['PING'], { timeoutMs: 1_000 }))
  await redis.restart()
  assert.notEqual(redis.pid, firstPid)
  const entries = await redisXrange(redis, 'cp:stream:infra')
  assert.deepEqual(entries.map((e) => e.id), [id], 'the acknowledged XADD was replayed from the AOF')
  assert.deepEqual(entries[0].fields.u, binary)
  assert.equal(entries[0].fields.node.toString(), 'n1')

  const { pid, dir } = redis
  await redis.stop()
  assert.equal(running(pid), false)
  assert.equal(fs.existsSync(dir), false)
  assert.ok(!liveServicePids().includes(pid))
})

test('postgres: initdb + postgres on a private port, psql queries, fast shutdown by PID', { timeout: 90_000 }, async (t) => {
  const pg = await startPostgres()
  t.after(() => pg.stop())
  assert.match(pg.url, /^postgres:\/\/commonpad@127\.0\.0\.1:\d+\/postgres$/)
  if (process.getuid() === 0) {
    const owner = fs.readFileSync(`/proc/${pg.pid}/status`, 'utf8').match(/^Uid:\s+(\d+)/m)[1]
    assert.notEqual(owner, '0', 'postgres runs as the postgres user, and the PID we hold is its own')
  }
  await psql(pg, 'create table t (doc text primary key, state bytea, fence bigint)')
  await psql(pg, "insert into t values ('a', '\\x00ff', 7)")
  assert.deepEqual(await psql(pg, "select doc, encode(state, 'hex'), fence from t"), [['a', '00ff', '7']])
  await assert.rejects(psql(pg, 'select * from no_such_table'), /no_such_table/)

  const { pid, dir } = pg
  await pg.stop()
  assert.equal(running(pid), false)
  assert.equal(fs.existsSync(dir), false)
})

test('a tapped client mirrors exactly what the server sent back', { timeout: 30_000 }, async (t) => {
  // The tap's decoder on hand-made messages: sync step 2 and update carry an update; step 1 and
  // awareness do not.
  const u = Y.encodeStateAsUpdate(new Y.Doc())
  for (const [type, want] of [[0, null], [1, u], [2, u]]) {
    const msg = new Uint8Array([0, type, u.length, ...u])
    assert.deepEqual(updateOfMessage(msg.buffer), want)
  }
  assert.equal(updateOfMessage(new Uint8Array([1, 1, 0]).buffer), null)

  const server = await startServer()
  t.after(() => stopServer(server))
  const doc = uniqueDocName('tap')
  const client = openTappedClient(server, doc)
  t.after(() => client.destroy())
  await waitFor(() => client.provider.synced, 10_000, 'synced')
  for (let i = 0; i < 20; i++) client.items.push([`i${i}`])
  await waitFor(() => client.mirrorItems().length === 20, 10_000,
    () => `the echoes of 20 pushes (mirror has ${client.mirrorItems().length})`)
  assert.deepEqual(client.mirrorItems(), client.items.toArray())

  // A client that is not connected gets nothing back: its mirror stays behind its doc.
  await stopServer(server)
  await waitFor(() => !client.provider.wsconnected, 10_000, 'disconnected')
  client.items.push(['offline'])
  assert.equal(client.mirrorItems().length, 20)
})
