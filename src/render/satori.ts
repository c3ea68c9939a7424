import satori, { type Font } from "satori";
import sharp from "sharp";
import type { RenderAssets, RenderEngine, StageMark } from "./engine";
import type { FontFace } from "./fonts";
import { createPngEncoder, type PngEncode } from "./png";
import { Resvg } from "./resvg";
import { installGlyphCache } from "./satori-glyphs";

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

/** Satori lays the card out as SVG, resvg rasterises it, and `encoder` writes the PNG. */
export function createSatoriEngine(assets: RenderAssets, encoder: PngEncoder = "zlib"): RenderEngine {
  // One array for every render: satori caches its parsed fonts per array identity.
  const fonts = assets.fonts.map(toSatoriFont);
  const fallbacks = new Map<FontFace, Font>();
  const encodePng = createPngEncoder();

  // Satori asks for what its fonts lack, a segment at a time: emoji become images, other scripts get their
  // fallback faces (the same objects each time, so satori's parse cache holds). A script no package covers
  // gets none, and satori draws the missing-glyph box instead of failing the render.
  const loadAdditionalAsset = async (code: string, segment: string): Promise<string | Font[]> => {
    if (code === "emoji") return assets.emoji(segment) ?? [];
    return assets.fallbacks.facesFor(segment).map((face) => {
      const font = fallbacks.get(face) ?? toSatoriFont(face);
      fallbacks.set(face, font);
      return font;
    });
  };

  // The templates paint in #rrggbb only, which resvg reads as is: satori's conversion of colours resvg may not
  // know (oklch(), lab()...) would parse every colour of every render for nothing (~0.6 ms of the poll card's
  // ~8 ms, with an identical SVG). test/render/render.test.ts checks every colour that reaches resvg.
  const layOut: RenderEngine["svg"] = (element, width, height) =>
    satori(element as Parameters<typeof satori>[0], {
      width,
      height,
      fonts,
      loadAdditionalAsset,
      convertColors: false,
    });
  // Satori creates the font loader for `fonts` on the first render, which is when the cache can find it.
  let first = true;
  const svg: RenderEngine["svg"] = async (element, width, height) => {
    if (!first) return layOut(element, width, height);
    first = false;
    return installGlyphCache(fonts, () => layOut(element, width, height));
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
