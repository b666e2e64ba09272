// Accessibility: axe finds no serious or critical violation on the edit page (with another
// editor's caret showing, items in every list, the name dialog open) nor on the view page; every
// control is reachable with the keyboard and shows where the focus is; the message catalogue
// switches to French, and the layout follows `dir`.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import AxeBuilder from '@axe-core/playwright'
import {
  newPage, openAsEditor, waitSaved, screenshot,
  addThroughForm, itemByText, withFailureShots
} from './helpers.mjs'
import { setUp } from './helpers.mjs'

async function seriousViolations (page, label) {
  const result = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']).analyze()
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
  return bad.map((v) => `${label}: [${v.impact}] ${v.id}: ${v.help}\n    ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('\n    ')}`)
}

/** Tabs through the whole page; returns the focus stops and which of them showed no focus ring. */
async function tabThrough (page, max = 250) {
  await page.evaluate(() => {
    let i = 0
    for (const el of document.querySelectorAll('a[href], button, input, select, textarea, [contenteditable="true"]')) el.dataset.kb = String(i++)
    document.activeElement?.blur()
  })
  await page.locator('body').click({ position: { x: 2, y: 2 } })
  const stops = new Map()
  for (let n = 0; n < max; n++) {
    await page.keyboard.press('Tab')
    const info = await page.evaluate(() => {
      const el = document.activeElement
      if (!el || el === document.body) return null
      const style = getComputedStyle(el)
      return { kb: el.dataset.kb ?? null, tag: el.tagName, ring: style.outlineStyle !== 'none' || style.boxShadow !== 'none', label: el.getAttribute('aria-label') || el.textContent?.slice(0, 30) }
    })
    if (!info || info.kb === null) continue
    if (stops.has(info.kb)) break // back at the start: the page is done
    stops.set(info.kb, info)
  }
  return stops
}

