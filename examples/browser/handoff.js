// What the desktop and the phone page share: the link between them and the sealing of the
// token. The key travels only in the link's fragment (after `#`), which browsers never send to
// a server; the relay sees the channel id, the sealed bytes and when they come and go.

/** Bytes as base64url without padding (URL- and fragment-safe). */
export function toBase64url(bytes) {
  let binary = '';
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** The bytes of base64url text; throws on anything else. */
export function fromBase64url(text) {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Error('not base64url');
  const binary = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/** A new channel: a random 128-bit id and a random AES-256-GCM key. */
export async function newChannel() {
  const id = toBase64url(crypto.getRandomValues(new Uint8Array(16)));
  const key = await crypto.subtle.generateKey({ name: 'AES-GCM', length: 256 }, true, [
    'encrypt',
    'decrypt',
  ]);
  return { id, key };
}

/** The phone page's link for a channel on `relay`: everything the phone needs in the fragment. */
export async function phoneLink(phonePage, relay, { id, key }) {
  const raw = new Uint8Array(await crypto.subtle.exportKey('raw', key));
  const fragment = new URLSearchParams({ relay, id, key: toBase64url(raw) });
  return `${phonePage}#${fragment}`;
}

/** The channel a phone link's fragment (`location.hash`) names; throws when it is incomplete. */
export async function readLink(hash) {
  const fields = new URLSearchParams(hash.replace(/^#/, ''));
  const relay = fields.get('relay');
  const id = fields.get('id');
  const raw = fromBase64url(fields.get('key') ?? '');
  if (!relay || !id || raw.length !== 32) throw new Error('the link is incomplete');
  const key = await crypto.subtle.importKey('raw', raw, 'AES-GCM', false, ['encrypt', 'decrypt']);
  return { relay, id, key };
}

/** `text` sealed for the channel: a random 12-byte IV, then AES-GCM of it bound to the id. */
export async function seal({ id, key }, text) {
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const additionalData = new TextEncoder().encode(id);
  const plain = new TextEncoder().encode(text);
  const sealed = new Uint8Array(
    await crypto.subtle.encrypt({ name: 'AES-GCM', iv, additionalData }, key, plain),
  );
  const out = new Uint8Array(iv.length + sealed.length);
  out.set(iv);
  out.set(sealed, iv.length);
  return out;
}

/** The text `seal` sealed for this channel; throws if it was sealed for another or altered. */
export async function open({ id, key }, bytes) {
  const iv = bytes.slice(0, 12);
  const additionalData = new TextEncoder().encode(id);
  const plain = await crypto.subtle.decrypt(
    { name: 'AES-GCM', iv, additionalData },
    key,
    bytes.slice(12),
  );
  return new TextDecoder().decode(plain);
}

/** Waits `ms` milliseconds. */
export function pause(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** How long to wait before asking again after a refusal (429, 503: its `Retry-After`, which
 * the relay exposes to pages) or a network error (`null`): 2 s. */
export function backOff(response) {
  return 1000 * (Number(response?.headers.get('Retry-After')) || 2);
}

/** A function that shows a state (`data-state`, for styles and tests) and a sentence in `element`. */
export function reporter(element) {
  return (state, text) => {
    element.dataset.state = state;
    element.textContent = text;
  };
}
