// What this device keeps of each session, and how it forgets it.
//
// A browser keeps, per session: an entry in the list of sessions opened here (`commonpad.recent`),
// the share links the server last gave (`commonpad.links.{id}`), the records of changes not yet
// on the server (`commonpad.pending.{doc}`, savestate.ts), and the documents in IndexedDB (`{id}`
// and `{id}.private`). The edit link's token lets whoever holds it write, and the private document
// holds collaborators' emails: on a shared workshop computer the next person would inherit both.
// So the edit link and the private document's offline copy are kept only for a session the person
// chose to remember on this device; otherwise the list keeps the public view link (or the title
// alone) and the private document lives in the open tab's memory. Forgetting a session removes
// all of it.
import type { Role } from './link'
import { privateDocName } from './model'
import { RECORDS_PREFIX, forgetRecords, storedPending } from './savestate'

/** An entry of the list of sessions opened here. `href` is '' when no link is kept. */
export interface Recent { id: string, title: string, href: string, role: Role, at: number, remembered?: boolean }
export interface Links { edit_url?: string, view_url?: string }

const RECENT_KEY = 'commonpad.recent'
const LINKS_KEY = 'commonpad.links.'
const MAX_RECENT = 20

function store (): Storage | null {
  try { return localStorage } catch { return null }
}

function readJson (key: string): unknown {
  try { return JSON.parse(store()?.getItem(key) ?? 'null') } catch { return null }
}

function writeJson (key: string, value: unknown): void {
  try { store()?.setItem(key, JSON.stringify(value)) } catch { /* storage blocked or full: nothing kept */ }
}

/**
 * The sessions opened here, newest first. An edit entry that was not remembered on purpose (an
 * earlier version stored every edit link) loses its link: only the person's choice keeps one.
 */
export function recentSessions (): Recent[] {
  const list = readJson(RECENT_KEY)
  if (!Array.isArray(list)) return []
  return (list as Recent[])
    .filter((r) => r && typeof r.id === 'string' && typeof r.href === 'string' && (r.href === '' || r.href.startsWith('/s/')))
    .map((r) => r.role === 'edit' && r.remembered !== true ? { ...r, role: 'view', href: '', remembered: false } : r)
}

function saveRecent (list: Recent[]): void {
  // Remembered sessions stay whatever their age: only the person forgets them.
  writeJson(RECENT_KEY, list.filter((r, i) => r.remembered === true || i < MAX_RECENT))
}

export function isRemembered (id: string): boolean {
  return recentSessions().some((r) => r.id === id && r.role === 'edit' && r.remembered === true)
}

/**
 * Notes a visit. A visit with a view link does not replace a remembered edit link; a visit with no
 * link to keep (`href` '') keeps the link already there for the same role.
 */
export function recordVisit (entry: Recent): void {
  const list = recentSessions()
  const old = list.find((r) => r.id === entry.id)
  let next: Recent = entry
  if (old?.remembered === true && entry.role === 'view') next = { ...old, title: entry.title, at: entry.at }
  else if (entry.href === '' && old?.role === entry.role) next = { ...entry, href: old.href }
  saveRecent([next, ...list.filter((r) => r.id !== entry.id)])
}

/**
 * Remembers the edit link `hrefs.edit` on this device (`on`), or goes back to keeping the view
 * link only. The caller makes the cached links and the private document's offline copy follow.
 */
export function setRemembered (id: string, title: string, on: boolean, hrefs: { edit: string, view: string }): void {
  const entry: Recent = on
    ? { id, title, role: 'edit', href: hrefs.edit, at: Date.now(), remembered: true }
    : { id, title, role: 'view', href: hrefs.view, at: Date.now(), remembered: false }
  saveRecent([entry, ...recentSessions().filter((r) => r.id !== id)])
}

