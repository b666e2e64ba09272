// The four outcome lists, each its own panel. Editors add, edit in place (every field of the
// schema, the item text merging per character), delete and +1 items; viewers see the same items,
// live, with no control at all.
import * as Y from 'yjs'
import { h, nextId } from './dom'
import { t, tn, tk, language, type MessageKey } from './i18n'
import { bindField } from './textbind'
import {
  type ListName, type Item, listArray, extraFields, fieldChoices, fieldDefault, addItem, deleteItem,
  toggleVote, getContacts, setEmail, readEmail, readString, readText, readField, voteCount, hasVoted
} from './model'
import { safeHref } from './outline-read'
import { colourFor } from './identity'

export interface ListContext {
  doc: Y.Doc
  /** the private document (collaborators' emails); edit links only */
  privateDoc: Y.Doc | null
  editable: boolean
  me: () => { id: string, name: string }
}

export interface Panel { element: HTMLElement, relabel(): void, destroy(): void }

const noun = (list: ListName) => tk(`itemNoun_${list}`, list)
const fieldLabel = (list: ListName, field: string) =>
  field === 'text' ? tk(`text_${list}`, 'Text') : tk(`field_${field}`, field)
const choiceLabel = (field: string, value: string) => tk(`${field}_${value}`, value)

export function listPanel (list: ListName, ctx: ListContext): Panel {
  const arr = listArray(ctx.doc, list)
  const headingId = `list-${list}`
  const heading = h('h2', { id: headingId })
  const help = h('p', { class: 'help' })
  const items = h('ul', { class: 'items', 'aria-labelledby': headingId })
  const empty = h('p', { class: 'empty' })
  const views = new Map<Item, ItemView>()
  const form = ctx.editable ? addForm(list, ctx) : null
  const element = h('section', { class: `panel list list-${list}`, 'aria-labelledby': headingId, 'data-list': list },
    heading, help, items, empty, form?.element)

  const relabel = () => {
    heading.textContent = t(`list_${list}` as MessageKey)
    heading.append(h('span', { class: 'count', text: ` (${arr.length.toLocaleString()})` }))
    help.textContent = t(`listHelp_${list}` as MessageKey)
    empty.textContent = t('emptyList')
    empty.hidden = arr.length > 0
    for (const v of views.values()) v.relabel()
    form?.relabel()
  }

  const reconcile = () => {
    const current = arr.toArray()
    const seen = new Set<Item>()
    current.forEach((item, i) => {
      if (!(item instanceof Y.Map) || seen.has(item)) return
      seen.add(item)
      let view = views.get(item)
      if (!view) {
        view = ctx.editable ? editItem(list, item, ctx) : readItem(list, item)
        views.set(item, view)
      }
      // Move a node only when it is out of place: moving the one being typed in would blur it.
      const at = items.children[i] ?? null
      if (at !== view.element) items.insertBefore(view.element, at)
    })
    for (const [item, view] of views) {
      if (!seen.has(item)) {
        view.destroy()
        view.element.remove()
        views.delete(item)
      }
    }
    relabel()
  }
  arr.observe(reconcile)
  reconcile()
  return {
    element,
    relabel,
    destroy () {
      arr.unobserve(reconcile)
      for (const v of views.values()) v.destroy()
    }
  }
}

interface ItemView { element: HTMLLIElement, relabel(): void, destroy(): void }

