// Test infrastructure for cluster mode (issue 7): private redis-server and PostgreSQL instances on
// free loopback ports in fresh temporary directories, plus small clients to read their state for
// assertions. Nothing here touches a system-wide instance: every process is one we spawned, it is
// stopped by its PID in teardown, and killed on process exit if a test dies early.
//
// Binaries: $COMMONPAD_REDIS_SERVER (else `redis-server` on PATH) and $COMMONPAD_PG_BIN (a
// directory holding initdb, postgres, pg_isready, psql; else the newest /usr/lib/postgresql/*/bin,
// else PATH). scripts/test installs Debian's `redis-server` and `postgresql` when they are missing.
//
// PostgreSQL refuses to run as root: as root, initdb and postgres are run as the `postgres` OS user
// through `setpriv`, which execs, so the PID we hold is the postmaster's own.
import { spawn, execFile } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { startServer, stopServer, openClient } from './server.mjs'

/** How long redis-server or postgres may take to answer after being spawned. */
export const SERVICE_STARTUP_MS = 30_000
/** How long a stop (SIGTERM for redis, SIGINT for postgres) may take before we SIGKILL. */
export const SERVICE_STOP_MS = 15_000

// ---------------------------------------------------------------------------------------------
// Process bookkeeping: only the PIDs we spawned, and only while we have not seen them exit.

const live = new Map() // pid -> { child, emergencySignal, dir }
function track (child, emergencySignal, dir) {
  live.set(child.pid, { child, emergencySignal, dir })
  child.once('exit', () => live.delete(child.pid))
}
function killAllTracked () {
  for (const [pid, { emergencySignal, dir }] of live) {
    try { process.kill(pid, emergencySignal) } catch {}
    // postgres is given SIGQUIT (immediate shutdown, which also removes its shared memory) and may
    // still be writing into its directory for a moment: only redis's directory is removed here.
    if (dir && emergencySignal === 'SIGKILL') {
      try { fs.rmSync(dir, { recursive: true, force: true }) } catch {}
    }
  }
}
process.on('exit', killAllTracked)
// node's test runner ends a file's process with SIGTERM when it gives up on it; a signal has no
// 'exit' event of its own, so turn it into an exit (which runs every 'exit' listener, server.mjs's
// included).
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.once(sig, () => process.exit(128 + os.constants.signals[sig]))
}

/** Resolves with {code, signal} when the child exits (at once if it already has). */
function exitOf (child) {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve({ code: child.exitCode, signal: child.signalCode })
  }
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
}

/** Wait for `child` to exit within `ms`; true if it did. */
async function exitedWithin (child, ms) {
  let timer
  const done = await Promise.race([
    exitOf(child).then(() => true),
    new Promise((resolve) => { timer = setTimeout(() => resolve(false), ms) })
  ])
  clearTimeout(timer)
  return done
}

/** Keep the last `max` characters of a child's stdout and stderr (both must be drained). */
function captureOutput (child, label, max = 20_000) {
  let log = ''
  const remember = (chunk) => {
    log = (log + chunk).slice(-max)
    if (process.env.COMMONPAD_TEST_VERBOSE) process.stderr.write(`[${label} ${child.pid}] ${chunk}`)
  }
  child.stdout?.setEncoding('utf8').on('data', remember)
  child.stderr?.setEncoding('utf8').on('data', remember)
  return () => log
}

/** A port that was free on 127.0.0.1 a moment ago (callers retry if it is taken meanwhile). */
export function freePort () {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.unref()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address()
      srv.close(() => resolve(port))
    })
  })
}

function onPath (name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (!dir) continue
    const file = path.join(dir, name)
    try { fs.accessSync(file, fs.constants.X_OK); return file } catch {}
  }
  return null
}

function run (file, args, { timeoutMs = 30_000, env, cwd } = {}) {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, env: env ?? process.env, cwd, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (error, stdout, stderr) => resolve({ code: error ? (error.code ?? 1) : 0, error, stdout, stderr }))
  })
}

// ---------------------------------------------------------------------------------------------
// Redis

