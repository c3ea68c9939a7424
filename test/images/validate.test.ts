import { beforeAll, describe, expect, test } from "bun:test";
import sharp from "sharp";
import {
  DEFAULT_MAX_INPUT_BYTES,
  ImageError,
  ImageInputError,
  type ImageInputErrorCode,
  validateEditInputs,
  validateImageInput,
  validateMask,
} from "../../src/images";
import { pngBomb, testImage } from "./fixtures";

const b64 = (bytes: Uint8Array) => Buffer.from(bytes).toString("base64");

async function failure(promise: Promise<unknown>): Promise<ImageInputError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(ImageInputError);
  return err as ImageInputError;
}

async function expectCode(promise: Promise<unknown>, code: ImageInputErrorCode): Promise<ImageInputError> {
  const err = await failure(promise);
  expect(err).toMatchObject({ code, message: expect.any(String) });
  return err;
}

let png: Uint8Array;
let jpeg: Uint8Array;
let webp: Uint8Array;

beforeAll(async () => {
  [png, jpeg, webp] = await Promise.all([
    testImage(64, 48, "png"),
    testImage(64, 48, "jpeg"),
    testImage(64, 48, "webp"),
  ]);
});

describe("accepted inputs", () => {
  test("raw bytes of each allowed format", async () => {
    for (const [bytes, format] of [
      [png, "png"],
      [jpeg, "jpeg"],
      [webp, "webp"],
    ] as const) {
      const ok = await validateImageInput(bytes);
      expect(ok).toMatchObject({ format, mime: `image/${format}`, width: 64, height: 48 });
      expect(ok.bytes).toEqual(bytes);
    }
  });

  test("a data URL: the format is sniffed, the declared type ignored", async () => {
    const ok = await validateImageInput(`data:image/gif;base64,${b64(png)}`);
    expect(ok).toMatchObject({ format: "png", mime: "image/png" });
    expect(ok.bytes).toEqual(png);
  });

  test("bare base64, with line breaks, and an ArrayBuffer", async () => {
    expect((await validateImageInput(b64(jpeg))).format).toBe("jpeg");
    const wrapped = b64(webp).replace(/(.{76})/g, "$1\n");
    expect((await validateImageInput(wrapped)).format).toBe("webp");
    const copy = png.slice().buffer;
    expect((await validateImageInput(copy)).format).toBe("png");
  });

  test("reported size is the displayed (EXIF-oriented) size", async () => {
    const rotated = await sharp(png).jpeg().withMetadata({ orientation: 6 }).toBuffer();
    expect(await validateImageInput(new Uint8Array(rotated))).toMatchObject({ width: 48, height: 64 });
  });
});

