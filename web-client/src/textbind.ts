// Binds an <input> or <textarea> to a Y.Text (or to a plain string in a Y.Map) so that two people
// typing in the same field merge character by character: each local edit becomes the smallest
// delete + insert at the changed range, and a remote change updates the field while keeping the
// local caret and selection where they were in the text.
import * as Y from 'yjs'

type Field = HTMLInputElement | HTMLTextAreaElement

export interface Splice { index: number, remove: number, insert: string }

const isHigh = (c: number) => c >= 0xd800 && c <= 0xdbff
const isLow = (c: number) => c >= 0xdc00 && c <= 0xdfff

/**
 * The single splice that turns `before` into `after`. `cursor` (where the caret is in `after`)
 * settles ambiguous cases such as typing "a" into "aa". Never splits a surrogate pair.
 */
export function diff (before: string, after: string, cursor: number | null = null): Splice {
  const minLen = Math.min(before.length, after.length)
  let maxPrefix = minLen
  if (cursor !== null) {
    // An insertion ends at the caret, a deletion starts at it: the common prefix cannot pass that.
    const bound = after.length >= before.length ? cursor - (after.length - before.length) : cursor
    maxPrefix = Math.max(0, Math.min(maxPrefix, bound))
  }
  let prefix = 0
  while (prefix < maxPrefix && before.charCodeAt(prefix) === after.charCodeAt(prefix)) prefix++
  if (prefix > 0 && isHigh(before.charCodeAt(prefix - 1))) prefix--
  let suffix = 0
  const maxSuffix = minLen - prefix
  while (suffix < maxSuffix &&
    before.charCodeAt(before.length - 1 - suffix) === after.charCodeAt(after.length - 1 - suffix)) suffix++
  if (suffix > 0 && isLow(before.charCodeAt(before.length - suffix))) suffix--
  return {
    index: prefix,
    remove: before.length - prefix - suffix,
    insert: after.slice(prefix, after.length - suffix)
  }
}

/** Moves a position in the old text through a Yjs text delta. */
export function transformIndex (index: number, delta: Array<{ insert?: unknown, delete?: number, retain?: number }>, assoc: 'before' | 'after' = 'after'): number {
  let pos = 0
  let result = index
  for (const op of delta) {
    if (pos > index) break
    if (op.retain !== undefined) {
      pos += op.retain
    } else if (op.insert !== undefined) {
      const len = typeof op.insert === 'string' ? op.insert.length : 1
      if (pos < index || (pos === index && assoc === 'after')) result += len
      // inserted text does not move pos through the old text
    } else if (op.delete !== undefined) {
      const removed = Math.min(op.delete, Math.max(0, index - pos))
      result -= removed
      pos += op.delete
    }
  }
  return result
}

/** Binds `field` to `ytext`; returns the function that unbinds it. */
export function bindText (field: Field, ytext: Y.Text): () => void {
  const origin = { binding: field }
  let composing = false
  let stale = false
  let shown = ytext.toString()
  field.value = shown

  const onInput = () => {
    const now = field.value
    if (now === shown) return
    const splice = diff(shown, now, field.selectionEnd)
    const doc = ytext.doc
    const apply = () => {
      if (splice.remove > 0) ytext.delete(splice.index, splice.remove)
      if (splice.insert) ytext.insert(splice.index, splice.insert)
    }
    if (doc) doc.transact(apply, origin)
    else apply()
    shown = ytext.toString()
    if (shown !== now) refresh()
  }

  const refresh = (delta?: Array<{ insert?: unknown, delete?: number, retain?: number }>) => {
    const next = ytext.toString()
    if (next === field.value) { shown = next; return }
    const focused = document.activeElement === field
    let start = field.selectionStart ?? 0
    let end = field.selectionEnd ?? 0
    if (delta) {
      start = transformIndex(start, delta, 'after')
      end = transformIndex(end, delta, 'after')
    }
    field.value = next
    shown = next
    if (focused) field.setSelectionRange(Math.min(start, next.length), Math.min(end, next.length))
  }

  const observer = (event: Y.YTextEvent, tr: Y.Transaction) => {
    if (tr.origin === origin) return
    if (composing) { stale = true; return }
    refresh(event.delta)
  }

  const onCompositionStart = () => { composing = true }
  const onCompositionEnd = () => {
    composing = false
    onInput()
    if (stale) { stale = false; refresh() }
  }

  field.addEventListener('input', onInput)
  field.addEventListener('compositionstart', onCompositionStart)
  field.addEventListener('compositionend', onCompositionEnd)
  ytext.observe(observer)
  return () => {
    field.removeEventListener('input', onInput)
    field.removeEventListener('compositionstart', onCompositionStart)
    field.removeEventListener('compositionend', onCompositionEnd)
    ytext.unobserve(observer)
  }
}

/** Binds `field` to the string at `map.get(key)` (last writer wins); returns the unbinder. */
export function bindString (field: Field, map: Y.Map<unknown>, key: string): () => void {
  const origin = { binding: field }
  const read = () => { const v = map.get(key); return typeof v === 'string' ? v : '' }
  field.value = read()
  const onInput = () => {
    if (field.value === read()) return
    const doc = map.doc
    if (doc) doc.transact(() => map.set(key, field.value), origin)
    else map.set(key, field.value)
  }
  const observer = (event: Y.YMapEvent<unknown>, tr: Y.Transaction) => {
    if (tr.origin === origin || !event.keysChanged.has(key)) return
    const next = read()
    if (next === field.value) return
    const focused = document.activeElement === field
    const start = field.selectionStart ?? next.length
    const end = field.selectionEnd ?? next.length
    field.value = next
    if (focused) field.setSelectionRange(Math.min(start, next.length), Math.min(end, next.length))
  }
  field.addEventListener('input', onInput)
  map.observe(observer)
  return () => {
    field.removeEventListener('input', onInput)
    map.unobserve(observer)
  }
}

/** Binds `field` to whatever `map.get(key)` holds: a Y.Text merges per character, a string is replaced. */
export function bindField (field: Field, map: Y.Map<unknown>, key: string): () => void {
  const value = map.get(key)
  return value instanceof Y.Text ? bindText(field, value) : bindString(field, map, key)
}
