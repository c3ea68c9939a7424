/**
 * Whole-number percentages that sum to exactly 100 (largest-remainder method). Each share is floored, then the
 * points still missing go to the largest remainders; ties go to the larger count, then to the earlier option,
 * so the result is stable. All-zero counts give all zeros, never NaN.
 */
export function percentages(counts: readonly number[]): number[] {
  const total = counts.reduce((sum, n) => sum + n, 0);
  if (total <= 0) return counts.map(() => 0);
  // Integer arithmetic: floor(n * 100 / total) and its remainder, so no float error decides a tie.
  const shares = counts.map((n, index) => ({
    index,
    n,
    floor: Math.floor((n * 100) / total),
    remainder: (n * 100) % total,
  }));
  let missing = 100 - shares.reduce((sum, s) => sum + s.floor, 0);
  const byRemainder = [...shares].sort((a, b) => b.remainder - a.remainder || b.n - a.n || a.index - b.index);
  const out = shares.map((s) => s.floor);
  for (const share of byRemainder) {
    if (missing <= 0) break;
    out[share.index]! += 1;
    missing -= 1;
  }
  return out;
}
