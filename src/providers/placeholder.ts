/**
 * `placeholder`: a local, deterministic image generator for development, tests and offline demos.
 * Each image is a gradient with a few shapes whose colours come from a hash of prompt + seed, with
 * "PLACEHOLDER" and the prompt written on it. Same prompt, seed, size → identical PNG bytes.
 * With an input image (an edit) the input, cropped to the size, is the background instead.
 *
 * Prompt triggers (for demos and tests; case-insensitive, anywhere in the prompt):
 * - `[unsafe]`    → `content_policy` (refundable: false), like a safety rejection.
 * - `[fail]`      → `transient` (`provider_unavailable`), every time.
 * - `[fail-once]` → `transient` (`provider_unavailable`) on the first call per prompt in this process,
 *                   then succeeds (shows a retry working).
 * - `[slow]`      → waits `slowMs` more before answering (abortable).
 */
import { createHash } from "node:crypto";
import sharp from "sharp";
import { ProviderError } from "./errors";
import { contentPolicyError, parseSize, sleep } from "./http";
import type { GeneratedImage, GenerateRequest, InputImage, Provider, ProviderInfo } from "./types";

export type PlaceholderOptions = {
  /** Simulated latency per call, honouring the abort signal. @defaultValue 0 */
  latencyMs?: number;
  /** Extra latency for prompts containing `[slow]`. @defaultValue 3000 */
  slowMs?: number;
  /** Largest side accepted, so a typo cannot allocate a gigapixel canvas. @defaultValue 4096 */
  maxSide?: number;
};

const NAME = "placeholder";

function hashBytes(text: string): Buffer {
  return createHash("sha256").update(text).digest();
}

/** A stable 32-bit seed from the prompt, used when the request gives none. */
function promptSeed(prompt: string): number {
  return hashBytes(prompt).readUInt32BE(0);
}

function hsl(h: Buffer, i: number, light: number): string {
  const hue = Math.round(((h[i] ?? 0) / 255) * 360);
  const sat = 45 + Math.round(((h[i + 1] ?? 0) / 255) * 40);
  return `hsl(${hue},${sat}%,${light}%)`;
}

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Greedy word wrap into at most `maxLines` lines of `width` characters; the last line gets an ellipsis. */
function wrap(text: string, width: number, maxLines: number): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/).filter(Boolean)) {
    const next = line ? `${line} ${word}` : word;
    if (next.length <= width) {
      line = next;
      continue;
    }
    if (line) lines.push(line);
    line = word.slice(0, width);
    if (lines.length === maxLines) break;
  }
  if (line && lines.length < maxLines) lines.push(line);
  const truncated = lines.join(" ").length < text.trim().replace(/\s+/g, " ").length;
  if (truncated && lines.length > 0) lines[lines.length - 1] = `${lines.at(-1)?.slice(0, width - 1)}…`;
  return lines.slice(0, maxLines);
}

function shapes(h: Buffer, w: number, ht: number): string {
  const out: string[] = [];
  for (let i = 0; i < 5; i++) {
    const b = (k: number) => (h[(8 + i * 4 + k) % h.length] ?? 0) / 255;
    const cx = Math.round(b(0) * w);
    const cy = Math.round(b(1) * ht);
    const r = Math.round((0.08 + b(2) * 0.22) * Math.min(w, ht));
    out.push(`<circle cx="${cx}" cy="${cy}" r="${r}" fill="${hsl(h, 20 + i, 70)}" fill-opacity="0.35"/>`);
  }
  return out.join("");
}

