// The session link: `/s/{id}#edit=TOKEN` or `/s/{id}#view=TOKEN`. The token stays in the fragment,
// which browsers never send to the server, so it reaches no log and no Referer header.
export type Role = 'edit' | 'view'

export interface SessionLink { id: string, role: Role | null, token: string | null }

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/

/** The session of a path like `/s/{id}`, or null for any other page. */
export function parseLocation (pathname: string, hash: string): SessionLink | null {
  const m = /^\/s\/([^/]+)\/?$/.exec(pathname)
  if (!m) return null
  let id: string
  try { id = decodeURIComponent(m[1]) } catch { return null }
  if (!ID_RE.test(id)) return null
  const params = new URLSearchParams(hash.replace(/^#/, ''))
  for (const role of ['edit', 'view'] as const) {
    const token = params.get(role)
    if (token) return { id, role, token }
  }
  return { id, role: null, token: null }
}

/** Parses a full link someone pasted; returns its path and fragment on this origin, or null. */
export function parsePastedLink (text: string): { path: string, hash: string } | null {
  let url: URL
  try { url = new URL(text.trim(), location.href) } catch { return null }
  const link = parseLocation(url.pathname, url.hash)
  if (!link || !link.token) return null
  return { path: url.pathname, hash: url.hash }
}