function editItem (list: ListName, item: Item, ctx: ListContext): ItemView {
  const unbind: Array<() => void> = []
  const element = h('li', { class: 'item', 'data-id': readString(item, 'id') })
  const byline = h('span', { class: 'byline' })
  const dot = h('span', { class: 'dot', 'aria-hidden': 'true' })
  const voteBtn = h('button', { type: 'button', class: 'vote', 'aria-pressed': 'false' })
  const deleteBtn = h('button', { type: 'button', class: 'delete' })
  const head = h('div', { class: 'item-head' }, dot, byline, h('span', { class: 'spacer' }), voteBtn, deleteBtn)
  element.append(head)

  const labels: Array<() => void> = []
  const addTextField = (field: string, multiline: boolean) => {
    const id = nextId('f')
    const label = h('label', { for: id })
    const input = multiline
      ? h('textarea', { id, rows: 2, class: `field field-${field}`, 'data-field': field })
      : h('input', { id, type: field === 'website' ? 'url' : 'text', class: `field field-${field}`, 'data-field': field, autocomplete: 'off' })
    element.append(h('div', { class: `row row-${field}` }, label, input))
    labels.push(() => { label.textContent = fieldLabel(list, field) })
    return input
  }

  const text = addTextField('text', true)
  unbind.push(bindField(text, item, 'text'))

  for (const field of extraFields(list)) {
    const choices = fieldChoices(list, field)
    if (choices) {
      const id = nextId('f')
      const label = h('label', { for: id })
      const select = h('select', { id, class: `field field-${field}`, 'data-field': field })
      for (const value of choices) select.append(h('option', { value }))
      const show = () => { select.value = readField(list, item, field) }
      select.addEventListener('change', () => item.set(field, select.value))
      const obs = (e: Y.YMapEvent<unknown>) => { if (e.keysChanged.has(field)) show() }
      item.observe(obs)
      unbind.push(() => item.unobserve(obs))
      show()
      element.append(h('div', { class: `row row-${field}` }, label, select))
      labels.push(() => {
        label.textContent = fieldLabel(list, field)
        Array.from(select.options).forEach((o) => { o.textContent = choiceLabel(field, o.value) })
      })
    } else {
      unbind.push(bindField(addTextField(field, field === 'interests'), item, field))
    }
  }

  if (list === 'collaborators' && ctx.privateDoc) {
    const input = addTextField('email', false) as HTMLInputElement
    input.type = 'email'
    const hint = h('p', { class: 'hint', id: nextId('hint') })
    input.setAttribute('aria-describedby', hint.id)
    input.closest('.row')!.append(hint)
    labels.push(() => { hint.textContent = t('emailPrivate') })
    unbind.push(bindEmail(input, ctx.privateDoc, readString(item, 'id')))
  }

  const refresh = () => {
    const author = readString(item, 'author') || t('anonymous')
    byline.textContent = t('byAuthor', { name: author })
    dot.style.backgroundColor = colourFor(readString(item, 'authorId') || author)
    const n = voteCount(item)
    const mine = hasVoted(item, ctx.me().id)
    // "+1" is isolated so that it reads "+1" in right-to-left text too.
    voteBtn.replaceChildren(h('bdi', { dir: 'ltr', text: '+1' }), ` · ${n.toLocaleString(language())}`)
    voteBtn.setAttribute('aria-pressed', String(mine))
    voteBtn.setAttribute('aria-label', tn('voteLabel', n, { noun: noun(list) }))
    deleteBtn.textContent = t('deleteItem')
    deleteBtn.setAttribute('aria-label', t('deleteItemLabel', { noun: noun(list) }))
    for (const l of labels) l()
  }
  voteBtn.addEventListener('click', () => toggleVote(ctx.doc, list, readString(item, 'id'), ctx.me().id))
  deleteBtn.addEventListener('click', () => {
    if (!window.confirm(t('confirmDelete', { noun: noun(list) }))) return
    deleteItem(ctx.doc, list, readString(item, 'id'))
  })
  const deep = () => refresh()
  item.observeDeep(deep)
  unbind.push(() => item.unobserveDeep(deep))
  refresh()
  return { element, relabel: refresh, destroy () { for (const u of unbind) u() } }
}

/**
 * The email of a collaborator, in the private document. An address is replaced as a whole (last
 * writer wins) and an empty field removes the entry: it is personal data.
 */
function bindEmail (input: HTMLInputElement, privateDoc: Y.Doc, itemId: string): () => void {
  const map = getContacts(privateDoc)
  const origin = { binding: input }
  input.value = readEmail(privateDoc, itemId)
  const onInput = () => {
    if (input.value.trim() === readEmail(privateDoc, itemId)) return
    privateDoc.transact(() => setEmail(privateDoc, itemId, input.value.trim()), origin)
  }
  const obs = (_e: unknown, tr: Y.Transaction) => {
    if (tr.origin === origin) return
    const next = readEmail(privateDoc, itemId)
    if (next !== input.value.trim()) input.value = next
  }
  input.addEventListener('input', onInput)
  map.observeDeep(obs)
  return () => {
    input.removeEventListener('input', onInput)
    map.unobserveDeep(obs)
  }
}

