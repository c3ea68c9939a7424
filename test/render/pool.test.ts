import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { getPriority } from "node:os";
import { CardDataError, RenderError, UnknownTemplateError } from "../../src/render/errors";
import { RenderPool } from "../../src/render/pool";
import { templates } from "../../src/render/templates";
import { waitFor } from "../helpers";
import { decode } from "./pixels";

const faultyWorker = new URL("./fixtures/faulty-worker.ts", import.meta.url);

function pollData(votes: number) {
  return {
    ...templates.poll.example,
    options: [
      { label: "Yes", votes },
      { label: "No", votes: 1 },
    ],
  };
}

async function reason(promise: Promise<unknown>): Promise<Error> {
  const result = await promise.then(
    () => new Error("expected a rejection"),
    (err: Error) => err,
  );
  return result;
}

describe("RenderPool", () => {
  let pool: RenderPool;

  beforeAll(async () => {
    pool = new RenderPool({ size: 2, workerUrl: faultyWorker, renderTimeoutMs: 8000 });
    // Both workers up (each renders a card of its own before it takes work), so later timings do not
    // include start-up.
    await waitFor(() => pool.stats.live === 2, { timeoutMs: 30_000, what: "both workers up" });
  });

  afterAll(async () => {
    await pool.close();
  });

  test("renders in parallel on every worker and queues the rest", async () => {
    const renders = [1, 2, 3, 4, 5].map((v) => pool.render("poll", pollData(v)));
    expect(pool.stats.busy).toBe(2);
    expect(pool.stats.queued).toBe(3);
    const cards = await Promise.all(renders);
    for (const card of cards) {
      expect(card.png).toBeInstanceOf(Uint8Array);
      const img = await decode(card.png);
      expect([img.width, img.height]).toEqual([1200, 800]);
    }
    expect(pool.stats.busy).toBe(0);
    expect(pool.stats.queued).toBe(0);
  });

  test("a failing render rejects only itself, with the typed error", async () => {
    const results = await Promise.allSettled([
      pool.render("poll", pollData(3)),
      pool.render("poll", { question: "missing everything" }),
      pool.render("no-such-template", {}),
      pool.render("og", templates.og.example),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "rejected", "fulfilled"]);
    const invalid = (results[1] as PromiseRejectedResult).reason;
    expect(invalid).toBeInstanceOf(CardDataError);
    expect(JSON.stringify(invalid.details)).toContain("options");
    const unknown = (results[2] as PromiseRejectedResult).reason;
    expect(unknown).toBeInstanceOf(UnknownTemplateError);
    expect(unknown.message).toContain("poll");
  });

  test("a crashed worker fails its render and is replaced", async () => {
    const respawns = pool.stats.respawns;
    const [crashed, other] = await Promise.allSettled([
      pool.render("__crash__", {}),
      pool.render("poll", pollData(4)),
    ]);
    expect(other.status).toBe("fulfilled");
    const err = (crashed as PromiseRejectedResult).reason;
    expect(err).toBeInstanceOf(RenderError);
    expect(err.code).toBe("worker_crashed");
    expect(pool.stats.respawns).toBe(respawns + 1);
    // The replacement takes jobs once ready: two renders then run at once again.
    for (let tries = 0; ; tries++) {
      const pair = [pool.render("poll", pollData(5)), pool.render("poll", pollData(6))];
      const both = pool.stats.busy === 2;
      await Promise.all(pair);
      if (both) break;
      expect(tries).toBeLessThan(50);
      await Bun.sleep(100);
    }
  });

  test("close rejects queued renders and refuses new ones", async () => {
    const own = new RenderPool({ size: 1 });
    const pending = [own.render("poll", pollData(1)), own.render("poll", pollData(2))].map(reason);
    await own.close();
    for (const err of await Promise.all(pending)) expect((err as RenderError).code).toBe("pool_closed");
    expect(((await reason(own.render("poll", pollData(3)))) as RenderError).code).toBe("pool_closed");
  });
});

