import { describe, expect, test } from "bun:test";
import { ProviderLimiter } from "../../src/providers/limiter";
import { FakeClock, flush } from "./fake-clock";

/** A task the test finishes by hand, recording when it started. */
function gate() {
  let release!: () => void;
  const done = new Promise<void>((r) => {
    release = r;
  });
  return { done, release };
}

const never = () => new AbortController().signal;

describe("ProviderLimiter", () => {
  test("caps concurrency and hands slots over in FIFO order", async () => {
    const limiter = new ProviderLimiter({ concurrency: 2, rpm: 0 });
    const started: number[] = [];
    const gates = [gate(), gate(), gate(), gate()];
    const runs = gates.map((g, i) =>
      limiter.run(async () => {
        started.push(i);
        await g.done;
        return i;
      }, never()),
    );
    await flush();
    expect(started).toEqual([0, 1]);
    expect(limiter.stats()).toMatchObject({ active: 2, waiting: 2 });
    gates[1]?.release();
    await flush();
    expect(started).toEqual([0, 1, 2]);
    for (const g of gates) g.release();
    expect(await Promise.all(runs)).toEqual([0, 1, 2, 3]);
    expect(limiter.stats()).toMatchObject({ active: 0, waiting: 0 });
  });

  test("never starts more than rpm requests in a rolling window", async () => {
    const clock = new FakeClock();
    const limiter = new ProviderLimiter({ concurrency: 10, rpm: 3, clock });
    const startedAt: number[] = [];
    const runs = Array.from({ length: 7 }, () =>
      limiter.run(async () => {
        startedAt.push(clock.now());
      }, never()),
    );
    await flush();
    expect(startedAt).toEqual([0, 0, 0]);
    await clock.advance(59_999);
    expect(startedAt.length).toBe(3);
    await clock.advance(1);
    expect(startedAt).toEqual([0, 0, 0, 60_000, 60_000, 60_000]);
    await clock.advance(60_000);
    await Promise.all(runs);
    expect(startedAt).toEqual([0, 0, 0, 60_000, 60_000, 60_000, 120_000]);
  });

  test("a request's cost counts against the window", async () => {
    const clock = new FakeClock();
    const limiter = new ProviderLimiter({ concurrency: 10, rpm: 3, windowMs: 1000, clock });
    const startedAt: number[] = [];
    const run = (cost: number) =>
      limiter.run(
        async () => {
          startedAt.push(clock.now());
        },
        never(),
        cost,
      );
    const runs = [run(2), run(2), run(5)];
    await flush();
    expect(startedAt).toEqual([0]);
    await clock.advance(1000);
    // The second (cost 2) fits once the first leaves; the third's cost is clamped to rpm (3).
    expect(startedAt).toEqual([0, 1000]);
    await clock.advance(1000);
    await Promise.all(runs);
    expect(startedAt).toEqual([0, 1000, 2000]);
  });

  test("aborting while waiting for a slot rejects with the reason and frees the place", async () => {
    const limiter = new ProviderLimiter({ concurrency: 1, rpm: 0 });
    const g = gate();
    const first = limiter.run(() => g.done, never());
    const ac = new AbortController();
    const reason = new Error("cancelled");
    const waiting = limiter.run(async () => "never", ac.signal);
    const third = limiter.run(async () => "third", never());
    await flush();
    ac.abort(reason);
    expect(await waiting.catch((e: unknown) => e)).toBe(reason);
    expect(limiter.stats().waiting).toBe(1);
    g.release();
    await first;
    expect(await third).toBe("third");
  });

  test("aborting while waiting for the rate lets the next waiter through", async () => {
    const clock = new FakeClock();
    const limiter = new ProviderLimiter({ concurrency: 5, rpm: 1, windowMs: 1000, clock });
    const order: string[] = [];
    await limiter.run(async () => order.push("a"), never());
    const ac = new AbortController();
    const b = limiter.run(async () => order.push("b"), ac.signal);
    const c = limiter.run(async () => order.push("c"), never());
    await flush();
    ac.abort(new Error("stop"));
    await expect(b).rejects.toThrow("stop");
    await clock.advance(1000);
    await c;
    expect(order).toEqual(["a", "c"]);
  });

  test("the slot is released when the task throws", async () => {
    const limiter = new ProviderLimiter({ concurrency: 1, rpm: 0 });
    await expect(limiter.run(async () => Promise.reject(new Error("x")), never())).rejects.toThrow("x");
    expect(await limiter.run(async () => "ok", never())).toBe("ok");
    expect(limiter.stats().active).toBe(0);
  });

  test("with the system clock, a short window really spaces requests", async () => {
    const limiter = new ProviderLimiter({ concurrency: 4, rpm: 2, windowMs: 120 });
    const t0 = performance.now();
    const at: number[] = [];
    await Promise.all(
      Array.from({ length: 3 }, () => limiter.run(async () => at.push(performance.now() - t0), never())),
    );
    expect(at[1]).toBeLessThan(60);
    expect(at[2]).toBeGreaterThanOrEqual(115);
  });
});
