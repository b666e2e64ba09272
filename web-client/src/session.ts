// The session page at `/s/{id}`.
import * as Y from 'yjs'
import { h } from './dom'
import { t, tn, onLanguage, language } from './i18n'
import type { SessionLink, Role } from './link'
import { openDoc, followNetwork, connectionState, type SyncedDoc, type Connection } from './sync'
import { getSession, ApiError } from './api'
import { LISTS, getMeta, getOutline, privateDocName, readString, readSession } from './model'
import { outlineReader, type OutlineView } from './outline-read'
import { listPanel } from './lists'
import { presencePanel, sharePanel, participationPanel } from './panels'
import { devicePanel } from './device-panel'
import { participantId, displayName, setDisplayName, colourFor } from './identity'
import { languageSwitcher, skipLink } from './chrome'
import { isRemembered, recordVisit, setRemembered, cachedLinks, cacheLinks, localHref, forgetSession, type Links } from './device'

type SaveState = 'saved' | 'saving' | 'pending-offline' | 'pending-server'

export function renderSession (root: HTMLElement, link: SessionLink): void {
  if (!link.token || !link.role) {
    renderError(root, t('errNoToken'))
    return
  }
  const role: Role = link.role
  const token = link.token
  const id = link.id
  const editable = role === 'edit'
  const relabels: Array<() => void> = []

  // ---- documents -------------------------------------------------------------------------
  // Remembered on this device (device.ts): only then does the private document outlive the tab.
  let remembered = editable && isRemembered(id)
  let forgotten = false
  const main = openDoc(id, token, { presence: editable, readOnly: !editable, persist: true })
  // The private document (collaborators' emails) is opened only with an edit link.
  const priv: SyncedDoc | null = editable ? openDoc(privateDocName(id), token, { presence: false, readOnly: false, persist: remembered }) : null
  const docs = priv ? [main, priv] : [main]
  const awareness = main.provider.awareness
  const myId = participantId()
  const me = () => ({ id: myId, name: displayName() || t('anonymous') })
  const user = () => ({ name: me().name, color: colourFor(myId), id: myId })
  if (editable) awareness.setLocalStateField('user', user())

  // ---- frame -----------------------------------------------------------------------------
  const connEl = h('span', { class: 'conn', 'data-conn': 'connecting' })
  const saveEl = h('span', { class: 'save-status', 'data-save': 'saved', hidden: !editable })
  const roleEl = h('span', { class: `badge role-${role}` })
  const announcer = h('div', { class: 'sr-only', role: 'status', 'aria-live': 'polite' })
  const statusBox = h('div', { class: 'status', role: 'group', 'aria-label': '' }, connEl, saveEl, roleEl)
  const nameBtn = editable ? h('button', { type: 'button', class: 'name-button' }) : null
  const tools = h('div', { class: 'tools' })
  const skip = skipLink('')
  const brand = h('a', { class: 'brand', href: '/' })
  const header = h('header', { class: 'topbar' }, brand, statusBox, tools)

  const title = h('h1', { class: 'title' })
  const subtitle = h('p', { class: 'subtitle' })
  const notice = editable ? null : h('p', { class: 'notice readonly-notice' })
  const errorBox = h('div', { class: 'error-box', role: 'alert' })
  const presence = presencePanel(awareness, main.doc.clientID, true)

  const outlineHeading = h('h2', { id: 'outline-heading' })
  const fragment = getOutline(main.doc)
  // Viewers get the light read-only rendering; the editor's code is loaded for editors only.
  let outlineView: OutlineView & { setUser?: (u: { name: string, color: string }) => void } | null = null
  const outlineSection = h('section', { class: 'panel outline-panel', 'aria-labelledby': 'outline-heading', 'aria-busy': 'true' }, outlineHeading)
  const mountOutline = (view: NonNullable<typeof outlineView>) => {
    outlineView = view
    outlineSection.append(view.element)
    outlineSection.removeAttribute('aria-busy')
  }
  if (editable) {
    void import('./outline-edit').then(({ outlineEditor }) => {
      mountOutline(outlineEditor(fragment, main.provider, user(), main.beforeRemote))
    })
  } else {
    mountOutline(outlineReader(fragment))
  }

  const listsHeading = h('h2', { id: 'lists-heading', class: 'sr-only' })
  const panels = LISTS.map((list) => listPanel(list, { doc: main.doc, privateDoc: priv?.doc ?? null, editable, me }))
  const listsSection = h('section', { class: 'lists', 'aria-labelledby': 'lists-heading' }, listsHeading, ...panels.map((p) => p.element))

  const share = sharePanel(id, token, role)
  const participation = editable ? participationPanel(main.doc) : null
  const pendingCount = () => docs.reduce((n, d) => n + d.tracker.pending, 0)
  const device = devicePanel({ editable, remembered, onRemember: remember, pending: pendingCount, onForget: forget })

  const mainEl = h('main', { id: 'main', class: `session role-${role}`, tabindex: '-1' },
    h('div', { class: 'session-head' }, title, subtitle, notice, errorBox, presence.element),
    h('div', { class: 'layout' },
      h('div', { class: 'primary-column' }, outlineSection, listsSection),
      h('aside', { class: 'side-column', 'aria-label': '' }, share.element, device.element, participation?.element)))
  root.replaceChildren(skip, header, mainEl)
  const aside = mainEl.querySelector('aside')!

  relabels.push(() => {
    skip.textContent = t('skipToContent')
    brand.textContent = t('appName')
    statusBox.setAttribute('aria-label', t('statusRegion'))
    roleEl.textContent = editable ? t('roleEdit') : t('roleView')
    tools.replaceChildren(...[nameBtn, languageSwitcher()].filter((x): x is HTMLElement => x !== null))
    if (nameBtn) nameBtn.textContent = t('nameChange', { name: me().name })
    if (notice) notice.textContent = t('readOnlyNotice')
    outlineHeading.textContent = t('outline')
    listsHeading.textContent = t('lists')
    aside.setAttribute('aria-label', `${t('share')}, ${t('deviceHeading')}, ${t('participation')}`)
  }, renderMeta, renderStatus, () => outlineView?.relabel(), () => presence.relabel(),
  () => share.relabel(), () => device.relabel(), () => participation?.relabel(), ...panels.map((p) => () => p.relabel()))

  // ---- meta ------------------------------------------------------------------------------
  function renderMeta (): void {
    const m = getMeta(main.doc)
    const name = readString(m, 'title') || t('untitled')
    title.textContent = name
    subtitle.textContent = [readString(m, 'event'), readString(m, 'date')].filter(Boolean).join(' · ')
    subtitle.hidden = subtitle.textContent === ''
    document.title = `${name} · ${t('appName')}`
    noteVisit()
  }
  getMeta(main.doc).observe(renderMeta)

  // ---- this device -----------------------------------------------------------------------
  // The list of sessions opened here keeps this page's own link only if it grants no writing or
  // the person chose to remember the session here; else the public view link, once known.
  let links: Links | null = null
  let viewHref = ''
  const here = () => location.pathname + location.hash
  function noteVisit (): void {
    const name = readString(getMeta(main.doc), 'title')
    if (!name || forgotten) return
    const href = !editable || remembered ? here() : viewHref
    recordVisit({ id, title: name, role: remembered ? 'edit' : 'view', href, at: Date.now(), remembered })
  }
  function gotLinks (l: Links, fromServer: boolean): void {
    links = l
    viewHref = localHref(l.view_url)
    share.setLinks(l)
    if (fromServer && !forgotten) cacheLinks(id, role, l, remembered)
    noteVisit()
  }
  function remember (on: boolean): void {
    remembered = on
    setRemembered(id, readString(getMeta(main.doc), 'title'), on, { edit: here(), view: viewHref })
    if (links) cacheLinks(id, role, links, on)
    if (priv) void priv.setPersistent(on)
  }
  async function forget (): Promise<void> {
    forgotten = true
    await Promise.all(docs.map((d) => d.forget()))
    await forgetSession(id)
    location.assign('/')
  }

  // ---- status ----------------------------------------------------------------------------
  let everConnected = false
  let lastAnnounced = ''
  let announceTimer: ReturnType<typeof setTimeout> | null = null
  function saveState (conn: Connection): { state: SaveState, text: string } {
    const pending = docs.reduce((n, d) => n + d.tracker.pending, 0)
    if (pending === 0) return { state: 'saved', text: t('saveSaved') }
    if (conn === 'connected' && docs.every((d) => d.provider.wsconnected)) return { state: 'saving', text: t('saveSaving') }
    if (conn === 'offline') return { state: 'pending-offline', text: tn('savePendingOffline', pending) }
    return { state: 'pending-server', text: tn('savePendingServer', pending) }
  }
  function renderStatus (): void {
    const conn = connectionState(main, everConnected)
    connEl.dataset.conn = conn
    connEl.textContent = t(`conn_${conn}`)
    if (editable) {
      const s = saveState(conn)
      saveEl.dataset.save = s.state
      saveEl.dataset.pending = String(docs.reduce((n, d) => n + d.tracker.pending, 0))
      saveEl.textContent = s.text
    }
    // Screen readers hear the state once it has settled, not every keystroke's Saving/Saved.
    const spoken = `${connEl.textContent}. ${editable ? saveEl.textContent : ''}`
    if (announceTimer) clearTimeout(announceTimer)
    announceTimer = setTimeout(() => {
      if (spoken !== lastAnnounced) { lastAnnounced = spoken; announcer.textContent = spoken }
    }, 1500)
  }
  for (const d of docs) {
    d.provider.on('status', (e: { status: string }) => {
      if (e.status === 'connected') everConnected = true
      renderStatus()
    })
    d.provider.on('sync', renderStatus)
    d.tracker.onChange(renderStatus)
  }
  followNetwork(docs, renderStatus)
  header.append(announcer)

  // Viewers: the server answers a write with [2,0,"read-only"]; the page has nothing that
  // writes, so nothing to tell the person. Editors' links may be rotated: see the API check.

  // ---- identity --------------------------------------------------------------------------
  if (nameBtn) {
    nameBtn.addEventListener('click', () => askName(nameBtn))
    if (!displayName()) queueMicrotask(() => askName(null))
  }
  function askName (returnFocus: HTMLElement | null): void {
    const inputId = 'display-name'
    const input = h('input', { id: inputId, type: 'text', required: true, maxlength: 60, autocomplete: 'nickname', value: displayName() })
    const err = h('p', { class: 'error', id: 'display-name-error' })
    input.setAttribute('aria-describedby', 'display-name-help display-name-error')
    const form = h('form', { method: 'dialog' },
      h('h2', { id: 'name-title', text: t('nameTitle') }),
      h('p', { id: 'display-name-help', class: 'help', text: t('nameHelp') }),
      h('label', { for: inputId, text: t('nameLabel') }), input, err,
      h('div', { class: 'dialog-actions' }, h('button', { type: 'submit', class: 'primary', text: t('nameSave') })))
    const dialog = h('dialog', { class: 'name-dialog', 'aria-labelledby': 'name-title' }, form)
    form.addEventListener('submit', (e) => {
      const value = input.value.trim()
      if (!value) {
        e.preventDefault()
        err.textContent = t('nameRequired')
        input.focus()
        return
      }
      setDisplayName(value)
      awareness.setLocalStateField('user', user())
      outlineView?.setUser?.(user())
      if (nameBtn) nameBtn.textContent = t('nameChange', { name: me().name })
    })
    dialog.addEventListener('cancel', (e) => { if (!displayName()) e.preventDefault() })
    dialog.addEventListener('close', () => {
      dialog.remove()
      returnFocus?.focus()
    })
    document.body.append(dialog)
    dialog.showModal()
    input.focus()
  }

  // ---- the API: role check, share links --------------------------------------------------
  // What an earlier visit stored (see below); anything else, a corrupt entry included, is ignored.
  const cached = cachedLinks(id)
  if (cached?.role === role) gotLinks(cached.links, false)
  const checkApi = async () => {
    try {
      const info = await getSession(id, token)
      if (info.role !== role) {
        // A view token behind #edit= (or the reverse): reopen with the role the server gives it.
        history.replaceState(null, '', `${location.pathname}#${info.role}=${encodeURIComponent(token)}`)
        location.reload()
        return
      }
      gotLinks(info.links ?? {}, true)
    } catch (e) {
      if (e instanceof ApiError && (e.status === 401 || e.status === 403 || e.status === 404 || e.status === 410)) {
        for (const d of docs) d.provider.disconnect()
        errorBox.replaceChildren(h('p', { text: e.status === 404 || e.status === 410 ? t('errNotFound') : t('errRefused') }))
        mainEl.classList.add('refused')
      }
      // Anything else (offline, server down): the page works from IndexedDB and retries.
    }
  }
  void checkApi()
  window.addEventListener('online', () => { void checkApi() })
  // A link that stops working (rotated, session deleted): the server closes with a code in
  // 4400-4499, which also stops the provider's reconnecting, or refuses the upgrade, which the
  // browser reports as a plain failure. Ask the API why: at once, or now and then.
  let lastCheck = Date.now()
  for (const d of docs) {
    d.provider.on('connection-close', (e: CloseEvent | null) => {
      const failing = d.provider.wsUnsuccessfulReconnects >= 3 && Date.now() - lastCheck > 20_000
      const final = e != null && e.code >= 4400 && e.code < 4500
      if (final || (navigator.onLine && (e?.code === 1008 || failing))) {
        lastCheck = Date.now()
        void checkApi()
      }
    })
  }

  onLanguage(() => {
    for (const fn of relabels) fn()
    const m = mainEl.querySelector('#display-name')
    if (m) (m as HTMLElement).setAttribute('lang', language())
  })
  for (const fn of relabels) fn()
  void Promise.all(docs.map((d) => d.loaded)).then(renderStatus)
  // Debug and test hook: the documents, read-only use only.
  ;(window as unknown as { commonpad: unknown }).commonpad = { Y, main: main.doc, private: priv?.doc ?? null, role, docs, readSession }
}

function renderError (root: HTMLElement, message: string): void {
  root.replaceChildren(
    h('header', { class: 'topbar' }, h('a', { class: 'brand', href: '/', text: t('appName') }), h('div', { class: 'tools' }, languageSwitcher())),
    h('main', { id: 'main', class: 'error-page' }, h('h1', { text: t('appName') }), h('p', { class: 'error', role: 'alert', text: message })))
}
