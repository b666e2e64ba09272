/**
 * The CommonPad session document for Yjs clients: the same schema as the Rust crate
 * `commonpad-schema`, read from the same `schema.json`.
 *
 * Root types (every client agrees): `meta` (Y.Map of strings), `outline` (Y.XmlFragment written by
 * y-prosemirror/Tiptap), and the lists `needs`, `resources`, `partners`, `collaborators` (Y.Arrays
 * of Y.Map items). Collaborators' emails live in a second document, `{session}.private`, root Y.Map
 * `contacts`: item id -> Y.Map {email}.
 *
 * `readSession` returns exactly what the Rust `render_json` returns for the same document (the
 * cross-language fixtures check it), so its reading rules mirror `crdt-schema/src/read.rs`.
 *
 * The web client takes every schema fact and reading rule from here (web-client/src/model.ts only
 * re-exports them), so that what the page shows (a vote count, a resource's kind) is what the
 * exports say.
 *
 * Only dependency: yjs. A bundler must resolve `yjs` to a single copy for the whole app (Vite:
 * `resolve.dedupe: ['yjs']`), because Yjs types are recognised with `instanceof`.
 */
import * as Y from 'yjs'
import schemaJson from '../schema.json' with { type: 'json' }

// ------------------------------------------------------------------------------------------------
// Schema facts (all from schema.json)

/** The parsed `schema.json`: a JSON Schema of the export, and the document's vocabulary. */
export const schema = schemaJson

export type ListName = 'needs' | 'resources' | 'partners' | 'collaborators'
export type Status = 'draft' | 'live' | 'closed'

/** An extra field of a list's items, as schema.json describes it. */
export interface FieldFacts {
  /** The allowed values when the field is an enumeration (`kind`, `format`), else null. */
  choices: readonly string[] | null
  /** What a new item gets, and what a reader substitutes for a missing or unknown value. */
  default: string
}

interface ListFacts {
  name: ListName
  title: string
  /** The list's fields beyond the common ones, in CSV column order. */
  extraFields: readonly string[]
  /** Each extra field's choices and default. A Map, so that a field named `constructor` is unknown. */
  fields: ReadonlyMap<string, FieldFacts>
}

/** The part of a `$defs` entry this module reads: an item's fields, or a property's enum. */
interface Def {
  required?: string[]
  properties?: Record<string, Def>
  $ref?: string
  enum?: string[]
  default?: string
}

const defs = schemaJson.$defs as unknown as Record<string, Def | undefined>

/** A definition with its local `$ref`s (`#/$defs/name`) followed; {} for a dangling one. */
function resolve(def: Def | undefined, depth = 0): Def {
  const ref = /^#\/\$defs\/(.+)$/.exec(def?.$ref ?? '')?.[1]
  if (ref === undefined || depth > 8) return def ?? {}
  return resolve(defs[ref], depth + 1)
}

function extraFieldFacts(item: Def | undefined): Map<string, FieldFacts> {
  const fields = new Map<string, FieldFacts>()
  for (const field of item?.required ?? []) {
    const p = resolve(item?.properties?.[field])
    fields.set(field, { choices: p.enum ?? null, default: p.default ?? '' })
  }
  return fields
}

/** The four lists, in document order, with their titles and extra fields. */
export const LISTS: readonly ListFacts[] = schemaJson['x-commonpad-lists'].map((l) => ({
  name: l.name as ListName,
  title: l.title,
  extraFields: defs[l.item]?.required ?? [],
  fields: extraFieldFacts(defs[l.item]),
}))
export const LIST_NAMES: readonly ListName[] = LISTS.map((l) => l.name)
export const META_FIELDS: readonly string[] = schemaJson.$defs.meta.required
export const STATUSES: readonly string[] = schemaJson.$defs.status.enum
export const DEFAULT_STATUS: string = schemaJson.$defs.status.default
export const RESOURCE_KINDS: readonly string[] = schemaJson.$defs.resourceKind.enum
export const DEFAULT_KIND: string = schemaJson.$defs.resourceKind.default
export const RESOURCE_FORMATS: readonly string[] = schemaJson.$defs.resourceFormat.enum
export const DEFAULT_FORMAT: string = schemaJson.$defs.resourceFormat.default
/** The fields every item has. */
export const BASE_FIELDS: readonly string[] = schemaJson.$defs.itemBase.required
export const OUTLINE = schemaJson['x-commonpad-outline']
export const PRIVATE = schemaJson['x-commonpad-private']
export const EXPORT_VERSION: number = schemaJson['x-commonpad-version']

