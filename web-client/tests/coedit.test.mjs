// Two participants (two browser contexts, so two IndexedDBs and two identities) co-edit the outline
// and every list, in every field; the same item typed into by both merges character by character;
// each sees the other's caret and name; both pages and the server end with the same session.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import {
  newPage, openAsEditor, waitFor, waitSaved, screenshot,
  addThroughForm, itemByText, fieldValue, panel, pageSession, serverSession, withFailureShots, canonical
} from './helpers.mjs'
import { setUp } from './helpers.mjs'

test('two editors co-edit the outline and each list and converge', { timeout: 120_000 }, async (t) => {
  const { server, session, browser } = await setUp(t)
  const a = await newPage(browser)
  const b = await newPage(browser)
  await withFailureShots('coedit', () => [a.page, b.page], async () => {
  await openAsEditor(a.page, session.edit_url, 'Ada Lovelace')
  await openAsEditor(b.page, session.edit_url, 'Bao Nguyen')

  // Presence: each sees the other's name.
  await a.page.locator('.people .person', { hasText: 'Bao Nguyen' }).waitFor()
  await b.page.locator('.people .person', { hasText: 'Ada Lovelace' }).waitFor()

  // ---- outline: A writes a heading and a bullet list at the end, B a paragraph at the start,
  // at the same time.
  const typeOutline = async (page, where, steps) => {
    const editor = page.locator('.outline-content[contenteditable="true"]')
    await editor.click()
    await page.keyboard.press(where === 'end' ? 'Control+End' : 'Control+Home')
    for (const step of steps) {
      if (step.key) await page.keyboard.press(step.key)
      else if (step.tool) await page.locator(`.toolbar [data-tool="${step.tool}"]`).click()
      else await page.keyboard.type(step.text, { delay: 15 })
    }
  }
  await Promise.all([
    typeOutline(a.page, 'end', [{ key: 'Enter' }, { key: 'Enter' }, { tool: 'fmtHeading2' }, { text: 'Decisions from Ada' },
      { key: 'Enter' }, { tool: 'fmtBullet' }, { text: 'first point' }, { key: 'Enter' }, { text: 'second point' }]),
    typeOutline(b.page, 'start', [{ text: 'Bao was here. ' }])
  ])
  for (const p of [a.page, b.page]) {
    let text = ''
    await waitFor(async () => {
      text = await p.locator('.outline-content').innerText()
      return text.includes('Decisions from Ada') && text.includes('second point') && text.includes('Bao was here.')
    }, { message: () => `both outline edits on both pages, got:\n${text}` })
  }
  // The structure reached the other side: a level-2 heading and a bullet list with two items.
  await b.page.locator('.outline-content h2', { hasText: 'Decisions from Ada' }).waitFor()
  await b.page.locator('.outline-content ul li', { hasText: 'second point' }).waitFor()

  // Carets with names: each sees the other's caret in the outline.
  await a.page.locator('.collaboration-carets__label', { hasText: 'Bao Nguyen' }).waitFor()
  await b.page.locator('.collaboration-carets__label', { hasText: 'Ada Lovelace' }).waitFor()

  // ---- needs: A adds, both type into the same item at once (A at the end, B at the start).
  await addThroughForm(a.page, 'needs', { text: 'Open licences guidance' })
  const needA = await itemByText(a.page, 'needs', 'Open licences guidance')
  const needB = await itemByText(b.page, 'needs', 'Open licences guidance')
  const typeInto = async (item, page, key, text) => {
    const area = item.locator('textarea[data-field="text"]')
    await area.click()
    await page.keyboard.press(key)
    await page.keyboard.type(text, { delay: 25 })
  }
  await Promise.all([
    typeInto(needA, a.page, 'Control+End', ' for ministries'),
    typeInto(needB, b.page, 'Control+Home', 'Clear ')
  ])
  const merged = 'Clear Open licences guidance for ministries'
  for (const item of [needA, needB]) {
    await waitFor(async () => (await fieldValue(item, 'text')) === merged,
      { message: () => `the merged need "${merged}"` })
  }
  // B supports it: A sees the vote.
  await needB.locator('button.vote').click()
  await waitFor(async () => (await needA.locator('button.vote').innerText()).includes('1'), { message: 'the vote on A' })
  assert.equal(await needB.locator('button.vote').getAttribute('aria-pressed'), 'true')

  // ---- resources: B adds one as a service in the video format; A changes the format.
  await addThroughForm(b.page, 'resources', { text: 'Explainer on open licences', kind: 'service', format: 'video' })
  const resA = await itemByText(a.page, 'resources', 'Explainer on open licences')
  assert.equal(await fieldValue(resA, 'kind'), 'service')
  assert.equal(await fieldValue(resA, 'format'), 'video')
  await resA.locator('select[data-field="format"]').selectOption('slide deck')
  const resB = await itemByText(b.page, 'resources', 'Explainer on open licences')
  await waitFor(async () => (await fieldValue(resB, 'format')) === 'slide deck', { message: 'the format change on B' })

  // ---- partners: A adds one; B fills in the organisation and website in place.
  await addThroughForm(a.page, 'partners', { text: 'Regional OER network' })
  const partnerB = await itemByText(b.page, 'partners', 'Regional OER network')
  await partnerB.locator('[data-field="organization"]').fill('OER Africa')
  await partnerB.locator('[data-field="website"]').fill('https://www.oerafrica.org')
  const partnerA = await itemByText(a.page, 'partners', 'Regional OER network')
  await waitFor(async () => (await fieldValue(partnerA, 'organization')) === 'OER Africa' &&
    (await fieldValue(partnerA, 'website')) === 'https://www.oerafrica.org', { message: 'the partner fields on A' })

  // ---- collaborators: B adds one with every field, the email going to the private document.
  await addThroughForm(b.page, 'collaborators', {
    text: 'Policy templates', name: 'Chidi Okafor', organization: 'Ministry of Education', interests: 'policy, procurement', email: 'chidi@example.org'
  })
  const collA = await itemByText(a.page, 'collaborators', 'Policy templates')
  await waitFor(async () => (await fieldValue(collA, 'name')) === 'Chidi Okafor' &&
    (await fieldValue(collA, 'interests')) === 'policy, procurement' &&
    (await fieldValue(collA, 'email')) === 'chidi@example.org', { message: 'the collaborator and the email on A' })
  // A corrects the email in place; B sees it.
  await collA.locator('[data-field="email"]').fill('c.okafor@example.org')
  const collB = await itemByText(b.page, 'collaborators', 'Policy templates')
  await waitFor(async () => (await fieldValue(collB, 'email')) === 'c.okafor@example.org', { message: 'the email change on B' })

  // ---- delete: B adds a need, A deletes it, B sees it go.
  await addThroughForm(b.page, 'needs', { text: 'Temporary need' })
  const tmpA = await itemByText(a.page, 'needs', 'Temporary need')
  await tmpA.locator('button.delete').click()
  await waitFor(async () => (await panel(b.page, 'needs').locator('li.item').count()) === 1, { message: 'the deletion on B' })

  // ---- convergence: both pages and the server hold the same session, both pages saved.
  await waitSaved(a.page)
  await waitSaved(b.page)
  let seen = []
  const expected = await waitFor(async () => {
    seen = await Promise.all([pageSession(a.page), pageSession(b.page), serverSession(server, session)])
    const [sa, sb, ss] = seen.map(canonical)
    return sa === sb && sa === ss ? seen[2] : null
  }, { message: () => `pages and server to hold the same session:\n${seen.map(canonical).join('\n')}` })
  assert.equal(expected.needs.length, 1)
  assert.equal(expected.needs[0].text, merged)
  assert.equal(expected.needs[0].author, 'Ada Lovelace')
  assert.equal(expected.needs[0].votes.length, 1)
  assert.equal(expected.resources[0].kind, 'service')
  assert.equal(expected.resources[0].format, 'slide deck')
  assert.equal(expected.partners[0].organization, 'OER Africa')
  assert.equal(expected.collaborators[0].name, 'Chidi Okafor')
  assert.ok(!JSON.stringify(expected).includes('okafor@example.org'), 'the email is not in the public export')
  const emails = await Promise.all([a.page, b.page].map((p) => p.evaluate(() => {
    const c = window.commonpad.private.getMap('contacts')
    return Object.fromEntries([...c.entries()].map(([k, v]) => [k, v.get('email')]))
  })))
  assert.deepEqual(emails[0], emails[1])
  assert.deepEqual(Object.values(emails[0]), ['c.okafor@example.org'])

  // Participation: A has two items (need, partner), B three (resource, collaborator; the
  // temporary need is gone).
  const rows = await a.page.locator('.participation-table tbody tr').allInnerTexts()
  assert.equal(rows.length, 2, rows.join(' | '))

  await screenshot(a.page, 'coedit-ada')
  await screenshot(b.page, 'coedit-bao')
  assert.deepEqual([...a.errors, ...b.errors].map(String), [])
  })
})
