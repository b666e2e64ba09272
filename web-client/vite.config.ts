import { defineConfig } from 'vite'
import { VitePWA } from 'vite-plugin-pwa'

// The server serves dist/ at `/` and `/s/{id}` (index.html for both) and the assets by path.
// Everything is bundled: no CDN, no external font, nothing fetched from another origin.
export default defineConfig({
  base: '/',
  resolve: {
    // One copy of each, or Yjs refuses to mix types from two copies ("Yjs was already imported").
    dedupe: ['yjs', 'y-protocols', 'lib0', 'prosemirror-model', 'prosemirror-state', 'prosemirror-view', 'prosemirror-transform']
  },
  build: {
    target: 'es2022',
    sourcemap: false,
    chunkSizeWarningLimit: 1200
  },
  plugins: [
    VitePWA({
      registerType: 'autoUpdate',
      injectRegister: false, // registered in src/main.ts, so that a failure is visible in the UI
      includeAssets: ['icon.svg'],
      manifest: {
        name: 'CommonPad',
        short_name: 'CommonPad',
        description: 'Write the outcomes of a workshop session together, live and offline.',
        start_url: '/',
        scope: '/',
        display: 'standalone',
        background_color: '#ffffff',
        theme_color: '#1a4d8f',
        icons: [{ src: '/icon.svg', sizes: 'any', type: 'image/svg+xml', purpose: 'any' }]
      },
      workbox: {
        // The app shell: every built file, so that a reload with no network still starts the app.
        globPatterns: ['**/*.{js,css,html,svg,webmanifest}'],
        // Navigations (`/`, `/s/{id}`) get the cached shell; the API, the sync socket and the
        // server's own endpoints always go to the network.
        navigateFallback: '/index.html',
        navigateFallbackDenylist: [/^\/api\//, /^\/sync\//, /^\/metrics/, /^\/healthz/],
        cleanupOutdatedCaches: true,
        clientsClaim: true,
        skipWaiting: true,
        maximumFileSizeToCacheInBytes: 4 * 1024 * 1024
      }
    })
  ]
})
