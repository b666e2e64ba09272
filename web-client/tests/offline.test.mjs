// Offline editing: a participant who opened the session once loses the network, keeps writing,
// reloads the page with no network at all (the service worker serves the app shell, IndexedDB the
// session), still sees their work and how many changes wait, and when the network comes back
// everything merges with what the others wrote meanwhile.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  newPage, openAsEditor, waitFor, waitSaved, screenshot,
  addThroughForm, itemByText, fieldValue, pageSession, serverSession, withFailureShots, canonical
} from './helpers.mjs'
import { setUp } from './helpers.mjs'

test('an editor goes offline, edits, reloads offline, comes back, and both converge', { timeout: 120_000 }, async (t) => {
  const { server, session, browser } = await setUp(t)
  const a = await newPage(browser)
  const b = await newPage(browser)
  await withFailureShots('offline', () => [a.page, b.page], async () => {
    await openAsEditor(a.page, session.edit_url, 'Ada')
    await openAsEditor(b.page, session.edit_url, 'Bao')
    // The service worker controls the page once it has cached the app shell.
    await a.page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 20_000 })
    await addThroughForm(a.page, 'needs', { text: 'Shared before the outage' })
    await waitSaved(a.page)

    // ---- offline
    await a.context.setOffline(true)
    await a.page.locator('.conn[data-conn="offline"]').waitFor()
    await addThroughForm(a.page, 'needs', { text: 'Written offline' })
    const shared = await itemByText(a.page, 'needs', 'Shared before the outage')
    await shared.locator('textarea[data-field="text"]').click()
    await a.page.keyboard.press('Control+End')
    await a.page.keyboard.type(' (edited offline)')
    const editor = a.page.locator('.outline-content[contenteditable="true"]')
    await editor.click()
    await a.page.keyboard.press('Control+Home')
    await a.page.keyboard.type('Offline note. ')
    const status = a.page.locator('.save-status')
    await a.page.locator('.save-status[data-save="pending-offline"]').waitFor()
    assert.match(await status.innerText(), /^\d+ changes will sync when you are back online$/)
    const pendingBefore = Number(await status.getAttribute('data-pending'))
    assert.ok(pendingBefore > 0)

    // Meanwhile B keeps working online.
    await addThroughForm(b.page, 'partners', { text: 'Written online meanwhile', organization: 'UNESCO' })
    await waitSaved(b.page)

    // ---- reload with no network: the shell comes from the service worker, the data from IndexedDB.
    const response = await a.page.reload()
    assert.ok(response, 'the reload has a response')
    assert.ok(response.fromServiceWorker(), 'the page was served by the service worker')
    await a.page.locator('.conn[data-conn="offline"]').waitFor()
    await itemByText(a.page, 'needs', 'Written offline')
    const sharedAgain = await itemByText(a.page, 'needs', 'Shared before the outage')
    assert.equal(await fieldValue(sharedAgain, 'text'), 'Shared before the outage (edited offline)')
    await waitFor(async () => (await a.page.locator('.outline-content').innerText()).includes('Offline note.'),
      { message: 'the offline outline edit after the reload' })
    await a.page.locator('.save-status[data-save="pending-offline"]').waitFor()
    assert.equal(Number(await status.getAttribute('data-pending')), pendingBefore, 'the count survives the reload')
    // B has none of it: it never left A's browser.
    const onServer = await serverSession(server, session)
    assert.ok(!JSON.stringify(onServer).includes('Written offline'))
    await screenshot(a.page, 'offline-reloaded')

    // One more edit after the reload, still offline.
    await addThroughForm(a.page, 'needs', { text: 'After the offline reload' })

    // ---- back online
    await a.context.setOffline(false)
    await a.page.locator('.conn[data-conn="connected"]').waitFor({ timeout: 20_000 })
    await waitSaved(a.page, 20_000)
    await itemByText(a.page, 'partners', 'Written online meanwhile')
    await itemByText(b.page, 'needs', 'Written offline')
    await itemByText(b.page, 'needs', 'After the offline reload')
    let seen = []
    await waitFor(async () => {
      seen = await Promise.all([pageSession(a.page), pageSession(b.page), serverSession(server, session)])
      const [sa, sb, ss] = seen.map(canonical)
      return sa === sb && sa === ss
    }, { message: () => `A, B and the server to converge:\n${seen.map(canonical).join('\n')}` })
    const final = seen[2]
    assert.deepEqual(final.needs.map((n) => n.text),
      ['Shared before the outage (edited offline)', 'Written offline', 'After the offline reload'])
    assert.equal(final.partners[0].text, 'Written online meanwhile')
    assert.ok(final.outline.some((block) => JSON.stringify(block).includes('Offline note.')))
    await screenshot(a.page, 'offline-back-online')
    assert.deepEqual([...a.errors, ...b.errors].map(String), [])
  })
})
