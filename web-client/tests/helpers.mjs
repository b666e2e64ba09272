// Shared helpers for the browser tests: start and stop the server under test, make a session
// through the admin API, drive Debian's Chromium with playwright-core (never a downloaded
// browser), and poll with deadlines.
//
// The server is $COMMONPAD_BIN (default: the repository's debug build), started as
//   commonpad serve --addr 127.0.0.1:0 --data <fresh dir> --admin-token <random> --web-dir dist
// It prints `listening on http://127.0.0.1:PORT` once bound; each test stops what it started, by
// PID (SIGTERM, then SIGKILL after a grace period).
import { spawn } from 'node:child_process'
import crypto from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { chromium } from 'playwright-core'

export { sleep }

const here = path.dirname(fileURLToPath(import.meta.url))
export const webClientDir = path.resolve(here, '..')
export const distDir = path.join(webClientDir, 'dist')
export const outputDir = path.join(webClientDir, 'test-output')
export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium'

const STARTUP_TIMEOUT_MS = 20_000
const KILL_GRACE_MS = 5_000
const LISTENING_RE = /^listening on (http:\/\/127\.0\.0\.1:(\d+))$/

const liveChildren = new Set()
process.on('exit', () => {
  for (const child of liveChildren) {
    try { process.kill(child.pid, 'SIGKILL') } catch {}
  }
})

export function serverBinary () {
  return process.env.COMMONPAD_BIN
    ? path.resolve(process.env.COMMONPAD_BIN)
    : path.resolve(webClientDir, '../target/debug/commonpad')
}

export async function startServer () {
  const bin = serverBinary()
  if (!fs.existsSync(bin)) throw new Error(`server binary not found: ${bin} (cargo build -p commonpad-server, or set COMMONPAD_BIN)`)
  if (!fs.existsSync(path.join(distDir, 'index.html'))) throw new Error(`the web client is not built: run npm run build in ${webClientDir}`)
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'commonpad-web-'))
  const adminToken = crypto.randomBytes(24).toString('hex')
  const child = spawn(bin, ['serve', '--addr', '127.0.0.1:0', '--data', dataDir, `--admin-token=${adminToken}`, '--web-dir', distDir], {
    stdio: ['ignore', 'pipe', 'pipe']
  })
  liveChildren.add(child)
  let log = ''
  const remember = (chunk) => {
    log = (log + chunk).slice(-20_000)
    if (process.env.COMMONPAD_TEST_VERBOSE) process.stderr.write(`[server ${child.pid}] ${chunk}`)
  }
  child.stderr.setEncoding('utf8').on('data', remember)
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => { liveChildren.delete(child); resolve({ code, signal }) }))
  let buf = ''
  const listening = new Promise((resolve) => {
    child.stdout.setEncoding('utf8').on('data', (chunk) => {
      remember(chunk)
      buf += chunk
      const lines = buf.split('\n')
      buf = lines.pop()
      for (const line of lines) {
        const m = LISTENING_RE.exec(line.trim())
        if (m) resolve(m[1])
      }
    })
  })
  let timer
  const baseUrl = await Promise.race([
    listening,
    exited.then((s) => { throw new Error(`server exited before listening (${s.code ?? s.signal})\n${log}`) }),
    new Promise((resolve, reject) => { timer = setTimeout(() => reject(new Error(`no listening line in ${STARTUP_TIMEOUT_MS} ms\n${log}`)), STARTUP_TIMEOUT_MS) })
  ]).finally(() => clearTimeout(timer))
  return {
    pid: child.pid,
    baseUrl,
    adminToken,
    dataDir,
    log: () => log,
    /** Freeze / thaw the server process (SIGSTOP / SIGCONT), by PID. */
    pause () { process.kill(child.pid, 'SIGSTOP') },
    resume () { process.kill(child.pid, 'SIGCONT') },
    async stop () {
      if (child.exitCode === null && child.signalCode === null) {
        try { process.kill(child.pid, 'SIGCONT') } catch {}
        child.kill('SIGTERM')
        const inTime = await Promise.race([exited.then(() => true), sleep(KILL_GRACE_MS).then(() => false)])
        if (!inTime) { child.kill('SIGKILL'); await exited }
      }
      fs.rmSync(dataDir, { recursive: true, force: true })
    }
  }
}

/** Creates a session through the admin API; returns {id, edit_url, view_url, editToken, viewToken}. */
export async function createSession (server, title = 'OER workshop') {
  const res = await fetch(`${server.baseUrl}/api/sessions`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${server.adminToken}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ title, event: 'Test event', date: '2026-11-24' })
  })
  if (res.status !== 201) throw new Error(`POST /api/sessions: ${res.status} ${await res.text()}`)
  const body = await res.json()
  const token = (url, role) => new URL(url).hash.match(new RegExp(`${role}=([^&]+)`))[1]
  return { ...body, editToken: token(body.edit_url, 'edit'), viewToken: token(body.view_url, 'view') }
}

export async function api (server, session, pathAndQuery, token = session.editToken) {
  const res = await fetch(`${server.baseUrl}/api/sessions/${session.id}${pathAndQuery}`, {
    headers: { Authorization: `Bearer ${token}` }
  })
  if (!res.ok) throw new Error(`GET ${pathAndQuery}: ${res.status} ${await res.text()}`)
  return res
}

/** The session as the server holds it (its JSON export). */
export async function serverSession (server, session) {
  return (await api(server, session, '/export?format=json')).json()
}