function overlaySvg(prompt: string, seed: number, w: number, ht: number, withBackground: boolean): string {
  const h = hashBytes(`${seed}\u0000${prompt}`);
  const fontSize = Math.max(10, Math.round(Math.min(w, ht) / 24));
  const title = Math.max(12, Math.round(Math.min(w, ht) / 10));
  const lines = wrap(prompt, Math.max(8, Math.floor((w * 0.85) / (fontSize * 0.6))), 4);
  const textY = Math.round(ht / 2 + title * 0.9);
  const text = lines
    .map((l, i) => `<tspan x="50%" y="${textY + i * Math.round(fontSize * 1.3)}">${escapeXml(l)}</tspan>`)
    .join("");
  const background = withBackground
    ? `<defs><linearGradient id="g" x1="0" y1="0" x2="1" y2="1"><stop offset="0" stop-color="${hsl(h, 0, 55)}"/><stop offset="1" stop-color="${hsl(h, 4, 30)}"/></linearGradient></defs><rect width="100%" height="100%" fill="url(#g)"/>${shapes(h, w, ht)}`
    : `<rect width="100%" height="100%" fill="black" fill-opacity="0.25"/>`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${w}" height="${ht}">${background}<g font-family="sans-serif" fill="white" text-anchor="middle"><text x="50%" y="${Math.round(ht / 2 - title * 0.2)}" font-size="${title}" font-weight="bold" letter-spacing="2">PLACEHOLDER</text><text font-size="${fontSize}">${text}</text><text x="50%" y="${ht - fontSize}" font-size="${Math.round(fontSize * 0.8)}" fill-opacity="0.8">seed ${seed}</text></g></svg>`;
}

async function render(
  prompt: string,
  seed: number,
  w: number,
  ht: number,
  input?: InputImage,
): Promise<Uint8Array> {
  const svg = Buffer.from(overlaySvg(prompt, seed, w, ht, !input));
  const base = input
    ? sharp(input.bytes)
        .resize(w, ht, { fit: "cover" })
        .composite([{ input: svg }])
    : sharp(svg);
  // Fixed encoder settings and no metadata keep the bytes identical run to run.
  return new Uint8Array(await base.png({ compressionLevel: 6, palette: false }).toBuffer());
}

function triggers(prompt: string) {
  const p = prompt.toLowerCase();
  return {
    unsafe: p.includes("[unsafe]"),
    fail: p.includes("[fail]"),
    failOnce: p.includes("[fail-once]"),
    slow: p.includes("[slow]"),
  };
}

function transient(message: string): ProviderError {
  return new ProviderError("transient", `${NAME}: ${message}`, {
    details: { provider: NAME },
  });
}

export function createPlaceholderProvider(opts: PlaceholderOptions = {}): Provider {
  const failedOnce = new Set<string>();
  const maxSide = opts.maxSide ?? 4096;
  const info: ProviderInfo = {
    name: NAME,
    defaultModel: NAME,
    models: [NAME],
    supportsEdits: true,
    capabilities: {
      models: {},
      anyModel: {
        input: "both",
        maxInputImages: 1,
        mask: true,
        sizes: { kind: "range", min: 1, max: maxSide, step: 1 },
        imagesPerCall: 4,
        negativePrompt: "native",
        seed: true,
        outputFormats: ["png"],
      },
    },
    // Rendering is CPU work on this machine: a few at a time keeps the event loop responsive.
    limits: { concurrency: 4, rpm: 0 },
  };

  async function generate(req: GenerateRequest, ctx: { signal: AbortSignal }): Promise<GeneratedImage[]> {
    const t = triggers(req.prompt);
    const wait = (opts.latencyMs ?? 0) + (t.slow ? (opts.slowMs ?? 3000) : 0);
    if (wait > 0) await sleep(wait, ctx.signal);
    if (ctx.signal.aborted) throw ctx.signal.reason;
    if (t.unsafe) throw contentPolicyError(NAME, "prompt contains [unsafe]");
    if (t.fail) throw transient("simulated failure ([fail])");
    if (t.failOnce && !failedOnce.has(req.prompt)) {
      failedOnce.add(req.prompt);
      throw transient("simulated one-off failure ([fail-once])");
    }
    const { width, height } = parseSize(req.size);
    if (width > maxSide || height > maxSide) {
      throw new ProviderError("invalid_request", `${NAME}: size ${req.size} exceeds ${maxSide}px per side`, {
        details: { provider: NAME },
      });
    }
    const seed = req.seed ?? promptSeed(req.prompt);
    const images: GeneratedImage[] = [];
    for (let i = 0; i < Math.max(1, req.n); i++) {
      if (ctx.signal.aborted) throw ctx.signal.reason;
      const s = (seed + i) >>> 0;
      images.push({
        bytes: await render(req.prompt, s, width, height, req.images?.[0]),
        mime: "image/png",
        seed: s,
      });
    }
    return images;
  }

  return { info, generate };
}
