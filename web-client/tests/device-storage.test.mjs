// What a shared computer keeps of a session. Opened with the edit link and not remembered, the
// browser keeps no edit token in localStorage and no copy of the private document (collaborators'
// emails) once the tab is closed; remembered on purpose, the home page offers the edit link again;
// forgotten (from the session page, with a warning about changes not yet on the server, or from
// the home page's list), nothing in localStorage or IndexedDB mentions the session any more.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  newPage, openAsEditor, waitFor, waitSaved, addThroughForm, withFailureShots, screenshot
} from './helpers.mjs'
import { setUp } from './helpers.mjs'

/** Every localStorage entry of the page's origin, as [key, value] pairs. */
function storage (page) {
  return page.evaluate(() => Object.entries(localStorage))
}

/** The names of the origin's IndexedDB databases. */
function databases (page) {
  return page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name))
}

/** The localStorage entries and databases that mention `text` (in a key or a value). */
async function mentions (page, text) {
  const entries = (await storage(page)).filter(([k, v]) => k.includes(text) || v.includes(text))
  const dbs = (await databases(page)).filter((n) => n.includes(text))
  return { entries, dbs }
}

/** Another tab in the same browser context (same storage), on the home page. */
async function openHome (context, baseUrl) {
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const errors = []
  page.on('pageerror', (e) => errors.push(e))
  page.on('dialog', (d) => { void d.accept() })
  await page.goto(`${baseUrl}/`)
  await page.locator('.open-form').waitFor()
  return { page, errors }
}

test('the device keeps an edit link and private data only when asked, and forgets on request', { timeout: 150_000 }, async (t) => {
  const { server, session, browser } = await setUp(t)
  const privateDb = `${session.id}.private`
  const editHref = new URL(session.edit_url).pathname + new URL(session.edit_url).hash
  const a = await newPage(browser)
  const b = await newPage(browser)
  const extra = []
  await withFailureShots('device-storage', () => [a.page, b.page, ...extra.map((x) => x.page)].filter((p) => !p.isClosed()), async () => {
    // ---- (a) the edit link, not remembered: no token stored, no private copy after the tab
    await openAsEditor(a.page, session.edit_url, 'Ada')
    assert.equal(await a.page.locator('#remember-device').isChecked(), false, 'not remembered by default')
    await addThroughForm(a.page, 'collaborators', { text: 'Translations', name: 'Dana', email: 'dana@example.org' })
    await waitSaved(a.page)
    // The share panel has the links from the server, and the visit is in the list (its view link).
    await a.page.locator('[data-link="edit"]').waitFor()
    await waitFor(async () => (await storage(a.page)).some(([k, v]) => k === 'commonpad.recent' && v.includes('#view=')),
      { message: 'the visit recorded with the view link' })
    const withToken = (await storage(a.page)).filter(([k, v]) => k.includes(session.editToken) || v.includes(session.editToken))
    assert.deepEqual(withToken, [], 'no edit token in localStorage')
    const open = await databases(a.page)
    assert.ok(open.includes(session.id), `the session's own offline copy is kept (${open})`)
    assert.ok(!open.includes(privateDb), 'no offline copy of the private document while the tab is open')

    await a.page.close()
    const homeA = await openHome(a.context, server.baseUrl)
    extra.push(homeA)
    const after = await databases(homeA.page)
    assert.ok(!after.includes(privateDb), `no private document in IndexedDB after the tab closed (${after})`)
    const entry = homeA.page.locator(`.recent li[data-session="${session.id}"]`)
    assert.match(await entry.locator('a').getAttribute('href'), /#view=/, 'the list offers the view link')
    assert.ok(!(await entry.innerHTML()).includes(session.editToken))

    // ---- forget from the home page's list
    await entry.locator('button.forget').click()
    await entry.waitFor({ state: 'detached' })
    assert.deepEqual(await mentions(homeA.page, session.id), { entries: [], dbs: [] }, 'nothing of the session left (home page)')

    // ---- (b) remembered on purpose: the home page offers the edit link
    await openAsEditor(b.page, session.edit_url, 'Bao')
    await b.page.locator('#remember-device').check()
    await waitFor(async () => (await databases(b.page)).includes(privateDb), { message: 'the private document kept once remembered' })
    const homeB = await openHome(b.context, server.baseUrl)
    extra.push(homeB)
    const remembered = homeB.page.locator(`.recent li[data-session="${session.id}"] a`)
    assert.equal(await remembered.getAttribute('href'), editHref, 'the list offers the edit link')
    await screenshot(homeB.page, 'device-storage-home')
    await homeB.page.close()

    // ---- (c) forget from the session page, offline, with a change the server does not have
    await b.page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 20_000 })
    await b.context.setOffline(true)
    await b.page.locator('.conn[data-conn="offline"]').waitFor()
    await addThroughForm(b.page, 'needs', { text: 'Written offline, then forgotten' })
    await b.page.locator('.save-status[data-save="pending-offline"]').waitFor()
    const pending = Number(await b.page.locator('.save-status').getAttribute('data-pending'))
    assert.ok(pending > 0)
    const messages = []
    b.page.on('dialog', (d) => messages.push(d.message()))
    await b.page.locator('button[data-forget="session"]').click()
    await b.page.waitForURL((url) => url.pathname === '/')
    await b.page.locator('.open-form').waitFor()
    assert.equal(messages.length, 1)
    assert.match(messages[0], new RegExp(`^${pending} changes? not yet on the server will be lost\\.`), 'the warning counts the lost changes')
    assert.deepEqual(await mentions(b.page, session.id), { entries: [], dbs: [] }, 'nothing of the session left (session page)')
    assert.equal(await b.page.locator('.recent li').count(), 0)
    await b.context.setOffline(false)

    assert.deepEqual([...a.errors, ...b.errors, ...extra.flatMap((x) => x.errors)].map(String), [])
  })
})
