import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { inflateSync } from "node:zlib";
import type { Font, FontWeight } from "satori";

/** The family every template uses. */
export const FONT_FAMILY = "Inter";

/** Weights the templates use; each is loaded for every subset below. */
export const FONT_WEIGHTS: readonly FontWeight[] = [400, 600, 800];

// Inter's fontsource subsets cover Latin, Cyrillic, Greek and Vietnamese. Satori falls back through every
// loaded font for a glyph the named family lacks, but keeps only one font per name and weight, so each subset
// gets its own name. WOFF rather than WOFF2 skips a decompression step.
const SUBSETS = ["latin", "latin-ext", "cyrillic", "cyrillic-ext", "greek", "greek-ext", "vietnamese"];

function subsetName(subset: string): string {
  return subset === "latin" ? FONT_FAMILY : `${FONT_FAMILY} ${subset}`;
}

function fontsDir(): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve("@fontsource/inter/package.json")), "files");
}

/**
 * Reads the font files. Satori caches its parsed fonts per array identity, so callers load once per worker
 * and pass the same array to every render.
 */
export function loadFonts(weights: readonly FontWeight[] = FONT_WEIGHTS): Font[] {
  const dir = fontsDir();
  return weights.flatMap((weight) =>
    SUBSETS.map((subset) => ({
      name: subsetName(subset),
      data: readFileSync(join(dir, `inter-${subset}-${weight}-normal.woff`)),
      weight,
      style: "normal" as const,
    })),
  );
}

/**
 * Every code point some font in `fonts` has a glyph for (cmap formats 4 and 12 of WOFF or OpenType data): the
 * same test satori makes before it asks for an additional asset, so the renderer can tell which graphemes need
 * an emoji image without satori's own per-text-node grapheme pass.
 */
export function fontCoverage(fonts: readonly Font[]): Set<number> {
  const covered = new Set<number>();
  for (const font of fonts) {
    const data = font.data instanceof ArrayBuffer ? new Uint8Array(font.data) : font.data;
    cmapCodePoints(data, covered);
  }
  return covered;
}

function cmapCodePoints(font: Uint8Array, into: Set<number> = new Set()): Set<number> {
  const view = new DataView(font.buffer, font.byteOffset, font.byteLength);
  const table = findCmap(font, view);
  if (!table) return into;
  const cmap = new DataView(table.buffer, table.byteOffset, table.byteLength);
  const count = cmap.getUint16(2);
  for (let i = 0; i < count; i++) {
    const platform = cmap.getUint16(4 + i * 8);
    if (platform !== 0 && platform !== 3) continue;
    const offset = cmap.getUint32(4 + i * 8 + 4);
    const format = cmap.getUint16(offset);
    if (format === 4) format4(cmap, offset, into);
    else if (format === 12) format12(cmap, offset, into);
  }
  return into;
}

function findCmap(font: Uint8Array, view: DataView): Uint8Array | undefined {
  const CMAP = 0x636d6170;
  if (view.getUint32(0) === 0x774f4646) {
    // WOFF: 44-byte header, 20-byte directory entries (tag, offset, compressed length, original length, checksum)
    const tables = view.getUint16(12);
    for (let i = 0; i < tables; i++) {
      const entry = 44 + i * 20;
      if (view.getUint32(entry) !== CMAP) continue;
      const offset = view.getUint32(entry + 4);
      const compressed = view.getUint32(entry + 8);
      const raw = font.subarray(offset, offset + compressed);
      return compressed < view.getUint32(entry + 12) ? inflateSync(raw) : raw;
    }
    return undefined;
  }
  const tables = view.getUint16(4);
  for (let i = 0; i < tables; i++) {
    const entry = 12 + i * 16;
    if (view.getUint32(entry) !== CMAP) continue;
    const offset = view.getUint32(entry + 8);
    return font.subarray(offset, offset + view.getUint32(entry + 12));
  }
  return undefined;
}

function format4(cmap: DataView, offset: number, into: Set<number>): void {
  const segments = cmap.getUint16(offset + 6) / 2;
  const ends = offset + 14;
  const starts = ends + segments * 2 + 2;
  const deltas = starts + segments * 2;
  const rangeOffsets = deltas + segments * 2;
  for (let s = 0; s < segments; s++) {
    const start = cmap.getUint16(starts + s * 2);
    const end = cmap.getUint16(ends + s * 2);
    const delta = cmap.getUint16(deltas + s * 2);
    const rangeOffset = cmap.getUint16(rangeOffsets + s * 2);
    for (let c = start; c <= end && c !== 0xffff; c++) {
      let glyph: number;
      if (rangeOffset === 0) glyph = (c + delta) & 0xffff;
      else {
        const at = rangeOffsets + s * 2 + rangeOffset + (c - start) * 2;
        glyph = at + 2 <= cmap.byteLength ? cmap.getUint16(at) : 0;
        if (glyph !== 0) glyph = (glyph + delta) & 0xffff;
      }
      if (glyph !== 0) into.add(c);
    }
  }
}

function format12(cmap: DataView, offset: number, into: Set<number>): void {
  const groups = cmap.getUint32(offset + 12);
  for (let g = 0; g < groups; g++) {
    const group = offset + 16 + g * 12;
    const start = cmap.getUint32(group);
    const end = cmap.getUint32(group + 4);
    const first = cmap.getUint32(group + 8);
    for (let c = start; c <= end; c++) if (first + (c - start) !== 0) into.add(c);
  }
}
