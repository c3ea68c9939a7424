import satori, { type Font } from "satori";
import sharp from "sharp";
import type { RenderAssets, RenderEngine, StageMark } from "./engine";
import type { FontFace } from "./fonts";
import { type El, textOf } from "./h";
import { createPngEncoder, type PngEncode } from "./png";
import { Resvg } from "./resvg";
import { installGlyphCache, startCard } from "./satori-glyphs";

/**
 * How resvg's pixels become a PNG: `zlib` (png.ts: no filters, zlib level 2), `sharp` (libvips, zlib level
 * 1, no adaptive filtering) or `resvg` (its own encoder). `bun run bench render` compares them on the poll
 * card; docs/BENCHMARKS.md has the figures.
 */
export type PngEncoder = "resvg" | "sharp" | "zlib";

function toSatoriFont(face: FontFace): Font {
  return { name: face.name, data: face.data, weight: face.weight, style: face.style };
}

async function rasterise(
  svg: string,
  encoder: PngEncoder,
  encodePng: PngEncode,
  mark: StageMark,
): Promise<Uint8Array> {
  // Satori draws text as paths, so resvg needs no fonts; skipping the system font scan saves ~ms per render.
  const parsed = new Resvg(svg, { font: { loadSystemFonts: false }, fitTo: { mode: "original" } });
  mark("parse");
  const image = parsed.render();
  mark("draw");
  const { width, height } = image;
  switch (encoder) {
    case "resvg":
      return image.asPng();
    case "zlib": {
      const pixels = image.pixels;
      mark("pixels");
      return encodePng(pixels, width, height);
    }
    case "sharp":
      return sharp(image.pixels, { raw: { width, height, channels: 4 } })
        .png({ compressionLevel: 1, adaptiveFiltering: false })
        .toBuffer();
  }
}

/**
 * Font lists kept per thread, one per set of fallback faces: a few scripts' worth. A list dropped here is
 * rebuilt on its next use from the same faces (satori keeps parsed fonts per file, so that is cheap).
 */
const MAX_FONT_LISTS = 32;

/** Satori lays the card out as SVG, resvg rasterises it, and `encoder` writes the PNG. */
export function createSatoriEngine(assets: RenderAssets, encoder: PngEncoder = "zlib"): RenderEngine {
  // Satori keeps one font loader per `fonts` array and adds to it whatever `loadAdditionalAsset` returns; its
  // layout depends on every font the loader holds (an emoji line takes the last font's metrics). So a card
  // gets the array of exactly the faces its text needs, the same array for the same faces, and never adds to
  // it: its look then depends on its own text only, not on the cards its thread rendered before.
  const base = assets.fonts.map(toSatoriFont);
  const fonts = new Map<FontFace, Font>();
  const lists = new Map<string, Font[]>();
  const encodePng = createPngEncoder();

  const fontsFor = (element: El): Font[] => {
    const faces = assets.fallbacks.facesFor(textOf(element));
    if (faces.length === 0) return base;
    const key = faces.map((face) => `${face.name}/${face.weight}`).join("|");
    let list = lists.get(key);
    if (list) {
      lists.delete(key); // moved to the end: the first entry is the least recently used
    } else {
      list = [
        ...base,
        ...faces.map((face) => {
          const font = fonts.get(face) ?? toSatoriFont(face);
          fonts.set(face, font);
          return font;
        }),
      ];
      if (lists.size >= MAX_FONT_LISTS) lists.delete(lists.keys().next().value!);
    }
    lists.set(key, list);
    return list;
  };

  // Satori asks for what a card's fonts lack: emoji become images. Other text has had its fallback faces
  // since the start, so what it still lacks no package covers; satori draws the missing-glyph box for it.
  const loadAdditionalAsset = async (code: string, segment: string): Promise<string | Font[]> =>
    code === "emoji" ? (assets.emoji(segment) ?? []) : [];

  // The templates paint in #rrggbb only, which resvg reads as is: satori's conversion of colours resvg may not
  // know (oklch(), lab()...) would parse every colour of every render for nothing (~0.6 ms of the poll card's
  // ~8 ms, with an identical SVG). test/render/render.test.ts checks every colour that reaches resvg.
  const layOut = (element: El, width: number, height: number, cardFonts: Font[]) =>
    satori(element as Parameters<typeof satori>[0], {
      width,
      height,
      fonts: cardFonts,
      loadAdditionalAsset,
      convertColors: false,
    });
  // Satori creates a font loader on the first render with an array, which is when the cache can find its
  // class (one class for every loader: installed once).
  let first = true;
  const svg: RenderEngine["svg"] = async (element, width, height) => {
    const cardFonts = fontsFor(element);
    startCard();
    if (!first) return layOut(element, width, height, cardFonts);
    first = false;
    return installGlyphCache(cardFonts, () => layOut(element, width, height, cardFonts));
  };

  return {
    name: "satori",
    svg,
    async render(element, width, height, mark = () => {}) {
      const laidOut = await svg(element, width, height);
      mark("layout");
      const png = await rasterise(laidOut, encoder, encodePng, mark);
      mark("encode");
      return png;
    },
  };
}
