import sharp from "sharp";

/** The dashboard's logo as a standalone icon (colours inline: no stylesheet applies to a favicon). */
export const FAVICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
<rect x="2" y="2" width="28" height="28" rx="8" fill="#4f46e5"/>
<path d="M9 22 L14 12 L18 19 L20.5 15.5 L24 22 Z" fill="#ffffff"/>
<circle cx="21.5" cy="10.5" r="2.2" fill="#ffffff"/>
</svg>`;

let ico: Promise<Uint8Array> | null = null;

/**
 * `/favicon.ico`: browsers ask for it whatever the page links, and not every one reads SVG there. An ICO may
 * hold a PNG as is (one 22-byte header and directory entry before it), so sharp's 32x32 PNG is enough.
 * Made once, on first request.
 */
export function faviconIco(): Promise<Uint8Array> {
  ico ??= sharp(Buffer.from(FAVICON_SVG))
    .resize(32, 32)
    .png()
    .toBuffer()
    .then((png) => {
      const head = Buffer.alloc(22);
      head.writeUInt16LE(0, 0); // reserved
      head.writeUInt16LE(1, 2); // type: icon
      head.writeUInt16LE(1, 4); // one image
      head.writeUInt8(32, 6); // width
      head.writeUInt8(32, 7); // height
      head.writeUInt16LE(1, 10); // colour planes
      head.writeUInt16LE(32, 12); // bits per pixel
      head.writeUInt32LE(png.byteLength, 14);
      head.writeUInt32LE(22, 18); // where the PNG starts
      return new Uint8Array(Buffer.concat([head, png]));
    });
  return ico;
}
