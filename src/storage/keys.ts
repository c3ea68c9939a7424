/**
 * Storage keys: the one place that decides what a key may look like, used by both backends and by the
 * /files route.
 *
 * A key is relative and `/`-separated; each segment is 1-255 characters from `[A-Za-z0-9._-]` and does not
 * start with `.` (which rules out `.`, `..` and hidden files — the local backend keeps its sidecars and temp
 * files under dot-names, so no key can ever name one). The whole key is at most 1024 bytes (S3's limit).
 * Because every allowed character is URL-safe, a key is its own URL path: nothing is percent-encoded, and a
 * request path containing `%` can never name a stored object.
 */

export class InvalidKeyError extends Error {
  override name = "InvalidKeyError";
  readonly code = "invalid_storage_key";
  readonly key: string;

  constructor(key: string, reason: string) {
    super(`invalid storage key ${JSON.stringify(key.slice(0, 200))}: ${reason}`);
    this.key = key;
  }
}

export const MAX_KEY_BYTES = 1024;
const MAX_SEGMENT_LENGTH = 255;
const SEGMENT = /^[A-Za-z0-9_-][A-Za-z0-9._-]*$/;
/** A prefix is whole segments each ending in `/`, then an optional partial segment. */
const PREFIX = /^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*\/)*[A-Za-z0-9._-]*$/;

/** Why `key` is not a valid storage key, or undefined when it is. */
function keyProblem(key: string): string | undefined {
  if (key.length === 0) return "empty";
  if (key.length > MAX_KEY_BYTES) return `longer than ${MAX_KEY_BYTES} bytes`;
  if (key.startsWith("/")) return "must be relative";
  for (const segment of key.split("/")) {
    if (segment.length === 0) return "empty segment";
    if (segment.length > MAX_SEGMENT_LENGTH) return `segment longer than ${MAX_SEGMENT_LENGTH}`;
    if (segment === "." || segment === "..") return "dot segment";
    if (!SEGMENT.test(segment)) return "segments use [A-Za-z0-9._-] and do not start with '.'";
  }
  return undefined;
}

export function isValidKey(key: string): boolean {
  return keyProblem(key) === undefined;
}

/** Returns `key` unchanged when valid; throws InvalidKeyError otherwise. Never rewrites a bad key into a good one. */
export function assertValidKey(key: string): string {
  const problem = keyProblem(key);
  if (problem !== undefined) throw new InvalidKeyError(key, problem);
  return key;
}

/** Validates a list prefix: `""` (everything), `"cards/"`, `"cards/abc"`. */
export function assertValidPrefix(prefix: string): string {
  if (prefix.length > MAX_KEY_BYTES || !PREFIX.test(prefix)) {
    throw new InvalidKeyError(prefix, "not a valid key prefix");
  }
  return prefix;
}

/** Keeps ids and item keys inside the key charset (ids are UUIDs already; item keys come from users). */
function safeSegment(value: string | number, what: string): string {
  const s = String(value);
  if (!SEGMENT.test(s) || s.length > 200) throw new InvalidKeyError(s, `${what} is not key-safe`);
  return s;
}

const EXTENSION = /^[a-z0-9]{1,8}$/;

function safeExtension(ext: string): string {
  const e = ext.replace(/^\./, "").toLowerCase();
  if (!EXTENSION.test(e)) throw new InvalidKeyError(ext, "extension must be 1-8 of [a-z0-9]");
  return e;
}

/** `cards/<id>-<version>-<ts>.png` — a new key per render, so each versioned URL is immutable. */
export function cardImageKey(cardId: string, version: number, ts: number): string {
  return `cards/${safeSegment(cardId, "card id")}-${version}-${ts}.png`;
}

/** The prefix every rendered image of one card shares (for deleting older versions). */
export function cardImagePrefix(cardId: string): string {
  return `cards/${safeSegment(cardId, "card id")}-`;
}

/** `generations/<jobId>/<itemKey>-<n>.<ext>` */
export function generationKey(jobId: string, itemKey: string, n: number, ext: string): string {
  return `generations/${safeSegment(jobId, "job id")}/${safeSegment(itemKey, "item key")}-${n}.${safeExtension(ext)}`;
}

/** `generations/<jobId>/<itemKey>-<n>.thumb.webp` — beside its image, so a job's prefix covers both. */
export function generationThumbnailKey(jobId: string, itemKey: string, n: number): string {
  return `generations/${safeSegment(jobId, "job id")}/${safeSegment(itemKey, "item key")}-${n}.thumb.webp`;
}

/** The prefix of every object a job produced. */
export function generationPrefix(jobId: string): string {
  return `generations/${safeSegment(jobId, "job id")}/`;
}
