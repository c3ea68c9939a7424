import { crc32, deflateSync } from "node:zlib";

/**
 * A minimal PNG encoder for 8-bit RGBA: no row filters and zlib level 2. Cards are flat colour: long runs of
 * one pixel, which deflate's matcher finds without any filter. Level 1 ("fast" deflate, no lazy matching
 * and a short hash chain) leaves the poll card at 106 KB; level 2 makes it 65 KB for ~0.4 ms more, while
 * filters (Up, Sub) cost more than they save here and levels above 2 gain a few KB for a millisecond each.
 * Measured on the poll card, see scripts/bench/render.ts and docs/BENCHMARKS.md.
 */

export type PngEncode = (pixels: Uint8Array, width: number, height: number) => Uint8Array;

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.byteLength);
  out.writeUInt32BE(data.byteLength, 0);
  out.write(type, 4, "latin1");
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.byteLength)), 8 + data.byteLength);
  return out;
}

function header(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // colour type: RGBA
  return chunk("IHDR", ihdr); // compression, filter and interlace bytes stay 0
}

/**
 * An encoder of `pixels` (RGBA, row-major, `width * height * 4` bytes) to PNG. It keeps its filtered-rows
 * buffer between calls: a fresh 4 MB buffer per card costs ~1000 page faults. Not reentrant, which is fine
 * for its synchronous body; create one per thread.
 */
export function createPngEncoder(level = 2): PngEncode {
  let rows = Buffer.alloc(0);
  return (pixels, width, height) => {
    const stride = width * 4;
    if (pixels.byteLength !== stride * height) throw new RangeError("pixel buffer does not match the size");
    const size = (stride + 1) * height;
    if (rows.byteLength !== size) rows = Buffer.alloc(size); // filter bytes stay 0 (none) from here on
    for (let y = 0; y < height; y++)
      rows.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
    const idat = chunk("IDAT", deflateSync(rows, { level }));
    return Buffer.concat([SIGNATURE, header(width, height), idat, chunk("IEND", new Uint8Array(0))]);
  };
}