/** The server's full Yjs state (GET /api/sessions/{id}/update). */
export async function serverUpdate (server, session) {
  return new Uint8Array(await (await api(server, session, '/update')).arrayBuffer())
}

export async function launchBrowser () {
  if (!fs.existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (scripts/test does)`)
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic', '--disable-dev-shm-usage',
      // Nothing leaves this machine, whatever a page links to: no name resolves but loopback.
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1'],
    timeout: 30_000
  })
}

/** A fresh context (its own storage, service worker, IndexedDB) and a page in it. */
export async function newPage (browser, { locale = 'en-GB', viewport = { width: 1280, height: 900 } } = {}) {
  const context = await browser.newContext({ locale, viewport })
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const errors = []
  page.on('pageerror', (e) => errors.push(e))
  page.on('dialog', (d) => { void d.accept() })
  if (process.env.COMMONPAD_TEST_VERBOSE) page.on('console', (m) => process.stderr.write(`[page] ${m.type()} ${m.text()}\n`))
  return { context, page, errors }
}

/**
 * Navigates once the page has stopped navigating by itself. A test that presses Enter on every
 * control may have followed a link (the brand link goes home) whose navigation is still running;
 * `goto` would then be interrupted by it, so wait for it to settle and try again (3 attempts).
 */
export async function gotoSettled (page, url) {
  for (let attempt = 1; ; attempt++) {
    await page.waitForLoadState('load').catch(() => {})
    try {
      return await page.goto(url)
    } catch (e) {
      if (attempt >= 3 || !/interrupted by another navigation|ERR_ABORTED/.test(String(e))) throw e
      await sleep(500)
    }
  }
}

/** Opens an edit link and chooses a display name in the first-visit dialog. */
export async function openAsEditor (page, url, name) {
  await page.goto(url)
  await page.locator('dialog.name-dialog').waitFor()
  await page.fill('#display-name', name)
  await page.keyboard.press('Enter')
  await page.locator('dialog.name-dialog').waitFor({ state: 'detached' })
  await waitConnected(page)
}

export async function waitConnected (page) {
  await page.locator('.conn[data-conn="connected"]').waitFor()
}

export async function waitSaved (page, timeout = 10_000) {
  await page.locator('.save-status[data-save="saved"]').waitFor({ timeout })
}

/** The session as this page's document reads it (the shared model's readSession). */
export function pageSession (page) {
  return page.evaluate(() => window.commonpad.readSession(window.commonpad.main))
}

/** JSON with object keys sorted, to compare values whatever the order their keys came in. */
export function canonical (value) {
  const sort = (v) => Array.isArray(v) ? v.map(sort)
    : v && typeof v === 'object' ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, sort(v[k])])) : v
  return JSON.stringify(sort(value))
}

export async function waitFor (predicate, { timeout = 10_000, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout
  let last
  for (;;) {
    try {
      last = await predicate()
      if (last) return last
    } catch (e) { last = e }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeout} ms waiting for ${typeof message === 'function' ? message(last) : message}`)
    }
    await sleep(50)
  }
}

/**
 * Runs `body`; if it throws, saves a screenshot of every page in `pages()` as `{name}-failed-N`
 * before passing the error on.
 */
export async function withFailureShots (name, pages, body) {
  try {
    return await body()
  } catch (e) {
    let i = 0
    for (const p of pages()) {
      try { await screenshot(p, `${name}-failed-${i++}`) } catch {}
    }
    throw e
  }
}

export async function screenshot (page, name) {
  fs.mkdirSync(outputDir, { recursive: true })
  await page.screenshot({ path: path.join(outputDir, `${name}.png`), fullPage: true })
}

/** The panel of one list. */
export function panel (page, list) {
  return page.locator(`section[data-list="${list}"]`)
}

/** Adds an item through a list's add form; `fields` maps data-field names to values. */
export async function addThroughForm (page, list, fields) {
  const form = panel(page, list).locator('form.add-form')
  for (const [field, value] of Object.entries(fields)) {
    const el = form.locator(`[data-field="${field}"]`)
    if (await el.evaluate((e) => e.tagName === 'SELECT')) await el.selectOption(value)
    else await el.fill(value)
  }
  await form.locator('button[type="submit"]').click()
}

/** The <li> of the item whose text contains `text` (edit or read view), once it is there. */
export async function itemByText (page, list, text, timeout = 10_000) {
  const id = await waitFor(() => page.evaluate(([list, text]) => {
    for (const li of document.querySelectorAll(`section[data-list="${list}"] li.item`)) {
      const f = li.querySelector('[data-field="text"]')
      const v = f ? ('value' in f ? f.value : f.textContent) : ''
      if (v.includes(text)) return li.dataset.id
    }
    return null
  }, [list, text]), { timeout, message: `the ${list} item "${text}"` })
  return panel(page, list).locator(`li[data-id="${id}"]`)
}

/** The value shown by a field of an item (input/textarea/select value, or text in the read view). */
export function fieldValue (item, field) {
  return item.locator(`[data-field="${field}"]`).first().evaluate((e) => ('value' in e && e.tagName !== 'LI') ? e.value : e.textContent)
}

/**
 * The start of every browser test: a server of its own, a session on it, and a browser, all
 * stopped when the test ends.
 */
export async function setUp (t) {
  const server = await startServer()
  t.after(() => server.stop())
  const session = await createSession(server)
  const browser = await launchBrowser()
  t.after(() => browser.close())
  return { server, session, browser }
}
