import { createEmojiLoader, type EmojiLoader } from "./emoji";
import type { EngineName, RenderAssets, RenderEngine, StageMark } from "./engine";
import { FallbackFonts, type FontFace, loadFonts } from "./fonts";
import { createSatoriEngine, type PngEncoder } from "./satori";
import { getTemplate, parseCardData } from "./templates";

export type { PngEncoder } from "./satori";

export interface RenderedCard {
  png: Uint8Array;
  width: number;
  height: number;
}

export interface CardRendererOptions {
  /** @defaultValue "satori" */
  engine?: EngineName;
  /** The base font. @defaultValue {@link loadFonts}() */
  fonts?: FontFace[];
  /** @defaultValue the @twemoji/svg loader */
  emoji?: EmojiLoader;
  /** How the satori engine writes its PNG (takumi's pixels always go through png.ts). @defaultValue "zlib" */
  encoder?: PngEncoder;
}

export interface CardRenderer {
  readonly engine: EngineName;
  /**
   * Validates `data` against the template's schema and renders it. Throws CardDataError or UnknownTemplateError.
   * `mark` hears the end of each stage ("tree" first: the data validated and the element tree built).
   */
  render(template: string, data: unknown, mark?: StageMark): Promise<RenderedCard>;
  /** The card as SVG, before rasterising; for debugging and tests. */
  svg(template: string, data: unknown): Promise<{ svg: string; width: number; height: number }>;
}

/** Fonts, fallbacks and emoji for one thread, shared by every engine created there. */
let threadAssets: RenderAssets | undefined;

function assetsFor(opts: CardRendererOptions): RenderAssets {
  if (!opts.fonts && !opts.emoji) {
    threadAssets ??= assetsFor({ fonts: loadFonts(), emoji: createEmojiLoader() });
    return threadAssets;
  }
  const fonts = opts.fonts ?? loadFonts();
  return { fonts, fallbacks: new FallbackFonts(fonts), emoji: opts.emoji ?? createEmojiLoader() };
}

/**
 * Takumi's native addon is loaded only when it is chosen: an install without it (another platform, a
 * stripped image) still renders with satori.
 */
async function createEngine(
  name: EngineName,
  assets: RenderAssets,
  encoder?: PngEncoder,
): Promise<RenderEngine> {
  if (name === "takumi") return (await import("./takumi")).createTakumiEngine(assets);
  return createSatoriEngine(assets, encoder);
}

/** A renderer holding its engine, fonts and emoji cache; create one per worker thread. */
export function createCardRenderer(opts: CardRendererOptions = {}): CardRenderer {
  const name = opts.engine ?? "satori";
  const engine = createEngine(name, assetsFor(opts), opts.encoder);
  // A failed load is reported by every render; until one asks, it is not an unhandled rejection.
  engine.catch(() => {});

  /** The template's element tree for `data` (validated here: a worker gets no unchecked input). */
  function element(templateName: string, data: unknown) {
    const template = getTemplate(templateName);
    return {
      element: template.render(parseCardData(templateName, data)),
      width: template.width,
      height: template.height,
    };
  }

  return {
    engine: name,
    async svg(template, data) {
      const { element: el, width, height } = element(template, data);
      return { svg: await (await engine).svg(el, width, height), width, height };
    },
    async render(template, data, mark) {
      const { element: el, width, height } = element(template, data);
      mark?.("tree");
      return { png: await (await engine).render(el, width, height, mark), width, height };
    },
  };
}

const shared = new Map<EngineName, CardRenderer>();

/** Renders with a lazily created renderer shared by the calling thread (fonts load on first use). */
export function renderCard(
  template: string,
  data: unknown,
  engine: EngineName = "satori",
): Promise<RenderedCard> {
  const renderer = shared.get(engine) ?? createCardRenderer({ engine });
  shared.set(engine, renderer);
  return renderer.render(template, data);
}
