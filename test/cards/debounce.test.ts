import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { listAll } from "../../src/storage";
import { startTestServer, type TestServer, waitFor } from "../helpers";

const WINDOW_MS = 600;

const poll = (votes: number[]) => ({
  question: "Tea or coffee?",
  creator: { name: "Ada Lovelace" },
  options: votes.map((v, i) => ({ label: ["Tea", "Coffee", "Water"][i]!, votes: v })),
});

type CardView = { id: string; version: number; renderedVersion: number; imageUrl: string };

async function createCard(server: TestServer, votes: number[]): Promise<CardView> {
  const res = await server.api("/api/cards", {
    method: "POST",
    json: { template: "poll", data: poll(votes) },
  });
  expect(res.status).toBe(201);
  return (await res.json()) as CardView;
}

async function patch(server: TestServer, id: string, votes: number[]): Promise<CardView> {
  const res = await server.api(`/api/cards/${id}`, {
    method: "PATCH",
    json: { data: { options: poll(votes).options } },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as CardView;
}

/** The bytes the stable URL serves now, with the version its ETag names. */
async function stableImage(server: TestServer, id: string) {
  const res = await server.api(`/api/cards/${id}/image`, { key: null });
  const version = Number(/-(\d+)"$/.exec(res.headers.get("etag") ?? "")?.[1] ?? 0);
  return { version, bytes: new Uint8Array(await res.arrayBuffer()) };
}

async function preview(server: TestServer, votes: number[]): Promise<Uint8Array> {
  const res = await server.api("/api/cards/preview", {
    method: "POST",
    json: { template: "poll", data: poll(votes) },
  });
  return new Uint8Array(await res.arrayBuffer());
}

/** Resolves once the card has had no render due for longer than the window (its leading edge is open). */
async function idle(server: TestServer, id: string): Promise<void> {
  const dueAt = () =>
    (
      server.ctx.db.$client.query("SELECT render_due_at AS t FROM cards WHERE id = ?").get(id) as {
        t: number;
      }
    ).t;
  await waitFor(() => Date.now() - dueAt() > WINDOW_MS + 50, { what: "the card to go idle", intervalMs: 50 });
}

describe(`leading-edge debounce (CARD_DEBOUNCE_MS=${WINDOW_MS})`, () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { CARD_DEBOUNCE_MS: String(WINDOW_MS) } });
  });
  afterAll(() => server.close());

  test("after idle, one PATCH shows on the stable image within 500 ms", async () => {
    const card = await createCard(server, [1, 1]);
    await idle(server, card.id);
    const expected = await preview(server, [7, 2]);
    const started = performance.now();
    const updated = await patch(server, card.id, [7, 2]);
    const shown = await waitFor(
      async () => {
        const image = await stableImage(server, card.id);
        return image.version === updated.version ? image : null;
      },
      { timeoutMs: 5000, intervalMs: 5, what: "the new version on the stable URL" },
    );
    const elapsed = performance.now() - started;
    expect(Buffer.from(shown.bytes).equals(Buffer.from(expected))).toBe(true);
    expect(elapsed).toBeLessThan(500);
  }, 30_000);

  test("changes inside the window coalesce into one trailing render of the latest data", async () => {
    const card = await createCard(server, [0, 0, 0]);
    await idle(server, card.id);
    const renders: number[] = [];
    const off = server.ctx.cards.events.on("card:rendered", (e) => {
      if (e.cardId === card.id) renders.push(e.version);
    });
    await patch(server, card.id, [1, 0, 0]); // leading edge: renders at once
    for (let i = 2; i <= 20; i++) await patch(server, card.id, [i, 1, 0]);
    const last = await patch(server, card.id, [21, 5, 3]);
    await waitFor(async () => (await stableImage(server, card.id)).version === last.version, {
      timeoutMs: 10_000,
      what: "the trailing render",
    });
    off();
    expect(renders.at(-1)).toBe(last.version);
    expect(renders.length).toBeLessThanOrEqual(3);
    const shown = await stableImage(server, card.id);
    expect(Buffer.from(shown.bytes).equals(Buffer.from(await preview(server, [21, 5, 3])))).toBe(true);
  }, 30_000);

  test("a steady stream of changes renders about once per window", async () => {
    const card = await createCard(server, [0, 0]);
    const renders: number[] = [];
    const off = server.ctx.cards.events.on("card:rendered", (e) => {
      if (e.cardId === card.id) renders.push(e.version);
    });
    const started = performance.now();
    let i = 0;
    while (performance.now() - started < 4 * WINDOW_MS) {
      await patch(server, card.id, [++i, 1]);
      await Bun.sleep(20);
    }
    const streamMs = performance.now() - started;
    const last = await patch(server, card.id, [++i, 1]);
    await waitFor(async () => (await stableImage(server, card.id)).version === last.version, {
      timeoutMs: 10_000,
      what: "the final render",
    });
    off();
    // Renders happen during the stream (each window's trailing edge), not only after it, and never more
    // often than the window allows (+1 for the render after the stream, +1 for timer slack).
    expect(renders.length).toBeGreaterThanOrEqual(2);
    expect(renders.length).toBeLessThanOrEqual(Math.ceil(streamMs / WINDOW_MS) + 2);
  }, 30_000);
});

