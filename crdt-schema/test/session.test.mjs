// The TypeScript model: writes, concurrent merges, and lenient reading of odd documents.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import * as Y from 'yjs'
import {
  addItem,
  byCodePoint,
  deleteItem,
  extraFields,
  fieldChoices,
  fieldDefault,
  findItem,
  getLists,
  getOutline,
  LIST_NAMES,
  LISTS,
  newId,
  privateDocName,
  readEmail,
  readEmails,
  readField,
  readSession,
  readString,
  readText,
  RESOURCE_FORMATS,
  schema,
  setEmail,
  setField,
  setMeta,
  STATUSES,
  toggleVote,
  voteCount,
} from '../build/ts/session.js'

const sync = (a, b) => {
  Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)))
  Y.applyUpdate(a, Y.encodeStateAsUpdate(b, Y.encodeStateVector(a)))
}

test('the schema facts come from schema.json', () => {
  assert.deepEqual(LIST_NAMES, ['needs', 'resources', 'partners', 'collaborators'])
  assert.deepEqual(
    LISTS.map((l) => [l.name, l.extraFields]),
    [
      ['needs', []],
      ['resources', ['kind', 'format']],
      ['partners', ['organization', 'website']],
      ['collaborators', ['name', 'organization', 'interests']],
    ],
  )
  assert.deepEqual(STATUSES, ['draft', 'live', 'closed'])
  assert.equal(RESOURCE_FORMATS.length, 13)
  assert.equal(privateDocName('abc'), 'abc.private')
})

test('addItem writes a complete item and returns a UUID', () => {
  const doc = new Y.Doc()
  const before = Date.now()
  const id = addItem(doc, 'resources', { text: 'A slide deck', author: 'Ana', authorId: 'p-ana', format: 'slide deck', website: 'ignored' })
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  const item = getLists(doc).resources.get(0)
  assert.ok(item.get('text') instanceof Y.Text)
  assert.ok(item.get('votes') instanceof Y.Map)
  assert.equal(item.has('website'), false)
  const [r] = readSession(doc).resources
  assert.ok(r.createdAt >= before && r.createdAt <= Date.now())
  assert.deepEqual({ ...r, createdAt: 0 }, {
    id,
    text: 'A slide deck',
    author: 'Ana',
    authorId: 'p-ana',
    createdAt: 0,
    votes: [],
    kind: 'resource',
    format: 'slide deck',
  })
  const p = addItem(doc, 'partners', { text: 'x' })
  assert.deepEqual(readSession(doc).partners[0], { id: p, text: 'x', author: '', authorId: '', createdAt: readSession(doc).partners[0].createdAt, votes: [], organization: '', website: '' })
})

test('addItem and setField refuse unknown lists, fields, kinds and formats', () => {
  const doc = new Y.Doc()
  assert.throws(() => addItem(doc, 'ideas', { text: 'x' }), /unknown list "ideas"/)
  assert.throws(() => addItem(doc, 'resources', { text: 'x', format: 'podcast' }), /unknown format "podcast"/)
  assert.throws(() => addItem(doc, 'resources', { text: 'x', kind: 'gadget' }), /unknown kind "gadget"/)
  const id = addItem(doc, 'resources', { text: 'x' })
  assert.throws(() => setField(doc, 'resources', id, 'id', 'other'), /cannot be set/)
  assert.throws(() => setField(doc, 'resources', id, 'website', 'x'), /cannot be set/)
  assert.throws(() => setField(doc, 'resources', id, 'format', 'podcast'), /unknown format/)
  assert.throws(() => setMeta(doc, 'status', 'archived'), /unknown status/)
  assert.throws(() => setMeta(doc, 'colour', 'red'), /unknown meta field/)
  assert.equal(getLists(doc).resources.length, 1)
})

test('setField edits text in place, so concurrent edits elsewhere survive', () => {
  const a = new Y.Doc()
  const b = new Y.Doc()
  const id = addItem(a, 'needs', { text: 'Training for staff', author: 'A', authorId: 'a' })
  sync(a, b)
  setField(a, 'needs', id, 'text', 'Training for ministry staff')
  findItem(b, 'needs', id).get('text').insert(0, 'Urgent: ')
  sync(a, b)
  assert.equal(readSession(a).needs[0].text, 'Urgent: Training for ministry staff')
  assert.deepEqual(readSession(a), readSession(b))
  assert.equal(setField(a, 'needs', 'nope', 'text', 'x'), false)
  setField(a, 'needs', id, 'author', 'Ana')
  assert.equal(readSession(a).needs[0].author, 'Ana')
})