describe("RenderPool recycling", () => {
  test("a worker left idle after rendering is replaced by a fresh one, one at a time, and renders go on", async () => {
    const pool = new RenderPool({ size: 2, recycleIdleMs: 300 });
    try {
      // Both up first, so each renders one of the two cards.
      await waitFor(() => pool.stats.live === 2, { timeoutMs: 30_000, what: "both workers up" });
      await Promise.all([pool.render("poll", pollData(1)), pool.render("poll", pollData(2))]);
      // Both rendered, so both are replaced, the second only once the first's replacement is up: at every
      // moment some worker can render.
      let fewestLive = 2;
      await waitFor(
        () => {
          fewestLive = Math.min(fewestLive, pool.stats.live);
          return pool.stats.recycled >= 2 && pool.stats.live === 2;
        },
        { timeoutMs: 30_000, what: "both workers recycled" },
      ).catch((err: Error) => {
        throw new Error(`${err.message}: ${JSON.stringify(pool.stats)}`);
      });
      expect(fewestLive).toBe(1);
      expect(pool.stats.respawns).toBe(0); // a retirement is not a crash
      expect(() => pool.check()).not.toThrow();
      // Fresh workers that have rendered nothing are left alone, however long they sit idle.
      await Bun.sleep(900);
      expect(pool.stats.recycled).toBe(2);
      const card = await pool.render("poll", pollData(3));
      expect((await decode(card.png)).width).toBe(1200);
    } finally {
      await pool.close();
    }
  }, 60_000);

  test("a pool of one keeps its worker: there would be none to render meanwhile", async () => {
    const pool = new RenderPool({ size: 1, recycleIdleMs: 50 });
    try {
      await pool.render("poll", pollData(1));
      await Bun.sleep(500);
      expect(pool.stats.recycled).toBe(0);
      expect(pool.stats.live).toBe(1);
    } finally {
      await pool.close();
    }
  }, 30_000);
});

describe("RenderPool timeouts", () => {
  test("a render that hangs is abandoned and its worker replaced", async () => {
    // Long enough for a first render (fonts, wasm) on a loaded machine; a hang still ends in seconds.
    const pool = new RenderPool({ size: 1, workerUrl: faultyWorker, renderTimeoutMs: 5000 });
    try {
      await pool.render("poll", pollData(1));
      const err = (await reason(pool.render("__hang__", {}))) as RenderError;
      expect(err.code).toBe("render_timeout");
      const card = await pool.render("poll", pollData(2));
      expect(card.width).toBe(1200);
      expect(pool.stats.respawns).toBe(1);
    } finally {
      await pool.close();
    }
  }, 30_000);
});

describe("RenderPool health", () => {
  test("ready once a worker is up; not ready when closed", async () => {
    const pool = new RenderPool({ size: 1 });
    expect(() => pool.check()).not.toThrow(); // starting, within its grace
    await pool.render("poll", pollData(1));
    expect(pool.stats.live).toBe(1);
    expect(() => pool.check()).not.toThrow();
    await pool.close();
    expect(() => pool.check()).toThrow("closed");
  });

  test("workers that die as they start make the pool unhealthy, naming it", async () => {
    const pool = new RenderPool({
      size: 1,
      workerUrl: new URL("./fixtures/broken-worker.ts", import.meta.url),
    });
    try {
      await waitFor(() => pool.stats.respawns > 0, { what: "the broken worker to die" });
      expect(pool.stats.live).toBe(0);
      expect(() => pool.check()).toThrow("render pool has no live workers");
    } finally {
      await pool.close();
    }
  });
});

describe("RenderPool with CARD_RENDERER=takumi", () => {
  test("workers render with takumi: same size, its own pixels, invalid data still a CardDataError", async () => {
    const takumi = new RenderPool({ size: 1, engine: "takumi" });
    const satori = new RenderPool({ size: 1 });
    try {
      const [a, b] = await Promise.all([
        takumi.render("poll", pollData(3)),
        satori.render("poll", pollData(3)),
      ]);
      expect([a.width, a.height]).toEqual([1200, 800]);
      const img = await decode(a.png);
      expect([img.width, img.height]).toEqual([1200, 800]);
      expect(Buffer.from(a.png).equals(Buffer.from(b.png))).toBe(false);
      expect(await reason(takumi.render("poll", { question: "" }))).toBeInstanceOf(CardDataError);
      expect(takumi.stats.respawns).toBe(0);
    } finally {
      await Promise.all([takumi.close(), satori.close()]);
    }
  });

  test.if(process.platform === "linux")(
    "takumi's rasterising threads (Bun's work pool) run at the render nice level",
    async () => {
      const callerNice = getPriority(0); // a suite started under `nice` begins above 0
      const pool = new RenderPool({ size: 1, engine: "takumi", nice: 7 });
      try {
        for (let i = 0; i < 4; i++) await pool.render("poll", pollData(i));
        const nices = readdirSync("/proc/self/task")
          .filter((tid) => readFileSync(`/proc/self/task/${tid}/comm`, "utf8").startsWith("Bun Pool"))
          .map((tid) => {
            const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
            return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]);
          });
        expect(nices.length).toBeGreaterThan(0);
        expect(nices.every((n) => n === 7)).toBe(true);
        expect(getPriority(0)).toBe(callerNice); // the calling (event loop) thread keeps its priority
      } finally {
        await pool.close();
      }
    },
  );
});
