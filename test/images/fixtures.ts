/** Real image bytes for the image tests, made with sharp or (for the bomb) assembled chunk by chunk. */
import { deflateSync } from "node:zlib";
import sharp from "sharp";

export type Format = "png" | "jpeg" | "webp";

/** A gradient (so encoders have real content to work on) of the given size and format. */
export async function testImage(width: number, height: number, format: Format = "png"): Promise<Uint8Array> {
  const channels = 3;
  const pixels = Buffer.alloc(width * height * channels);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * channels;
      pixels[i] = (x * 255) / width;
      pixels[i + 1] = (y * 255) / height;
      pixels[i + 2] = 128;
    }
  }
  const out = await sharp(pixels, { raw: { width, height, channels } }).toFormat(format).toBuffer();
  return new Uint8Array(out);
}

/** A JPEG whose EXIF says "rotate 90° clockwise to display" and carries identifying tags. */
export async function jpegWithExif(width: number, height: number): Promise<Uint8Array> {
  const out = await sharp(await testImage(width, height, "png"))
    .jpeg()
    .withMetadata({ orientation: 6 })
    .withExif({ IFD0: { Copyright: "Secret Studio 2026", Artist: "Jane Doe" } })
    .toBuffer();
  return new Uint8Array(out);
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, "latin1");
  out.set(data, 8);
  out.writeUInt32BE(Bun.hash.crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/**
 * A valid PNG of `width` x `height` 1-bit black pixels: the all-zero rows deflate to almost nothing, so
 * the file is a few tens of KB while decoding it would need gigabytes (a decompression bomb).
 */
export function pngBomb(width: number, height: number): Uint8Array {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 1; // bit depth
  ihdr[9] = 0; // greyscale
  const rowBytes = 1 + Math.ceil(width / 8); // filter byte + packed pixels
  const idat = deflateSync(Buffer.alloc(rowBytes * height), { level: 9 });
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  return Buffer.concat([
    signature,
    chunk("IHDR", ihdr),
    chunk("IDAT", idat),
    chunk("IEND", new Uint8Array()),
  ]);
}
