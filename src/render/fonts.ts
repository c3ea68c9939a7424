import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { FontWeight } from "satori";

/** The family every template uses. */
export const FONT_FAMILY = "Inter";

/** Weights the templates use; each is loaded for every subset below, and for every fallback face used. */
export const FONT_WEIGHTS: readonly FontWeight[] = [400, 600, 800];

/** Inclusive code point ranges, as in CSS `unicode-range`. */
export type CodepointRange = [number, number];

/**
 * One font file: a subset of a family at one weight, with the code points it serves. `name` is unique per
 * file (satori keeps one font per name and weight, and falls back through all of them glyph by glyph);
 * `family` is what the file belongs to (takumi registers each subset under its family with its ranges).
 */
export interface FontFace {
  name: string;
  family: string;
  weight: FontWeight;
  style: "normal";
  data: Buffer;
  ranges: CodepointRange[];
}

const require = createRequire(import.meta.url);

/**
 * Where each font package is. Spelled out, one literal `require.resolve` each: the single-executable build
 * (scripts/build.ts) swaps exactly these calls for the path of its embedded copy.
 */
const PACKAGES = {
  inter: () => require.resolve("@fontsource/inter/package.json"),
  "noto-sans-jp": () => require.resolve("@fontsource/noto-sans-jp/package.json"),
  "noto-sans-kr": () => require.resolve("@fontsource/noto-sans-kr/package.json"),
  "noto-sans-sc": () => require.resolve("@fontsource/noto-sans-sc/package.json"),
  "noto-sans-tc": () => require.resolve("@fontsource/noto-sans-tc/package.json"),
  "noto-kufi-arabic": () => require.resolve("@fontsource/noto-kufi-arabic/package.json"),
  "noto-sans-hebrew": () => require.resolve("@fontsource/noto-sans-hebrew/package.json"),
  "noto-sans-devanagari": () => require.resolve("@fontsource/noto-sans-devanagari/package.json"),
  "noto-sans-thai": () => require.resolve("@fontsource/noto-sans-thai/package.json"),
} as const;

type FontPackage = keyof typeof PACKAGES;

function packageDir(pkg: FontPackage): string {
  return dirname(PACKAGES[pkg]());
}

/** Parses a fontsource `unicode-range` list: "U+0600-06FF,U+20". */
function parseRanges(list: string): CodepointRange[] {
  return list.split(",").map((part) => {
    const [from, to] = part.trim().replace(/^U\+/i, "").split("-");
    const start = Number.parseInt(from!, 16);
    return [start, to === undefined ? start : Number.parseInt(to, 16)];
  });
}

function inRanges(cp: number, ranges: readonly CodepointRange[]): boolean {
  for (const [from, to] of ranges) if (cp >= from && cp <= to) return true;
  return false;
}

/** A fontsource package's subsets: name ("latin", "[12]") → ranges, from its unicode.json. */
function subsetsOf(pkg: FontPackage): Map<string, CodepointRange[]> {
  const json = JSON.parse(readFileSync(join(packageDir(pkg), "unicode.json"), "utf8")) as Record<
    string,
    string
  >;
  return new Map(Object.entries(json).map(([subset, list]) => [subset, parseRanges(list)]));
}

/** The file of one subset at one weight; CJK subsets are numbered slices ("[12]" → "12"). */
function subsetFile(pkg: FontPackage, subset: string, weight: number): string {
  return join(
    packageDir(pkg),
    "files",
    `${pkg}-${subset.replace(/^\[(\d+)\]$/, "$1")}-${weight}-normal.woff`,
  );
}

// Inter's fontsource subsets cover Latin, Cyrillic, Greek and Vietnamese. WOFF rather than WOFF2: satori
// reads TTF, OTF and WOFF only, and WOFF skips a decompression step.
const INTER_SUBSETS = ["latin", "latin-ext", "cyrillic", "cyrillic-ext", "greek", "greek-ext", "vietnamese"];

/**
 * Reads Inter, the base font. Satori caches its parsed fonts per array identity, so callers load once per
 * worker and pass the same array to every render.
 */
export function loadFonts(weights: readonly FontWeight[] = FONT_WEIGHTS): FontFace[] {
  const subsets = subsetsOf("inter");
  return weights.flatMap((weight) =>
    INTER_SUBSETS.map((subset) => ({
      name: subset === "latin" ? FONT_FAMILY : `${FONT_FAMILY} ${subset}`,
      family: FONT_FAMILY,
      weight,
      style: "normal" as const,
      data: readFileSync(subsetFile("inter", subset, weight)),
      ranges: subsets.get(subset) ?? [],
    })),
  );
}

interface FallbackFamily {
  family: string;
  pkg: FontPackage;
  /** Text with these characters prefers this family for the code points several families share (Han). */
  prefer?: RegExp;
}

/**
 * Scripts Inter lacks, each from a Noto family on npm. Han characters are in all four CJK families with
 * regional glyph shapes: kana makes the text Japanese and Hangul Korean; otherwise Simplified Chinese comes
 * first. Hebrew and Arabic are laid out right to left by the engines' shaping. Arabic is Noto Kufi, not Noto
 * Sans Arabic: satori lost Noto Sans Arabic's dots and hamzas on ة and أ in bold, which it draws from Kufi
 * (it still misplaces a few, e.g. on ذ and a final ي; takumi draws both fonts correctly), and Kufi's geometric
 * shapes sit well beside Inter.
 */
