// The smaller panels: presence, share and export, participation.
import * as Y from 'yjs'
import type { Awareness } from 'y-protocols/awareness'
import { h } from './dom'
import { t, tn, tk, language } from './i18n'
import { LISTS, listArray, readString, readText } from './model'
import { downloadExport, type ExportFormat } from './api'
import { colourFor } from './identity'
import type { Role } from './link'

export interface Panel { element: HTMLElement, relabel(): void, destroy?(): void }

/** The server publishes the counts under the reserved awareness client 0. */
export const SERVER_CLIENT = 0

export function presencePanel (awareness: Awareness, myClientId: number, showSelf: boolean): Panel {
  const heading = h('h2', { id: 'presence-heading', class: 'sr-only' })
  const counts = h('p', { class: 'counts' })
  const people = h('ul', { class: 'people' })
  const element = h('section', { class: 'presence', 'aria-labelledby': 'presence-heading' }, heading, counts, people)
  const render = () => {
    heading.textContent = t('presence')
    const states = awareness.getStates()
    const server = states.get(SERVER_CLIENT) as { server?: { editors?: number, viewers?: number } } | undefined
    const names: Array<{ name: string, color: string, self: boolean }> = []
    for (const [client, state] of states) {
      if (client === SERVER_CLIENT) continue
      const user = (state as { user?: { name?: unknown, color?: unknown } }).user
      if (!user || typeof user.name !== 'string') continue
      if (client === myClientId && !showSelf) continue
      names.push({ name: user.name.slice(0, 60), color: typeof user.color === 'string' ? user.color : '#555', self: client === myClientId })
    }
    names.sort((a, b) => Number(b.self) - Number(a.self) || a.name.localeCompare(b.name))
    // The server publishes the counts (once a viewer has come); until then, the editors are the
    // people whose presence we see.
    const editors = typeof server?.server?.editors === 'number' ? server.server.editors : names.length
    const viewers = typeof server?.server?.viewers === 'number' ? server.server.viewers : 0
    counts.textContent = `${tn('editing', editors)} · ${tn('viewing', viewers)}`
    people.replaceChildren(...names.map((p) => {
      const dot = h('span', { class: 'dot', 'aria-hidden': 'true' })
      dot.style.backgroundColor = p.color
      return h('li', { class: 'person' + (p.self ? ' self' : '') }, dot, p.self ? t('youSuffix', { name: p.name }) : p.name)
    }))
  }
  awareness.on('change', render)
  render()
  return { element, relabel: render, destroy () { awareness.off('change', render) } }
}

interface Links { edit_url?: string, view_url?: string }

export function sharePanel (id: string, token: string, role: Role): Panel & { setLinks(l: Links): void } {
  let links: Links = {}
  const heading = h('h2', { id: 'share-heading' })
  const linkArea = h('div', { class: 'links' })
  const exportHeading = h('h3', { id: 'export-heading' })
  const exportHelp = h('p', { class: 'help' })
  const exportButtons = h('div', { class: 'export-buttons', role: 'group', 'aria-labelledby': 'export-heading' })
  const exportStatus = h('p', { class: 'export-status', role: 'status' })
  const element = h('section', { class: 'panel share', 'aria-labelledby': 'share-heading' },
    heading, linkArea, exportHeading, exportHelp, exportButtons, exportStatus)

  const run = async (format: ExportFormat, list?: string) => {
    exportStatus.textContent = t('loading')
    try {
      const file = await downloadExport(id, token, format, list)
      exportStatus.textContent = t('exportDone', { file })
    } catch (e) {
      exportStatus.textContent = t('exportFailed', { reason: e instanceof Error ? e.message : String(e) })
    }
  }

  const linkRow = (label: string, copyLabel: string, url: string, kind: string) => {
    const inputId = `link-${kind}`
    const input = h('input', { id: inputId, type: 'text', readonly: true, value: url, class: 'link-field', 'data-link': kind })
    const feedback = h('span', { class: 'copy-feedback', role: 'status' })
    const button = h('button', { type: 'button', class: 'copy', 'aria-label': copyLabel, 'data-copy': kind }, t('copy'))
    // Never rejects: a refused clipboard is reported, and the link selected for a manual copy.
    const copy = async () => {
      try {
        await navigator.clipboard.writeText(url)
        feedback.textContent = t('copied')
      } catch {
        input.focus()
        input.select()
        feedback.textContent = t('copyFailed')
      }
      setTimeout(() => { feedback.textContent = '' }, 4000)
    }
    button.addEventListener('click', () => { void copy() })
    input.addEventListener('focus', () => input.select())
    return h('div', { class: 'link-row' }, h('label', { for: inputId, text: label }), h('div', { class: 'link-controls' }, input, button), feedback)
  }

  const render = () => {
    heading.textContent = t('share')
    const rows: Node[] = []
    if (role === 'edit' && links.edit_url) rows.push(linkRow(t('editLink'), t('copyEditLink'), links.edit_url, 'edit'))
    if (links.view_url) rows.push(linkRow(t('viewLink'), t('copyViewLink'), links.view_url, 'view'))
    if (rows.length === 0) rows.push(h('p', { class: 'help', text: t('linksOffline') }))
    linkArea.replaceChildren(...rows)
    exportHeading.textContent = t('export')
    exportHelp.textContent = t('exportHelp')
    const btn = (label: string, format: ExportFormat, list?: string) =>
      h('button', { type: 'button', class: 'export', 'data-export': list ? `${format}-${list}` : format, onclick: () => { void run(format, list) } }, label)
    exportButtons.replaceChildren(
      btn(t('exportMd'), 'md'),
      btn(t('exportJson'), 'json'),
      ...LISTS.map((list) => btn(t('exportCsv', { list: tk(`list_${list}`, list) }), 'csv', list))
    )
  }
  render()
  return {
    element,
    relabel: render,
    setLinks (l: Links) { links = l; render() }
  }
}

