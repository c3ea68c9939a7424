/**
 * A token bucket per key: up to `perMinute` at once, refilled continuously at `perMinute` a minute. O(1) per
 * hit, in memory, per process. `perMinute` 0 turns the limit off.
 */
export class TokenBucket {
  readonly #buckets = new Map<string, { tokens: number; at: number }>();
  readonly #capacity: number;
  readonly #perMs: number;
  readonly #now: () => number;

  constructor(perMinute: number, now: () => number = Date.now) {
    this.#capacity = perMinute;
    this.#perMs = perMinute / 60_000;
    this.#now = now;
  }

  /** Takes a token: 0 when allowed, else the milliseconds until one is available. */
  take(key: string): number {
    if (this.#capacity <= 0) return 0;
    const now = this.#now();
    const b = this.#buckets.get(key) ?? { tokens: this.#capacity, at: now };
    b.tokens = Math.min(this.#capacity, b.tokens + (now - b.at) * this.#perMs);
    b.at = now;
    this.#buckets.set(key, b);
    if (b.tokens >= 1) {
      b.tokens -= 1;
      if (this.#buckets.size > 10_000) this.#prune(now);
      return 0;
    }
    return Math.ceil((1 - b.tokens) / this.#perMs);
  }

  /** Forgets buckets that have refilled completely (they behave exactly like new ones). */
  #prune(now: number): void {
    for (const [key, b] of this.#buckets)
      if (b.tokens + (now - b.at) * this.#perMs >= this.#capacity) this.#buckets.delete(key);
  }
}
