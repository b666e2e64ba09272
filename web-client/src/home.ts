// The page at `/`: what CommonPad is, a field to open a link, and the sessions opened here before.
import { h } from './dom'
import { t, onLanguage } from './i18n'
import { parsePastedLink } from './link'
import { languageSwitcher, skipLink } from './chrome'

export interface Recent { id: string, title: string, href: string, role: string, at: number }
const RECENT_KEY = 'commonpad.recent'

export function recentSessions (): Recent[] {
  try {
    const list = JSON.parse(localStorage.getItem(RECENT_KEY) ?? '[]') as Recent[]
    return Array.isArray(list) ? list.filter((r) => r && typeof r.href === 'string' && r.href.startsWith('/s/')) : []
  } catch { return [] }
}

export function rememberSession (entry: Recent): void {
  const list = recentSessions().filter((r) => !(r.id === entry.id && r.role === entry.role))
  list.unshift(entry)
  try { localStorage.setItem(RECENT_KEY, JSON.stringify(list.slice(0, 20))) } catch { /* storage blocked: nothing remembered */ }
}

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
    const recent = recentSessions()
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
        recent.length > 0
          ? h('section', { 'aria-labelledby': 'recent-heading' },
            h('h2', { id: 'recent-heading', text: t('homeRecent') }),
            h('ul', { class: 'recent' }, ...recent.map((r) =>
              h('li', {}, h('a', { href: r.href, text: r.title || r.id }), ' ',
                h('span', { class: 'badge', text: r.role === 'edit' ? t('roleEdit') : t('roleView') })))))
          : null))
  }
  onLanguage(render)
  render()
}