/** Path of redis-server, or throws with what to install. */
export function redisServerBinary () {
  const bin = process.env.COMMONPAD_REDIS_SERVER || onPath('redis-server')
  if (!bin) throw new Error('redis-server not found: install Debian\'s redis-server (scripts/test does) or set COMMONPAD_REDIS_SERVER')
  return bin
}

/**
 * Parse one RESP2 reply from `buf` at `pos`. Returns {value, end} or null when incomplete.
 * Bulk strings are Buffers (stream entries carry binary Yjs updates); errors are Error objects.
 */
function parseReply (buf, pos = 0) {
  const eol = buf.indexOf('\r\n', pos)
  if (eol < 0) return null
  const type = String.fromCharCode(buf[pos])
  const line = buf.toString('utf8', pos + 1, eol)
  const next = eol + 2
  switch (type) {
    case '+': return { value: line, end: next }
    case '-': return { value: Object.assign(new Error(line), { redisError: true }), end: next }
    case ':': return { value: Number(line), end: next }
    case '$': {
      const len = Number(line)
      if (len < 0) return { value: null, end: next }
      if (buf.length < next + len + 2) return null
      return { value: buf.subarray(next, next + len), end: next + len + 2 }
    }
    case '*': {
      const n = Number(line)
      if (n < 0) return { value: null, end: next }
      const items = []
      let at = next
      for (let i = 0; i < n; i++) {
        const item = parseReply(buf, at)
        if (!item) return null
        items.push(item.value)
        at = item.end
      }
      return { value: items, end: at }
    }
    default: throw new Error(`unexpected RESP reply type ${JSON.stringify(type)}`)
  }
}

/**
 * Send one command to the Redis at `target` (the redis handle, its URL or port) on a fresh connection and return its reply (RESP2: a
 * Redis error reply is thrown). A tiny client over net.Socket, so the tests need no npm package
 * for Redis and do not depend on redis-cli.
 */
export function redisCommand (target, args, { timeoutMs = 5_000 } = {}) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: redisPortOf(target) })
    let buf = Buffer.alloc(0)
    let settled = false
    const finish = (err, value) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      sock.destroy()
      if (err) reject(err); else resolve(value)
    }
    const timer = setTimeout(() => finish(new Error(`redis ${args[0]}: no reply within ${timeoutMs} ms`)), timeoutMs)
    sock.on('error', (err) => finish(err))
    sock.on('close', () => finish(new Error(`redis ${args[0]}: connection closed before a reply`)))
    sock.on('data', (chunk) => {
      buf = Buffer.concat([buf, chunk])
      let parsed
      try { parsed = parseReply(buf) } catch (err) { return finish(err) }
      if (!parsed) return
      if (parsed.value instanceof Error) finish(parsed.value); else finish(null, parsed.value)
    })
    sock.on('connect', () => {
      const parts = [`*${args.length}\r\n`]
      for (const a of args) {
        const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a))
        parts.push(`$${b.length}\r\n`, b, '\r\n')
      }
      sock.write(Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p)))))
    })
  })
}

function redisPortOf (target) {
  if (typeof target === 'number') return target
  if (typeof target === 'string') return Number(new URL(target).port)
  return target.port
}

/** XLEN of a key (0 when the key does not exist). `target`: the redis handle, its URL or port. */
export async function redisXlen (target, key) {
  return redisCommand(target, ['XLEN', key])
}

/** Every entry of a stream: [{id, fields: {name: Buffer}}], oldest first. */
export async function redisXrange (target, key, { start = '-', end = '+', count } = {}) {
  const args = ['XRANGE', key, start, end]
  if (count !== undefined) args.push('COUNT', count)
  const reply = await redisCommand(target, args)
  return reply.map(([id, flat]) => {
    const fields = {}
    for (let i = 0; i < flat.length; i += 2) fields[flat[i].toString()] = flat[i + 1]
    return { id: id.toString(), fields }
  })
}

/** GET of a key as a string, or null. */
export async function redisGet (target, key) {
  const v = await redisCommand(target, ['GET', key])
  return v === null ? null : v.toString()
}

/** PTTL of a key in ms (-2: no such key, -1: no expiry). */
export async function redisPttl (target, key) {
  return redisCommand(target, ['PTTL', key])
}