// ------------------------------------------------------------------------------------------------
// The export shape (see schema.json)

export interface Meta {
  title: string
  event: string
  date: string
  language: string
  status: string
}

export interface Inline {
  text: string
  bold?: true
  italic?: true
  /** The link's href. */
  link?: string
}

export type Block =
  | { type: 'heading'; level: number; content: Inline[] }
  | { type: 'paragraph'; content: Inline[] }
  | { type: 'bulletList'; items: Block[][] }
  | { type: 'orderedList'; items: Block[][] }

export interface Item {
  id: string
  text: string
  author: string
  authorId: string
  /** Milliseconds since the Unix epoch. */
  createdAt: number
  /** Ids of the participants who voted, sorted by code point. */
  votes: string[]
  kind?: string
  format?: string
  organization?: string
  website?: string
  name?: string
  interests?: string
}

export interface SessionJson {
  version: number
  meta: Meta
  outline: Block[]
  needs: Item[]
  resources: Item[]
  partners: Item[]
  collaborators: Item[]
}

/** Fields of a new item. `id` and `createdAt` are for imports and fixtures; leave them out. */
export interface ItemFields {
  text?: string
  author?: string
  authorId?: string
  kind?: string
  format?: string
  organization?: string
  website?: string
  name?: string
  interests?: string
  id?: string
  createdAt?: number
}

// ------------------------------------------------------------------------------------------------
// Roots

function listFacts(list: string): ListFacts {
  const facts = LISTS.find((l) => l.name === list)
  if (!facts) throw new TypeError(`unknown list "${list}": expected ${LIST_NAMES.join(', ')}`)
  return facts
}

/** A list's extra fields (`kind`, `format` for resources, ...), in column order. */
export function extraFields(list: ListName): readonly string[] {
  return listFacts(list).extraFields
}

/** The choices of an extra field that is an enumeration, or null for free text and other fields. */
export function fieldChoices(list: ListName, field: string): readonly string[] | null {
  return listFacts(list).fields.get(field)?.choices ?? null
}

/** The default of an extra field ('' for free text and other fields). */
export function fieldDefault(list: ListName, field: string): string {
  return listFacts(list).fields.get(field)?.default ?? ''
}

/** The private document's `contacts` Y.Map (collaborator item id -> Y.Map {email}), to observe. */
export function getContacts(privateDoc: Y.Doc): Y.Map<unknown> {
  return privateDoc.getMap(PRIVATE.root)
}

/** The `meta` Y.Map. */
export function getMeta(doc: Y.Doc): Y.Map<unknown> {
  return doc.getMap('meta')
}

/** The outline's Y.XmlFragment: bind the editor (Tiptap's Collaboration `field`) to this name. */
export function getOutline(doc: Y.Doc): Y.XmlFragment {
  return doc.getXmlFragment(OUTLINE.root)
}

/** The four lists' Y.Arrays, for observing and rendering. */
export function getLists(doc: Y.Doc): Record<ListName, Y.Array<Y.Map<unknown>>> {
  const lists = {} as Record<ListName, Y.Array<Y.Map<unknown>>>
  for (const name of LIST_NAMES) lists[name] = doc.getArray(name)
  return lists
}

/** A root type's constructor (Y.Map, Y.Array, ...), as Doc.get takes it. */
type RootType = NonNullable<Parameters<Y.Doc['get']>[1]>

/**
 * A root of the expected type, or null when a client made it another type (Yjs throws when a root
 * is asked for with another constructor than it was defined with): reading never throws.
 */
function tryRoot<C extends RootType>(doc: Y.Doc, name: string, ctor: C): InstanceType<C> | null {
  try {
    return doc.get(name, ctor)
  } catch {
    return null
  }
}

// ------------------------------------------------------------------------------------------------
// Writes

