import sharp from "sharp";

/** A decoded PNG with RGBA pixel access, for asserting on what a card actually shows. */
export interface Pixels {
  width: number;
  height: number;
  at(x: number, y: number): [number, number, number, number];
}

export async function decode(png: Uint8Array): Promise<Pixels> {
  const { data, info } = await sharp(png).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
  return {
    width: info.width,
    height: info.height,
    at(x, y) {
      const i = (y * info.width + x) * 4;
      return [data[i]!, data[i + 1]!, data[i + 2]!, data[i + 3]!];
    },
  };
}

export function hex(colour: string): [number, number, number] {
  const n = Number.parseInt(colour.slice(1), 16);
  return [(n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
}

/** True when the pixel is within `tolerance` of `colour` on every channel (anti-aliasing wobble). */
export function near(pixel: readonly number[], colour: string, tolerance = 3): boolean {
  return hex(colour).every((c, i) => Math.abs(c - pixel[i]!) <= tolerance);
}

/** Pixels in the box (x0..x1, y0..y1, exclusive ends) that satisfy `test`. */
export function count(
  img: Pixels,
  box: { x0: number; y0: number; x1: number; y1: number },
  test: (p: [number, number, number, number]) => boolean,
): number {
  let n = 0;
  for (let y = box.y0; y < box.y1; y++) for (let x = box.x0; x < box.x1; x++) if (test(img.at(x, y))) n++;
  return n;
}

/** Saturated pixels: none of the templates' greys, so they come from emoji, accents or avatars. */
export function colourful(p: readonly number[]): boolean {
  return Math.max(p[0]!, p[1]!, p[2]!) - Math.min(p[0]!, p[1]!, p[2]!) > 60;
}
