// The entry point: routes `/` (home) and `/s/{id}` (a session), tidies what this device keeps,
// and registers the service worker.
import './style.css'
import { registerSW } from 'virtual:pwa-register'
import { applyDocumentLanguage } from './i18n'
import { parseLocation } from './link'
import { renderHome } from './home'
import { renderSession } from './session'
import { tidyDevice } from './device'

applyDocumentLanguage()
const root = document.getElementById('app')!
const link = parseLocation(location.pathname, location.hash)
if (link) renderSession(root, link)
else renderHome(root)
// Whatever an earlier version or a crashed tab left on this device beyond what it should keep.
void tidyDevice()

// The app shell is cached by the service worker, so a page opened once reloads with no network.
// A new build takes over at once (the server sends index.html with no-cache).
if ('serviceWorker' in navigator) {
  registerSW({
    immediate: true,
    onOfflineReady () { document.documentElement.dataset.offlineReady = 'true' },
    onRegisterError (error: unknown) { console.warn('service worker not registered', error) }
  })
}

// A link to the same page with another access key (someone pastes the view link into the address
// bar of an open edit page): start again with it.
window.addEventListener('hashchange', () => {
  const next = parseLocation(location.pathname, location.hash)
  if (next?.token && (next.token !== link?.token || next.role !== link?.role)) location.reload()
})
