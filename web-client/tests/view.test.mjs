// The view link: the public follows the session live, with no editing affordance at all; typing
// and clicking everywhere changes nothing, on the page or on the server; and the private document
// (collaborators' emails) never reaches it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import {
  newPage, openAsEditor, waitFor, waitSaved, screenshot,
  addThroughForm, itemByText, gotoSettled, serverSession, serverUpdate, withFailureShots, canonical, sleep, panel
} from './helpers.mjs'
import { setUp } from './helpers.mjs'

test('a view link sees live edits, cannot change anything, and never gets the private document', { timeout: 120_000 }, async (t) => {
  const { server, session, browser } = await setUp(t)
  const editor = await newPage(browser)
  const viewer = await newPage(browser)
  const sockets = []
  const requests = []
  viewer.page.on('websocket', (ws) => sockets.push(ws.url()))
  // Every resource the page loads by itself (not a link someone follows) must be CommonPad's own.
  viewer.page.on('request', (r) => { if (!r.isNavigationRequest()) requests.push(r.url()) })

  await withFailureShots('view', () => [editor.page, viewer.page], async () => {
    await openAsEditor(editor.page, session.edit_url, 'Ada')
    await addThroughForm(editor.page, 'collaborators', { text: 'Translations', name: 'Dana', email: 'dana@example.org' })
    await waitSaved(editor.page)

    await viewer.page.goto(session.view_url)
    await viewer.page.locator('.conn[data-conn="connected"]').waitFor()
    // No name to choose, no editor, no caret, no form, no button that writes.
    assert.equal(await viewer.page.locator('dialog').count(), 0)
    assert.equal(await viewer.page.locator('[contenteditable="true"], .ProseMirror, .toolbar, .collaboration-carets__caret').count(), 0)
    assert.equal(await viewer.page.locator('textarea, form.add-form, button.vote, button.delete, select[data-field]').count(), 0)
    const writable = await viewer.page.locator('input:not([readonly])').count()
    assert.equal(writable, 0, 'no writable input on the view page')
    await viewer.page.locator('.readonly-notice').waitFor()
    await viewer.page.locator('.badge.role-view').waitFor()
    // The editor's item is there, without its private email.
    await itemByText(viewer.page, 'collaborators', 'Translations')
    assert.ok(!(await viewer.page.content()).includes('dana@example.org'))

    // ---- live: the editor writes, the viewer sees it.
    await addThroughForm(editor.page, 'needs', { text: 'Live need from Ada' })
    await itemByText(viewer.page, 'needs', 'Live need from Ada')
    const outline = editor.page.locator('.outline-content[contenteditable="true"]')
    await outline.click()
    await editor.page.keyboard.press('Control+Home')
    await editor.page.keyboard.type('Live outline edit. ')
    await waitFor(async () => (await viewer.page.locator('.outline-content').innerText()).includes('Live outline edit.'),
      { message: 'the outline edit on the view page' })
    // The viewer is counted, not shown: the editor sees "1 viewing" and no name for it.
    await editor.page.locator('.presence .counts', { hasText: '1 viewing' }).waitFor()
    await waitSaved(editor.page)
    await sleep(300)
    const before = await serverUpdate(server, session)
    const beforeJson = canonical(await serverSession(server, session))
    const viewerBefore = await viewer.page.evaluate(() => window.commonpad.Y.encodeStateVector(window.commonpad.main).join(','))

    // ---- try to change things: click every item, type everywhere, press every button that does
    // not leave the page, tab through every control typing into it.
    for (const sel of ['.outline-content', 'li.item', '.item-text', 'h1', '.presence']) {
      const els = await viewer.page.locator(sel).all()
      for (const el of els.slice(0, 5)) {
        await el.click({ force: true })
        await viewer.page.keyboard.type('hack ')
        await viewer.page.keyboard.press('Enter')
        await viewer.page.keyboard.press('Backspace')
        await viewer.page.keyboard.press('Delete')
        await viewer.page.keyboard.press('Control+v')
      }
    }
    for (const btn of await viewer.page.locator('button:not([data-export])').all()) await btn.click()
    for (let i = 0; i < 40; i++) {
      await viewer.page.keyboard.press('Tab')
      await viewer.page.keyboard.type('x')
      await viewer.page.keyboard.press('Enter')
      await viewer.page.keyboard.press('Space')
    }
    // The language switcher is the one control that changes something, for this person only.
    // Enter on the brand link may have started a navigation home: let it settle first.
    await gotoSettled(viewer.page, session.view_url)
    await viewer.page.locator('.conn[data-conn="connected"]').waitFor()
    await sleep(500)
    const viewerAfter = await viewer.page.evaluate(() => window.commonpad.Y.encodeStateVector(window.commonpad.main).join(','))
    assert.equal(viewerAfter, viewerBefore, "the viewer's own document did not change")
    assert.equal(canonical(await serverSession(server, session)), beforeJson, 'the server session is unchanged')
    const after = await serverUpdate(server, session)
    assert.deepEqual([...Y.decodeStateVector(Y.encodeStateVectorFromUpdate(after))].sort(),
      [...Y.decodeStateVector(Y.encodeStateVectorFromUpdate(before))].sort(), 'the server state vector is unchanged')

    // Even a modified client (a write forced into the page's document) changes nothing on the
    // server nor for the editor: the server ignores a viewer's updates.
    await viewer.page.evaluate(() => {
      const { Y, main } = window.commonpad
      const item = new Y.Map()
      item.set('id', 'forged')
      item.set('text', new Y.Text('Forged by a viewer'))
      main.getArray('needs').push([item])
    })
    await sleep(1000)
    assert.equal(canonical(await serverSession(server, session)), beforeJson, 'a forged write does not reach the server')
    assert.equal(await panel(editor.page, 'needs').locator('li.item').count(), 1, 'nor the editor')

    // ---- the private document never reached the viewer.
    assert.ok(sockets.length > 0)
    assert.deepEqual(sockets.filter((u) => u.includes('.private')), [], 'no socket to the private document')
    assert.ok(sockets.every((u) => /\/sync\/[^/.?]+\?token=/.test(u)), sockets.join(' '))
    assert.equal(await viewer.page.evaluate(() => window.commonpad.private), null)
    const dbs = await viewer.page.evaluate(async () => (await indexedDB.databases()).map((d) => d.name))
    assert.ok(dbs.includes(session.id), `IndexedDB holds the session: ${dbs}`)
    assert.deepEqual(dbs.filter((n) => n.includes('.private')), [], 'no private document in IndexedDB')
    assert.deepEqual(requests.filter((u) => !u.startsWith(server.baseUrl) && !u.startsWith('ws://127.0.0.1')), [], 'nothing fetched from elsewhere')

    // The exports work with the view token: Markdown and one CSV, named by the server.
    const [md] = await Promise.all([viewer.page.waitForEvent('download'), viewer.page.locator('button[data-export="md"]').click()])
    assert.equal(md.suggestedFilename(), `${session.id}.md`)
    const mdText = await (await import('node:fs/promises')).readFile(await md.path(), 'utf8')
    assert.match(mdText, /Live need from Ada/)
    const [csv] = await Promise.all([viewer.page.waitForEvent('download'), viewer.page.locator('button[data-export="csv-needs"]').click()])
    assert.equal(csv.suggestedFilename(), `${session.id}-needs.csv`)
    await viewer.page.locator('.export-status', { hasText: `${session.id}-needs.csv` }).waitFor()

    await screenshot(viewer.page, 'view-page')
    assert.deepEqual([...editor.errors, ...viewer.errors].map(String), [])
  })
})
