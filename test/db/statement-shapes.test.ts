import { describe, expect, test } from "bun:test";
import { inPowersOfTwo, padded } from "../../src/db/sql";

describe("statement shapes for batches", () => {
  test("padded: the next power of two, by repeating the last value", () => {
    expect(padded([])).toEqual([]);
    expect(padded(["a"])).toEqual(["a"]);
    expect(padded(["a", "b", "c"])).toEqual(["a", "b", "c", "c"]);
    expect(padded([1, 2, 3, 4])).toEqual([1, 2, 3, 4]);
    expect(padded(Array.from({ length: 33 }, (_, i) => i))).toHaveLength(64);
  });

  test("inPowersOfTwo: every row once, in order, in runs of falling powers of two", () => {
    expect(inPowersOfTwo([])).toEqual([]);
    for (let n = 1; n <= 70; n++) {
      const rows = Array.from({ length: n }, (_, i) => i);
      const runs = inPowersOfTwo(rows);
      expect(runs.flat()).toEqual(rows);
      const sizes = runs.map((r) => r.length);
      for (const s of sizes) expect(Number.isInteger(Math.log2(s))).toBe(true);
      expect([...sizes].sort((a, b) => b - a)).toEqual(sizes);
      expect(new Set(sizes).size).toBe(sizes.length);
    }
    expect(inPowersOfTwo(Array.from({ length: 25 }, (_, i) => i)).map((r) => r.length)).toEqual([16, 8, 1]);
  });
});
