import { beforeAll, describe, expect, test } from "bun:test";
import sharp from "sharp";
import {
  makeThumbnail,
  PRESET_NAMES,
  PresetError,
  processImage,
  processWithThumbnail,
  resolvePreset,
} from "../../src/images";
import { jpegWithExif, testImage } from "./fixtures";

let landscape: Uint8Array;

beforeAll(async () => {
  landscape = await testImage(1500, 1000, "png");
});

/** What the encoded bytes really are, according to sharp reading them back. */
async function inspect(bytes: Uint8Array) {
  const m = await sharp(bytes).metadata();
  return { format: m.format, width: m.width, height: m.height, exif: m.exif, orientation: m.orientation };
}

describe("named presets", () => {
  const expected = {
    original: { format: "png", mime: "image/png", ext: "png", width: 1500, height: 1000 },
    "square-1080": { format: "jpeg", mime: "image/jpeg", ext: "jpg", width: 1080, height: 1080 },
    "portrait-1080x1350": { format: "jpeg", mime: "image/jpeg", ext: "jpg", width: 1080, height: 1350 },
    "story-1080x1920": { format: "jpeg", mime: "image/jpeg", ext: "jpg", width: 1080, height: 1920 },
    "og-1200x630": { format: "png", mime: "image/png", ext: "png", width: 1200, height: 630 },
    "thumb-256": { format: "webp", mime: "image/webp", ext: "webp", width: 256, height: 171 },
  } as const;

  test("every named preset is covered here", () => {
    expect<string[]>([...PRESET_NAMES].sort()).toEqual(Object.keys(expected).sort());
  });

  for (const [name, want] of Object.entries(expected)) {
    test(`${name} → ${want.width}x${want.height} ${want.format}`, async () => {
      const out = await processImage(landscape, name);
      expect(out).toMatchObject({ mime: want.mime, ext: want.ext, width: want.width, height: want.height });
      const real = await inspect(out.bytes);
      expect(real).toMatchObject({ format: want.format, width: want.width, height: want.height });
    });
  }
});

describe("inline presets", () => {
  test("defaults are filled in", () => {
    expect(resolvePreset({ width: 100 })).toEqual({ width: 100, fit: "inside", format: "png", quality: 90 });
  });

  test("fit: contain pads to the exact box, inside keeps the aspect ratio, cover crops", async () => {
    const box = { width: 300, height: 300, format: "webp" as const };
    expect(await inspect((await processImage(landscape, { ...box, fit: "contain" })).bytes)).toMatchObject({
      width: 300,
      height: 300,
    });
    expect(await processImage(landscape, { ...box, fit: "inside" })).toMatchObject({
      width: 300,
      height: 200,
    });
    expect(await processImage(landscape, { ...box, fit: "cover" })).toMatchObject({
      width: 300,
      height: 300,
    });
  });

  test("avif and quality", async () => {
    const small = await processImage(landscape, { width: 120, format: "avif", quality: 40 });
    expect(small).toMatchObject({ mime: "image/avif", ext: "avif", width: 120, height: 80 });
    expect((await inspect(small.bytes)).format).toBe("heif");
    const lo = await processImage(landscape, { width: 400, format: "jpeg", quality: 20 });
    const hi = await processImage(landscape, { width: 400, format: "jpeg", quality: 95 });
    expect(lo.bytes.byteLength).toBeLessThan(hi.bytes.byteLength);
  });

  test("unknown names and invalid objects are a PresetError with a stable code", () => {
    const unknown = (() => {
      try {
        resolvePreset("poster-9000");
      } catch (e) {
        return e;
      }
    })();
    expect(unknown).toBeInstanceOf(PresetError);
    expect(unknown).toMatchObject({ code: "unknown_preset", details: { known: PRESET_NAMES } });
    expect(() => resolvePreset({ quality: 0 })).toThrow(PresetError);
    expect(() => resolvePreset({ width: 100_000 })).toThrow(PresetError);
    expect(() => resolvePreset({ format: "gif" } as never)).toThrow(PresetError);
  });
});

describe("metadata", () => {
  test("EXIF orientation is applied, then all metadata is stripped", async () => {
    const input = await jpegWithExif(200, 100);
    expect(Buffer.from(input).includes("Secret Studio 2026")).toBe(true);
    for (const format of ["jpeg", "png", "webp"] as const) {
      const out = await processImage(input, { format });
      expect(out).toMatchObject({ width: 100, height: 200 });
      const real = await inspect(out.bytes);
      expect(real).toMatchObject({ width: 100, height: 200, exif: undefined, orientation: undefined });
      expect(Buffer.from(out.bytes).includes("Secret Studio 2026")).toBe(false);
      expect(Buffer.from(out.bytes).includes("Jane Doe")).toBe(false);
    }
  });
});

describe("thumbnails", () => {
  test("makeThumbnail gives a WebP whose longest edge is 256 by default", async () => {
    const thumb = await makeThumbnail(landscape);
    expect(thumb).toMatchObject({ mime: "image/webp", ext: "webp", width: 256, height: 171 });
    expect(await inspect(thumb.bytes)).toMatchObject({ format: "webp", width: 256, height: 171 });
  });

  test("makeThumbnail takes a size", async () => {
    const portrait = await testImage(300, 600);
    expect(await makeThumbnail(portrait, 128)).toMatchObject({ width: 64, height: 128 });
  });

  test("a thumbnail never enlarges an image smaller than its size", async () => {
    const small = await testImage(100, 60);
    expect(await makeThumbnail(small)).toMatchObject({ width: 100, height: 60 });
    const { image, thumbnail } = await processWithThumbnail(small, "square-1080");
    expect(image).toMatchObject({ width: 1080, height: 1080 });
    expect(thumbnail).toMatchObject({ width: 100, height: 60 });
  });

  test("processWithThumbnail produces both from one pipeline, both oriented and stripped", async () => {
    const input = await jpegWithExif(400, 200);
    const { image, thumbnail } = await processWithThumbnail(input, "square-1080");
    expect(await inspect(image.bytes)).toMatchObject({
      format: "jpeg",
      width: 1080,
      height: 1080,
      exif: undefined,
    });
    expect(thumbnail).toMatchObject({ mime: "image/webp", width: 128, height: 256 });
    expect(await inspect(thumbnail.bytes)).toMatchObject({
      format: "webp",
      width: 128,
      height: 256,
      exif: undefined,
    });
  });

  test("processWithThumbnail gives the same asset as processImage", async () => {
    const alone = await processImage(landscape, "og-1200x630");
    const { image } = await processWithThumbnail(landscape, "og-1200x630", 64);
    expect(image.bytes).toEqual(alone.bytes);
  });
});

describe("input limits", () => {
  test("maxInputPixels refuses oversized generated images", async () => {
    await expect(processImage(landscape, "original", { maxInputPixels: 1000 })).rejects.toThrow();
  });
});
