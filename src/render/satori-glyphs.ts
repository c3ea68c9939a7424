/**
 * Satori turns every run of text into SVG path data on every render: it walks each glyph's outline and prints
 * its coordinates (about a fifth of its layout time on the poll card). A live card re-renders with the same
 * question, names and labels, so those runs come out byte for byte the same each time. This keeps the path
 * data of recent runs, per font loader, and hands it back when a run repeats.
 *
 * Satori does not export its font loader, so the cache is installed on the loader's class, reached through
 * the loader satori keeps for our `fonts` array (see {@link installGlyphCache}). The cache key holds every
 * input of satori's `getSVG` (the text, its font selection, size, position, spacing, features and direction)
 * and the loader's font set: adding fonts starts a new set, as satori then empties its own shaping cache.
 * The same wrapper keeps the font engines satori asks its loader for, for the length of a card (see
 * `startCard`).
 */

/** What satori's `getSVG` returns for a run of text. */
interface GlyphPaths {
  path: string;
  boldPath: string;
  boxes: unknown[];
}

interface RunStyle {
  fontSize: number;
  top: number;
  left: number;
  letterSpacing?: number;
  wordSpacing?: number;
  fontFeatureSettings?: string;
  direction?: string;
}

type GetSvg = (content: string, style: RunStyle, band?: unknown) => GlyphPaths;

type Metric = (s?: string, resolvedFont?: unknown) => number;

interface FontEngine {
  getSVG: GetSvg;
  height: Metric;
  baseline: Metric;
}

interface EngineStyle {
  fontFamily?: string | string[];
  fontWeight?: string | number;
  fontStyle?: string;
  fontSynthesis?: unknown;
  fontSynthesisWeight?: unknown;
  fontSynthesisStyle?: unknown;
}

interface FontLoader {
  getEngine(fontSize: number, lineHeight: unknown, style: EngineStyle, locale?: string): FontEngine;
  addFonts(fonts: unknown[]): void;
}

/**
 * Path data kept per thread, over every font loader: a few cards' worth (the poll card has ~20 runs, ~125 KB of
 * path data). One budget for the thread, not one per loader: a worker has a loader per set of scripts.
 */
const GLYPH_CACHE_MAX_RUNS = 2000;
const GLYPH_CACHE_MAX_CHARS = 8_000_000;

/** Runs served from the caches and runs satori drew, over every loader of this thread. */
const counts = { hits: 0, misses: 0, enginesAsked: 0, enginesMade: 0 };

class RunCache {
  readonly #runs = new Map<string, GlyphPaths>();
  #chars = 0;

  get(key: string): GlyphPaths | undefined {
    const paths = this.#runs.get(key);
    if (!paths) {
      counts.misses++;
      return undefined;
    }
    counts.hits++;
    // Moved to the end: a Map iterates in insertion order, so the first entry is the least recently used.
    this.#runs.delete(key);
    this.#runs.set(key, paths);
    return paths;
  }

