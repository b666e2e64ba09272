// A tiny element builder: no framework, no innerHTML (nothing a participant typed is ever parsed
// as HTML).
type Attrs = Record<string, string | number | boolean | null | undefined | EventListener>
type Child = Node | string | null | undefined | false

export function h<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Attrs = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2).toLowerCase(), value)
    } else if (name === 'class') {
      el.className = String(value)
    } else if (name === 'text') {
      el.textContent = String(value)
    } else if (value === true) {
      el.setAttribute(name, '')
    } else {
      el.setAttribute(name, String(value))
    }
  }
  append(el, ...children)
  return el
}

export function append (parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue
    parent.appendChild(typeof child === 'string' ? document.createTextNode(child) : child)
  }
}

let uid = 0
/** A document-unique id for label/aria wiring. */
export function nextId (prefix = 'cp'): string {
  uid++
  return `${prefix}-${uid}`
}

/** Text only screen readers get. */
export function srOnly (text: string): HTMLSpanElement {
  return h('span', { class: 'sr-only', text })
}
