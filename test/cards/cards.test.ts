import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import sharp from "sharp";
import { loadConfig } from "../../src/config";
import { createCardRenderer } from "../../src/render/render";
import { listAll } from "../../src/storage";
import { startTestServer, type TestServer, waitFor } from "../helpers";
import { type RunningS3rver, startS3rver } from "../storage/s3rver";

const poll = (votes: number[]) => ({
  question: "Which topping wins? 🍕",
  creator: { name: "Ada Lovelace", handle: "ada" },
  options: votes.map((v, i) => ({ label: ["Mushrooms", "Pineapple", "Olives", "Basil"][i]!, votes: v })),
});

async function decode(res: Response) {
  const bytes = new Uint8Array(await res.arrayBuffer());
  const img = sharp(bytes);
  const meta = await img.metadata();
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  return { meta, data, info, bytes };
}

/** Distinct colours in a coarse sample: a blank image has one or two. */
function colourCount(data: Buffer, channels: number): number {
  const seen = new Set<string>();
  for (let i = 0; i < data.length; i += channels * 97) seen.add(`${data[i]},${data[i + 1]},${data[i + 2]}`);
  return seen.size;
}

/** Jobs of `type` for one card, in any of `statuses` (all when omitted). */
function jobsOf(server: TestServer, type: string, cardId: string, statuses?: string[]): number {
  const inStatus = statuses ? `AND status IN (${statuses.map(() => "?").join(", ")})` : "";
  const row = server.ctx.db.$client
    .query(
      `SELECT count(*) AS n FROM jobs WHERE type = ? AND json_extract(input, '$.cardId') = ? ${inStatus}`,
    )
    .get(type, cardId, ...(statuses ?? [])) as { n: number };
  return row.n;
}

function suite(
  name: string,
  env: () => Promise<{ env: Record<string, string>; stop?: () => Promise<void> }>,
) {
  describe(`live cards (${name} storage)`, () => {
    let server: TestServer;
    let stop: (() => Promise<void>) | undefined;

    beforeAll(async () => {
      const e = await env();
      stop = e.stop;
      server = await startTestServer({ env: e.env });
    });
    afterAll(async () => {
      await server.close();
      await stop?.();
    });

    test("creating a card renders it at once; the PNG is 1200x800 and not blank", async () => {
      const res = await server.api("/api/cards", {
        method: "POST",
        json: { template: "poll", data: poll([3, 1, 0, 0]) },
      });
      expect(res.status).toBe(201);
      const card = (await res.json()) as { id: string; status: string; imageUrl: string; version: number };
      expect(card).toMatchObject({ status: "rendered", version: 1 });
      expect(card.imageUrl).toMatch(new RegExp(`cards/${card.id}-1-\\d+\\.png$`));
      const img = await server.api(`/api/cards/${card.id}/image`, { key: null });
      expect(img.status).toBe(200);
      expect(img.headers.get("cache-control")).toBe("public, max-age=300, must-revalidate");
      const { meta, data, info } = await decode(img);
      expect([meta.width, meta.height, meta.format]).toEqual([1200, 800, "png"]);
      expect(colourCount(data, info.channels)).toBeGreaterThan(5);
    });

    test("300 PATCHes in ~1.5 s render at most twice, end on the final data, and never keep more than two images", async () => {
      const created = (await (
        await server.api("/api/cards", {
          method: "POST",
          json: { template: "poll", data: poll([0, 0, 0, 0]) },
        })
      ).json()) as { id: string };
      const renders: number[] = [];
      const off = server.ctx.queue.events.on("card:rendered", (e) => {
        if (e.cardId === created.id) renders.push(e.version);
      });
      const files = () => listAll(server.ctx.storage, `cards/${created.id}-`);
      let mostFiles = 0;
      const t0 = Date.now();
      for (let i = 1; i <= 300; i++) {
        const res = await server.api(`/api/cards/${created.id}`, {
          method: "PATCH",
          json: { data: { options: poll([i, 300 - i, 0, 0]).options } },
        });
        expect(res.status).toBe(200);
        if (i % 10 === 0) mostFiles = Math.max(mostFiles, (await files()).length);
        const spare = t0 + i * 5 - Date.now();
        if (spare > 0) await Bun.sleep(spare);
      }
      expect(Date.now() - t0).toBeLessThan(4000);
      const final = await waitFor(
        async () => {
          const c = (await (await server.api(`/api/cards/${created.id}`)).json()) as {
            version: number;
            renderedVersion: number;
            data: { options: { votes: number }[] };
          };
          return c.renderedVersion === c.version ? c : null;
        },
        { timeoutMs: 10_000, what: "the final render" },
      );
      off();
      expect(final.version).toBe(301);
      expect(final.data.options[0]!.votes).toBe(300);
      expect(renders.length).toBeLessThanOrEqual(2);
      expect(renders.at(-1)).toBe(301);
      // The superseded image goes once the pointer has moved, within the render job (no cleanup job).
      await waitFor(() => jobsOf(server, "card.render", created.id, ["queued", "active"]) === 0, {
        what: "the render job to finish",
      });
      const left = await files();
      expect(left).toHaveLength(1);
      expect(left[0]!.key).toMatch(new RegExp(`cards/${created.id}-301-\\d+\\.png$`));
      expect(mostFiles).toBeLessThanOrEqual(2);
      expect(jobsOf(server, "card.cleanup", created.id)).toBe(0);
    }, 30_000);

    test("invalid template data → 422 naming the field, and no card written", async () => {
      const count = () =>
        (server.ctx.db.$client.query("SELECT count(*) AS n FROM cards").get() as { n: number }).n;
      const before = count();
      const res = await server.api("/api/cards", {
        method: "POST",
        json: { template: "poll", data: { ...poll([1, 2]), options: [{ label: "only one", votes: 1 }] } },
      });
      expect(res.status).toBe(422);
      const body = (await res.json()) as { error: { code: string; message: string } };
      expect(body.error.code).toBe("invalid_card_data");
      expect(body.error.message).toContain("options");
      const unknown = await server.api("/api/cards", {
        method: "POST",
        json: { template: "nope", data: {} },
      });
      expect(unknown.status).toBe(422);
      expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe("unknown_template");
      expect(count()).toBe(before);
    });
  });
}

