// The session document as the web client uses it: a thin layer over the shared model in
// crdt-schema/ts/session.ts (one source of truth with the Rust crate, both reading
// crdt-schema/schema.json), plus what the UI needs on top (field choices, read helpers).
import * as Y from 'yjs'
import * as session from '../../crdt-schema/ts/session'

export type ListName = session.ListName
export const LISTS: readonly ListName[] = session.LIST_NAMES
export const RESOURCE_KINDS: readonly string[] = session.RESOURCE_KINDS
export const RESOURCE_FORMATS: readonly string[] = session.RESOURCE_FORMATS
export const PRIVATE_SUFFIX: string = session.PRIVATE.suffix
export const { addItem, deleteItem, toggleVote, setField, setEmail, readSession } = session

/** The extra fields of a list's items, in column order (`kind`, `format` for resources, ...). */
export function extraFields (list: ListName): readonly string[] {
  return session.LISTS.find((l) => l.name === list)?.extraFields ?? []
}

/** The choices of a field that is an enumeration, or null for free text. */
export function fieldChoices (list: ListName, field: string): readonly string[] | null {
  if (list === 'resources' && field === 'kind') return RESOURCE_KINDS
  if (list === 'resources' && field === 'format') return RESOURCE_FORMATS
  return null
}

export function fieldDefault (list: ListName, field: string): string {
  if (list === 'resources' && field === 'kind') return session.DEFAULT_KIND
  if (list === 'resources' && field === 'format') return session.DEFAULT_FORMAT
  return ''
}

/**
 * A random UUID (v4) for a new item. crypto.randomUUID() exists only in secure contexts, and a
 * CommonPad on a workshop LAN may be served over plain http; getRandomValues works everywhere.
 */
export function uuid (): string {
  const b = crypto.getRandomValues(new Uint8Array(16))
  b[6] = (b[6] & 0x0f) | 0x40
  b[8] = (b[8] & 0x3f) | 0x80
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

export type Item = Y.Map<unknown>

export function listArray (doc: Y.Doc, list: ListName): Y.Array<Item> {
  return doc.getArray<Item>(list)
}

export const meta = session.getMeta
export const outline = session.getOutline

/** The private document's `contacts` map: collaborator item id -> Y.Map {email}. */
export function contacts (privateDoc: Y.Doc): Y.Map<unknown> {
  return privateDoc.getMap<unknown>(session.PRIVATE.root)
}

/** A collaborator's email from the private document ('' when none). */
export function emailOf (privateDoc: Y.Doc, itemId: string): string {
  const entry = contacts(privateDoc).get(itemId)
  const email = entry instanceof Y.Map ? entry.get('email') : undefined
  return typeof email === 'string' ? email : ''
}

export function textOf (item: Item): string {
  const t = item.get('text')
  return t instanceof Y.Text ? t.toString() : typeof t === 'string' ? t : ''
}

export function voteCount (item: Item): number {
  const v = item.get('votes')
  return v instanceof Y.Map ? v.size : 0
}

export function str (item: Y.Map<unknown>, key: string): string {
  const v = item.get(key)
  return typeof v === 'string' ? v : v instanceof Y.Text ? v.toString() : ''
}