  set(key: string, paths: GlyphPaths): void {
    this.#runs.set(key, paths);
    this.#chars += paths.path.length + paths.boldPath.length;
    for (const [oldest, old] of this.#runs) {
      if (this.#runs.size <= GLYPH_CACHE_MAX_RUNS && this.#chars <= GLYPH_CACHE_MAX_CHARS) break;
      this.#runs.delete(oldest);
      this.#chars -= old.path.length + old.boldPath.length;
    }
  }
}

const runs = new RunCache();
const patched = new WeakSet<object>();

/**
 * The font set a loader holds, as a number in the cache keys: a new one whenever fonts are added, so runs
 * drawn with its earlier fonts are never served again (they age out of the cache).
 */
const fontSets = new WeakMap<object, number>();
let lastFontSet = 0;

function fontSetOf(loader: object): number {
  let id = fontSets.get(loader);
  if (id === undefined) {
    id = ++lastFontSet;
    fontSets.set(loader, id);
  }
  return id;
}

/** The inputs of satori's font resolution and synthesis (bold, italic) for an engine. */
function fontKey(style: EngineStyle, locale: string | undefined): string {
  const family = Array.isArray(style.fontFamily) ? style.fontFamily.join(",") : style.fontFamily;
  return `${family}|${style.fontWeight}|${style.fontStyle}|${locale}|${style.fontSynthesis}|${style.fontSynthesisWeight}|${style.fontSynthesisStyle}`;
}

function runKey(font: string, content: string, s: RunStyle): string {
  return `${font}|${s.fontSize}|${s.top}|${s.left}|${s.letterSpacing}|${s.wordSpacing}|${s.fontFeatureSettings}|${s.direction}|${content}`;
}

/**
 * `s` as one contiguous string. Satori builds path data a coordinate at a time with `+=`, which JavaScriptCore
 * keeps as a rope of thousands of pieces; satori then joins each card's runs into bigger strings, and every
 * render walked every piece of the cached ropes again (as much as the drawing saved). Reading a character
 * makes JavaScriptCore flatten a rope in place, once.
 */
function flat(s: string): string {
  s.charCodeAt(0);
  return s;
}

/**
 * Font engines kept per loader for one card. Satori builds a new engine on every `getEngine` call (27 calls
 * for the poll card, 8 distinct): it copies the element's whole style to read three properties from it and
 * resolves the font list anew. An engine is a function of its arguments and of the loader's fonts, so one per
 * distinct argument list serves a card's calls. Not longer: an engine remembers which font drew a string by
 * its first UTF-16 unit, so for text starting with an astral character (an emoji, a rare CJK ideograph) the
 * first string it met decides, and that must be a string of this card, not of an earlier one.
 */
const engines = new WeakMap<object, { card: number; byArgs: Map<string, FontEngine> }>();
let card = 0;

/** Starts a card: engines made for earlier cards are not used again. Call before each satori call. */
export function startCard(): void {
  card++;
}

function enginesOf(loader: object): Map<string, FontEngine> {
  let kept = engines.get(loader);
  if (kept?.card !== card) {
    kept = { card, byArgs: new Map() };
    engines.set(loader, kept);
  }
  return kept.byArgs;
}

/**
 * A line metric remembered by the first UTF-16 unit of the text it is asked about, which is how the engine
 * picks the font it takes the metric from (its own cache of fonts is keyed the same way). A card asks ~350
 * times, and each answer built a list of every font again before looking in that cache.
 */
function byFirstUnit(metric: Metric): Metric {
  const known = new Map<number, number>();
  return (s, resolvedFont) => {
    if (resolvedFont !== undefined) return metric(s, resolvedFont);
    const unit = s === undefined ? -1 : s.charCodeAt(0);
    let value = known.get(unit);
    if (value === undefined) {
      value = metric(s);
      known.set(unit, value);
    }
    return value;
  };
}

function patch(proto: FontLoader): void {
  const { getEngine, addFonts } = proto;
  proto.getEngine = function (this: FontLoader, fontSize, lineHeight, style, locale) {
    counts.enginesAsked++;
    const font = fontKey(style, locale);
    const known = enginesOf(this);
    const engineKey = `${fontSize}|${lineHeight}|${font}`;
    const kept = known.get(engineKey);
    if (kept) return kept;
    const engine = getEngine.call(this, fontSize, lineHeight, style, locale);
    counts.enginesMade++;
    const getSVG = engine.getSVG;
    engine.getSVG = (content, runStyle, band) => {
      // Underline skip-ink boxes are rare and are computed from the glyphs: not cached.
      if (band) return getSVG(content, runStyle, band);
      const key = `${fontSetOf(this)}|${runKey(font, content, runStyle)}`;
      const cached = runs.get(key);
      if (cached) return { path: cached.path, boldPath: cached.boldPath, boxes: [] };
      const paths = getSVG(content, runStyle, band);
      runs.set(key, { path: flat(paths.path), boldPath: flat(paths.boldPath), boxes: [] });
      return paths;
    };
    engine.height = byFirstUnit(engine.height);
    engine.baseline = byFirstUnit(engine.baseline);
    known.set(engineKey, engine);
    return engine;
  };
  proto.addFonts = function (this: FontLoader, fonts) {
    // New fonts can change which font draws a character, as satori's own shaping cache knows.
    if (fonts.length) {
      fontSets.set(this, ++lastFontSet);
      enginesOf(this).clear();
    }
    return addFonts.call(this, fonts);
  };
}

function isFontLoader(value: unknown): value is FontLoader {
  if (typeof value !== "object" || value === null) return false;
  const proto = Object.getPrototypeOf(value) as Partial<FontLoader> | null;
  return typeof proto?.getEngine === "function" && typeof proto.addFonts === "function";
}

const weakMapSet = WeakMap.prototype.set;

/** The `fonts` arrays whose first satori call is under way, each with the function that takes its loader. */
const watched = new Map<WeakKey, (loader: unknown) => void>();

/** WeakMap's own `set`, which also hands the value stored under a watched `fonts` array to its watcher. */
function watchingSet<K extends WeakKey, V>(this: WeakMap<K, V>, key: K, value: V): WeakMap<K, V> {
  watched.get(key)?.(value);
  return weakMapSet.call(this, key, value) as WeakMap<K, V>;
}

/**
 * Runs `render` (a satori call with `fonts`) and installs the cache on the class of the font loader satori
 * creates for `fonts` on that call. Satori keeps that loader in a WeakMap keyed by the `fonts` array, which is
 * the one place it hands the loader to code outside it, so `WeakMap.prototype.set` is watched while first
 * calls are under way (concurrent ones share one watcher, and the last to end puts WeakMap's own back). Should
 * satori change how it keeps its loader, renders work as before, uncached.
 */
export async function installGlyphCache<T>(fonts: readonly unknown[], render: () => Promise<T>): Promise<T> {
  let loader: unknown;
  watched.set(fonts, (value) => {
    loader = value;
  });
  WeakMap.prototype.set = watchingSet;
  try {
    return await render();
  } finally {
    watched.delete(fonts);
    if (watched.size === 0) WeakMap.prototype.set = weakMapSet;
    // Also after a failed render: the loader outlives it.
    if (isFontLoader(loader)) {
      const proto = Object.getPrototypeOf(loader) as FontLoader;
      if (!patched.has(proto)) {
        patch(proto);
        patched.add(proto);
      }
    }
  }
}

/**
 * Runs served from the cache and runs satori drew, and font engines satori asked for and engines made, in
 * this thread so far.
 */
export function glyphCacheStats(): {
  hits: number;
  misses: number;
  enginesAsked: number;
  enginesMade: number;
} {
  return { ...counts };
}
