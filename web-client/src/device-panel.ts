// The session page's "On this device" panel: remember the session here (edit links only), or
// forget it. What either means for storage is in device.ts; this is the controls and their words.
import { h } from './dom'
import { t, tn } from './i18n'
import type { Panel } from './panels'

export interface DeviceOptions {
  /** an edit link: the only kind worth remembering on purpose (a view link is public) */
  editable: boolean
  remembered: boolean
  onRemember(on: boolean): void
  /** changes of this session not yet on the server, lost if it is forgotten */
  pending(): number
  /** forgets the session and leaves the page */
  onForget(): Promise<void>
}

/**
 * Asks before forgetting; says how many changes would be lost. A native dialog: it takes and
 * gives back the focus, and screen readers announce it.
 */
export function confirmForget (pending: number): boolean {
  const lost = pending > 0 ? `${tn('forgetLost', pending)} ` : ''
  return window.confirm(lost + t('forgetConfirm'))
}

export function devicePanel (opts: DeviceOptions): Panel {
  const heading = h('h2', { id: 'device-heading' })
  const rememberHelp = h('p', { class: 'help', id: 'remember-help' })
  const check = h('input', { id: 'remember-device', type: 'checkbox', 'aria-describedby': 'remember-help', checked: opts.remembered })
  const checkLabel = h('label', { for: 'remember-device' })
  const forgetHelp = h('p', { class: 'help', id: 'forget-help' })
  const forget = h('button', { type: 'button', class: 'forget', 'data-forget': 'session', 'aria-describedby': 'forget-help' })
  const rememberRow = opts.editable ? h('div', { class: 'check-row' }, check, checkLabel) : null
  const element = h('section', { class: 'panel device', 'aria-labelledby': 'device-heading' },
    heading, rememberRow, opts.editable ? rememberHelp : null, forget, forgetHelp)

  check.addEventListener('change', () => opts.onRemember(check.checked))
  forget.addEventListener('click', () => {
    if (!confirmForget(opts.pending())) return
    forget.disabled = true
    void opts.onForget()
  })
  const render = () => {
    heading.textContent = t('deviceHeading')
    checkLabel.textContent = t('rememberDevice')
    rememberHelp.textContent = t('rememberHelp')
    forget.textContent = t('forgetSession')
    forgetHelp.textContent = t('forgetHelp')
  }
  render()
  return { element, relabel: render }
}
