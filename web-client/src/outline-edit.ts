// The outline for editors: a Tiptap editor bound to the `outline` Y.XmlFragment, with the other
// editors' carets and names. (Viewers get outline-read.ts, without this code.)
import type * as Y from 'yjs'
import { Editor } from '@tiptap/core'
import StarterKit from '@tiptap/starter-kit'
import Collaboration from '@tiptap/extension-collaboration'
import CollaborationCaret from '@tiptap/extension-collaboration-caret'
import type { Transaction } from '@tiptap/pm/state'
import type { EditorView } from '@tiptap/pm/view'
import type { WebsocketProvider } from 'y-websocket'
import { h } from './dom'
import { t, type MessageKey } from './i18n'
import { safeHref, type OutlineView } from './outline-read'

export interface Collaborator { name: string, color: string }

/**
 * `beforeRemote` registers a function to run just before each update from the server is applied.
 * The editor uses it to read the browser's selection into ProseMirror first: ProseMirror learns
 * of a native selection change (a click, Ctrl+End) a moment later, and the Yjs binding re-renders
 * a remote change with the selection ProseMirror knows, which would put the caret back where it
 * was before the click and send the next keystrokes there.
 */
export function outlineEditor (fragment: Y.XmlFragment, provider: WebsocketProvider, user: Collaborator, beforeRemote: Set<() => void>): OutlineView & { editor: Editor, setUser(u: Collaborator): void } {
  const mount = h('div', { class: 'outline-editor' })
  const editor = new Editor({
    element: mount,
    extensions: [
      // Only the schema's vocabulary: paragraph, heading, bulletList, orderedList, listItem,
      // bold, italic, link. Undo comes from the Collaboration extension (per user, over Yjs).
      StarterKit.configure({
        undoRedo: false,
        blockquote: false,
        code: false,
        codeBlock: false,
        horizontalRule: false,
        strike: false,
        underline: false,
        hardBreak: false,
        // It would append an empty paragraph to the shared outline on every load, for everyone.
        trailingNode: false,
        link: {
          openOnClick: false,
          autolink: true,
          defaultProtocol: 'https',
          protocols: ['http', 'https', 'mailto'],
          HTMLAttributes: { rel: 'noopener noreferrer nofollow', target: null }
        }
      }),
      Collaboration.configure({ fragment }),
      CollaborationCaret.configure({
        provider,
        user,
        render: (u: Record<string, unknown>) => {
          // Another client's presence: trust none of its fields to be strings.
          const color = typeof u.color === 'string' ? u.color : ''
          const caret = h('span', { class: 'collaboration-carets__caret', 'aria-hidden': 'true' })
          caret.style.borderColor = color
          const label = h('span', { class: 'collaboration-carets__label', text: typeof u.name === 'string' ? u.name : '' })
          label.style.backgroundColor = color
          caret.append(label)
          return caret
        }
      })
    ],
    editorProps: {
      attributes: {
        class: 'outline-content',
        role: 'textbox',
        'aria-multiline': 'true',
        'aria-label': t('outlineEditor'),
        spellcheck: 'true'
      }
    }
  })

  // ProseMirror's DOM observer is internal API: flush() reads the browser's selection right now.
  type View = EditorView & { domObserver?: { flush(): void } }
  const view: View = editor.view
  const flushSelection = () => {
    if (!editor.isDestroyed && view.hasFocus()) view.domObserver?.flush()
  }
  beforeRemote.add(flushSelection)
  // A key pressed right after a native caret move (a click, Ctrl+End) can reach ProseMirror
  // before the browser's selectionchange event: read the selection first, so the key acts where
  // the caret is seen.
  mount.addEventListener('keydown', flushSelection, true)
  // The carets of others are redrawn on the next tick after a presence change, by a transaction
  // that only carries metadata. Redrawing resets the browser's selection to the one ProseMirror
  // knows; read the browser's selection first, then redraw on top of it.
  const dispatch = view.dispatch.bind(view)
  view.dispatch = (tr: Transaction) => {
    if (!tr.docChanged && !tr.selectionSet && !editor.isDestroyed && view.hasFocus()) {
      const before = view.state
      view.domObserver?.flush()
      if (view.state !== before) {
        const fresh = view.state.tr
        // A transaction's metadata is private in ProseMirror's types; carry all of it over.
        const meta = (tr as unknown as { meta: Record<string, unknown> }).meta
        for (const [key, value] of Object.entries(meta)) fresh.setMeta(key, value)
        dispatch(fresh)
        return
      }
    }
    dispatch(tr)
  }

  type Btn = { key: MessageKey, params?: Record<string, number>, run: () => void, active?: () => boolean, el?: HTMLButtonElement }
  const chain = () => editor.chain().focus()
  const buttons: Btn[] = [
    { key: 'fmtParagraph', run: () => chain().setParagraph().run(), active: () => editor.isActive('paragraph') },
    { key: 'fmtHeading', params: { level: 2 }, run: () => chain().toggleHeading({ level: 2 }).run(), active: () => editor.isActive('heading', { level: 2 }) },
    { key: 'fmtHeading', params: { level: 3 }, run: () => chain().toggleHeading({ level: 3 }).run(), active: () => editor.isActive('heading', { level: 3 }) },
    { key: 'fmtBullet', run: () => chain().toggleBulletList().run(), active: () => editor.isActive('bulletList') },
    { key: 'fmtOrdered', run: () => chain().toggleOrderedList().run(), active: () => editor.isActive('orderedList') },
    { key: 'fmtBold', run: () => chain().toggleBold().run(), active: () => editor.isActive('bold') },
    { key: 'fmtItalic', run: () => chain().toggleItalic().run(), active: () => editor.isActive('italic') },
    { key: 'fmtLink', run: () => editLink(editor), active: () => editor.isActive('link') },
    { key: 'fmtUndo', run: () => chain().undo().run() },
    { key: 'fmtRedo', run: () => chain().redo().run() }
  ]
  const toolbar = h('div', { class: 'toolbar', role: 'toolbar', 'aria-label': t('toolbar'), 'aria-controls': '' })
  for (const b of buttons) {
    b.el = h('button', { type: 'button', class: 'tool', 'data-tool': b.key + (b.params?.level ?? ''), onclick: () => b.run() })
    // A click keeps the caret in the text: the editor does not lose focus to the button.
    b.el.addEventListener('mousedown', (e) => e.preventDefault())
    if (b.active) b.el.setAttribute('aria-pressed', 'false')
    toolbar.append(b.el)
  }
  // A toolbar is one tab stop; arrow keys move between its buttons (roving tabindex).
  let focusIndex = 0
  const rove = (i: number) => {
    focusIndex = (i + buttons.length) % buttons.length
    buttons.forEach((b, j) => b.el!.setAttribute('tabindex', j === focusIndex ? '0' : '-1'))
  }
  rove(0)
  toolbar.addEventListener('keydown', (e) => {
    const rtl = getComputedStyle(toolbar).direction === 'rtl'
    const next = rtl ? 'ArrowLeft' : 'ArrowRight'
    const prev = rtl ? 'ArrowRight' : 'ArrowLeft'
    let i: number | null = null
    if (e.key === next) i = focusIndex + 1
    else if (e.key === prev) i = focusIndex - 1
    else if (e.key === 'Home') i = 0
    else if (e.key === 'End') i = buttons.length - 1
    if (i === null) return
    e.preventDefault()
    rove(i)
    buttons[focusIndex].el!.focus()
  })
  toolbar.addEventListener('focusin', (e) => {
    const i = buttons.findIndex((b) => b.el === e.target)
    if (i >= 0) rove(i)
  })

  const hint = h('p', { class: 'hint', id: 'outline-hint' })
  const relabel = () => {
    for (const b of buttons) {
      const label = t(b.key, b.params)
      b.el!.textContent = label
    }
    editor.view.dom.setAttribute('aria-label', t('outlineEditor'))
    toolbar.setAttribute('aria-label', t('toolbar'))
    hint.textContent = t('outlineHint')
  }
  const refreshState = () => {
    for (const b of buttons) if (b.active) b.el!.setAttribute('aria-pressed', String(b.active()))
  }
  editor.on('transaction', refreshState)
  editor.on('selectionUpdate', refreshState)
  relabel()
  refreshState()
  const contentId = 'outline-content'
  editor.view.dom.id = contentId
  toolbar.setAttribute('aria-controls', contentId)
  // Tab indents a list item inside the editor; Escape leaves the editor for its toolbar, so the
  // keyboard is never trapped.
  editor.view.dom.setAttribute('aria-describedby', hint.id)
  editor.view.dom.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      e.preventDefault()
      buttons[focusIndex].el!.focus()
    }
  })

  const element = h('div', { class: 'outline' }, toolbar, mount, hint)
  return {
    element,
    editor,
    relabel,
    setUser (u: Collaborator) { editor.commands.updateUser({ ...u }) },
    destroy () {
      beforeRemote.delete(flushSelection)
      editor.destroy()
    }
  }
}

function editLink (editor: Editor): void {
  const previous = (editor.getAttributes('link').href as string | undefined) ?? ''
  const url = window.prompt(t('linkPrompt'), previous)
  if (url === null) return
  const chain = editor.chain().focus().extendMarkRange('link')
  if (url.trim() === '') chain.unsetLink().run()
  else if (safeHref(url.trim())) chain.setLink({ href: url.trim() }).run()
}