/**
 * Start a private redis-server: AOF on with fsync on every write (the setting cluster mode's
 * durability promise needs), no RDB snapshots, in a fresh temporary directory.
 *
 * Returns {url, port, dir, pid, log(), stop(), kill(signal), restart()}:
 * - stop(): SIGTERM (SIGKILL after SERVICE_STOP_MS), then remove the directory.
 * - kill(signal = 'SIGKILL'): signal the process and wait for it to exit; keeps the directory.
 * - restart(): start again on the same port and directory (so the AOF is replayed) and wait until
 *   it answers PING with PONG, i.e. the AOF is loaded.
 */
export async function startRedis () {
  const bin = redisServerBinary()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'commonpad-redis-'))
  const redis = {
    url: '',
    port: 0,
    dir,
    pid: 0,
    child: null,
    log: () => '',
    async stop () {
      await stopChild(redis.child, 'SIGTERM')
      fs.rmSync(dir, { recursive: true, force: true })
    },
    async kill (signal = 'SIGKILL') {
      if (!redis.child) return
      try { redis.child.kill(signal) } catch {}
      if (!(await exitedWithin(redis.child, SERVICE_STOP_MS))) {
        redis.child.kill('SIGKILL')
        await exitOf(redis.child)
      }
    },
    async restart () {
      if (redis.child && redis.child.exitCode === null && redis.child.signalCode === null) {
        throw new Error(`redis ${redis.pid} is still running: kill or stop it before restart()`)
      }
      await spawnOn(redis.port)
    }
  }

  async function spawnOn (port) {
    const child = spawn(bin, [
      '--bind', '127.0.0.1', '--port', String(port), '--dir', dir,
      '--appendonly', 'yes', '--appendfsync', 'always', '--save', '',
      '--daemonize', 'no', '--protected-mode', 'no', '--logfile', ''
    ], { stdio: ['ignore', 'pipe', 'pipe'] })
    track(child, 'SIGKILL', dir)
    redis.child = child
    redis.pid = child.pid
    redis.log = captureOutput(child, 'redis')
    const deadline = Date.now() + SERVICE_STARTUP_MS
    let lastError = ''
    while (Date.now() < deadline) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw Object.assign(new Error(`redis-server exited before answering (code ${child.exitCode}, signal ${child.signalCode})\n--- redis output ---\n${redis.log()}`), { exited: true })
      }
      try {
        if ((await redisCommand(port, ['PING'], { timeoutMs: 1_000 })) === 'PONG') return
      } catch (err) { lastError = err.message }
      await sleep(50)
    }
    await stopChild(child, 'SIGTERM')
    throw new Error(`redis-server did not answer PING within ${SERVICE_STARTUP_MS} ms (last: ${lastError})\n--- redis output ---\n${redis.log()}`)
  }

  // The port may be taken between freePort() and the bind: then redis exits; try another.
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    try {
      await spawnOn(port)
      redis.port = port
      redis.url = `redis://127.0.0.1:${port}/`
      return redis
    } catch (err) {
      if (!err.exited || attempt >= 3) {
        fs.rmSync(dir, { recursive: true, force: true })
        throw err
      }
    }
  }
}

/** Signal a child, wait up to SERVICE_STOP_MS for it to exit, then SIGKILL it and wait. */
async function stopChild (child, signal) {
  if (!child) return { code: null, signal: null }
  if (child.exitCode !== null || child.signalCode !== null) return exitOf(child)
  try { child.kill(signal) } catch {}
  if (!(await exitedWithin(child, SERVICE_STOP_MS))) {
    try { child.kill('SIGKILL') } catch {}
  }
  return exitOf(child)
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL

/** Directory with initdb, postgres, pg_isready and psql, or throws with what to install. */
export function postgresBinDir () {
  const fromEnv = process.env.COMMONPAD_PG_BIN
  if (fromEnv) return fromEnv
  const root = '/usr/lib/postgresql'
  let versions = []
  try { versions = fs.readdirSync(root).filter((v) => /^\d+(\.\d+)?$/.test(v)) } catch {}
  versions.sort((a, b) => Number(b) - Number(a))
  for (const v of versions) {
    const dir = path.join(root, v, 'bin')
    if (fs.existsSync(path.join(dir, 'postgres'))) return dir
  }
  const initdb = onPath('initdb')
  if (initdb) return path.dirname(initdb)
  throw new Error('PostgreSQL not found: install Debian\'s postgresql (scripts/test does) or set COMMONPAD_PG_BIN')
}

/** uid/gid of the `postgres` OS user, from /etc/passwd (null if there is none). */
function postgresUser () {
  try {
    for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
      const f = line.split(':')
      if (f[0] === 'postgres') return { uid: Number(f[2]), gid: Number(f[3]) }
    }
  } catch {}
  return null
}

