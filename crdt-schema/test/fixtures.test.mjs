// Cross-language fixtures: the TypeScript model reads what the Rust crate writes, and the JS
// fixture files are what fixtures/gen-js.mjs produces today. Every export is checked against
// schema.json with a JSON Schema 2020-12 validator.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import * as Y from 'yjs'
import Ajv2020 from 'ajv/dist/2020.js'
import { readSession, readEmails, schema } from '../build/ts/session.js'
import { buildJsSession, expectedJson, FILES } from '../fixtures/gen-js.mjs'

const fixture = (name) => new URL(`../fixtures/${name}`, import.meta.url)
const load = (name) => {
  const doc = new Y.Doc()
  Y.applyUpdate(doc, readFileSync(fixture(name)))
  return doc
}
const json = (name) => JSON.parse(readFileSync(fixture(name), 'utf8'))

function validator() {
  const ajv = new Ajv2020({ allErrors: true, strict: true })
  // Our own keywords carry the document's facts; they do not constrain the export.
  for (const k of Object.keys(schema).filter((k) => k.startsWith('x-commonpad-'))) ajv.addKeyword(k)
  return ajv.compile(schema)
}

test('the JS fixtures are what gen-js.mjs makes today (run `npm run fixtures` after a change)', () => {
  const { doc, privateDoc } = buildJsSession()
  assert.deepEqual(Buffer.from(Y.encodeStateAsUpdate(doc)), readFileSync(FILES.bin))
  assert.deepEqual(Buffer.from(Y.encodeStateAsUpdate(privateDoc)), readFileSync(FILES.privateBin))
  assert.equal(expectedJson(doc), readFileSync(FILES.expected, 'utf8'))
})

test('js-session.bin reads back to js-session.expected.json', () => {
  assert.deepEqual(readSession(load('js-session.bin')), json('js-session.expected.json'))
  assert.deepEqual(readEmails(load('js-session.private.bin')), { 'js-c1': 'zoe.odegaard@example.org' })
})

test('rust-session.bin (written by init_session and insert_item) reads as the Rust crate reads it', () => {
  const session = readSession(load('rust-session.bin'))
  assert.deepEqual(session, json('rust-session.json'))
  // And the values the Rust test put in, checked one by one.
  assert.deepEqual(session.meta, {
    title: 'OER Dynamic Coalition: "Africa" regional session',
    event: 'OE Global 2026, Nairobi',
    date: '2026-03-10',
    language: 'en',
    status: 'draft',
  })
  assert.deepEqual(session.outline[0], {
    type: 'heading',
    level: 1,
    content: [{ text: 'OER Dynamic Coalition: "Africa" regional session' }],
  })
  const headings = session.outline.filter((b) => b.type === 'heading' && b.level === 2)
  assert.equal(headings.length, 6)
  assert.equal(headings[1].content[0].text, 'What national governments will need to implement the UNESCO Recommendation on OER')
  const withLink = session.outline.find((b) => b.type === 'paragraph' && b.content.some((i) => i.link))
  assert.deepEqual(withLink.content[1], {
    text: 'UNESCO Recommendation on OER',
    link: 'https://www.unesco.org/en/legal-affairs/recommendation-open-educational-resources-oer',
  })
  assert.ok(JSON.stringify(session.outline).includes('"bold":true'))
  assert.ok(JSON.stringify(session.outline).includes('"italic":true'))
  assert.equal(session.outline.at(-1).type, 'orderedList')

  assert.deepEqual(
    session.needs.map((n) => [n.id, n.votes.length]),
    [['n1', 2], ['n2', 1], ['n3', 0]],
  )
  assert.equal(session.needs[1].text, 'Training for ministry staff on "open licences",\nwith follow-up')
  assert.equal(session.needs[1].author, 'José Núñez')
  assert.equal(session.needs[0].createdAt, 1767225600000)
  assert.deepEqual(session.needs[0].votes, ['p-jose', 'p-wang'])
  assert.deepEqual(
    session.resources.map((r) => [r.kind, r.format, r.author]),
    [['resource', 'policy template', 'Amina Diallo'], ['service', 'capacity building', '王芳']],
  )
  assert.deepEqual(session.partners[0], {
    id: 'pa1',
    text: 'Runs OER policy workshops with governments',
    author: 'José Núñez',
    authorId: 'p-jose',
    createdAt: 1767225605000,
    votes: [],
    organization: 'Commonwealth of Learning',
    website: 'https://www.col.org',
  })
  assert.equal(session.collaborators[0].organization, 'Université Cheikh Anta Diop, Dakar')
  assert.equal('email' in session.collaborators[0], false)
  assert.deepEqual(readEmails(load('rust-session.private.bin')), { c1: 'amina.diallo@example.org' })

  // The Rust document is fully usable by a JS client: items are Y.Maps with Y.Text text.
  const doc = load('rust-session.bin')
  const item = doc.getArray('needs').get(0)
  assert.ok(item instanceof Y.Map)
  assert.ok(item.get('text') instanceof Y.Text)
  assert.ok(item.get('votes') instanceof Y.Map)
  assert.equal(doc.getXmlFragment('outline').get(0).getAttribute('level'), 1)
})

test('every export conforms to schema.json (JSON Schema 2020-12)', () => {
  const validate = validator()
  for (const name of ['js-session.expected.json', 'rust-session.json']) {
    assert.ok(validate(json(name)), `${name}: ${JSON.stringify(validate.errors, null, 2)}`)
  }
  assert.ok(validate(readSession(new Y.Doc())), JSON.stringify(validate.errors))
})

test('schema.json rejects exports that break it', () => {
  const validate = validator()
  const good = json('js-session.expected.json')
  const broken = [
    (s) => (s.meta.status = 'archived'),
    (s) => (s.resources[0].format = 'podcast'),
    (s) => (s.resources[0].kind = undefined),
    (s) => (s.needs[0].kind = 'resource'), // another list's field
    (s) => (s.collaborators[0].email = 'x@example.org'), // personal data never in the export
    (s) => (s.outline[0].level = 7),
    (s) => (s.outline[0].type = 'blockquote'),
    (s) => (s.outline[1].content[0].bold = false),
    (s) => (s.needs[0].votes = 'p-ana'),
    (s) => delete s.partners,
  ]
  for (const [i, breakIt] of broken.entries()) {
    const s = structuredClone(good)
    breakIt(s)
    assert.equal(validate(JSON.parse(JSON.stringify(s))), false, `change ${i} should be refused`)
  }
})