/** Sets a meta field; `status` must be one of STATUSES. */
export function setMeta(doc: Y.Doc, field: string, value: string): void {
  if (!META_FIELDS.includes(field)) throw new TypeError(`unknown meta field "${field}"`)
  if (typeof value !== 'string') throw new TypeError(`meta.${field} must be a string`)
  if (field === 'status' && !STATUSES.includes(value)) {
    throw new TypeError(`unknown status "${value}": expected ${STATUSES.join(', ')}`)
  }
  getMeta(doc).set(field, value)
}

function checkExtra(facts: ListFacts, field: string, value: unknown): string {
  if (typeof value !== 'string') throw new TypeError(`${field} must be a string`)
  const choices = facts.fields.get(field)?.choices
  if (choices && !choices.includes(value)) {
    throw new TypeError(`unknown ${field} "${value}": expected ${choices.join(', ')}`)
  }
  return value
}

/**
 * Adds an item at the end of a list and returns its id (newId()). The list's extra
 * fields are always written, with their defaults (`resource`, `other`, or '') when not given;
 * extra fields of other lists are ignored. Throws on an unknown list, kind or format.
 */
export function addItem(doc: Y.Doc, list: ListName, fields: ItemFields): string {
  const facts = listFacts(list)
  const id = fields.id ?? newId()
  const item = new Y.Map<unknown>()
  // The same fields in the same order as the Rust insert_item.
  item.set('id', id)
  item.set('text', new Y.Text(fields.text ?? ''))
  item.set('author', fields.author ?? '')
  item.set('authorId', fields.authorId ?? '')
  item.set('createdAt', fields.createdAt ?? Date.now())
  item.set('votes', new Y.Map<boolean>())
  for (const field of facts.extraFields) {
    const given = (fields as Record<string, unknown>)[field]
    item.set(field, given !== undefined ? checkExtra(facts, field, given) : fieldDefault(list, field))
  }
  doc.transact(() => {
    doc.getArray<Y.Map<unknown>>(list).push([item])
  })
  return id
}

/**
 * A random UUID v4. `crypto.randomUUID` exists only in secure contexts (https, localhost); a
 * server reached over plain http on a workshop's local network still gets ids, from
 * `crypto.getRandomValues`, which exists everywhere.
 */
