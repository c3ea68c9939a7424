import { expect, test } from "bun:test";
import { Coalescer } from "../../src/modules/realtime/coalescer";

function recorder(intervalMs: number) {
  const sent: [string, number, number][] = [];
  const t0 = performance.now();
  const c = new Coalescer<number>(intervalMs, (key, v) => sent.push([key, v, performance.now() - t0]));
  return { c, sent };
}

test("the first update goes out at once; a burst within the window becomes one trailing update, latest wins", async () => {
  const { c, sent } = recorder(100);
  for (let i = 1; i <= 50; i++) c.push("job", i);
  expect(sent.map(([, v]) => v)).toEqual([1]);
  await Bun.sleep(150);
  expect(sent.map(([, v]) => v)).toEqual([1, 50]);
  expect(sent[1]![2]).toBeGreaterThanOrEqual(95);
});

test("keys are independent", () => {
  const { c, sent } = recorder(100);
  c.push("a", 1);
  c.push("b", 1);
  c.push("a", 2);
  expect(sent).toHaveLength(2);
  c.clear();
});

test("flush sends the pending update now, cancels the timer and forgets the key", async () => {
  const { c, sent } = recorder(100);
  c.push("job", 1);
  c.push("job", 2);
  c.push("job", 3);
  c.flush("job");
  expect(sent.map(([, v]) => v)).toEqual([1, 3]);
  expect(c.size).toBe(0);
  await Bun.sleep(150);
  expect(sent).toHaveLength(2);
  c.push("job", 4);
  expect(sent.map(([, v]) => v)).toEqual([1, 3, 4]);
  c.flush("nothing-here");
  c.clear();
});

test("sweep forgets idle keys but keeps those with a pending update", async () => {
  const { c } = recorder(20);
  c.push("idle", 1);
  c.push("busy", 1);
  await Bun.sleep(30);
  c.push("busy", 2);
  c.push("busy", 3);
  c.sweep();
  expect(c.size).toBe(1);
  c.clear();
});
