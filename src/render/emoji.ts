import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Resvg } from "./resvg";

/** Looks up an emoji grapheme and returns an SVG data URL, or undefined when there is no image for it. */
export type EmojiLoader = (grapheme: string) => string | undefined;

const ZWJ = 0x200d;
const VS16 = 0xfe0f;

/**
 * Twemoji file names: code points in hex joined by "-", with the emoji presentation selector (U+FE0F) dropped
 * unless the sequence has a zero-width joiner. Both spellings are tried, since the set is not fully consistent.
 */
export function twemojiNames(grapheme: string): string[] {
  const points = [...grapheme].map((c) => c.codePointAt(0)!);
  const full = points.map((p) => p.toString(16)).join("-");
  const stripped = points
    .filter((p) => p !== VS16)
    .map((p) => p.toString(16))
    .join("-");
  return points.includes(ZWJ) ? [full, stripped] : [stripped, full];
}

function twemojiDir(): string {
  const require = createRequire(import.meta.url);
  return dirname(require.resolve("@twemoji/svg/package.json"));
}

function readSvg(dir: string, names: string[]): string | undefined {
  for (const name of names) {
    try {
      return readFileSync(join(dir, `${name}.svg`), "utf8");
    } catch {
      // no file under this spelling; try the next
    }
  }
  return undefined;
}

// Bounds the memo: the emoji set is finite but user text can spell endless unknown sequences.
const MAX_CACHED = 4096;

/**
 * Emoji are embedded as PNG: resvg draws a nested SVG image through a canvas-sized layer, which cost ~10 ms
 * per emoji on a 1200x800 card, while a small bitmap costs almost nothing.
 */
function toPngDataUrl(svg: string, size: number): string {
  const png = new Resvg(svg, { fitTo: { mode: "width", value: size }, font: { loadSystemFonts: false } })
    .render()
    .asPng();
  return `data:image/png;base64,${png.toString("base64")}`;
}

/**
 * Emoji images from the @twemoji/svg package (no network), rasterised at `size` px and memoised per grapheme,
 * misses included. 96 px keeps emoji sharp up to the largest text size the templates use.
 */
export function createEmojiLoader(dir: string = twemojiDir(), size = 96): EmojiLoader {
  const cache = new Map<string, string | undefined>();
  return (grapheme) => {
    if (cache.has(grapheme)) return cache.get(grapheme);
    if (cache.size >= MAX_CACHED) cache.clear();
    const svg = readSvg(dir, twemojiNames(grapheme));
    const url = svg === undefined ? undefined : toPngDataUrl(svg, size);
    cache.set(grapheme, url);
    return url;
  };
}
