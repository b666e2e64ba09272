// The session document as the web client uses it. Every schema fact, write and reading rule comes
// from crdt-schema/ts/session.ts (shared with the Rust crate through crdt-schema/schema.json), so
// that the page shows what the exports say; this module gathers them under one import and adds
// only the Yjs typing the UI works with.
import type * as Y from 'yjs'
import { LIST_NAMES, type ListName } from '../../crdt-schema/ts/session'

export {
  addItem, deleteItem, toggleVote, setEmail, readSession, extraFields, fieldChoices, fieldDefault,
  getMeta, getOutline, getContacts, privateDocName, readString, readText, readField, readEmail,
  voteCount, hasVoted, linkHref, type ListName
} from '../../crdt-schema/ts/session'

export const LISTS: readonly ListName[] = LIST_NAMES

/** A list item as the UI holds it: the item's Y.Map itself, bound to fields and observed. */
export type Item = Y.Map<unknown>

export function listArray (doc: Y.Doc, list: ListName): Y.Array<Item> {
  return doc.getArray<Item>(list)
}