const FALLBACKS: readonly FallbackFamily[] = [
  { family: "Noto Sans JP", pkg: "noto-sans-jp", prefer: /[\p{Script=Hiragana}\p{Script=Katakana}]/u },
  { family: "Noto Sans KR", pkg: "noto-sans-kr", prefer: /\p{Script=Hangul}/u },
  { family: "Noto Sans SC", pkg: "noto-sans-sc" },
  { family: "Noto Sans TC", pkg: "noto-sans-tc" },
  { family: "Noto Kufi Arabic", pkg: "noto-kufi-arabic" },
  { family: "Noto Sans Hebrew", pkg: "noto-sans-hebrew" },
  { family: "Noto Sans Devanagari", pkg: "noto-sans-devanagari" },
  { family: "Noto Sans Thai", pkg: "noto-sans-thai" },
];

const CJK_ORDER = ["Noto Sans SC", "Noto Sans TC", "Noto Sans JP", "Noto Sans KR"];

/** Subsets Inter already covers are never loaded from a fallback package. */
const COVERED_BY_BASE = new Set(INTER_SUBSETS);

/**
 * Emoji are drawn as images, controls and joiners need no glyph, and a combining mark takes the font of the
 * letter it sits on.
 */
const NO_GLYPH = /\p{Extended_Pictographic}|\p{Emoji_Component}|\p{Cc}|\p{Cf}|\p{Zs}|\p{Mn}/u;

/**
 * Fallback fonts by script, loaded on demand: the first card with Japanese text reads the few Noto Sans JP
 * slices its characters fall in (each ~50 KB per weight), and later cards reuse them. Create one per render
 * thread; the files it has read stay cached there (bounded by the packages' size).
 */
export class FallbackFonts {
  readonly #weights: readonly FontWeight[];
  readonly #base: CodepointRange[];
  /** Subset tables, read when a family is first needed. */
  readonly #subsets = new Map<string, Map<string, CodepointRange[]>>();
  readonly #faces = new Map<string, FontFace>();

  constructor(base: readonly FontFace[], weights: readonly FontWeight[] = FONT_WEIGHTS) {
    this.#weights = weights;
    this.#base = base.flatMap((f) => f.ranges);
  }

  /**
   * The faces `text` needs beyond the base font, every weight of each; the same objects on every call. They
   * come in one order for one set of faces, whatever the order of the text: families in the text's order of
   * preference (the first that has a character draws it), then each family's slices as its package lists
   * them. Engines take metrics from the position of a font in their list (satori lays an emoji line out with
   * the last font's), so a set of faces in another order could lay out differently.
   */
  facesFor(text: string): FontFace[] {
    const order = this.#orderFor(text);
    const wanted = new Map<FallbackFamily, Set<string>>();
    const seen = new Set<number>();
    for (const char of text) {
      const cp = char.codePointAt(0)!;
      if (seen.has(cp)) continue;
      seen.add(cp);
      if (NO_GLYPH.test(char) || inRanges(cp, this.#base)) continue;
      for (const family of order) {
        const subset = this.#sliceFor(family, cp);
        if (subset === undefined) continue;
        const subsets = wanted.get(family) ?? new Set();
        wanted.set(family, subsets.add(subset));
        break;
      }
    }
    return order.flatMap((family) => {
      const subsets = wanted.get(family);
      if (!subsets) return [];
      return [...this.#subsetsOf(family)]
        .filter(([subset]) => subsets.has(subset))
        .flatMap(([subset, ranges]) =>
          this.#weights.map((weight) => this.#face(family, subset, ranges, weight)),
        );
    });
  }

  /**
   * Families that claim the text's language first, then the single-script families (the CJK slices also
   * hold some of their letters, in other shapes), then the CJK families, Chinese first.
   */
  #orderFor(text: string): FallbackFamily[] {
    const preferred = FALLBACKS.filter((f) => f.prefer?.test(text));
    const cjk = CJK_ORDER.map((name) => FALLBACKS.find((f) => f.family === name)!);
    const others = FALLBACKS.filter((f) => !cjk.includes(f));
    return [...new Set([...preferred, ...others, ...cjk])];
  }

  /** The family's slices that serve scripts the base font lacks, read when the family is first needed. */
  #subsetsOf(family: FallbackFamily): Map<string, CodepointRange[]> {
    let subsets = this.#subsets.get(family.pkg);
    if (!subsets) {
      subsets = new Map([...subsetsOf(family.pkg)].filter(([name]) => !COVERED_BY_BASE.has(name)));
      this.#subsets.set(family.pkg, subsets);
    }
    return subsets;
  }

  #sliceFor(family: FallbackFamily, cp: number): string | undefined {
    for (const [subset, ranges] of this.#subsetsOf(family)) if (inRanges(cp, ranges)) return subset;
    return undefined;
  }

  #face(family: FallbackFamily, subset: string, ranges: CodepointRange[], weight: FontWeight): FontFace {
    const key = `${family.pkg}/${subset}/${weight}`;
    let face = this.#faces.get(key);
    if (!face) {
      face = {
        name: `${family.family} ${subset}`,
        family: family.family,
        weight,
        style: "normal",
        data: readFileSync(subsetFile(family.pkg, subset, weight)),
        ranges,
      };
      this.#faces.set(key, face);
    }
    return face;
  }
}
