// Shared helpers for the interop tests: spawn/stop the server under test, open
// y-websocket clients against it, and poll for conditions with a deadline.
//
// The server under test is whatever COMMONPAD_BIN points at (default: the
// debug build of our Rust server). It is always started as
//   COMMONPAD_BIN serve --addr 127.0.0.1:0 --data DIR --open
// and must print `listening on http://127.0.0.1:PORT` once bound, so we never
// guess ports and never race another process for one.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import WebSocket from 'ws'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'

export { sleep }

const here = path.dirname(fileURLToPath(import.meta.url))

/** How long a freshly spawned server may take to print its listening line. */
export const STARTUP_TIMEOUT_MS = 20_000
/** Grace period between SIGTERM and SIGKILL when we tear a server down. */
export const KILL_GRACE_MS = 5_000

const LISTENING_RE = /^listening on (http:\/\/127\.0\.0\.1:(\d+))$/

/** Absolute path of the server binary: $COMMONPAD_BIN, else the debug build. */
export function serverBinary () {
  const fromEnv = process.env.COMMONPAD_BIN
  return fromEnv
    ? path.resolve(fromEnv)
    : path.resolve(here, '../../target/debug/commonpad')
}

// Every child we spawned and have not yet seen exit. If the test process dies
// early (uncaught error, test-runner timeout) we still must not leave servers
// behind, so they are SIGKILLed by PID on exit. Only these PIDs are touched.
const liveChildren = new Set()
// Every WebsocketProvider registers a process 'exit' listener; tests with a
// dozen clients would otherwise trigger node's leak warning.
process.setMaxListeners(100)
process.on('exit', () => {
  for (const child of liveChildren) {
    try { process.kill(child.pid, 'SIGKILL') } catch {}
  }
})

/** A fresh, private data directory for one server instance. */
export function makeDataDir () {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'commonpad-interop-'))
}

/**
 * Spawn the server on an ephemeral port and wait for its listening line.
 *
 * @param {{ dataDir?: string }} [opts] reuse a data dir (restart tests);
 *   otherwise a temporary one is created and removed again by stopServer.
 */
export async function startServer ({ dataDir, open = true, args = [] } = {}) {
  const bin = serverBinary()
  if (!fs.existsSync(bin)) {
    throw new Error(`server binary not found: ${bin} (build it, or set COMMONPAD_BIN)`)
  }
  const ownsDataDir = dataDir === undefined
  dataDir ??= makeDataDir()

  const child = spawn(bin, ['serve', '--addr', '127.0.0.1:0', '--data', dataDir, ...(open ? ['--open'] : []), ...args], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  liveChildren.add(child)

  // Both pipes must be drained for the whole life of the child: a full pipe
  // would block the server's writes and look like a hang. We keep a bounded
  // tail of the output to put into error messages.
  let log = ''
  const remember = (chunk) => {
    log = (log + chunk).slice(-20_000)
    if (process.env.COMMONPAD_TEST_VERBOSE) process.stderr.write(`[server ${child.pid}] ${chunk}`)
  }
  child.stderr.setEncoding('utf8').on('data', remember)

  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      liveChildren.delete(child)
      resolve({ code, signal })
    })
  })

  const server = {
    child,
    pid: child.pid,
    dataDir,
    ownsDataDir,
    exited,
    exitStatus: null,
    /** Recent stdout/stderr of the server, for failure messages. */
    log: () => log,
    baseUrl: '',
    port: 0,
    syncUrl: ''
  }
  exited.then((status) => { server.exitStatus = status })

  let stdoutBuf = ''
  const listening = new Promise((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      remember(chunk)
      if (server.port) return
      stdoutBuf += chunk
      // Only complete lines count: a chunk may end in the middle of the port.
      const lines = stdoutBuf.split('\n')
      stdoutBuf = lines.pop()
      for (const line of lines) {
        const m = LISTENING_RE.exec(line.trim())
        if (m) resolve({ baseUrl: m[1], port: Number(m[2]) })
      }
    })
  })

  let timer
  const outcome = await Promise.race([
    listening,
    exited.then((s) => ({ error: `server exited before listening (code ${s.code}, signal ${s.signal})` })),
    new Promise((resolve) => {
      timer = setTimeout(() => resolve({ error: `no listening line within ${STARTUP_TIMEOUT_MS} ms` }), STARTUP_TIMEOUT_MS)
    })
  ])
  clearTimeout(timer)
  if (outcome.error) {
    await stopServer(server)
    throw new Error(`${outcome.error}\n--- server output ---\n${log}`)
  }
  server.baseUrl = outcome.baseUrl
  server.port = outcome.port
  // y-websocket appends `/${docName}` to this.
  server.syncUrl = `ws://127.0.0.1:${outcome.port}/sync`
  return server
}