describe("refused inputs", () => {
  test("non-image bytes", async () => {
    await expectCode(
      validateImageInput(new TextEncoder().encode("hello, I am text")),
      "unsupported_image_format",
    );
    await expectCode(validateImageInput(new Uint8Array()), "unsupported_image_format");
  });

  test("real images in formats that are not allowed", async () => {
    const gif = new Uint8Array(await sharp(png).gif().toBuffer());
    await expectCode(validateImageInput(gif), "unsupported_image_format");
    const tiff = new Uint8Array(await sharp(png).tiff().toBuffer());
    await expectCode(validateImageInput(`data:image/png;base64,${b64(tiff)}`), "unsupported_image_format");
  });

  test("a PNG signature followed by junk, and a truncated PNG", async () => {
    const junk = new Uint8Array([
      ...png.subarray(0, 8),
      ...new TextEncoder().encode("definitely not chunks"),
    ]);
    await expectCode(validateImageInput(junk), "invalid_image");
    const big = await testImage(256, 256, "png");
    await expectCode(validateImageInput(big.subarray(0, Math.floor(big.length / 2))), "invalid_image");
  });

  test("invalid base64 and non-base64 data URLs", async () => {
    await expectCode(validateImageInput("this is not base64!"), "invalid_base64");
    await expectCode(validateImageInput("QUJD*"), "invalid_base64");
    await expectCode(validateImageInput("data:image/png,rawtext"), "invalid_base64");
    await expectCode(validateImageInput("data:image/png;base64"), "invalid_base64");
  });

  test("too many bytes, checked before anything is decoded", async () => {
    const err = await expectCode(validateImageInput(png, { maxBytes: 100 }), "image_too_large");
    expect(err.details).toEqual({ bytes: png.byteLength, maxBytes: 100 });
    await expectCode(validateImageInput(b64(png), { maxBytes: 100 }), "image_too_large");
    await expectCode(
      validateImageInput(`data:image/png;base64,${b64(png)}`, { maxBytes: 100 }),
      "image_too_large",
    );
  });

  test("the default byte limit is 20 MB, and size is judged before format", async () => {
    expect(DEFAULT_MAX_INPUT_BYTES).toBe(20 * 1024 * 1024);
    const oversize = new Uint8Array(DEFAULT_MAX_INPUT_BYTES + 1);
    await expectCode(validateImageInput(oversize), "image_too_large");
    // A base64 string over the limit is refused without decoding it.
    await expectCode(
      validateImageInput("A".repeat(Math.ceil(((DEFAULT_MAX_INPUT_BYTES + 3) * 4) / 3))),
      "image_too_large",
    );
  });

  test("a decompression bomb (tiny file, 400 megapixels) is refused from its header", async () => {
    const bomb = pngBomb(20_000, 20_000);
    expect(bomb.byteLength).toBeLessThan(100 * 1024);
    const header = await sharp(bomb, { limitInputPixels: false }).metadata();
    expect(header).toMatchObject({ format: "png", width: 20_000, height: 20_000 });

    const started = performance.now();
    const err = await expectCode(validateImageInput(bomb), "image_too_many_pixels");
    expect(performance.now() - started).toBeLessThan(1000);
    expect(err.details).toEqual({ width: 20_000, height: 20_000, maxPixels: 40_000_000 });
    await expectCode(validateImageInput(`data:image/png;base64,${b64(bomb)}`), "image_too_many_pixels");
  });

  test("the pixel limit is 40 MP by default and configurable", async () => {
    await expectCode(validateImageInput(pngBomb(8000, 5001)), "image_too_many_pixels");
    await expectCode(validateImageInput(png, { maxPixels: 64 * 48 - 1 }), "image_too_many_pixels");
    expect((await validateImageInput(png, { maxPixels: 64 * 48 })).width).toBe(64);
  });
});

describe("masks", () => {
  test("a mask must match the image's size", async () => {
    const mask = await testImage(32, 32, "png");
    const err = await expectCode(validateEditInputs({ image: png, mask }), "mask_size_mismatch");
    expect(err.details).toEqual({ image: { width: 64, height: 48 }, mask: { width: 32, height: 32 } });
  });

  test("a matching mask passes, and the mask is validated like any input", async () => {
    const mask = await testImage(64, 48, "png");
    const ok = await validateEditInputs({ image: `data:image/jpeg;base64,${b64(jpeg)}`, mask });
    expect(ok.image.format).toBe("jpeg");
    expect(ok.mask).toMatchObject({ format: "png", width: 64, height: 48 });
    expect((await validateEditInputs({ image: png })).mask).toBeUndefined();
    await expectCode(validateEditInputs({ image: png, mask: "garbage!" }), "invalid_base64");
  });

  test("validateMask compares dimensions only", () => {
    expect(() => validateMask({ width: 10, height: 20 }, { width: 10, height: 20 })).not.toThrow();
    expect(() => validateMask({ width: 10, height: 20 }, { width: 20, height: 10 })).toThrow(ImageInputError);
  });

  test("the error is images/' own, with no HTTP status (the API maps it at the edge)", () => {
    const err = new ImageInputError("invalid_image", "x");
    expect(err).toBeInstanceOf(ImageError);
    expect("status" in err).toBe(false);
  });
});
