/**
 * Validation of user-supplied images (edit inputs and masks) before anything expensive happens:
 *
 * 1. bytes: a data URL, bare base64 or raw bytes; the byte limit is checked before base64 is decoded;
 * 2. format: sniffed from magic bytes (PNG, JPEG, WebP only) — a declared MIME type is never trusted;
 * 3. pixels: read from the header alone, so a decompression bomb (tiny file, huge canvas) is refused
 *    before a single row is inflated;
 * 4. integrity: a streaming decode to a tiny size (with sharp's pixel limit as a second guard) catches
 *    truncated and corrupt files without holding the full image in memory.
 *
 * Every failure is an ImageInputError (./errors) with a stable code; the API answers it with a 422.
 */
import sharp from "sharp";
import { ImageInputError } from "./errors";

export const DEFAULT_MAX_INPUT_BYTES = 20 * 1024 * 1024;
export const DEFAULT_MAX_INPUT_PIXELS = 40_000_000;

export type ImageInput = string | Uint8Array | ArrayBuffer;

export type ValidateOptions = {
  /** @defaultValue 20 MB */
  maxBytes?: number;
  /** @defaultValue 40 megapixels */
  maxPixels?: number;
};

export type InputFormat = "png" | "jpeg" | "webp";

export type ValidatedImage = {
  bytes: Uint8Array;
  mime: `image/${InputFormat}`;
  format: InputFormat;
  /** Displayed size, i.e. after EXIF orientation. */
  width: number;
  height: number;
};

export async function validateImageInput(
  input: ImageInput,
  opts: ValidateOptions = {},
): Promise<ValidatedImage> {
  const maxPixels = opts.maxPixels ?? DEFAULT_MAX_INPUT_PIXELS;
  const bytes = toBytes(input, opts.maxBytes ?? DEFAULT_MAX_INPUT_BYTES);
  const format = sniffFormat(bytes);
  if (!format) {
    throw new ImageInputError("unsupported_image_format", "image must be PNG, JPEG or WebP");
  }
  const { width, height } = await checkHeader(bytes, format, maxPixels);
  await checkDecodes(bytes, maxPixels);
  return { bytes, mime: `image/${format}`, format, width, height };
}

/** A mask must cover its image exactly. */
export function validateMask(
  image: { width: number; height: number },
  mask: { width: number; height: number },
): void {
  if (image.width !== mask.width || image.height !== mask.height) {
    throw new ImageInputError(
      "mask_size_mismatch",
      `mask is ${mask.width}x${mask.height} but the image is ${image.width}x${image.height}`,
      {
        image: { width: image.width, height: image.height },
        mask: { width: mask.width, height: mask.height },
      },
    );
  }
}

/** Validates an edit's image and optional mask together. */
export async function validateEditInputs(
  inputs: { image: ImageInput; mask?: ImageInput },
  opts: ValidateOptions = {},
): Promise<{ image: ValidatedImage; mask?: ValidatedImage }> {
  const image = await validateImageInput(inputs.image, opts);
  if (inputs.mask === undefined) return { image };
  const mask = await validateImageInput(inputs.mask, opts);
  validateMask(image, mask);
  return { image, mask };
}

/** Bytes from a data URL, bare base64 or raw bytes; refuses oversize input before decoding it. */
export function toBytes(input: ImageInput, maxBytes: number): Uint8Array {
  if (typeof input !== "string") {
    const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
    if (bytes.byteLength > maxBytes) throw tooLarge(bytes.byteLength, maxBytes);
    return bytes;
  }
  return decodeBase64(stripDataUrl(input), maxBytes);
}

const DATA_URL = /^data:[^,]*?(;base64)?,/i;

function stripDataUrl(input: string): string {
  if (!input.startsWith("data:")) return input;
  const match = DATA_URL.exec(input.slice(0, 256));
  if (!match) throw new ImageInputError("invalid_base64", "malformed data URL");
  if (!match[1]) throw new ImageInputError("invalid_base64", "data URL must be base64-encoded");
  return input.slice(match[0].length);
}

const BASE64 = /^[A-Za-z0-9+/\-_]*={0,2}$/;

function decodeBase64(text: string, maxBytes: number): Uint8Array {
  // Whitespace can at most double a sane encoding; bail out before scanning a huge string.
  if (text.length > Math.ceil(maxBytes / 3) * 8 + 16)
    throw tooLarge(Math.floor((text.length * 3) / 4), maxBytes);
  const compact = text.replace(/\s+/g, "");
  if (!BASE64.test(compact) || compact.length % 4 === 1) {
    throw new ImageInputError("invalid_base64", "image is not valid base64");
  }
  const padding = compact.endsWith("==") ? 2 : compact.endsWith("=") ? 1 : 0;
  const decodedLength = Math.floor((compact.length * 3) / 4) - padding;
  if (decodedLength > maxBytes) throw tooLarge(decodedLength, maxBytes);
  const buf = Buffer.from(compact, "base64");
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
}

function tooLarge(bytes: number, maxBytes: number): ImageInputError {
  return new ImageInputError("image_too_large", `image is ${bytes} bytes; the limit is ${maxBytes}`, {
    bytes,
    maxBytes,
  });
}

function startsWith(bytes: Uint8Array, signature: readonly number[], offset = 0): boolean {
  return bytes.length >= offset + signature.length && signature.every((b, i) => bytes[offset + i] === b);
}

const PNG = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
const JPEG = [0xff, 0xd8, 0xff];
const RIFF = [0x52, 0x49, 0x46, 0x46];
const WEBP = [0x57, 0x45, 0x42, 0x50];

export function sniffFormat(bytes: Uint8Array): InputFormat | undefined {
  if (startsWith(bytes, PNG)) return "png";
  if (startsWith(bytes, JPEG)) return "jpeg";
  if (startsWith(bytes, RIFF) && startsWith(bytes, WEBP, 8)) return "webp";
  return undefined;
}

/** Reads only the header: dimensions and frame count, never pixel data. */
async function checkHeader(
  bytes: Uint8Array,
  format: InputFormat,
  maxPixels: number,
): Promise<{ width: number; height: number }> {
  const meta = await sharp(bytes, { limitInputPixels: false })
    .metadata()
    .catch((err: unknown) => {
      throw new ImageInputError("invalid_image", `image header is unreadable: ${errorMessage(err)}`);
    });
  if (meta.format !== format || !meta.width || !meta.height) {
    throw new ImageInputError("invalid_image", "image header is unreadable");
  }
  const pixels = meta.width * (meta.pageHeight ?? meta.height) * (meta.pages ?? 1);
  if (pixels > maxPixels) {
    throw new ImageInputError(
      "image_too_many_pixels",
      `image is ${meta.width}x${meta.height} (${pixels} pixels); the limit is ${maxPixels}`,
      { width: meta.width, height: meta.height, maxPixels },
    );
  }
  return { width: meta.autoOrient.width, height: meta.autoOrient.height };
}

/** Decodes every row (streaming, shrunk) so truncated or corrupt data is caught here, not by a provider. */
async function checkDecodes(bytes: Uint8Array, maxPixels: number): Promise<void> {
  try {
    await sharp(bytes, { limitInputPixels: maxPixels, failOn: "error", sequentialRead: true })
      .resize(64, 64, { fit: "inside" })
      .raw()
      .toBuffer();
  } catch (err) {
    throw new ImageInputError("invalid_image", `image data is corrupt: ${errorMessage(err)}`);
  }
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