/**
 * Stop a server we spawned: SIGTERM, then SIGKILL if it is still running after
 * `graceMs`. Resolves with how it ended, so tests can assert a clean shutdown.
 *
 * @returns {Promise<{ code: number|null, signal: string|null, ms: number, killed: boolean }>}
 */
export async function stopServer (server, { graceMs = KILL_GRACE_MS, removeDataDir = server.ownsDataDir } = {}) {
  const started = Date.now()
  let killed = false
  if (server.exitStatus === null) {
    server.child.kill('SIGTERM')
    let timer
    const inTime = await Promise.race([
      server.exited.then(() => true),
      new Promise((resolve) => { timer = setTimeout(() => resolve(false), graceMs) })
    ])
    clearTimeout(timer)
    if (!inTime) {
      killed = true
      server.child.kill('SIGKILL')
      await server.exited
    }
  }
  const status = await server.exited
  if (removeDataDir) fs.rmSync(server.dataDir, { recursive: true, force: true })
  return { ...status, ms: Date.now() - started, killed }
}

let docCounter = 0
/** A document name no other test (or earlier run against the same dir) uses. */
export function uniqueDocName (prefix) {
  docCounter++
  return `${prefix}-${process.pid}-${docCounter}-${Math.random().toString(36).slice(2, 8)}`
}

/**
 * Open a y-websocket client on `docName`.
 *
 * BroadcastChannel is disabled on purpose: Node has a global BroadcastChannel,
 * so two providers in this one process would otherwise sync with each other
 * directly and the tests would pass without the server relaying anything.
 *
 * If a test context is given, the client is destroyed when the test ends.
 */
export function openClient (server, docName, { t, connect = true, doc = new Y.Doc(), params = {} } = {}) {
  const provider = new WebsocketProvider(server.syncUrl, docName, doc, {
    WebSocketPolyfill: WebSocket,
    disableBc: true,
    connect,
    params
  })
  const client = {
    doc,
    provider,
    awareness: provider.awareness,
    text: doc.getText('text'),
    map: doc.getMap('map'),
    destroyed: false,
    destroy () {
      if (client.destroyed) return
      client.destroyed = true
      provider.destroy()
      // also stops the awareness renewal interval, which would keep node alive
      doc.destroy()
    }
  }
  t?.after(() => client.destroy())
  return client
}

/**
 * Poll `predicate` until it returns something truthy; return that value.
 * Throws after `timeoutMs` with `message` (a string or a function producing
 * one, so the error can show the state at the time of failure).
 */
/**
 * A tiny deterministic PRNG (mulberry32): returns a function giving floats in [0, 1), so that a
 * failing interleaving can be rerun from its seed (the tests put the seed in their names).
 */
export function prng (seed) {
  return () => {
    seed = (seed + 0x6D2B79F5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export async function waitFor (predicate, timeoutMs = 10_000, message = 'condition') {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await predicate()
    if (value) return value
    if (Date.now() >= deadline) {
      const detail = typeof message === 'function' ? message() : message
      throw new Error(`timed out after ${timeoutMs} ms waiting for: ${detail}`)
    }
    await sleep(20)
  }
}

/** Resolve once the provider has received the server's sync step 2. */
export function waitSynced (client, timeoutMs = 10_000) {
  return waitFor(() => client.provider.synced, timeoutMs,
    () => `provider synced on ${client.provider.url} (wsconnected=${client.provider.wsconnected})`)
}

/**
 * Start connecting a client that was created with `connect: false` and capture
 * its document exactly when the first `sync(true)` event fires, i.e. right
 * after the server's sync step 2 was applied. This is what a UI would render
 * first, so it must never be an empty document when the server has content.
 */
export function connectAndSnapshotFirstSync (client, snapshot = contentOf, timeoutMs = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      client.provider.off('sync', onSync)
      reject(new Error(`no sync event within ${timeoutMs} ms on ${client.provider.url}`))
    }, timeoutMs)
    const onSync = (isSynced) => {
      if (!isSynced) return
      clearTimeout(timer)
      client.provider.off('sync', onSync)
      resolve(snapshot(client))
    }
    client.provider.on('sync', onSync)
    client.provider.connect()
  })
}

/**
 * Text + map content of a client, for comparing replicas. Map keys are sorted
 * because Y.Map iteration order is insertion order *per replica*, so equal
 * maps can serialise differently.
 */
export function contentOf (client) {
  return { text: client.text.toString(), map: sortKeys(client.map.toJSON()) }
}

function sortKeys (value) {
  if (Array.isArray(value)) return value.map(sortKeys)
  if (value === null || typeof value !== 'object') return value
  return Object.fromEntries(Object.keys(value).sort().map((k) => [k, sortKeys(value[k])]))
}
