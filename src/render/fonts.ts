import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
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