test('setField never splits an emoji', () => {
  const doc = new Y.Doc()
  for (const [from, to] of [
    ['a😀b', 'a😁b'],
    ['😀', '😁'],
    ['x😀', 'x🙂😀'],
    ['👍🏽 ok', '👍🏿 ok'],
    ['abc', ''],
    ['', '🌍'],
  ]) {
    const id = addItem(doc, 'needs', { text: from })
    setField(doc, 'needs', id, 'text', to)
    assert.equal(findItem(doc, 'needs', id).get('text').toString(), to)
  }
})

test('ids are UUIDs even where crypto.randomUUID is missing (plain http)', () => {
  const original = globalThis.crypto.randomUUID
  try {
    globalThis.crypto.randomUUID = undefined
    assert.match(newId(), /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
  } finally {
    globalThis.crypto.randomUUID = original
  }
})

test('votes: toggling, and concurrent votes by different people all count', () => {
  const a = new Y.Doc()
  const b = new Y.Doc()
  const id = addItem(a, 'needs', { text: 'x' })
  sync(a, b)
  assert.equal(toggleVote(a, 'needs', id, 'p-a'), true)
  assert.equal(toggleVote(b, 'needs', id, 'p-b'), true)
  assert.equal(toggleVote(b, 'needs', id, 'p-c'), true)
  assert.equal(toggleVote(b, 'needs', id, 'p-c'), false)
  sync(a, b)
  assert.deepEqual(readSession(a).needs[0].votes, ['p-a', 'p-b'])
  assert.deepEqual(readSession(b).needs[0].votes, ['p-a', 'p-b'])
  assert.throws(() => toggleVote(a, 'needs', 'nope', 'p'), /no item/)
})

test('the page\'s vote count is the length of the exported votes: only `true` is a vote', () => {
  const doc = new Y.Doc()
  const id = addItem(doc, 'needs', { text: 'x' })
  const item = findItem(doc, 'needs', id)
  // Keys that other clients may leave behind: a vote turned off as `false`, or not a boolean.
  item.get('votes').set('p-off', false)
  item.get('votes').set('p-odd', 'yes')
  item.get('votes').set('p-one', 1)
  item.get('votes').set('p-on', true)
  const exported = readSession(doc).needs[0].votes
  assert.deepEqual(exported, ['p-on'])
  assert.equal(voteCount(item), exported.length)
  // Toggling a key that is not a vote turns the vote on, and the count follows.
  assert.equal(toggleVote(doc, 'needs', id, 'p-off'), true)
  assert.equal(voteCount(item), readSession(doc).needs[0].votes.length)
  assert.equal(voteCount(item), 2)
})

test('field choices and defaults are schema.json\'s, per list and field', () => {
  const defs = schema.$defs
  assert.deepEqual(extraFields('resources'), ['kind', 'format'])
  assert.deepEqual(fieldChoices('resources', 'kind'), defs.resourceKind.enum)
  assert.equal(fieldDefault('resources', 'kind'), defs.resourceKind.default)
  assert.deepEqual(fieldChoices('resources', 'format'), defs.resourceFormat.enum)
  assert.equal(fieldDefault('resources', 'format'), defs.resourceFormat.default)
  for (const [list, field] of [['partners', 'website'], ['collaborators', 'name'], ['resources', 'text'], ['needs', 'kind'], ['needs', 'constructor']]) {
    assert.equal(fieldChoices(list, field), null, `${list}.${field}`)
    assert.equal(fieldDefault(list, field), '', `${list}.${field}`)
  }
  // A new item gets the defaults, and an unknown stored value reads as the default.
  const doc = new Y.Doc()
  const id = addItem(doc, 'resources', { text: 'x' })
  const item = findItem(doc, 'resources', id)
  assert.deepEqual([item.get('kind'), item.get('format')], [defs.resourceKind.default, defs.resourceFormat.default])
  item.set('format', 'podcast')
  assert.equal(readField('resources', item, 'format'), defs.resourceFormat.default)
  item.set('format', 'video')
  assert.equal(readField('resources', item, 'format'), 'video')
})

test('the single-value readers read as readSession does', () => {
  const doc = new Y.Doc()
  const m = new Y.Map()
  doc.getArray('needs').push([m])
  m.set('text', new Y.XmlText('not item text'))
  m.set('author', new Y.Text('not a string'))
  assert.equal(readText(m), '')
  assert.equal(readString(m, 'author'), '')
  m.set('text', 'plain')
  assert.equal(readText(m), readSession(doc).needs[0].text)
  const priv = new Y.Doc()
  setEmail(priv, 'c1', 'ana@example.org')
  priv.getMap('contacts').set('c2', { email: 'bo@example.org' })
  assert.equal(readEmail(priv, 'c1'), 'ana@example.org')
  assert.equal(readEmail(priv, 'c2'), readEmails(priv).c2)
  assert.equal(readEmail(priv, 'nobody'), '')
})

test('concurrent adds and deletes merge', () => {
  const a = new Y.Doc()
  const b = new Y.Doc()
  const keep = addItem(a, 'partners', { text: 'keep' })
  const gone = addItem(a, 'partners', { text: 'gone' })
  sync(a, b)
  assert.equal(deleteItem(b, 'partners', gone), true)
  assert.equal(deleteItem(b, 'partners', gone), false)
  addItem(a, 'partners', { text: 'new' })
  sync(a, b)
  assert.deepEqual(readSession(b).partners.map((p) => p.text), ['keep', 'new'])
  assert.equal(readSession(a).partners[0].id, keep)
})

test('emails live in the private document only', () => {
  const doc = new Y.Doc()
  const priv = new Y.Doc()
  const id = addItem(doc, 'collaborators', { text: 'x', name: 'Ana', organization: 'Org', interests: 'OER' })
  setEmail(priv, id, 'ana@example.org')
  setEmail(priv, 'other', 'o@example.org')
  setEmail(priv, id, 'ana@example.net')
  assert.deepEqual(readEmails(priv), { [id]: 'ana@example.net', other: 'o@example.org' })
  setEmail(priv, 'other', '')
  assert.deepEqual(readEmails(priv), { [id]: 'ana@example.net' })
  assert.equal(JSON.stringify(readSession(doc)).includes('example'), false)
})

test('votes are sorted by code point, as in Rust', () => {
  assert.deepEqual(['\u{FF5E}', '\u{1F600}', 'b', 'a'].sort(byCodePoint), ['a', 'b', '\u{FF5E}', '\u{1F600}'])
})

test('readSession never throws on odd documents, and reads them as the Rust crate does', () => {
  // Roots defined as other types by a client.
  const wrong = new Y.Doc()
  wrong.getArray('meta').push(['x'])
  wrong.getMap('needs').set('a', 1)
  wrong.getText('outline').insert(0, 'text')
  wrong.getXmlFragment('partners')
  const s = readSession(wrong)
  assert.equal(s.meta.status, 'draft')
  assert.deepEqual(s.needs, [])
  assert.deepEqual(s.outline, [])
  assert.deepEqual(readEmails(wrong), {})

  // Odd values.
  const odd = new Y.Doc()
  odd.transact(() => {
    odd.getMap('meta').set('title', 5)
    odd.getMap('meta').set('status', 'archived')
    const needs = odd.getArray('needs')
    needs.push([42, 'str', new Y.Array(), new Y.Text('t')])
    const m = new Y.Map()
    m.set('id', 'x')
    m.set('text', 'plain')
    m.set('createdAt', 'yesterday')
    m.set('votes', { a: true })
    needs.push([m])
    const r = new Y.Map()
    r.set('kind', 'gadget')
    r.set('format', 'podcast')
    r.set('text', new Y.XmlText('xml is not item text'))
    odd.getArray('resources').push([r])
    const outline = odd.getXmlFragment('outline')
    const h = new Y.XmlElement('heading')
    h.setAttribute('level', '7')
    const quote = new Y.XmlElement('blockquote')
    const qp = new Y.XmlElement('paragraph')
    qp.insert(0, [new Y.XmlText('quoted')])
    quote.insert(0, [qp])
    const para = new Y.XmlElement('paragraph')
    const t = new Y.XmlText()
    t.insert(0, 'u', { underline: {} })
    t.insert(1, 'b', { 'bold--x': {} })
    t.insert(2, 'n', { bold: false, italic: null })
    para.insert(0, [t, new Y.XmlElement('hardBreak')])
    outline.insert(0, [h, quote, new Y.XmlText('loose'), para])
  })
  const o = readSession(odd)
  assert.deepEqual(o.meta, { title: '', event: '', date: '', language: '', status: 'draft' })
  assert.deepEqual(o.needs, [{ id: 'x', text: 'plain', author: '', authorId: '', createdAt: 0, votes: [] }])
  assert.deepEqual(o.resources, [{ id: '', text: '', author: '', authorId: '', createdAt: 0, votes: [], kind: 'resource', format: 'other' }])
  assert.deepEqual(o.outline, [
    { type: 'heading', level: 1, content: [] },
    { type: 'paragraph', content: [{ text: 'quoted' }] },
    { type: 'paragraph', content: [{ text: 'loose' }] },
    { type: 'paragraph', content: [{ text: 'u' }, { text: 'b', bold: true }, { text: 'n' }] },
  ])
})

test('getOutline is the fragment y-prosemirror binds to', () => {
  const doc = new Y.Doc()
  const p = new Y.XmlElement('paragraph')
  p.insert(0, [new Y.XmlText('hello')])
  getOutline(doc).insert(0, [p])
  assert.deepEqual(readSession(doc).outline, [{ type: 'paragraph', content: [{ text: 'hello' }] }])
})