/** Items and characters contributed per participant, from the lists' author fields. */
export function participationPanel (doc: Y.Doc): Panel {
  const heading = h('h2', { id: 'participation-heading' })
  const help = h('p', { class: 'help' })
  const body = h('div', { class: 'participation-body' })
  const element = h('section', { class: 'panel participation', 'aria-labelledby': 'participation-heading' }, heading, help, body)
  let scheduled = false
  const render = () => {
    scheduled = false
    heading.textContent = t('participation')
    help.textContent = t('participationHelp')
    const by = new Map<string, { name: string, items: number, chars: number }>()
    for (const list of LISTS) {
      for (const item of listArray(doc, list).toArray()) {
        if (!(item instanceof Y.Map)) continue
        const name = readString(item, 'author') || t('anonymous')
        const key = readString(item, 'authorId') || name
        const entry = by.get(key) ?? { name, items: 0, chars: 0 }
        entry.name = name
        entry.items++
        entry.chars += [...readText(item)].length
        by.set(key, entry)
      }
    }
    if (by.size === 0) {
      body.replaceChildren(h('p', { class: 'empty', text: t('noParticipation') }))
      return
    }
    const total = [...by.values()].reduce((s, e) => s + e.chars, 0) || 1
    const rows = [...by.entries()].sort((a, b) => b[1].chars - a[1].chars || b[1].items - a[1].items)
    const fmt = (n: number) => n.toLocaleString(language())
    const percent = new Intl.NumberFormat(language(), { style: 'percent', maximumFractionDigits: 0 })
    const table = h('table', { class: 'participation-table' },
      h('caption', { class: 'sr-only', text: t('participation') }),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', text: t('participant') }),
        h('th', { scope: 'col', text: t('items') }),
        h('th', { scope: 'col', text: t('characters') }),
        h('th', { scope: 'col', text: t('shareOfText') }))),
      h('tbody', {}, ...rows.map(([key, e]) => {
        const share = e.chars / total
        const pct = Math.round(share * 100)
        const bar = h('span', { class: 'bar', 'aria-hidden': 'true' })
        bar.style.inlineSize = `${pct}%`
        bar.style.backgroundColor = colourFor(key)
        return h('tr', {},
          h('th', { scope: 'row', text: e.name }),
          h('td', { text: fmt(e.items) }),
          h('td', { text: fmt(e.chars) }),
          h('td', { class: 'share-cell' }, h('span', { class: 'bar-track', 'aria-hidden': 'true' }, bar), percent.format(share)))
      })))
    body.replaceChildren(table)
  }
  const schedule = () => {
    if (scheduled) return
    scheduled = true
    requestAnimationFrame(render)
  }
  const arrays = LISTS.map((l) => listArray(doc, l))
  for (const a of arrays) a.observeDeep(schedule)
  render()
  return { element, relabel: render, destroy () { for (const a of arrays) a.unobserveDeep(schedule) } }
}
