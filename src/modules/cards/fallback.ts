import sharp from "sharp";

let cached: Promise<Uint8Array> | undefined;

/** The image served at a card's stable URL before its first render lands (or after a failed one). */
export function fallbackImage(): Promise<Uint8Array> {
  cached ??= sharp(
    Buffer.from(
      `<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="800">
        <rect width="1200" height="800" fill="#f1f5f9"/>
        <text x="600" y="410" font-family="sans-serif" font-size="44" fill="#64748b" text-anchor="middle">Image on its way…</text>
      </svg>`,
    ),
  )
    .png()
    .toBuffer()
    .then((b) => new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
  return cached;
}
