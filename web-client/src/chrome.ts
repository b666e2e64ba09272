// Pieces of the page frame shared by every page.
import { h, nextId } from './dom'
import { t, language, languages, setLanguage, catalogues } from './i18n'

/** The language switcher: a labelled <select>, each language named in itself. */
export function languageSwitcher (): HTMLElement {
  const id = nextId('lang')
  const select = h('select', { id, class: 'lang-select' })
  for (const lang of languages) {
    select.append(h('option', { value: lang, lang, text: catalogues[lang].langName }))
  }
  select.value = language()
  select.addEventListener('change', () => setLanguage(select.value))
  return h('div', { class: 'lang' }, h('label', { for: id, text: t('language') }), select)
}

/**
 * The skip link. It moves the focus itself instead of following `#main`: the fragment holds the
 * session's token, and a fragment link would replace it in the address bar.
 */
export function skipLink (text: string): HTMLAnchorElement {
  const a = h('a', { class: 'skip', href: '#main', text })
  a.addEventListener('click', (e) => {
    e.preventDefault()
    const main = document.getElementById('main')
    main?.focus()
    main?.scrollIntoView()
  })
  return a
}
