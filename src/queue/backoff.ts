export type BackoffOptions = {
  /** Delay before the first retry. @defaultValue 1000 */
  delayMs?: number;
  /** Upper bound of any single delay. @defaultValue 300000 (5 min) */
  maxDelayMs?: number;
  /** Fraction of the delay randomised either way, so retries of a burst spread out. @defaultValue 0.25 */
  jitter?: number;
};

const DEFAULTS = { delayMs: 1000, maxDelayMs: 300_000, jitter: 0.25 } as const;

/** The un-jittered delay before retry number `attempt` (1-based): delayMs · 2^(attempt-1), capped. */
export function baseDelay(attempt: number, opts: BackoffOptions = {}): number {
  const delay = opts.delayMs ?? DEFAULTS.delayMs;
  const max = opts.maxDelayMs ?? DEFAULTS.maxDelayMs;
  return Math.min(max, delay * 2 ** Math.max(0, attempt - 1));
}

/** Bounds [min, max] that `backoffDelay` stays within for this attempt. */
export function backoffBounds(attempt: number, opts: BackoffOptions = {}): [number, number] {
  const d = baseDelay(attempt, opts);
  const j = opts.jitter ?? DEFAULTS.jitter;
  const max = opts.maxDelayMs ?? DEFAULTS.maxDelayMs;
  return [Math.floor(d * (1 - j)), Math.min(max, Math.ceil(d * (1 + j)))];
}

/** Exponential backoff with symmetric jitter, never above maxDelayMs. */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}, random = Math.random): number {
  const [lo, hi] = backoffBounds(attempt, opts);
  return Math.round(lo + random() * (hi - lo));
}

/** Cap for provider-requested delays (Retry-After), so a hostile header cannot park a job for days. */
export const MAX_RETRY_AFTER_MS = 15 * 60_000;