/** [file, args] to run a PostgreSQL server binary: through setpriv as `postgres` when we are root. */
function asPostgres (file, args) {
  if (process.getuid?.() !== 0) return [file, args]
  const setpriv = onPath('setpriv') ?? '/usr/bin/setpriv'
  return [setpriv, ['--reuid=postgres', '--regid=postgres', '--init-groups', '--', file, ...args]]
}

/**
 * Start a private PostgreSQL: `initdb --auth=trust -U commonpad` in a fresh temporary directory,
 * then `postgres -p PORT -k DIR -c listen_addresses=127.0.0.1`, and wait until pg_isready says it
 * accepts connections.
 *
 * Returns {url, port, dir, pid, log(), stop()}; stop() is a fast shutdown (SIGINT to the
 * postmaster's PID, waiting for it to exit; SIGKILL after SERVICE_STOP_MS), then removes the dir.
 */
export async function startPostgres () {
  const bin = postgresBinDir()
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'commonpad-pg-'))
  const dataDir = path.join(base, 'data')
  const removeBase = () => fs.rmSync(base, { recursive: true, force: true })
  if (process.getuid?.() === 0) {
    const user = postgresUser()
    if (!user) {
      removeBase()
      throw new Error('running as root and there is no `postgres` OS user to run PostgreSQL as (Debian\'s postgresql package creates it)')
    }
    fs.chownSync(base, user.uid, user.gid)
  }

  const [initFile, initArgs] = asPostgres(path.join(bin, 'initdb'), [
    '-D', dataDir, '--auth=trust', '-U', 'commonpad', '-E', 'UTF8', '--no-locale', '--no-sync'
  ])
  // cwd: the postgres user may not be allowed into the directory the tests run from.
  const init = await run(initFile, initArgs, { timeoutMs: 120_000, cwd: base })
  if (init.code !== 0) {
    removeBase()
    throw new Error(`initdb failed (${init.code})\n${init.stdout}\n${init.stderr}`)
  }

  const pg = { url: '', port: 0, dir: base, pid: 0, child: null, log: () => '', stop: null }
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const [file, args] = asPostgres(path.join(bin, 'postgres'), [
      '-D', dataDir, '-p', String(port), '-k', base, '-c', 'listen_addresses=127.0.0.1'
    ])
    const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: base })
    track(child, 'SIGQUIT', base)
    pg.child = child
    pg.pid = child.pid
    pg.port = port
    pg.log = captureOutput(child, 'postgres')
    const ready = await waitPgReady(bin, port, child)
    if (ready === true) break
    await stopChild(child, 'SIGINT')
    if (ready !== 'exited' || attempt >= 3) {
      removeBase()
      throw new Error(`postgres did not accept connections within ${SERVICE_STARTUP_MS} ms (${ready})\n--- postgres output ---\n${pg.log()}`)
    }
  }
  pg.url = `postgres://commonpad@127.0.0.1:${pg.port}/postgres`
  pg.stop = async () => {
    await stopChild(pg.child, 'SIGINT')
    removeBase()
  }
  return pg
}

/** true once pg_isready answers 0; 'exited' if postgres died first (e.g. port taken); else a reason. */
async function waitPgReady (bin, port, child) {
  const deadline = Date.now() + SERVICE_STARTUP_MS
  let last = ''
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) return 'exited'
    const r = await run(path.join(bin, 'pg_isready'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'commonpad', '-d', 'postgres', '-t', '2'], { timeoutMs: 5_000 })
    if (r.code === 0) return true
    last = (r.stdout + r.stderr).trim()
    await sleep(100)
  }
  return `last pg_isready: ${last}`
}

