/**
 * Cards over HTTP, beyond create/render/cache (test/cards/cards.test.ts): `GET /api/cards` lists only the
 * caller's own cards, and `POST /api/cards/preview` is rate limited per user.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import sharp from "sharp";
import type { z } from "zod";
import type { CardList as CardListSchema, CardView } from "../../src/modules/cards/model";
import { templates } from "../../src/render/templates";
import { startTestServer, type TestServer } from "../helpers";

type CardList = z.infer<typeof CardListSchema>;

/** The preview limit in src/modules/cards/index.ts: 30 renders per user per minute. */
const PREVIEW_LIMIT = 30;

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ env: { CREDITS_ENABLED: "false" } });
});
afterAll(() => server.close());

async function createUser(name: string): Promise<{ id: string; key: string }> {
  const res = await server.api("/api/users", { method: "POST", json: { name, role: "user" } });
  expect(res.status).toBe(201);
  const body = (await res.json()) as { user: { id: string }; key: string };
  return { id: body.user.id, key: body.key };
}

async function createCard(key: string, title: string): Promise<CardView> {
  const data = { ...templates.og.example, title };
  const res = await server.api("/api/cards", { method: "POST", key, json: { template: "og", data } });
  expect(res.status).toBe(201);
  return (await res.json()) as CardView;
}

async function list(key: string, query = ""): Promise<CardList> {
  const res = await server.api(`/api/cards${query}`, { key });
  expect(res.status).toBe(200);
  return (await res.json()) as CardList;
}

describe("GET /api/cards", () => {
  test("lists the caller's own cards, newest first; another user's are not listed", async () => {
    const alice = await createUser("alice");
    const bob = await createUser("bob");
    const a1 = await createCard(alice.key, "alice one");
    const b1 = await createCard(bob.key, "bob one");
    const a2 = await createCard(alice.key, "alice two");

    const mine = await list(alice.key);
    expect(mine.cards.map((c) => c.id)).toEqual([a2.id, a1.id]);
    expect(mine.cards.map((c) => c.data.title)).toEqual(["alice two", "alice one"]);
    expect(mine.cards[0]).toMatchObject({ template: "og", status: "rendered" });
    expect(mine.nextCursor).toBeNull();

    expect((await list(bob.key)).cards.map((c) => c.id)).toEqual([b1.id]);
    // Not visible one by one either.
    expect((await server.api(`/api/cards/${b1.id}`, { key: alice.key })).status).toBe(404);
  });

  test("pages with limit and cursor, still only over the caller's cards", async () => {
    const carol = await createUser("carol");
    const dave = await createUser("dave");
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      ids.unshift((await createCard(carol.key, `carol ${i}`)).id);
      await createCard(dave.key, `dave ${i}`);
    }
    const first = await list(carol.key, "?limit=2");
    expect(first.cards.map((c) => c.id)).toEqual(ids.slice(0, 2));
    expect(first.nextCursor).toBe(ids[1]!);
    const second = await list(carol.key, `?limit=2&cursor=${first.nextCursor}`);
    expect(second.cards.map((c) => c.id)).toEqual(ids.slice(2));
    expect(second.nextCursor).toBeNull();
  });

  test("without credentials → 401", async () => {
    expect((await server.api("/api/cards", { key: null })).status).toBe(401);
  });
});

describe("POST /api/cards/preview rate limit", () => {
  const preview = (key: string) =>
    server.api("/api/cards/preview", {
      method: "POST",
      key,
      json: { template: "og", data: templates.og.example },
    });

  test(`${PREVIEW_LIMIT} previews a minute render; the next gets 429 rate_limited; other users are unaffected`, async () => {
    const erin = await createUser("erin");
    // All at once: the limit is counted as requests arrive (a burst of 30, then one more every 2 s), so a
    // slow machine rendering them one by one would earn tokens back in between.
    const all = await Promise.all(Array.from({ length: PREVIEW_LIMIT + 1 }, () => preview(erin.key)));
    const ok = all.filter((r) => r.status === 200);
    expect(ok).toHaveLength(PREVIEW_LIMIT);
    const limited = all.find((r) => r.status === 429)!;
    for (const [i, res] of ok.entries()) {
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toBe("image/png");
      if (i === 0) {
        const meta = await sharp(new Uint8Array(await res.arrayBuffer())).metadata();
        expect([meta.format, meta.width, meta.height]).toEqual(["png", 1200, 630]);
      } else {
        await res.arrayBuffer();
      }
    }
    expect(limited.status).toBe(429);
    const body = (await limited.json()) as { error: { code: string; details: { retryAfterMs: number } } };
    expect(body.error.code).toBe("rate_limited");
    // A token bucket: the burst of 30 is spent, and one more preview is allowed every 2 s.
    expect(body.error.details.retryAfterMs).toBeGreaterThan(0);
    expect(body.error.details.retryAfterMs).toBeLessThanOrEqual(2_000);

    const frank = await createUser("frank");
    expect((await preview(frank.key)).status).toBe(200);
  }, 30_000);

  test("the 429 carries a Retry-After header in seconds", async () => {
    const gina = await createUser("gina");
    const all = await Promise.all(Array.from({ length: PREVIEW_LIMIT + 1 }, () => preview(gina.key)));
    const limited = all.find((r) => r.status === 429)!;
    expect(all.filter((r) => r.status === 200)).toHaveLength(PREVIEW_LIMIT);
    const seconds = Number(limited.headers.get("retry-after"));
    expect(seconds).toBeGreaterThanOrEqual(1);
    expect(seconds).toBeLessThanOrEqual(2);
  }, 30_000);
});