/** The links the server gave on an earlier visit with the same role, or null. */
export function cachedLinks (id: string): { role: Role, links: Links } | null {
  const value = readJson(LINKS_KEY + id) as { role?: unknown, links?: Record<string, unknown> } | null
  if (!value || (value.role !== 'edit' && value.role !== 'view') || !value.links || typeof value.links !== 'object') return null
  const { edit_url: edit, view_url: view } = value.links
  return { role: value.role, links: { edit_url: typeof edit === 'string' ? edit : undefined, view_url: typeof view === 'string' ? view : undefined } }
}

/** Keeps the share links for an offline visit; the edit link only for a remembered session. */
export function cacheLinks (id: string, role: Role, links: Links, remembered: boolean): void {
  const kept: Links = remembered ? links : { view_url: links.view_url }
  writeJson(LINKS_KEY + id, { role, links: kept })
}

/** The path and fragment of a link the server gave (`/s/{id}#view=…`), or '' if it is not one. */
export function localHref (url: string | undefined): string {
  if (!url) return ''
  try {
    const u = new URL(url, location.href)
    return u.pathname.startsWith('/s/') ? u.pathname + u.hash : ''
  } catch { return '' }
}

/** Changes of session `id` stored here and not yet on the server. */
export function pendingOnDevice (id: string): number {
  return storedPending(id) + storedPending(privateDocName(id))
}

/**
 * Removes everything this browser keeps of session `id`. The page must have closed its own
 * connections to the session's databases first (sync.ts `forget`); another tab still holding them
 * delays their deletion until it closes.
 */
export async function forgetSession (id: string): Promise<void> {
  saveRecent(recentSessions().filter((r) => r.id !== id))
  try { store()?.removeItem(LINKS_KEY + id) } catch { /* storage blocked: nothing was stored */ }
  forgetRecords(id)
  forgetRecords(privateDocName(id))
  await Promise.all([deleteDatabase(id), deleteDatabase(privateDocName(id))])
}

/**
 * Deletes an IndexedDB database. Resolves once it is gone, or as soon as another tab's open
 * connection blocks it (the browser deletes it when that tab lets go), or on an error.
 */
export function deleteDatabase (name: string): Promise<void> {
  return new Promise((resolve) => {
    try {
      const request = indexedDB.deleteDatabase(name)
      request.onsuccess = () => resolve()
      request.onerror = () => resolve()
      request.onblocked = () => resolve()
    } catch { resolve() }
  })
}

/**
 * Applies the rules above to what an earlier version (or a tab that crashed after its session was
 * no longer remembered) left: edit links of sessions not remembered, and their private documents'
 * offline copies and records. Runs at every page load; cheap when there is nothing to do.
 */
export async function tidyDevice (): Promise<void> {
  const s = store()
  if (s) {
    saveRecent(recentSessions())
    const keys = Array.from({ length: s.length }, (_, i) => s.key(i) ?? '')
    for (const key of keys) {
      const id = key.startsWith(LINKS_KEY) ? key.slice(LINKS_KEY.length) : ''
      const cached = id ? cachedLinks(id) : null
      if (cached?.links.edit_url && !isRemembered(id)) cacheLinks(id, cached.role, cached.links, false)
      const doc = key.startsWith(RECORDS_PREFIX) ? key.slice(RECORDS_PREFIX.length) : ''
      const owner = sessionOfPrivate(doc)
      if (owner && !isRemembered(owner)) forgetRecords(doc)
    }
  }
  if (typeof indexedDB === 'undefined' || typeof indexedDB.databases !== 'function') return
  try {
    const names = (await indexedDB.databases()).map((d) => d.name ?? '')
    await Promise.all(names.filter((n) => {
      const owner = sessionOfPrivate(n)
      return owner && !isRemembered(owner)
    }).map(deleteDatabase))
  } catch {
    // No list of databases (storage blocked): each session page still deletes its own.
  }
}

/** The session whose private document is named `name`, or '' for any other name. */
function sessionOfPrivate (name: string): string {
  const id = name.replace(/\.[^.]*$/, '')
  return id && id !== name && privateDocName(id) === name ? id : ''
}
