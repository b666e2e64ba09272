// The page at `/`: what CommonPad is, a field to open a link, and the sessions opened here before.
import { h } from './dom'
import { t, onLanguage } from './i18n'
import { parsePastedLink } from './link'
import { languageSwitcher, skipLink } from './chrome'
import { recentSessions, forgetSession, pendingOnDevice, type Recent } from './device'
import { confirmForget } from './device-panel'

export function renderHome (root: HTMLElement): void {
  const render = () => {
    document.title = t('appName')
    const inputId = 'open-link'
    const error = h('p', { class: 'error', id: 'open-error', role: 'alert' })
    const input = h('input', { id: inputId, type: 'url', 'aria-describedby': 'open-error', autocomplete: 'off', spellcheck: 'false' })
    const form = h('form', { class: 'open-form' },
      h('label', { for: inputId, text: t('homeOpenLabel') }),
      h('div', { class: 'link-controls' }, input, h('button', { type: 'submit', class: 'primary', text: t('homeOpen') })),
      error)
    form.addEventListener('submit', (e) => {
      e.preventDefault()
      const target = parsePastedLink(input.value)
      if (!target) { error.textContent = t('homeBadLink'); input.focus(); return }
      location.assign(target.path + target.hash)
    })
    const status = h('p', { class: 'sr-only', role: 'status' })
    // Forgetting redraws the list only: the status line stays, so its message is announced.
    let recent: HTMLElement
    const redraw = () => {
      const next = recentSection(status, input, redraw)
      recent.replaceWith(next)
      recent = next
    }
    recent = recentSection(status, input, redraw)
    root.replaceChildren(
      skipLink(t('skipToContent')),
      h('header', { class: 'topbar' },
        h('a', { class: 'brand', href: '/', text: t('appName') }),
        h('div', { class: 'tools' }, languageSwitcher())),
      h('main', { id: 'main', class: 'home', tabindex: '-1' },
        h('h1', { text: t('appName') }),
        h('p', { class: 'lead', text: t('homeIntro') }),
        h('p', { text: t('homeHowTo') }),
        form,
        recent,
        status))
  }
  onLanguage(render)
  render()
}

/** The sessions opened on this device, each with its "forget" button; empty when there are none. */
function recentSection (status: HTMLElement, fallbackFocus: HTMLElement, redraw: () => void): HTMLElement {
  const list = recentSessions()
  const section = h('section', { 'aria-labelledby': 'recent-heading', hidden: list.length === 0 })
  if (list.length === 0) return section
  const heading = h('h2', { id: 'recent-heading', tabindex: '-1', text: t('homeRecent') })
  const forget = async (r: Recent) => {
    if (!confirmForget(pendingOnDevice(r.id))) return
    await forgetSession(r.id)
    redraw()
    status.textContent = t('forgotten', { title: r.title || r.id })
    // The button is gone with its entry: the focus goes to the list, or to the link field.
    ;(document.getElementById('recent-heading') ?? fallbackFocus).focus()
  }
  section.append(heading, h('p', { class: 'help', text: t('homeRecentHelp') }),
    h('ul', { class: 'recent' }, ...list.map((r) => recentEntry(r, () => { void forget(r) }))))
  return section
}

function recentEntry (r: Recent, onForget: () => void): HTMLElement {
  const title = r.title || r.id
  // Without a kept link (an edit link not remembered, before the view link was known): the title.
  const name = r.href ? h('a', { href: r.href, text: title }) : h('span', { text: title })
  const badge = r.href ? (r.role === 'edit' ? t('roleEdit') : t('roleView')) : t('linkNotKept')
  return h('li', { 'data-session': r.id }, name, ' ',
    h('span', { class: 'badge', text: badge }), ' ',
    h('button', { type: 'button', class: 'forget', 'data-forget': r.id, 'aria-label': t('forgetEntryLabel', { title }), onclick: onForget }, t('forgetEntry')))
}
