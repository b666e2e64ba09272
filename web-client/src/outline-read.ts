// The outline for viewers: a plain, live, read-only rendering of the `outline` fragment (no
// editor, no caret, nothing focusable but links). Kept apart from the editor so that the view
// page does not load the editor's code.
import * as Y from 'yjs'
import { h } from './dom'
import { t } from './i18n'
import { linkHref } from './model'

export interface OutlineView { element: HTMLElement, relabel(): void, destroy(): void }

/** Only web and mail links are ever rendered as links. */
export function safeHref (href: string): string | null {
  try {
    const u = new URL(href, 'https://example.invalid/')
    if (!['http:', 'https:', 'mailto:'].includes(u.protocol)) return null
    return /^[a-z][a-z0-9+.-]*:/i.test(href) ? href : 'https://' + href.replace(/^\/+/, '')
  } catch { return null }
}

/** A read-only rendering of the outline, kept live. */
export function outlineReader (fragment: Y.XmlFragment): OutlineView {
  const element = h('div', { class: 'outline outline-read' })
  let scheduled = false
  const render = () => {
    scheduled = false
    const body = h('div', { class: 'outline-content' })
    for (const node of fragment.toArray()) {
      const el = renderNode(node)
      if (el) body.append(el)
    }
    if (!body.firstChild) body.append(h('p', { class: 'empty', text: t('outlineEmpty') }))
    element.replaceChildren(body)
  }
  const schedule = () => {
    if (scheduled) return
    scheduled = true
    requestAnimationFrame(render)
  }
  fragment.observeDeep(schedule)
  render()
  return { element, relabel: render, destroy () { fragment.unobserveDeep(schedule) } }
}

function renderNode (node: Y.XmlElement | Y.XmlText | Y.XmlHook): Node | null {
  if (node instanceof Y.XmlText) return renderText(node)
  if (!(node instanceof Y.XmlElement)) return null
  const children = () => node.toArray().map((c) => renderNode(c as Y.XmlElement | Y.XmlText)).filter((c): c is Node => c !== null)
  switch (node.nodeName) {
    case 'paragraph': return h('p', {}, ...children())
    case 'heading': {
      const level = Math.min(6, Math.max(1, Number(node.getAttribute('level')) || 1))
      const tag = `h${level}` as 'h1'
      return h(tag, {}, ...children())
    }
    case 'bulletList': return h('ul', {}, ...children())
    case 'orderedList': return h('ol', {}, ...children())
    case 'listItem': return h('li', {}, ...children())
    default: {
      // Unknown node from a newer client: show its text, never its markup.
      const span = h('div')
      for (const c of children()) span.append(c)
      return span
    }
  }
}

function renderText (text: Y.XmlText): Node {
  const frag = document.createDocumentFragment()
  for (const op of text.toDelta() as Array<{ insert: unknown, attributes?: Record<string, unknown> }>) {
    if (typeof op.insert !== 'string') continue
    let node: Node = document.createTextNode(op.insert)
    const a = op.attributes ?? {}
    if (a.italic) node = h('em', {}, node)
    if (a.bold) node = h('strong', {}, node)
    // The export's reading of a link mark, so that the page links what the export does.
    const link = linkHref(a.link)
    const href = link === undefined ? null : safeHref(link)
    if (href) node = h('a', { href, rel: 'noopener noreferrer nofollow' }, node)
    frag.append(node)
  }
  return frag
}
