/**
 * Byte and size helpers shared by provider adapters (re-exported from ./http, import from either).
 *
 * - `sniffMime(bytes)` → "image/png" | "image/jpeg" | "image/webp" | "image/gif" | "image/avif" | undefined
 * - `base64ToBytes(b64)` accepts plain base64 or a `data:<mime>;base64,` URL.
 * - `bytesToBase64(bytes)`, `toDataUrl(image)` for providers that take inline images.
 * - `imageFromBase64(provider, b64, mimeHint?)` → `{bytes, mime}`; throws `provider_bad_response` if not an image.
 * - `parseSize("1536x1024")` → `{width: 1536, height: 1024}`; throws `provider_invalid_request` on junk.
 * - `sizeToAspectRatio("1536x1024")` → "3:2"; with `supported` it picks the closest allowed ratio.
 * - `toBlob(image)` wraps an InputImage for multipart bodies.
 */
import { ProviderError } from "./errors";
import type { InputImage } from "./types";

export type ImageMime = "image/png" | "image/jpeg" | "image/webp" | "image/gif" | "image/avif";

function startsWith(bytes: Uint8Array, sig: number[], offset = 0): boolean {
  if (bytes.length < offset + sig.length) return false;
  return sig.every((b, i) => bytes[offset + i] === b);
}

const ascii = (s: string): number[] => [...s].map((c) => c.charCodeAt(0));

/** Identifies an image by its magic bytes; providers often send `application/octet-stream` or nothing. */
export function sniffMime(bytes: Uint8Array): ImageMime | undefined {
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return "image/png";
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) return "image/jpeg";
  if (startsWith(bytes, ascii("RIFF")) && startsWith(bytes, ascii("WEBP"), 8)) return "image/webp";
  if (startsWith(bytes, ascii("GIF87a")) || startsWith(bytes, ascii("GIF89a"))) return "image/gif";
  if (startsWith(bytes, ascii("ftypavif"), 4) || startsWith(bytes, ascii("ftypavis"), 4)) return "image/avif";
  return undefined;
}

export function base64ToBytes(b64: string): Uint8Array {
  const comma = b64.startsWith("data:") ? b64.indexOf(",") : -1;
  const raw = comma >= 0 ? b64.slice(comma + 1) : b64;
  const buf = Buffer.from(raw, "base64");
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

export function bytesToBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

export function toDataUrl(image: InputImage): string {
  return `data:${image.mime};base64,${bytesToBase64(image.bytes)}`;
}

export function toBlob(image: InputImage): Blob {
  return new Blob([image.bytes as Uint8Array<ArrayBuffer>], { type: image.mime });
}

/** Decodes a base64 image from a provider response; the sniffed type wins over the provider's label. */
export function imageFromBase64(
  provider: string,
  b64: string,
  mimeHint?: string,
): { bytes: Uint8Array; mime: string } {
  const bytes = base64ToBytes(b64);
  const mime = sniffMime(bytes) ?? (mimeHint?.startsWith("image/") ? mimeHint : undefined);
  if (!mime || bytes.length === 0) {
    throw new ProviderError("bad_response", `${provider}: response held base64 data that is not an image`, {
      details: { provider },
    });
  }
  return { bytes, mime };
}

export function parseSize(size: string): { width: number; height: number } {
  const m = /^\s*(\d{1,5})\s*[xX*×]\s*(\d{1,5})\s*$/.exec(size);
  const width = Number(m?.[1]);
  const height = Number(m?.[2]);
  if (!m || width <= 0 || height <= 0) {
    throw new ProviderError("invalid_request", `invalid size "${size}", expected WIDTHxHEIGHT`);
  }
  return { width, height };
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

function ratioValue(ratio: string): number {
  const [w, h] = ratio.split(":").map(Number);
  return (w ?? 1) / (h ?? 1);
}

/**
 * `"1536x1024"` → `"3:2"`. With `supported` (e.g. Gemini's `["1:1","3:4","4:3","9:16","16:9"]`) the closest
 * allowed ratio is returned, compared on a log scale so 2:1 and 1:2 are equally far from 1:1.
 */
export function sizeToAspectRatio(size: string, supported?: readonly string[]): string {
  const { width, height } = parseSize(size);
  const d = gcd(width, height);
  const exact = `${width / d}:${height / d}`;
  if (!supported || supported.length === 0 || supported.includes(exact)) return exact;
  const target = Math.log(width / height);
  let best = supported[0] ?? exact;
  for (const r of supported) {
    if (Math.abs(Math.log(ratioValue(r)) - target) < Math.abs(Math.log(ratioValue(best)) - target)) best = r;
  }
  return best;
}
