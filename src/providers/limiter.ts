/**
 * Per-provider limits: at most `concurrency` calls in flight and at most `rpm` request starts in any
 * rolling window (60 s by default). The registry wraps every `generate` in `run`, so a batch of jobs
 * cannot outrun a provider's rate limit and earn 429s.
 *
 * The rate side keeps the start times of the last `rpm` requests rather than a refilling token bucket:
 * a bucket that allows bursts lets up to `rpm + burst` requests into one rolling minute, which is exactly
 * what providers count and reject. Waits are FIFO for slots and abortable by the caller's signal.
 */
import { sleep } from "./http";

export type Clock = {
  now(): number;
  /** Resolves after `ms`, or rejects with `signal.reason` when it aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
};

export const systemClock: Clock = { now: () => Date.now(), sleep };

export type LimiterOptions = {
  /** Calls in flight at once; `Infinity` for no cap. */
  concurrency: number;
  /** Request starts per window; 0 or `Infinity` for no cap. */
  rpm: number;
  /** @defaultValue 60_000 */
  windowMs?: number;
  /** @defaultValue systemClock */
  clock?: Clock;
};

export type LimiterStats = { active: number; waiting: number; startsInWindow: number };

type Waiter = { resolve: () => void };

export class ProviderLimiter {
  readonly #concurrency: number;
  readonly #rpm: number;
  readonly #windowMs: number;
  readonly #clock: Clock;
  #active = 0;
  #slotWaiters: Waiter[] = [];
  /** Start times within the window, oldest first. */
  #starts: number[] = [];
  /** Serialises rate waits so requests start in arrival order. */
  #rateGate: Promise<void> = Promise.resolve();

  constructor(opts: LimiterOptions) {
    this.#concurrency = Math.max(1, opts.concurrency);
    this.#rpm = opts.rpm > 0 ? opts.rpm : Number.POSITIVE_INFINITY;
    this.#windowMs = opts.windowMs ?? 60_000;
    this.#clock = opts.clock ?? systemClock;
  }

  /**
   * Runs `fn` once a slot and `cost` request starts are available (a provider that makes `n` HTTP calls
   * per generate passes `n`). Rejects with `signal.reason` if aborted while waiting; the slot is always
   * released.
   */
  async run<T>(fn: () => Promise<T>, signal: AbortSignal, cost = 1): Promise<T> {
    await this.#acquireSlot(signal);
    try {
      await this.#acquireRate(Math.min(Math.max(1, cost), this.#rpm), signal);
      return await fn();
    } finally {
      this.#releaseSlot();
    }
  }

  stats(): LimiterStats {
    this.#prune(this.#clock.now());
    return { active: this.#active, waiting: this.#slotWaiters.length, startsInWindow: this.#starts.length };
  }

  #acquireSlot(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    if (this.#active < this.#concurrency) {
      this.#active++;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        resolve: () => {
          signal.removeEventListener("abort", onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        this.#slotWaiters = this.#slotWaiters.filter((w) => w !== waiter);
        reject(signal.reason);
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.#slotWaiters.push(waiter);
    });
  }

  #releaseSlot(): void {
    const next = this.#slotWaiters.shift();
    // The slot passes straight to the next waiter, so `#active` stays the same.
    if (next) next.resolve();
    else this.#active--;
  }

  #prune(now: number): void {
    while (this.#starts.length > 0 && (this.#starts[0] ?? 0) <= now - this.#windowMs) this.#starts.shift();
  }

  #acquireRate(cost: number, signal: AbortSignal): Promise<void> {
    if (!Number.isFinite(this.#rpm)) return Promise.resolve();
    const turn = this.#rateGate.then(() => this.#waitForRoom(cost, signal));
    // A waiter that aborts must not block the ones behind it.
    this.#rateGate = turn.catch(() => {});
    return turn;
  }

  async #waitForRoom(cost: number, signal: AbortSignal): Promise<void> {
    for (;;) {
      if (signal.aborted) throw signal.reason;
      const now = this.#clock.now();
      this.#prune(now);
      if (this.#starts.length + cost <= this.#rpm) {
        for (let i = 0; i < cost; i++) this.#starts.push(now);
        return;
      }
      // Room appears when enough of the oldest starts leave the window.
      const freeing = this.#starts[this.#starts.length + cost - this.#rpm - 1] ?? now;
      await this.#clock.sleep(Math.max(1, freeing + this.#windowMs - now), signal);
    }
  }
}
