// Who this participant is, remembered in this browser: a random id (the `authorId` of what they
// write and the key of their votes), a display name chosen once, and a colour from the id.
const ID_KEY = 'commonpad.participantId'
const NAME_KEY = 'commonpad.name'

// Dark enough for white text (contrast over 4.5:1) and distinct from one another.
export const COLOURS = ['#b3261e', '#1a5fb4', '#26734d', '#7b3fa0', '#a34700', '#0b6e79', '#9c1a66', '#4d5a00', '#5b4636', '#3d4db7']

function store (): Storage | null {
  try { return localStorage } catch { return null }
}

export function participantId (): string {
  const s = store()
  let id = s?.getItem(ID_KEY) ?? ''
  if (!/^[a-z0-9]{8,64}$/.test(id)) {
    const bytes = crypto.getRandomValues(new Uint8Array(12))
    id = Array.from(bytes, (b) => b.toString(36).padStart(2, '0')).join('').slice(0, 20)
    s?.setItem(ID_KEY, id)
  }
  return id
}

export function displayName (): string {
  return (store()?.getItem(NAME_KEY) ?? '').trim()
}

export function setDisplayName (name: string): void {
  store()?.setItem(NAME_KEY, name.trim().slice(0, 60))
}

export function colourFor (id: string): string {
  let hash = 0
  for (let i = 0; i < id.length; i++) hash = (hash * 31 + id.charCodeAt(i)) >>> 0
  return COLOURS[hash % COLOURS.length]
}
