import sharp from "sharp";
import { type GuardedFetchInit, guardedFetch } from "../net/url-guard";
import type { ImageResolver } from "./templates";

/**
 * Avatar resolution for cards: a user's avatar URL (https, or a data URL) becomes a small PNG data URL the
 * render worker can embed. Any failure yields `undefined`, and the template draws initials instead; a card is
 * never lost to a broken avatar.
 */

export interface AvatarResolverOptions {
  /** Guard options passed to guardedFetch (allowPrivate, allowedOrigins, lookup). */
  guard?: Pick<GuardedFetchInit, "allowPrivate" | "allowedOrigins" | "lookup" | "fetch">;
  /** Largest image accepted, fetched or inline. @defaultValue 2 MiB */
  maxBytes?: number;
  /** Time limit for one fetch. @defaultValue 3000 ms */
  timeoutMs?: number;
  /** Output edge in pixels (templates draw avatars at up to 64 px). @defaultValue 128 */
  size?: number;
  /** Cached URLs, least recently used evicted first. @defaultValue 500 */
  cacheSize?: number;
  /** How long a converted avatar is reused. @defaultValue 1 hour */
  ttlMs?: number;
  /** How long a failure is remembered, so a burst of renders does not refetch a dead URL. @defaultValue 60 s */
  failureTtlMs?: number;
  /** @defaultValue Date.now */
  now?: () => number;
}

const ALLOWED_FORMATS = new Set(["jpeg", "png", "webp", "gif", "avif", "heif"]);
// Refuses decompression bombs: a few KB of PNG can claim a 50k x 50k canvas.
const MAX_INPUT_PIXELS = 4096 * 4096;

class AvatarError extends Error {
  override name = "AvatarError";
}

interface Entry {
  value: string | undefined;
  expiresAt: number;
}

/** A Map kept in recency order: get moves an entry to the end, set evicts from the front. */
class Lru {
  readonly #entries = new Map<string, Entry>();
  constructor(readonly capacity: number) {}

  get(key: string, now: number): Entry | undefined {
    const entry = this.#entries.get(key);
    if (!entry) return undefined;
    this.#entries.delete(key);
    if (entry.expiresAt <= now) return undefined;
    this.#entries.set(key, entry);
    return entry;
  }

  set(key: string, entry: Entry): void {
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    if (this.#entries.size > this.capacity) this.#entries.delete(this.#entries.keys().next().value!);
  }
}

function decodeDataUrl(url: string, maxBytes: number): Uint8Array {
  const match = /^data:image\/[\w.+-]+;base64,/i.exec(url);
  if (!match) throw new AvatarError("only base64 image data URLs are accepted");
  const base64 = url.slice(match[0].length);
  if ((base64.length * 3) / 4 > maxBytes) throw new AvatarError("inline avatar too large");
  return Buffer.from(base64, "base64");
}

async function toPngDataUrl(bytes: Uint8Array, size: number): Promise<string> {
  const image = sharp(bytes, { limitInputPixels: MAX_INPUT_PIXELS, animated: false });
  const { format } = await image.metadata();
  // SVG is refused: librsvg would render attacker markup, including references to local files.
  if (!format || !ALLOWED_FORMATS.has(format)) throw new AvatarError(`unsupported avatar format ${format}`);
  const png = await image
    .rotate()
    .resize(size, size, { fit: "cover" })
    .flatten({ background: "#ffffff" })
    .png({ compressionLevel: 6 })
    .toBuffer();
  return `data:image/png;base64,${png.toString("base64")}`;
}

/**
 * Creates the resolver the card service passes to `prepareCardData`. It caches results (failures briefly) and
 * shares one fetch among concurrent requests for the same URL.
 */
export function createAvatarResolver(opts: AvatarResolverOptions = {}): ImageResolver {
  const maxBytes = opts.maxBytes ?? 2 * 1024 * 1024;
  const size = opts.size ?? 128;
  const now = opts.now ?? Date.now;
  const cache = new Lru(opts.cacheSize ?? 500);
  const inflight = new Map<string, Promise<string | undefined>>();

  async function load(url: string): Promise<string> {
    if (url.startsWith("data:")) return toPngDataUrl(decodeDataUrl(url, maxBytes), size);
    if (!url.startsWith("https://") && !url.startsWith("http://"))
      throw new AvatarError("not an http(s) URL");
    const res = await guardedFetch(url, {
      ...opts.guard,
      maxBytes,
      timeoutMs: opts.timeoutMs ?? 3000,
      headers: { accept: "image/avif,image/webp,image/png,image/jpeg,image/*;q=0.8" },
    });
    if (res.status !== 200) throw new AvatarError(`avatar fetch returned ${res.status}`);
    return toPngDataUrl(res.bytes, size);
  }

  async function settle(key: string, url: string): Promise<string | undefined> {
    let value: string | undefined;
    try {
      value = await load(url);
    } catch {
      value = undefined;
    }
    const ttl = value === undefined ? (opts.failureTtlMs ?? 60_000) : (opts.ttlMs ?? 3_600_000);
    cache.set(key, { value, expiresAt: now() + ttl });
    return value;
  }

  return async (url) => {
    if (!url) return undefined;
    // Data URLs can be megabytes; key them by a hash rather than keeping the text twice.
    const key = url.startsWith("data:") ? `data:${Bun.hash(url).toString(36)}` : url;
    const cached = cache.get(key, now());
    if (cached) return cached.value;
    const pending = inflight.get(key) ?? settle(key, url).finally(() => inflight.delete(key));
    inflight.set(key, pending);
    return pending;
  };
}
