// The HTTP API, with the link's token as a Bearer token.
import type { Role } from './link'

export interface SessionInfo {
  id: string
  role: Role
  session: unknown
  links: { view_url?: string, edit_url?: string }
}

export class ApiError extends Error {
  constructor (readonly status: number, readonly code: string, message: string) { super(message) }
}

async function fail (res: Response): Promise<never> {
  let code = 'http_' + res.status
  let message = res.statusText
  try {
    const body = await res.json() as { error?: string, message?: string }
    code = body.error ?? code
    message = body.message ?? message
  } catch {
    // Not our JSON error body (a proxy's page, say): the HTTP status is all there is to say.
  }
  throw new ApiError(res.status, code, message)
}

export async function getSession (id: string, token: string): Promise<SessionInfo> {
  const res = await fetch(`/api/sessions/${encodeURIComponent(id)}`, {
    headers: { Authorization: `Bearer ${token}` },
    cache: 'no-store'
  })
  if (!res.ok) return fail(res)
  return await res.json() as SessionInfo
}

export type ExportFormat = 'md' | 'json' | 'csv'

/** Fetches an export and hands it to the browser as a download; returns the file name. */
export async function downloadExport (id: string, token: string, format: ExportFormat, list?: string): Promise<string> {
  const query = new URLSearchParams({ format })
  if (list) query.set('list', list)
  const res = await fetch(`/api/sessions/${encodeURIComponent(id)}/export?${query}`, {
    headers: { Authorization: `Bearer ${token}` },
    cache: 'no-store'
  })
  if (!res.ok) return fail(res)
  const blob = await res.blob()
  const fallback = `${id}${list ? '-' + list : ''}.${format}`
  const name = fileName(res.headers.get('content-disposition')) ?? fallback
  const url = URL.createObjectURL(blob)
  const a = document.createElement('a')
  a.href = url
  a.download = name
  a.style.display = 'none'
  document.body.appendChild(a)
  a.click()
  a.remove()
  setTimeout(() => URL.revokeObjectURL(url), 10_000)
  return name
}

/** The file name of a Content-Disposition header (`filename*=UTF-8''...` or `filename="..."`). */
export function fileName (header: string | null): string | null {
  if (!header) return null
  const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(header)
  if (star) {
    try { return sanitize(decodeURIComponent(star[1].trim())) } catch { /* bad %-escape: try filename= */ }
  }
  const plain = /filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;]+)/i.exec(header)
  const name = plain ? (plain[1] ?? plain[2]).trim() : ''
  return name ? sanitize(name) : null
}

function sanitize (name: string): string {
  // Control characters are matched on purpose: they have no place in a file name.
  // eslint-disable-next-line no-control-regex
  return name.replace(/[\\/\u0000-\u001f]/g, '_')
}