suite("local", async () => ({ env: {} }));

let s3: RunningS3rver;
suite("s3rver", async () => {
  s3 = await startS3rver(["cards-bucket"]);
  return {
    env: {
      STORAGE: "s3",
      S3_ENDPOINT: s3.endpoint,
      S3_BUCKET: "cards-bucket",
      S3_REGION: s3.credentials.region,
      S3_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      S3_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      S3_PATH_STYLE: "true",
    },
    stop: () => s3.stop(),
  };
});

describe("card images over HTTP", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer();
  });
  afterAll(() => server.close());

  test("the stable URL revalidates with ETag → 304; versioned URLs are immutable", async () => {
    const card = (await (
      await server.api("/api/cards", { method: "POST", json: { template: "poll", data: poll([1, 1]) } })
    ).json()) as { id: string; imageUrl: string };
    const first = await server.api(`/api/cards/${card.id}/image`, { key: null });
    const etag = first.headers.get("etag")!;
    expect(etag).toBeTruthy();
    const again = await server.api(`/api/cards/${card.id}/image`, {
      key: null,
      headers: { "if-none-match": etag },
    });
    expect(again.status).toBe(304);
    const versioned = await fetch(card.imageUrl);
    expect(versioned.status).toBe(200);
    expect(versioned.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
    expect(versioned.headers.get("content-type")).toBe("image/png");
  });

  test("a 75% option's bar is about three times as long as a 25% one", async () => {
    const res = await server.api("/api/cards/preview", {
      method: "POST",
      json: { template: "poll", data: { ...poll([3, 1]), highlightLeader: false } },
    });
    expect(res.status).toBe(200);
    const { data, info } = await decode(res);
    const bars = barLengths(data, info.width, info.height, info.channels);
    expect(bars).toHaveLength(2);
    const ratio = bars[0]! / bars[1]!;
    expect(ratio).toBeGreaterThan(2.6);
    expect(ratio).toBeLessThan(3.4);
  });

  test("a card with no image yet gets the fallback image with no-store", async () => {
    const id = Bun.randomUUIDv7();
    server.ctx.db.$client
      .query(
        "INSERT INTO cards (id, owner_id, template, data, created_at, updated_at) VALUES (?, 'x', 'poll', '{}', 0, 0)",
      )
      .run(id);
    const res = await server.api(`/api/cards/${id}/image`, { key: null });
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-store");
    expect((await decode(res)).meta.width).toBe(1200);
    expect((await server.api(`/api/cards/${Bun.randomUUIDv7()}/image`, { key: null })).status).toBe(404);
  });

  test("another user's card is 404; templates are listed with schemas and examples", async () => {
    const other = (await (
      await server.api("/api/users", { method: "POST", json: { name: "other", role: "user" } })
    ).json()) as { key: string };
    const card = (await (
      await server.api("/api/cards", { method: "POST", json: { template: "og", data: { title: "Hello" } } })
    ).json()) as { id: string };
    expect((await server.api(`/api/cards/${card.id}`, { key: other.key })).status).toBe(404);
    expect((await server.api(`/api/cards/${card.id}`, { key: other.key, method: "DELETE" })).status).toBe(
      404,
    );
    const templates = (await (await server.api("/api/cards/templates")).json()) as {
      templates: { name: string }[];
    };
    expect(templates.templates.map((t) => t.name).toSorted()).toEqual(["og", "poll"]);
    expect((await server.api(`/api/cards/${card.id}`, { method: "DELETE" })).status).toBe(204);
    expect((await listAll(server.ctx.storage, `cards/${card.id}-`)).length).toBe(0);
  });
});