/**
 * Run one SQL statement with `psql -At` against `target` (the postgres handle or a URL) and return
 * its rows as arrays of strings (fields split on '|', so select columns that cannot contain it, or
 * encode them). Throws with psql's message on an error.
 */
export async function psql (target, sql, { timeoutMs = 15_000 } = {}) {
  const url = typeof target === 'string' ? target : target.url
  const r = await run(path.join(postgresBinDir(), 'psql'), ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql],
    { timeoutMs, env: { ...process.env, PGCONNECT_TIMEOUT: '5' } })
  if (r.code !== 0) throw new Error(`psql failed (${r.code}): ${sql}\n${r.stderr.trim()}`)
  return r.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('|'))
}

/** Stop every handle given (redis, postgres, or anything with stop()), ignoring nulls; errors are collected. */
export async function stopAll (...handles) {
  const errors = []
  for (const h of handles) {
    if (!h) continue
    try { await h.stop() } catch (err) { errors.push(err) }
  }
  if (errors.length) throw new AggregateError(errors, errors.map((e) => e.message).join('; '))
}

/** PIDs of the services started here that are still running (for leak checks). */
export function liveServicePids () {
  return [...live.keys()]
}

// ---------------------------------------------------------------------------------------------
// Cluster nodes and clients (server.mjs spawns the nodes; this adds the cluster flags)

/**
 * Start one cluster node: `serve --redis URL --postgres URL --node-id NAME ...args` on its own
 * fresh --data dir. `env` adds variables for this node only (e.g. COMMONPAD_FAULT).
 */
export async function startNode ({ redis, postgres, nodeId, open = true, args = [], env = {} }) {
  const cluster = ['--redis', redis.url, '--postgres', postgres.url, ...(nodeId ? ['--node-id', nodeId] : []), ...args]
  // startServer spawns synchronously, before its first await, with process.env: set the extra
  // variables for exactly that call (server.mjs has no env option).
  const saved = {}
  for (const [k, v] of Object.entries(env)) { saved[k] = process.env[k]; process.env[k] = v }
  let started
  try {
    started = startServer({ open, args: cluster })
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]; else process.env[k] = v
    }
  }
  const node = await started
  node.nodeId = nodeId
  node.output = watchOutput(node.child)
  return node
}

/**
 * Watch a child's stdout and stderr for a substring from now on (server.mjs keeps only a tail).
 * Returns {seen(s), waitFor(s, ms)}.
 */
function watchOutput (child) {
  let all = ''
  const waiters = new Set()
  const onData = (chunk) => {
    all = (all + chunk).slice(-1_000_000)
    for (const w of waiters) if (all.includes(w.s)) { waiters.delete(w); w.resolve(true) }
  }
  child.stdout.on('data', onData)
  child.stderr.on('data', onData)
  return {
    seen: (s) => all.includes(s),
    waitFor (s, ms) {
      if (all.includes(s)) return Promise.resolve(true)
      return new Promise((resolve) => {
        const w = { s, resolve }
        waiters.add(w)
        setTimeout(() => { waiters.delete(w); resolve(false) }, ms).unref()
        child.once('exit', () => { if (waiters.delete(w)) resolve(all.includes(s)) })
      })
    }
  }
}

/** SIGKILL a node and wait until it is gone. */
export async function killNode (node) {
  if (node.exitStatus === null) node.child.kill('SIGKILL')
  return node.exited
}

/** GET /metrics of a node as text. */
export async function metricsText (node) {
  const res = await fetch(`${node.baseUrl}/metrics`)
  if (res.status !== 200) throw new Error(`/metrics on ${node.baseUrl}: ${res.status}`)
  return res.text()
}

/** Sample lines (not comments) of a Prometheus text whose metric name starts with `prefix`. */
export function metricLines (text, prefix) {
  return text.split('\n').filter((l) => l.startsWith(prefix))
}

/** Read one unsigned LEB128 varint from `buf` at `st.pos` (the y-protocols encoding). */
function readVarUint (buf, st) {
  let num = 0
  let mult = 1
  for (let i = 0; i < 8; i++) {
    const b = buf[st.pos++]
    if (b === undefined) throw new Error('truncated varint')
    num += (b & 0x7f) * mult
    if (b < 0x80) return num
    mult *= 128
  }
  throw new Error('varint too long')
}

