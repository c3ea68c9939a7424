import { afterAll, beforeAll, beforeEach, describe, expect, test } from "bun:test";
import sharp from "sharp";
import { createAvatarResolver } from "../../src/render/avatar";
import { ENGINES } from "../../src/render/engine";
import { createCardRenderer } from "../../src/render/render";
import { prepareCardData, templates } from "../../src/render/templates";
import { avatarColour, palette } from "../../src/render/templates/theme";
import { decode, near } from "./pixels";

const RED = { r: 220, g: 20, b: 20 };

async function image(format: "png" | "webp" | "jpeg", width = 300, height = 200): Promise<Buffer> {
  return sharp({ create: { width, height, channels: 3, background: RED } })
    .toFormat(format)
    .toBuffer();
}

describe("avatar resolver", () => {
  let server: ReturnType<typeof Bun.serve>;
  let origin = "";
  let hits: string[] = [];
  const files: Record<string, { body: Uint8Array | string; type: string }> = {};

  beforeAll(async () => {
    files["/a.png"] = { body: await image("png"), type: "image/png" };
    files["/a.webp"] = { body: await image("webp"), type: "image/webp" };
    files["/big.png"] = { body: new Uint8Array(3 * 1024 * 1024), type: "image/png" };
    files["/text"] = { body: "not an image", type: "image/png" };
    files["/a.svg"] = {
      body: '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>',
      type: "image/svg+xml",
    };
    server = Bun.serve({
      port: 0,
      fetch: async (req) => {
        const path = new URL(req.url).pathname;
        hits.push(path);
        if (path === "/slow") {
          await Bun.sleep(3000);
          return new Response("late");
        }
        const file = files[path];
        return file
          ? new Response(file.body, { headers: { "content-type": file.type } })
          : new Response("no", { status: 404 });
      },
    });
    origin = `http://127.0.0.1:${server.port}`;
  });

  afterAll(() => {
    server.stop(true);
  });

  beforeEach(() => {
    hits = [];
  });

  const resolver = (opts: Parameters<typeof createAvatarResolver>[0] = {}) =>
    createAvatarResolver({ guard: { allowedOrigins: [origin] }, timeoutMs: 500, ...opts });

  async function decodeDataUrl(url: string | undefined) {
    expect(url).toStartWith("data:image/png;base64,");
    return decode(Buffer.from(url!.slice("data:image/png;base64,".length), "base64"));
  }

  test("fetches an image and converts it to a small square PNG", async () => {
    for (const path of ["/a.png", "/a.webp"]) {
      const img = await decodeDataUrl(await resolver()(`${origin}${path}`));
      expect([img.width, img.height]).toEqual([128, 128]);
      expect(near(img.at(64, 64), "#dc1414", 8)).toBe(true);
    }
  });

  test("converts inline data URLs too, and honours the size option", async () => {
    const webp = `data:image/webp;base64,${(await image("webp")).toString("base64")}`;
    const img = await decodeDataUrl(await resolver({ size: 48 })(webp));
    expect([img.width, img.height]).toEqual([48, 48]);
  });

  test("caches results and shares one fetch between concurrent calls", async () => {
    const resolve = resolver();
    const [a, b] = await Promise.all([resolve(`${origin}/a.png`), resolve(`${origin}/a.png`)]);
    expect(a).toBe(b!);
    await resolve(`${origin}/a.png`);
    expect(hits).toEqual(["/a.png"]);
  });

  test("remembers failures briefly, then tries again", async () => {
    let now = 0;
    const resolve = resolver({ now: () => now, failureTtlMs: 1000 });
    expect(await resolve(`${origin}/missing`)).toBeUndefined();
    expect(await resolve(`${origin}/missing`)).toBeUndefined();
    expect(hits).toEqual(["/missing"]);
    now = 1001;
    await resolve(`${origin}/missing`);
    expect(hits).toEqual(["/missing", "/missing"]);
  });

  test("every failure resolves to undefined", async () => {
    const resolve = resolver();
    const failures = [
      `${origin}/missing`, // 404
      `${origin}/big.png`, // over 2 MiB
      `${origin}/slow`, // over the time limit
      `${origin}/text`, // not an image
      `${origin}/a.svg`, // SVG is refused
      "ftp://example.com/a.png",
      "data:text/plain;base64,aGVsbG8=",
      "data:image/png;base64,bm90IGEgcG5n",
    ];
    const started = performance.now();
    for (const url of failures) expect(await resolve(url)).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(2500);
    expect(await resolve(undefined)).toBeUndefined();
  });

  test("a refused URL is never fetched", async () => {
    const resolve = createAvatarResolver();
    expect(await resolve(`${origin}/a.png`)).toBeUndefined();
    expect(await resolve("http://169.254.169.254/latest/meta-data/")).toBeUndefined();
    expect(hits).toEqual([]);
  });

  test.each(ENGINES)(
    "a card whose avatar is refused shows initials; an allowed one shows the image (%s)",
    async (engine) => {
      const renderer = createCardRenderer({ engine });
      const creator = { name: "Ada Lovelace", avatarUrl: `${origin}/a.png` };
      const data = { ...templates.poll.example, creator };
      // The avatar circle spans x 64–120, y 52–108; (92, 58) is inside it, above the initials' glyphs.
      const refused = await prepareCardData("poll", data, createAvatarResolver());
      const withInitials = await decode((await renderer.render("poll", refused)).png);
      expect(near(withInitials.at(92, 58), avatarColour("Ada Lovelace"), 4)).toBe(true);
      expect(near(withInitials.at(92, 58), palette(undefined).background)).toBe(false);

      const allowed = await prepareCardData("poll", data, resolver());
      const withImage = await decode((await renderer.render("poll", allowed)).png);
      expect(near(withImage.at(92, 80), "#dc1414", 10)).toBe(true);
    },
  );
});