/**
 * Each option is a full-width box whose left part is filled in proportion to its share. Bands are the
 * tall runs of rows where the box's left edge (x = 80, between the rounded corner and the label) is not
 * the background; in each, a row near the top (above the label) is scanned from that edge for as long as
 * the pixels keep the fill colour.
 */
function barLengths(data: Buffer, width: number, height: number, channels: number): number[] {
  const px = (x: number, y: number) => {
    const i = (y * width + x) * channels;
    return [data[i]!, data[i + 1]!, data[i + 2]!];
  };
  const same = (a: number[], b: number[]) => a.every((v, k) => Math.abs(v - b[k]!) <= 3);
  const background = px(width - 2, height - 2);
  const x0 = 80;
  const bands: [number, number][] = [];
  let top = -1;
  for (let y = 0; y < height; y++) {
    const inBox = !same(px(x0, y), background);
    if (inBox && top < 0) top = y;
    if (!inBox && top >= 0) {
      if (y - top > 70) bands.push([top, y]);
      top = -1;
    }
  }
  return bands.map(([bandTop]) => {
    const y = bandTop + 8;
    const fill = px(x0, y);
    let x = x0;
    while (x < width && same(px(x, y), fill)) x++;
    return x - x0;
  });
}

describe("CARD_RENDERER=takumi", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { CARD_RENDERER: "takumi" } });
  });
  afterAll(() => server.close());

  test("cards are rendered by takumi and served the same way", async () => {
    const res = await server.api("/api/cards", {
      method: "POST",
      json: { template: "poll", data: poll([3, 1]) },
    });
    expect(res.status).toBe(201);
    const card = (await res.json()) as { id: string; status: string };
    expect(card.status).toBe("rendered");
    const { meta, data, info, bytes } = await decode(
      await server.api(`/api/cards/${card.id}/image`, { key: null }),
    );
    expect([meta.width, meta.height, meta.format]).toEqual([1200, 800, "png"]);
    expect(colourCount(data, info.channels)).toBeGreaterThan(5);
    // The stored PNG is takumi's: byte for byte what the takumi engine draws for this data, not satori's.
    const stored = Buffer.from(bytes);
    const takumi = await createCardRenderer({ engine: "takumi" }).render("poll", poll([3, 1]));
    const satori = await createCardRenderer({ engine: "satori" }).render("poll", poll([3, 1]));
    expect(stored.equals(Buffer.from(takumi.png))).toBe(true);
    expect(stored.equals(Buffer.from(satori.png))).toBe(false);
  });

  test("an unknown engine fails the configuration, naming the variable", async () => {
    expect(() => loadConfig({ CARD_RENDERER: "chromium" })).toThrow(/CARD_RENDERER/);
  });
});
