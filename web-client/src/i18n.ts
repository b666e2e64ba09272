// One message catalogue (locales/*.ts), English and French shipped. The language is the one the
// person chose (remembered in this browser), else the browser's first supported language, else
// English. Changing it re-renders the page through the listeners registered with onLanguage().
import { en, type MessageKey } from './locales/en'
import { fr } from './locales/fr'

export type { MessageKey }
type Catalogue = Record<MessageKey, string>

export const catalogues: Record<string, Catalogue> = { en, fr }
export const languages = Object.keys(catalogues)
/** Languages written right to left: the layout uses logical CSS properties, so `dir` is enough. */
const rtl = new Set(['ar', 'fa', 'he', 'ur', 'ps', 'dv', 'yi'])
const STORAGE_KEY = 'commonpad.language'

let current = pickLanguage()
let plural = new Intl.PluralRules(current)
const listeners = new Set<() => void>()

function pickLanguage (): string {
  try {
    const saved = localStorage.getItem(STORAGE_KEY)
    if (saved && catalogues[saved]) return saved
  } catch {
    // Storage blocked (some private modes): fall back to the browser's languages.
  }
  for (const tag of navigator.languages ?? [navigator.language]) {
    const base = String(tag).toLowerCase().split('-')[0]
    if (catalogues[base]) return base
  }
  return 'en'
}

export function language (): string { return current }

export function setLanguage (lang: string): void {
  if (!catalogues[lang] || lang === current) return
  current = lang
  plural = new Intl.PluralRules(lang)
  try { localStorage.setItem(STORAGE_KEY, lang) } catch { /* storage blocked: the choice lasts for this page */ }
  applyDocumentLanguage()
  for (const fn of listeners) fn()
}

export function applyDocumentLanguage (): void {
  document.documentElement.lang = current
  document.documentElement.dir = rtl.has(current) ? 'rtl' : 'ltr'
}

/** Calls `fn` after every language change; returns the function that stops it. */
export function onLanguage (fn: () => void): () => void {
  listeners.add(fn)
  return () => listeners.delete(fn)
}

type Params = Record<string, string | number>

/** The message `key` in the current language, with `{name}` placeholders filled in. */
export function t (key: MessageKey, params: Params = {}): string {
  const text = catalogues[current][key] ?? en[key] ?? key
  return text.replace(/\{(\w+)\}/g, (m, name: string) => (name in params ? String(params[name]) : m))
}

/** A plural message: `base_one` / `base_other` chosen by `n` (also passed as `{n}`). */
export function tn (base: string, n: number, params: Params = {}): string {
  const form = plural.select(n) === 'one' ? 'one' : 'other'
  return t(`${base}_${form}` as MessageKey, { n: n.toLocaleString(current), ...params })
}

/** A message whose key is built at run time (list names, formats); falls back to `fallback`. */
export function tk (key: string, fallback: string, params: Params = {}): string {
  return key in catalogues[current] || key in en ? t(key as MessageKey, params) : fallback
}
