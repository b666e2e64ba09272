// "All changes saved" tells the truth: it appears only once the server holds the change (the
// server echoes a change only after fsync). The server process is frozen (SIGSTOP) while a change
// is made: the page must keep saying "Saving..."; once thawed, the page says "All changes saved",
// and at that moment the server's own export already has the change.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  newPage, openAsEditor, waitSaved, screenshot, sleep,
  addThroughForm, itemByText, serverSession, withFailureShots
} from './helpers.mjs'
import { setUp } from './helpers.mjs'

test('"All changes saved" appears only after the server holds the change', { timeout: 90_000 }, async (t) => {
  const { server, session, browser } = await setUp(t)
  const a = await newPage(browser)
  await withFailureShots('saved', () => [a.page], async () => {
    await openAsEditor(a.page, session.edit_url, 'Ada')
    await waitSaved(a.page)
    const status = a.page.locator('.save-status')

    // Record every state the status goes through, in the page, from now on.
    await a.page.evaluate(() => {
      const el = document.querySelector('.save-status')
      window.saveStates = [el.dataset.save]
      new MutationObserver(() => window.saveStates.push(el.dataset.save)).observe(el, { attributes: true, attributeFilter: ['data-save'] })
    })

    // ---- a new item while the server cannot answer
    server.pause()
    let paused = true
    t.after(() => { if (paused) server.resume() })
    await addThroughForm(a.page, 'needs', { text: 'Held while the server is frozen' })
    await a.page.locator('.save-status[data-save="saving"]').waitFor()
    assert.equal(await status.innerText(), 'Saving…')
    // However long we wait, it does not claim to be saved.
    await sleep(1500)
    assert.equal(await status.getAttribute('data-save'), 'saving')
    await screenshot(a.page, 'saved-while-frozen')

    server.resume()
    paused = false
    await waitSaved(a.page)
    assert.equal(await status.innerText(), 'All changes saved')
    // The moment the page says so, the server has it (its export reads its own document).
    const held = await serverSession(server, session)
    assert.deepEqual(held.needs.map((n) => n.text), ['Held while the server is frozen'])

    // ---- typing into an existing item: same rule, character by character.
    const item = await itemByText(a.page, 'needs', 'Held while the server is frozen')
    server.pause()
    paused = true
    await item.locator('textarea[data-field="text"]').click()
    await a.page.keyboard.press('Control+End')
    await a.page.keyboard.type(', then edited')
    // A deletion only (no new characters) is tracked too.
    await a.page.keyboard.press('Backspace')
    await sleep(800)
    assert.equal(await status.getAttribute('data-save'), 'saving')
    server.resume()
    paused = false
    await waitSaved(a.page)
    const edited = await serverSession(server, session)
    assert.equal(edited.needs[0].text, 'Held while the server is frozen, then edite')

    // A change that deletes only: the status still waits for the server.
    server.pause()
    paused = true
    await a.page.keyboard.press('Backspace')
    await sleep(800)
    assert.equal(await status.getAttribute('data-save'), 'saving', 'a pure deletion is not "saved" before the server has it')
    server.resume()
    paused = false
    await waitSaved(a.page)
    assert.equal((await serverSession(server, session)).needs[0].text, 'Held while the server is frozen, then edit')

    const states = await a.page.evaluate(() => window.saveStates)
    assert.ok(states.includes('saving') && states.at(-1) === 'saved', states.join(' > '))
    await screenshot(a.page, 'saved-after')
    assert.deepEqual(a.errors.map(String), [])
  })
})