/**
 * A y-websocket sync message from the server as {syncType, payload}, or null for any other
 * message (messageSync = 0; syncType: 0 step 1, payload a state vector; 1 step 2 and 2 update,
 * payload a Yjs update).
 */
export function syncOfMessage (data) {
  const buf = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength)
  const st = { pos: 0 }
  if (readVarUint(buf, st) !== 0) return null
  const syncType = readVarUint(buf, st)
  if (syncType > 2) return null
  const len = readVarUint(buf, st)
  return { syncType, payload: buf.slice(st.pos, st.pos + len) }
}

/** The Yjs update inside a y-websocket message from the server (sync step 2 or update), or null. */
export function updateOfMessage (data) {
  const sync = syncOfMessage(data)
  return sync && sync.syncType !== 0 ? sync.payload : null
}

/** The values of a Y.Array with the (client, clock) each was created at. */
function valuesWithIds (yarray) {
  const out = []
  for (let item = yarray._start; item !== null; item = item.right) {
    if (item.deleted || !item.countable) continue
    item.content.getContent().forEach((value, k) => out.push({ value, client: item.id.client, clock: item.id.clock + k }))
  }
  return out
}

/**
 * A stock y-websocket client whose socket is tapped, to tell what the server has acknowledged:
 * - `mirror`: a Y.Doc with every update the server sent it (sync step 2, broadcasts and the
 *   echoes of its own edits); `mirrorItems()`: its Y.Array('items').
 * - `ackedItems()`: the items of the client's own doc that the server has shown it holds
 *   durably: every struct of every update it sent (echoes, broadcasts, sync step 2), and
 *   everything below the state vector of the server's sync step 1 once the sync step 2 that
 *   follows it has arrived (the server sends that only after everything it held is durable). The
 *   web client's save tracker counts the same way. Not the mirror: after a failover the mirror
 *   may miss an edit a dying node made durable but never echoed (it is in the next node's state
 *   vector, so the client never sends it again), and then every later echo of that client's edits
 *   waits in the mirror as a pending update.
 * The client can be moved to another node with the same Y.Doc (a new provider), as an app would
 * after its node died.
 *
 * `items`: the Y.Array('items') of the client's doc.
 */
export function openTappedClient (node, docName, { doc = new Y.Doc(), params = {} } = {}) {
  const mirror = new Y.Doc()
  /** per Yjs client id, the clock below which the server holds everything */
  const held = new Map()
  /** "client:clock" of every struct the server sent */
  const sent = new Set()
  // `socket.announced`: per connection, the state vector of the server's step 1 on it.
  const tap = (socket, data) => {
    let sync
    try { sync = syncOfMessage(data) } catch { return }
    if (!sync) return
    if (sync.syncType === 0) {
      try { socket.announced = Y.decodeStateVector(sync.payload) } catch {}
      return
    }
    if (sync.syncType === 1 && socket.announced) {
      for (const [client, clock] of socket.announced) held.set(client, Math.max(held.get(client) ?? 0, clock))
      socket.announced = null
    }
    for (const struct of Y.decodeUpdate(sync.payload).structs) {
      if (!(struct instanceof Y.Item)) continue // GC and Skip hold no content
      for (let k = 0; k < struct.length; k++) sent.add(`${struct.id.client}:${struct.id.clock + k}`)
    }
    Y.applyUpdate(mirror, sync.payload, 'server')
  }
  class TappedWebSocket extends WebSocket {
    constructor (...a) {
      super(...a)
      this.announced = null
      this.addEventListener('message', (ev) => tap(this, ev.data))
    }
  }
  const client = {
    doc,
    mirror,
    node,
    provider: null,
    text: doc.getText('text'),
    items: doc.getArray('items'),
    mirrorItems: () => mirror.getArray('items').toArray(),
    ackedItems () {
      return valuesWithIds(client.items)
        .filter(({ client: id, clock }) => clock < (held.get(id) ?? 0) || sent.has(`${id}:${clock}`))
        .map(({ value }) => value)
    },
    destroyed: false,
    connect (to) {
      client.provider?.destroy()
      client.node = to
      client.provider = new WebsocketProvider(to.syncUrl, docName, doc, {
        WebSocketPolyfill: TappedWebSocket,
        disableBc: true,
        params
      })
      client.awareness = client.provider.awareness
    },
    destroy () {
      if (client.destroyed) return
      client.destroyed = true
      client.provider?.destroy()
      doc.destroy()
      mirror.destroy()
    }
  }
  client.connect(node)
  return client
}