describe("a grace period for superseded images (CARD_SUPERSEDED_GRACE_MS)", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { CARD_DEBOUNCE_MS: "0", CARD_SUPERSEDED_GRACE_MS: "3000" } });
  });
  afterAll(() => server.close());

  test("the old image stays for the grace period, then a cleanup job removes it", async () => {
    const card = await createCard(server, [1, 2]);
    const rendered = new Promise<void>((resolve) => {
      const off = server.ctx.cards.events.on("card:rendered", (e) => {
        if (e.cardId === card.id && e.version === 2) {
          off();
          resolve();
        }
      });
    });
    await patch(server, card.id, [2, 2]);
    await rendered;
    const files = () => listAll(server.ctx.storage, `cards/${card.id}-`);
    expect((await files()).length).toBe(2);
    const old = await fetch(card.imageUrl);
    expect(old.status).toBe(200); // a cache that fetched version 1 can still revalidate it
    const left = await waitFor(async () => ((await files()).length === 1 ? files() : null), {
      timeoutMs: 20_000,
      intervalMs: 100,
      what: "the cleanup after the grace period",
    });
    expect(left[0]!.key).toContain(`-2-`);
  }, 30_000);
});

describe("a failed delete of a superseded image", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ env: { CARD_DEBOUNCE_MS: "0" } });
  });
  afterAll(() => server.close());

  test("is retried by a card.cleanup job, and the render still succeeds", async () => {
    const card = await createCard(server, [1, 1]);
    // The store refuses one delete, as an S3 endpoint that is briefly down would.
    const storage = server.ctx.storage;
    const original = storage.delete.bind(storage);
    let refused = 0;
    storage.delete = async (key) => {
      if (refused++ === 0) throw new Error("store unavailable");
      return original(key);
    };
    try {
      const updated = await patch(server, card.id, [2, 1]);
      await waitFor(async () => (await stableImage(server, card.id)).version === updated.version, {
        what: "the render",
      });
      const files = () => listAll(server.ctx.storage, `cards/${card.id}-`);
      const left = await waitFor(async () => ((await files()).length === 1 ? files() : null), {
        timeoutMs: 15_000,
        intervalMs: 50,
        what: "the cleanup job",
      });
      expect(left[0]!.key).toContain(`-${updated.version}-`);
      expect(refused).toBeGreaterThanOrEqual(1);
      // The file goes before the job's own completion commits: wait for the job to end, then check how.
      const cleanups = () =>
        server.ctx.db.$client
          .query(
            "SELECT status FROM jobs WHERE type = 'card.cleanup' AND json_extract(input, '$.cardId') = ?",
          )
          .all(card.id) as { status: string }[];
      const jobs = await waitFor(() => (cleanups().every((j) => j.status !== "active") ? cleanups() : null), {
        what: "the cleanup job to end",
      });
      expect(jobs.map((j) => j.status)).toEqual(["completed"]);
    } finally {
      storage.delete = original;
    }
  }, 30_000);
});