export function newId(): string {
  const c = globalThis.crypto
  if (typeof c.randomUUID === 'function') return c.randomUUID()
  const b = c.getRandomValues(new Uint8Array(16))
  b[6] = (b[6]! & 0x0f) | 0x40
  b[8] = (b[8]! & 0x3f) | 0x80
  const h = [...b].map((x) => x.toString(16).padStart(2, '0')).join('')
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`
}

function indexOfItem(array: Y.Array<unknown>, id: string): number {
  let i = 0
  for (const v of array) {
    if (v instanceof Y.Map && v.get('id') === id) return i
    i++
  }
  return -1
}

/** The item's Y.Map (to bind an editor to its `text`), or undefined. */
export function findItem(doc: Y.Doc, list: ListName, id: string): Y.Map<unknown> | undefined {
  listFacts(list)
  const array = doc.getArray<unknown>(list)
  const i = indexOfItem(array, id)
  return i < 0 ? undefined : (array.get(i) as Y.Map<unknown>)
}

/** Deletes an item; returns whether it was there. Its private contact, if any, is the caller's. */
export function deleteItem(doc: Y.Doc, list: ListName, id: string): boolean {
  listFacts(list)
  const array = doc.getArray<unknown>(list)
  const i = indexOfItem(array, id)
  if (i < 0) return false
  array.delete(i, 1)
  return true
}

/**
 * Turns a participant's vote on an item on or off; returns whether it is now on. A vote is a key
 * in the item's `votes` Y.Map, so concurrent votes by different people all count, and a person
 * counts once.
 */
export function toggleVote(doc: Y.Doc, list: ListName, id: string, participantId: string): boolean {
  const item = findItem(doc, list, id)
  if (!item) throw new RangeError(`no item "${id}" in ${list}`)
  let on = false
  doc.transact(() => {
    let votes = item.get('votes')
    if (!(votes instanceof Y.Map)) {
      votes = new Y.Map<boolean>()
      item.set('votes', votes)
    }
    const v = votes as Y.Map<unknown>
    if (hasVoted(item, participantId)) {
      v.delete(participantId)
    } else {
      v.set(participantId, true)
      on = true
    }
  })
  return on
}

/**
 * Sets `text`, `author` or one of the list's extra fields of an item; returns whether the item was
 * found. `text` is changed in place (only the changed middle is replaced), so that concurrent
 * edits elsewhere in it survive. Throws on other fields and on an unknown kind or format.
 */
export function setField(doc: Y.Doc, list: ListName, id: string, field: string, value: string): boolean {
  const facts = listFacts(list)
  if (field !== 'text' && field !== 'author' && !facts.extraFields.includes(field)) {
    throw new TypeError(`"${field}" cannot be set on ${list} items`)
  }
  if (typeof value !== 'string') throw new TypeError(`${field} must be a string`)
  if (facts.extraFields.includes(field)) checkExtra(facts, field, value)
  const item = findItem(doc, list, id)
  if (!item) return false
  doc.transact(() => {
    if (field !== 'text') {
      item.set(field, value)
      return
    }
    const text = item.get('text')
    if (!(text instanceof Y.Text) || text instanceof Y.XmlText) {
      item.set('text', new Y.Text(value))
      return
    }
    const old = text.toString()
    let start = 0
    while (start < old.length && start < value.length && old[start] === value[start]) start++
    let end = 0
    while (
      end < old.length - start &&
      end < value.length - start &&
      old[old.length - 1 - end] === value[value.length - 1 - end]
    ) end++
    // Never cut between the two halves of a surrogate pair (an emoji): Yjs would replace the
    // orphaned half with U+FFFD.
    const high = (code: number) => code >= 0xd800 && code <= 0xdbff
    const low = (code: number) => code >= 0xdc00 && code <= 0xdfff
    if (start > 0 && high(old.charCodeAt(start - 1))) start--
    if (end > 0 && low(old.charCodeAt(old.length - end))) end--
    if (old.length - start - end > 0) text.delete(start, old.length - start - end)
    if (value.length - start - end > 0) text.insert(start, value.slice(start, value.length - end))
  })
  return true
}

/**
 * Sets a collaborator's email in the private document. An empty email removes the entry: the
 * address is personal data.
 */
export function setEmail(privateDoc: Y.Doc, itemId: string, email: string): void {
  const contacts = getContacts(privateDoc)
  privateDoc.transact(() => {
    if (!email) {
      contacts.delete(itemId)
      return
    }
    const entry = contacts.get(itemId)
    if (entry instanceof Y.Map) {
      entry.set('email', email)
    } else {
      const m = new Y.Map<string>()
      m.set('email', email)
      contacts.set(itemId, m)
    }
  })
}

/** All emails of the private document, by collaborator item id. */
export function readEmails(privateDoc: Y.Doc): Record<string, string> {
  const out: Record<string, string> = {}
  const contacts = tryRoot(privateDoc, PRIVATE.root, Y.Map)
  if (!contacts) return out
  for (const id of [...contacts.keys()].sort(byCodePoint)) {
    const email = entryEmail(contacts.get(id))
    if (email !== undefined) out[id] = email
  }
  return out
}

/** One collaborator's email from the private document, read as readEmails does ('' when none). */
export function readEmail(privateDoc: Y.Doc, itemId: string): string {
  return entryEmail(tryRoot(privateDoc, PRIVATE.root, Y.Map)?.get(itemId)) ?? ''
}

/** The email of a `contacts` entry: a Y.Map {email}, or a plain object from another writer. */
function entryEmail(entry: unknown): string | undefined {
  const email: unknown = entry instanceof Y.Map ? entry.get('email') : isPlainObject(entry) ? entry.email : undefined
  return typeof email === 'string' ? email : undefined
}

/** The name of a session's private document. */
export function privateDocName(session: string): string {
  return `${session}${PRIVATE.suffix}`
}

// ------------------------------------------------------------------------------------------------
// Reading (mirrors crdt-schema/src/read.rs rule for rule)

/** Compares strings by Unicode code point, as Rust compares `String`s (not by UTF-16 unit). */
export function byCodePoint(a: string, b: string): number {
  const x = [...a]
  const y = [...b]
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!
    if (d !== 0) return d
  }
  return x.length - y.length
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Y.AbstractType) && !(v instanceof Uint8Array)
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : ''
}

/** A string value of a Y.Map (meta, an item) as the export reads it: anything else is ''. */
export function readString(m: Y.Map<unknown>, key: string): string {
  return str(m.get(key))
}

/** An item's text as the export reads it: a Y.Text or a plain string (a Y.XmlText is neither). */
export function readText(m: Y.Map<unknown>): string {
  const text = m.get('text')
  // A Y.XmlText is a Y.Text in Yjs, but not an item text.
  return text instanceof Y.Text && !(text instanceof Y.XmlText) ? text.toString() : str(text)
}

/**
 * An extra field of an item as the export reads it: a string, and for an enumeration one of its
 * choices (the field's default replaces a missing or unknown value).
 */
export function readField(list: ListName, m: Y.Map<unknown>, field: string): string {
  const facts = listFacts(list).fields.get(field)
  const value = readString(m, field)
  return facts?.choices && !facts.choices.includes(value) ? facts.default : value
}

/**
 * The participants who voted for an item, in map order. A vote counts only when its value is
 * exactly `true` (as in the Rust read_votes): a key left with another value by some client is not
 * a vote, so the page's count and the exports' `votes` always agree.
 */
export function voters(m: Y.Map<unknown>): string[] {
  const votes = m.get('votes')
  if (!(votes instanceof Y.Map)) return []
  return [...votes.entries()].filter(([, v]) => v === true).map(([k]) => k)
}

/** The number of votes of an item: the length of its exported `votes`. */
export function voteCount(m: Y.Map<unknown>): number {
  return voters(m).length
}

/** Whether a participant's vote on an item is on (the same rule as voters). */
export function hasVoted(m: Y.Map<unknown>, participantId: string): boolean {
  const votes = m.get('votes')
  return votes instanceof Y.Map && votes.get(participantId) === true
}

function num(v: unknown): number | undefined {
  if (typeof v === 'number') return v
  if (typeof v === 'bigint') return Number(v)
  return undefined
}

/**
 * Reads a session document into the export shape, leniently and without ever throwing: missing or
 * wrong-typed values become defaults ('' and 0, status `draft`, kind `resource`, format `other`),
 * list entries that are not Y.Maps are skipped, an item's text may be a Y.Text or a plain string,
 * and outline nodes outside the vocabulary are read through (their children in their place).
 */
export function readSession(doc: Y.Doc): SessionJson {
  const session: SessionJson = {
    version: EXPORT_VERSION,
    meta: readMeta(doc),
    outline: readOutline(doc),
    needs: [],
    resources: [],
    partners: [],
    collaborators: [],
  }
  for (const list of LIST_NAMES) session[list] = readList(doc, list)
  return session
}

function readMeta(doc: Y.Doc): Meta {
  const meta: Meta = { title: '', event: '', date: '', language: '', status: DEFAULT_STATUS }
  const map = tryRoot(doc, 'meta', Y.Map)
  if (!map) return meta
  meta.title = readString(map, 'title')
  meta.event = readString(map, 'event')
  meta.date = readString(map, 'date')
  meta.language = readString(map, 'language')
  const status = readString(map, 'status')
  if (STATUSES.includes(status)) meta.status = status
  return meta
}

function readList(doc: Y.Doc, list: ListName): Item[] {
  const array = tryRoot(doc, list, Y.Array)
  if (!array) return []
  const items: Item[] = []
  for (const v of array.toArray()) {
    if (v instanceof Y.Map) items.push(readItem(list, v))
  }
  return items
}

/** Reads one item (a Y.Map of a list) the way readSession does. */
export function readItem(list: ListName, m: Y.Map<unknown>): Item {
  const createdAt = num(m.get('createdAt'))
  const item: Item = {
    id: readString(m, 'id'),
    text: readText(m),
    author: readString(m, 'author'),
    authorId: readString(m, 'authorId'),
    createdAt: createdAt !== undefined && Number.isFinite(createdAt) ? createdAt : 0,
    votes: voters(m).sort(byCodePoint),
  }
  for (const field of listFacts(list).extraFields) {
    ;(item as unknown as Record<string, string>)[field] = readField(list, m, field)
  }
  return item
}

function readOutline(doc: Y.Doc): Block[] {
  const fragment = tryRoot(doc, OUTLINE.root, Y.XmlFragment)
  if (!fragment) return []
  return readOutlineFragment(fragment)
}

/** Reads an outline fragment (or any XML node's children) into blocks, as readSession does. */
export function readOutlineFragment(fragment: Y.XmlFragment | Y.XmlElement): Block[] {
  const blocks: Block[] = []
  readBlocks(fragment.toArray(), 1, blocks)
  return blocks
}

function headingLevel(v: unknown): number | undefined {
  let n: number | undefined
  if (typeof v === 'string') {
    if (!/^[0-9]$/.test(v)) return undefined
    n = Number(v)
  } else {
    n = num(v)
  }
  const { min, max } = OUTLINE.headingLevels
  return n !== undefined && Number.isInteger(n) && n >= min && n <= max ? n : undefined
}

function readBlocks(children: readonly unknown[], depth: number, out: Block[]): void {
  if (depth > OUTLINE.maxDepth) return
  for (const child of children) {
    if (child instanceof Y.XmlElement) {
      const kids = child.toArray()
      switch (child.nodeName) {
        case 'paragraph':
          out.push({ type: 'paragraph', content: readInlines(kids, depth + 1) })
          break
        case 'heading':
          out.push({
            type: 'heading',
            level: headingLevel(child.getAttribute('level')) ?? OUTLINE.headingLevels.default,
            content: readInlines(kids, depth + 1),
          })
          break
        case 'bulletList':
          out.push({ type: 'bulletList', items: readListItems(kids, depth + 1) })
          break
        case 'orderedList':
          out.push({ type: 'orderedList', items: readListItems(kids, depth + 1) })
          break
        default:
          // A list item out of a list, or a node outside the vocabulary: read through it.
          readBlocks(kids, depth + 1, out)
      }
    } else if (child instanceof Y.XmlText) {
      out.push({ type: 'paragraph', content: readInlines([child], depth + 1) })
    }
  }
}

function readListItems(children: readonly unknown[], depth: number): Block[][] {
  if (depth > OUTLINE.maxDepth) return []
  const items: Block[][] = []
  for (const child of children) {
    const blocks: Block[] = []
    if (child instanceof Y.XmlElement && child.nodeName === OUTLINE.listItem) {
      readBlocks(child.toArray(), depth + 1, blocks)
    } else if (child instanceof Y.XmlElement || child instanceof Y.XmlText) {
      readBlocks([child], depth + 1, blocks)
    } else {
      continue
    }
    items.push(blocks)
  }
  return items
}

function readInlines(children: readonly unknown[], depth: number): Inline[] {
  const runs: Inline[] = []
  collectInlines(children, depth, runs)
  return mergeRuns(runs)
}

function markOn(v: unknown): boolean {
  return v !== null && v !== undefined && v !== false
}

/** The href of a `link` mark's value: its attrs `{href}`, or a bare string from other writers. */
export function linkHref(v: unknown): string | undefined {
  if (typeof v === 'string') return v
  if (isPlainObject(v) && typeof v.href === 'string') return v.href
  return undefined
}

function collectInlines(children: readonly unknown[], depth: number, out: Inline[]): void {
  if (depth > OUTLINE.maxDepth) return
  for (const child of children) {
    if (child instanceof Y.XmlText) {
      for (const op of child.toDelta() as { insert: unknown; attributes?: Record<string, unknown> }[]) {
        if (typeof op.insert !== 'string') continue
        const run: Inline = { text: op.insert }
        const attrs = op.attributes ?? {}
        for (const key of Object.keys(attrs).sort(byCodePoint)) {
          const value = attrs[key]
          const name = key.split('--')[0]
          if (name === 'bold' && markOn(value)) run.bold = true
          else if (name === 'italic' && markOn(value)) run.italic = true
          else if (name === 'link' && run.link === undefined) {
            const href = linkHref(value)
            if (href !== undefined) run.link = href
          }
        }
        out.push(run)
      }
    } else if (child instanceof Y.XmlElement) {
      collectInlines(child.toArray(), depth + 1, out)
    }
  }
}

function mergeRuns(runs: Inline[]): Inline[] {
  const merged: Inline[] = []
  for (const run of runs) {
    if (run.text === '') continue
    const last = merged[merged.length - 1]
    if (last && last.bold === run.bold && last.italic === run.italic && last.link === run.link) {
      last.text += run.text
    } else {
      merged.push(run)
    }
  }
  return merged
}
