import { describe, expect, test } from "bun:test";
import { LookupBatcher } from "../../src/db/batch";

describe("LookupBatcher", () => {
  test("lookups of one turn are one call; repeated keys are asked once; unknown keys answer null", async () => {
    const calls: string[][] = [];
    const batcher = new LookupBatcher(
      async (keys: string[]) => {
        calls.push(keys);
        return new Map(keys.filter((k) => k !== "nobody").map((k) => [k, k.toUpperCase()]));
      },
      { enabled: true },
    );
    const answers = await Promise.all(["a", "b", "a", "nobody"].map((k) => batcher.get(k)));
    expect(answers).toEqual(["A", "B", "A", null]);
    expect(calls).toEqual([["a", "b", "nobody"]]);
    // The next turn is a batch of its own.
    expect(await batcher.get("c")).toBe("C");
    expect(calls).toHaveLength(2);
  });

  test("a failed batch fails every lookup in it, and the next batch is unaffected", async () => {
    let fail = true;
    const batcher = new LookupBatcher(
      async (keys: number[]) => {
        if (fail) throw new Error("connection lost");
        return new Map(keys.map((k) => [k, k * 2]));
      },
      { enabled: true },
    );
    const failed = await Promise.allSettled([batcher.get(1), batcher.get(2)]);
    expect(failed.map((r) => r.status)).toEqual(["rejected", "rejected"]);
    fail = false;
    expect(await Promise.all([batcher.get(1), batcher.get(2)])).toEqual([2, 4]);
  });

  test("batches are split at `max` keys; disabled, each lookup is its own call at once", async () => {
    const sizes: number[] = [];
    const many = async (keys: number[]) => {
      sizes.push(keys.length);
      return new Map(keys.map((k) => [k, k]));
    };
    const capped = new LookupBatcher(many, { enabled: true, max: 4 });
    expect(await Promise.all(Array.from({ length: 10 }, (_, i) => capped.get(i)))).toEqual([
      0, 1, 2, 3, 4, 5, 6, 7, 8, 9,
    ]);
    expect(sizes).toEqual([4, 4, 2]);
    sizes.length = 0;
    const off = new LookupBatcher(many, { enabled: false });
    await Promise.all([off.get(1), off.get(2)]);
    expect(sizes).toEqual([1, 1]);
  });
});