function readItem (list: ListName, item: Item): ItemView {
  const element = h('li', { class: 'item item-read', 'data-id': readString(item, 'id') })
  let scheduled = false
  const render = () => {
    scheduled = false
    const author = readString(item, 'author') || t('anonymous')
    const dot = h('span', { class: 'dot', 'aria-hidden': 'true' })
    dot.style.backgroundColor = colourFor(readString(item, 'authorId') || author)
    const parts: Node[] = [h('p', { class: 'item-text', 'data-field': 'text', text: readText(item) })]
    const details = h('dl', { class: 'fields' })
    for (const field of extraFields(list)) {
      const value = readField(list, item, field)
      if (!value) continue
      const choices = fieldChoices(list, field)
      let dd: HTMLElement
      if (field === 'website' && safeHref(value)) dd = h('dd', { 'data-field': field }, h('a', { href: safeHref(value)!, rel: 'noopener noreferrer nofollow' }, value))
      else dd = h('dd', { 'data-field': field, text: choices ? choiceLabel(field, value) : value })
      details.append(h('dt', { text: fieldLabel(list, field) }), dd)
    }
    if (details.firstChild) parts.push(details)
    const n = voteCount(item)
    parts.push(h('p', { class: 'item-head' }, dot, h('span', { class: 'byline', text: t('byAuthor', { name: author }) }),
      h('span', { class: 'spacer' }), h('span', { class: 'votes', text: tn('votes', n) })))
    element.replaceChildren(...parts)
  }
  const schedule = () => {
    if (scheduled) return
    scheduled = true
    requestAnimationFrame(render)
  }
  item.observeDeep(schedule)
  render()
  return { element, relabel: render, destroy () { item.unobserveDeep(schedule) } }
}

function addForm (list: ListName, ctx: ListContext): { element: HTMLFormElement, relabel(): void } {
  const headingId = nextId('add')
  const heading = h('h3', { id: headingId, class: 'add-heading' })
  const form = h('form', { class: 'add-form', 'aria-labelledby': headingId, novalidate: true }, heading)
  const labels: Array<() => void> = []
  const inputs = new Map<string, HTMLInputElement | HTMLSelectElement>()
  const fields = ['text', ...extraFields(list), ...(list === 'collaborators' && ctx.privateDoc ? ['email'] : [])]
  for (const field of fields) {
    const id = nextId('new')
    const label = h('label', { for: id })
    const choices = fieldChoices(list, field)
    let input: HTMLInputElement | HTMLSelectElement
    if (choices) {
      const select = h('select', { id, 'data-field': field })
      for (const value of choices) select.append(h('option', { value }))
      select.value = fieldDefault(list, field)
      input = select
      labels.push(() => Array.from(select.options).forEach((o) => { o.textContent = choiceLabel(field, o.value) }))
    } else {
      input = h('input', {
        id,
        'data-field': field,
        type: field === 'email' ? 'email' : field === 'website' ? 'url' : 'text',
        autocomplete: field === 'email' ? 'off' : 'off'
      })
    }
    inputs.set(field, input)
    labels.push(() => { label.textContent = fieldLabel(list, field) })
    form.append(h('div', { class: `row row-${field}` }, label, input))
  }
  const submit = h('button', { type: 'submit', class: 'primary add' })
  form.append(submit)
  form.addEventListener('submit', (e) => {
    e.preventDefault()
    const text = inputs.get('text')!.value.trim()
    if (!text) { inputs.get('text')!.focus(); return }
    const me = ctx.me()
    const values: Record<string, string> = { text, author: me.name, authorId: me.id }
    for (const field of extraFields(list)) values[field] = inputs.get(field)!.value.trim()
    const id = addItem(ctx.doc, list, values)
    const email = inputs.get('email')?.value.trim()
    if (email && ctx.privateDoc) setEmail(ctx.privateDoc, id, email)
    for (const [field, input] of inputs) {
      input.value = fieldChoices(list, field) ? fieldDefault(list, field) : ''
    }
    inputs.get('text')!.focus()
  })
  const relabel = () => {
    heading.textContent = t('addHeading', { noun: noun(list) })
    submit.textContent = t('addItem', { noun: noun(list) })
    for (const l of labels) l()
  }
  relabel()
  return { element: form, relabel }
}
