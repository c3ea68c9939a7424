type Slot<T> = { lastAt: number; pending: T | null; timer: ReturnType<typeof setTimeout> | null };

/**
 * Rate-limits a stream of updates per key: the first goes out at once, later ones within `intervalMs` are
 * folded into one trailing update carrying the latest value. `flush(key)` sends what is pending right away
 * and forgets the key — a terminal event calls it first, so it always follows the last progress update.
 */
export class Coalescer<T> {
  readonly #slots = new Map<string, Slot<T>>();
  readonly #intervalMs: number;
  readonly #send: (key: string, value: T) => void;
  readonly #now: () => number;

  constructor(
    intervalMs: number,
    send: (key: string, value: T) => void,
    now: () => number = () => performance.now(),
  ) {
    this.#intervalMs = intervalMs;
    this.#send = send;
    this.#now = now;
  }

  push(key: string, value: T): void {
    let slot = this.#slots.get(key);
    if (!slot) {
      slot = { lastAt: Number.NEGATIVE_INFINITY, pending: null, timer: null };
      this.#slots.set(key, slot);
    }
    if (slot.timer) {
      slot.pending = value;
      return;
    }
    const wait = slot.lastAt + this.#intervalMs - this.#now();
    if (wait <= 0) {
      slot.lastAt = this.#now();
      this.#send(key, value);
      return;
    }
    slot.pending = value;
    const s = slot;
    slot.timer = setTimeout(() => {
      s.timer = null;
      s.lastAt = this.#now();
      const v = s.pending;
      s.pending = null;
      if (v !== null) this.#send(key, v);
    }, wait);
  }

  /** Sends the pending update of `key` now (if any) and forgets the key. */
  flush(key: string): void {
    const slot = this.#slots.get(key);
    if (!slot) return;
    this.#slots.delete(key);
    if (slot.timer) clearTimeout(slot.timer);
    if (slot.pending !== null) this.#send(key, slot.pending);
  }

  /** Forgets idle keys (jobs that ended without a terminal event here, e.g. cancelled by another process). */
  sweep(): void {
    const cutoff = this.#now() - this.#intervalMs;
    for (const [key, slot] of this.#slots) if (!slot.timer && slot.lastAt < cutoff) this.#slots.delete(key);
  }

  /** Drops everything pending without sending it (shutdown). */
  clear(): void {
    for (const slot of this.#slots.values()) if (slot.timer) clearTimeout(slot.timer);
    this.#slots.clear();
  }

  get size(): number {
    return this.#slots.size;
  }
}