test('accessibility: no serious violations, keyboard reachable, visible focus, French and RTL', { timeout: 120_000 }, async (t) => {
  const { server, session, browser } = await setUp(t)
  const a = await newPage(browser)
  const b = await newPage(browser)
  const v = await newPage(browser, { locale: 'fr-FR' })
  await withFailureShots('a11y', () => [a.page, b.page, v.page], async () => {
    const problems = []

    // The first-visit dialog.
    await a.page.goto(session.edit_url)
    await a.page.locator('dialog.name-dialog').waitFor()
    assert.equal(await a.page.evaluate(() => document.activeElement?.id), 'display-name', 'the dialog takes the focus')
    problems.push(...await seriousViolations(a.page, 'name dialog'))
    await a.page.fill('#display-name', 'Ada')
    await a.page.keyboard.press('Enter')
    await a.page.locator('.conn[data-conn="connected"]').waitFor()
    await openAsEditor(b.page, session.edit_url, 'Bao')

    // Content everywhere, and B's caret in A's outline.
    await addThroughForm(a.page, 'needs', { text: 'Guidance on open licences' })
    await addThroughForm(a.page, 'resources', { text: 'Policy template', kind: 'resource', format: 'policy template' })
    await addThroughForm(a.page, 'partners', { text: 'Regional network', organization: 'OER Africa', website: 'https://www.oerafrica.org' })
    await addThroughForm(a.page, 'collaborators', { text: 'Translations', name: 'Dana', organization: 'Ministry', interests: 'language', email: 'dana@example.org' })
    await (await itemByText(b.page, 'needs', 'Guidance on open licences')).locator('button.vote').click()
    await b.page.locator('.outline-content[contenteditable="true"]').click()
    await b.page.keyboard.press('Control+Home')
    await b.page.keyboard.type('Hello ')
    await a.page.locator('.collaboration-carets__label', { hasText: 'Bao' }).waitFor()
    await waitSaved(a.page)

    problems.push(...await seriousViolations(a.page, 'edit page'))
    await screenshot(a.page, 'a11y-edit')

    // Keyboard: every control on the edit page is a tab stop (the toolbar is one stop, its buttons
    // are reached with the arrow keys), and each shows a focus ring.
    const stops = await tabThrough(a.page)
    const expected = await a.page.evaluate(() => [...document.querySelectorAll('[data-kb]')]
      .filter((el) => el.offsetParent !== null && !el.closest('.toolbar') &&
        // links inside the editor are text in it, not tab stops of their own
        !(el.parentElement?.closest('[contenteditable="true"]')))
      .map((el) => el.dataset.kb))
    const missed = expected.filter((kb) => !stops.has(kb))
    assert.deepEqual(missed, [], `controls not reachable by Tab: ${missed.join(', ')}`)
    const noRing = [...stops.values()].filter((s) => !s.ring)
    assert.deepEqual(noRing, [], 'every focused control shows a focus ring')
    // The toolbar: one tab stop, arrow keys move along it, Escape leaves the editor for it.
    await a.page.locator('.outline-content[contenteditable="true"]').click()
    await a.page.keyboard.press('Escape')
    assert.equal(await a.page.evaluate(() => document.activeElement?.closest('.toolbar') !== null), true, 'Escape leaves the editor')
    await a.page.keyboard.press('ArrowRight')
    assert.equal(await a.page.evaluate(() => document.activeElement?.dataset.tool), 'fmtHeading2')
    // The skip link is the first stop; it moves the focus and keeps the token in the address.
    assert.equal(await a.page.evaluate(() => document.querySelector('a[href], button, input, select, textarea')?.className), 'skip')
    await a.page.locator('a.skip').focus()
    await a.page.keyboard.press('Enter')
    assert.equal(await a.page.evaluate(() => document.activeElement?.id), 'main')
    assert.match(await a.page.evaluate(() => location.hash), /^#edit=/)
    // Add a need with the keyboard only.
    await a.page.locator('section[data-list="needs"] form.add-form [data-field="text"]').focus()
    await a.page.keyboard.type('Typed with the keyboard')
    await a.page.keyboard.press('Enter')
    await itemByText(a.page, 'needs', 'Typed with the keyboard')

    // The home page.
    await b.page.goto(new URL('/', session.edit_url).href)
    await b.page.locator('.open-form').waitFor()
    await b.page.locator('.recent a', { hasText: 'OER workshop' }).waitFor()
    problems.push(...await seriousViolations(b.page, 'home page'))
    await screenshot(b.page, 'a11y-home')

    // The view page, in French from the browser's language.
    await v.page.goto(session.view_url)
    await v.page.locator('.conn[data-conn="connected"]').waitFor()
    assert.equal(await v.page.evaluate(() => document.documentElement.lang), 'fr')
    await v.page.locator('section[data-list="needs"] h2', { hasText: 'Besoins' }).waitFor()
    await v.page.locator('.badge.role-view', { hasText: 'Lecture seule' }).waitFor()
    problems.push(...await seriousViolations(v.page, 'view page (fr)'))
    await screenshot(v.page, 'a11y-view-fr')
    // The switcher: back to English, remembered.
    await v.page.selectOption('.lang-select', 'en')
    await v.page.locator('section[data-list="needs"] h2', { hasText: 'Needs' }).waitFor()
    assert.equal(await v.page.evaluate(() => document.documentElement.lang), 'en')
    await v.page.reload()
    await v.page.locator('section[data-list="needs"] h2', { hasText: 'Needs' }).waitFor()
    problems.push(...await seriousViolations(v.page, 'view page (en)'))

    const ltrOverflow = await a.page.evaluate(() => document.documentElement.scrollWidth > document.documentElement.clientWidth + 1
      ? [...document.querySelectorAll('body *')].filter((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.right > document.documentElement.clientWidth + 1 })
        .slice(0, 5).map((e) => `${e.tagName}.${e.className}`).join(', ')
      : false)
    // Right to left: with dir=rtl the layout mirrors (logical properties), nothing overflows.
    await a.page.evaluate(() => { document.documentElement.dir = 'rtl' })
    const rtl = await a.page.evaluate(() => {
      const item = document.querySelector('li.item')
      const panel = item.closest('section')
      const s = getComputedStyle(item)
      return {
        accentOnRight: s.borderRightWidth === '4px' && s.borderLeftWidth === '1px',
        overflow: document.documentElement.scrollWidth > document.documentElement.clientWidth + 1
          ? [...document.querySelectorAll('body *')].filter((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && (r.right > document.documentElement.clientWidth + 1 || r.left < -1) })
            .slice(0, 5).map((e) => `${e.tagName}.${e.className}`).join(', ')
          : false,
        panelRight: panel.getBoundingClientRect().right
      }
    })
    assert.ok(rtl.accentOnRight, 'the item accent border moves to the right in RTL')
    assert.equal(rtl.overflow, false, 'no horizontal overflow in RTL')
    assert.equal(ltrOverflow, false, 'no horizontal overflow in LTR')
    problems.push(...await seriousViolations(a.page, 'edit page (rtl)'))
    await screenshot(a.page, 'a11y-edit-rtl')
    // A phone: one column, nothing wider than the screen.
    await a.page.evaluate(() => { document.documentElement.dir = 'ltr' })
    await a.page.setViewportSize({ width: 360, height: 740 })
    const narrow = await a.page.evaluate(() => [...document.querySelectorAll('body *')]
      .filter((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.right > document.documentElement.clientWidth + 1 && !e.closest('.collaboration-carets__caret') })
      .slice(0, 5).map((e) => `${e.tagName}.${e.className}`))
    assert.deepEqual(narrow, [], 'nothing overflows a 360 px wide screen')
    await screenshot(a.page, 'a11y-edit-phone')

    assert.deepEqual(problems, [], problems.join('\n'))
    assert.deepEqual([...a.errors, ...b.errors, ...v.errors].map(String), [])
  })
})
