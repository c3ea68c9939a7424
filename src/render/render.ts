import { Resvg } from "@resvg/resvg-js";
import satori, { type Font } from "satori";
import sharp from "sharp";
import { createEmojiLoader, type EmojiLoader } from "./emoji";
import { loadFonts } from "./fonts";
import { createPngEncoder, type PngEncode } from "./png";
import { getTemplate, parseCardData } from "./templates";

export interface RenderedCard {
  png: Uint8Array;
  width: number;
  height: number;
}

/**
 * How resvg's pixels become a PNG: `resvg` (its own encoder, smallest files), `sharp` (libvips, zlib level 1,
 * no adaptive filtering) or `zlib` (png.ts: no filters, zlib level 1). `bun run scripts/bench/render.ts`
 * compares them; encoding a poll card took 2 ms with `zlib`, 3.3 ms with `sharp` and 19 ms with `resvg`.
 */
export type PngEncoder = "resvg" | "sharp" | "zlib";

export interface CardRendererOptions {
  /** @defaultValue {@link loadFonts}() */
  fonts?: Font[];
  /** @defaultValue the @twemoji/svg loader */
  emoji?: EmojiLoader;
  /** @defaultValue "zlib" */
  encoder?: PngEncoder;
}

export interface CardRenderer {
  /** Validates `data` against the template's schema and renders it. Throws CardDataError or UnknownTemplateError. */
  render(template: string, data: unknown): Promise<RenderedCard>;
  /** satori's SVG for the card, before rasterising; for debugging and tests. */
  svg(template: string, data: unknown): Promise<{ svg: string; width: number; height: number }>;
}

async function rasterise(svg: string, encoder: PngEncoder, encodePng: PngEncode): Promise<Uint8Array> {
  // Satori draws text as paths, so resvg needs no fonts; skipping the system font scan saves ~ms per render.
  const image = new Resvg(svg, { font: { loadSystemFonts: false }, fitTo: { mode: "original" } }).render();
  const { width, height } = image;
  switch (encoder) {
    case "resvg":
      return image.asPng();
    case "zlib":
      return encodePng(image.pixels, width, height);
    case "sharp":
      return sharp(image.pixels, { raw: { width, height, channels: 4 } })
        .png({ compressionLevel: 1, adaptiveFiltering: false })
        .toBuffer();
  }
}

/** A renderer holding its fonts and emoji cache; create one per worker thread. */
export function createCardRenderer(opts: CardRendererOptions = {}): CardRenderer {
  const fonts = opts.fonts ?? loadFonts();
  const emoji = opts.emoji ?? createEmojiLoader();
  const encoder = opts.encoder ?? "zlib";
  const encodePng = createPngEncoder();

  // Emoji become images. Scripts no loaded font covers get no font: satori draws the missing-glyph box
  // instead of failing the render.
  const loadAdditionalAsset = async (code: string, segment: string): Promise<string | Font[]> =>
    code === "emoji" ? (emoji(segment) ?? []) : [];

  async function svg(name: string, data: unknown) {
    const template = getTemplate(name);
    const element = template.render(parseCardData(name, data)) as Parameters<typeof satori>[0];
    const { width, height } = template;
    return { svg: await satori(element, { width, height, fonts, loadAdditionalAsset }), width, height };
  }

  return {
    svg,
    async render(name, data) {
      const card = await svg(name, data);
      return { png: await rasterise(card.svg, encoder, encodePng), width: card.width, height: card.height };
    },
  };
}

let shared: CardRenderer | undefined;

/** Renders with a lazily created renderer shared by the calling thread (fonts load on first use). */
export function renderCard(template: string, data: unknown): Promise<RenderedCard> {
  shared ??= createCardRenderer();
  return shared.render(template, data);
}