/**
 * A whole test cluster owned by one test: its own redis and postgres (unless given), nodes, and
 * clients, all torn down by PID in reverse order when the test ends (clients, nodes, redis,
 * postgres). Returns {redis, postgres, nodes, addNode(opts), client(node, doc, opts),
 * tappedClient(node, doc, opts), track(x)}.
 */
export async function startCluster (t, { nodes = 0, nodeArgs = [], redis, postgres } = {}) {
  const c = { redis: null, postgres: null, nodes: [], clients: [], writers: [] }
  let stopped = false
  c.stop = async () => {
    if (stopped) return
    stopped = true
    for (const w of c.writers) w.halt()
    for (const cl of c.clients) { try { cl.destroy() } catch {} }
    for (const n of c.nodes) { try { await stopServer(n) } catch {} }
    await stopAll(redis ? null : c.redis, postgres ? null : c.postgres)
  }
  t?.after(c.stop)
  // Both start at once; if one fails, the other is still stopped by the teardown above.
  const [r, p] = await Promise.allSettled([redis ?? startRedis(), postgres ?? startPostgres()])
  c.redis = r.value ?? null
  c.postgres = p.value ?? null
  if (r.status === 'rejected') throw r.reason
  if (p.status === 'rejected') throw p.reason
  c.addNode = async (opts = {}) => {
    const node = await startNode({ redis: c.redis, postgres: c.postgres, nodeId: `node-${c.nodes.length + 1}`, ...opts, args: [...nodeArgs, ...(opts.args ?? [])] })
    c.nodes.push(node)
    return node
  }
  c.client = (node, docName, opts = {}) => {
    const cl = openClient(node, docName, opts)
    c.clients.push(cl)
    return cl
  }
  c.tappedClient = (node, docName, opts = {}) => {
    const cl = openTappedClient(node, docName, opts)
    c.clients.push(cl)
    return cl
  }
  c.writer = (client, prefix, opts) => {
    const w = startWriting(client, prefix, opts)
    c.writers.push(w)
    return w
  }
  try {
    for (let i = 0; i < nodes; i++) await c.addNode()
  } catch (err) {
    if (!t) await c.stop()
    throw err
  }
  return c
}

/**
 * Push `${prefix}-${n}` onto the client's Y.Array('items'), one transaction each, every
 * `intervalMs`, while connected or not (a disconnected client keeps its edits and sends them when
 * it reconnects). Bounded by `max`. Returns {written, stop()}: stop() resolves after the last push.
 */
export function startWriting (client, prefix, { intervalMs = 15, max = 5_000 } = {}) {
  let halted = false
  const written = []
  const done = (async () => {
    for (let n = 0; n < max && !halted && !client.destroyed; n++) {
      const item = `${prefix}-${n}`
      client.items.push([item])
      written.push(item)
      await sleep(intervalMs)
    }
  })()
  return {
    written,
    halt () { halted = true },
    async stop () { halted = true; await done; return written }
  }
}

/** Items of `want` that are not in `have` (arrays or sets), in `want`'s order. */
export function missingFrom (want, have) {
  const got = new Set(have)
  return [...want].filter((x) => !got.has(x))
}

/** Items that occur more than once in `list`. */
export function duplicatesIn (list) {
  const seen = new Set()
  const dup = new Set()
  for (const x of list) { if (seen.has(x)) dup.add(x); seen.add(x) }
  return [...dup]
}

/** A node's output, for failure messages. */
export function nodeLogs (...nodes) {
  return nodes.map((n) => `--- ${n.nodeId ?? n.pid} (pid ${n.pid}, ${n.exitStatus ? `exited ${JSON.stringify(n.exitStatus)}` : 'running'}) ---\n${n.log().slice(-4_000)}`).join('\n')
}