describe("avatar fetch guard (private and loopback targets fall back to initials)", () => {
  /** Every URL the injected fetch was asked for, and every hostname the injected resolver was asked about. */
  let fetched: string[] = [];
  let looked: string[] = [];
  let png: Buffer;

  // Names a resolver would answer; nothing here touches real DNS or the network.
  const dns: Record<string, string[]> = {
    "avatars.example.com": ["93.184.216.34"],
    "loopback.example.com": ["127.0.0.1"],
    "loopback6.example.com": ["::1"],
    // One public and one loopback record: any refused address refuses the host.
    "mixed.example.com": ["93.184.216.34", "127.0.0.1"],
  };

  beforeAll(async () => {
    png = await image("png");
  });
  beforeEach(() => {
    fetched = [];
    looked = [];
  });

  const guarded = () =>
    createAvatarResolver({
      timeoutMs: 500,
      guard: {
        lookup: async (host) => {
          looked.push(host);
          const addresses = dns[host];
          if (!addresses) throw new Error(`ENOTFOUND ${host}`);
          return addresses;
        },
        fetch: async (url) => {
          fetched.push(url);
          return new Response(new Uint8Array(png), { headers: { "content-type": "image/png" } });
        },
      },
    });

  test("control: a hostname resolving to a public address is fetched through the injected fetch", async () => {
    const url = "https://avatars.example.com/ada.png";
    expect(await guarded()(url)).toStartWith("data:image/png;base64,");
    expect(looked).toEqual(["avatars.example.com"]);
    expect(fetched).toEqual([url]);
  });

  test.each([
    ["10.0.0.0/8, low end", "https://10.0.0.1/ada.png"],
    ["10.0.0.0/8, high end", "https://10.255.255.254/ada.png"],
    ["IPv6 loopback [::1]", "https://[::1]/ada.png"],
    ["IPv6 loopback with a port", "http://[::1]:8080/ada.png"],
    ["IPv4-mapped IPv6 loopback", "https://[::ffff:127.0.0.1]/ada.png"],
  ])("%s is refused without a request", async (_label, url) => {
    expect(await guarded()(url)).toBeUndefined();
    expect(fetched).toEqual([]);
  });

  test.each([
    ["resolves to 127.0.0.1", "loopback.example.com"],
    ["resolves to ::1", "loopback6.example.com"],
    ["has a public and a loopback record", "mixed.example.com"],
  ])("a hostname that %s is looked up, then refused without a request", async (_label, host) => {
    expect(await guarded()(`https://${host}/ada.png`)).toBeUndefined();
    expect(looked).toEqual([host]);
    expect(fetched).toEqual([]);
  });

  test.each(ENGINES)(
    "a card whose avatar host resolves to loopback renders with initials (%s)",
    async (engine) => {
      const renderer = createCardRenderer({ engine });
      const creator = { name: "Ada Lovelace", avatarUrl: "https://loopback.example.com/ada.png" };
      const data = await prepareCardData("poll", { ...templates.poll.example, creator }, guarded());
      const card = await decode((await renderer.render("poll", data)).png);
      // Same probe point as the refused/allowed card test above: the initials circle's colour, not the red image.
      expect(near(card.at(92, 58), avatarColour("Ada Lovelace"), 4)).toBe(true);
      expect(near(card.at(92, 80), "#dc1414", 10)).toBe(false);
      expect(looked).toEqual(["loopback.example.com"]);
      expect(fetched).toEqual([]);
    },
  );
});
