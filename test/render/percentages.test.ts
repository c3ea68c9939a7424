import { describe, expect, test } from "bun:test";
import { percentages } from "../../src/render/percentages";

const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);

describe("percentages", () => {
  test("thirds sum to 100, the extra point going to the first option", () => {
    expect(percentages([1, 1, 1])).toEqual([34, 33, 33]);
  });

  test("zero votes give zeros, never NaN", () => {
    expect(percentages([0, 0, 0])).toEqual([0, 0, 0]);
    expect(percentages([0, 0])).toEqual([0, 0]);
  });

  test("exact shares are left alone", () => {
    expect(percentages([3, 1])).toEqual([75, 25]);
    expect(percentages([5, 0, 5])).toEqual([50, 0, 50]);
    expect(percentages([7])).toEqual([100]);
  });

  test("the largest remainders get the missing points", () => {
    // 1/7 = 14.28, 2/7 = 28.57, 4/7 = 57.14 → floors 14+28+57 = 99; 28.57 has the largest remainder
    expect(percentages([1, 2, 4])).toEqual([14, 29, 57]);
    // 66.67 / 33.33
    expect(percentages([2, 1])).toEqual([67, 33]);
  });

  test("a tiny share can round to zero while the rest still sum to 100", () => {
    const out = percentages([1, 1000]);
    expect(out).toEqual([0, 100]);
  });

  test("always sums to 100 over many shapes", () => {
    for (let seed = 1; seed < 500; seed++) {
      const counts = Array.from({ length: 2 + (seed % 9) }, (_, i) => (seed * (i + 7) * 2654435761) % 1000);
      const out = percentages(counts);
      if (sum(counts) === 0) expect(sum(out)).toBe(0);
      else expect(sum(out)).toBe(100);
      for (const p of out) expect(Number.isInteger(p) && p >= 0).toBe(true);
    }
  });

  test("tied remainders go to the earlier option, deterministically", () => {
    expect(percentages([2, 2, 2, 1])).toEqual([29, 29, 28, 14]);
  });

  test("handles counts near the schema's limit without float error", () => {
    expect(sum(percentages([1e12, 1e12 - 1, 3]))).toBe(100);
  });
});
