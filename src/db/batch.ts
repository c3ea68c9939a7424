/**
 * Lookups asked for in the same turn of the event loop, answered by one statement. Over the network
 * (PostgreSQL) each statement is a round trip and CPU on both sides, so 64 concurrent requests each reading
 * their API key cost 64 times what one `WHERE hash IN (…)` costs; on SQLite a statement is a function call and
 * a lookup is never batched (`enabled` false: each key goes to `many` alone, at once).
 *
 * Only for reads made outside a transaction: a batch runs on the pool and sees committed rows, as the single
 * read it stands for would there. Every caller of a batch shares its failure.
 */
export class LookupBatcher<K, V> {
  readonly #many: (keys: K[]) => Promise<Map<K, V>>;
  readonly #enabled: boolean;
  readonly #max: number;
  #pending = new Map<K, { resolve: (v: V | null) => void; reject: (err: unknown) => void }[]>();

  /** `many` answers a set of keys (keys it does not know are left out of its map). */
  constructor(many: (keys: K[]) => Promise<Map<K, V>>, opts: { enabled: boolean; max?: number }) {
    this.#many = many;
    this.#enabled = opts.enabled;
    this.#max = opts.max ?? 200;
  }

  /** The value for `key`, or null when there is none. */
  async get(key: K): Promise<V | null> {
    if (!this.#enabled) return (await this.#many([key])).get(key) ?? null;
    return new Promise((resolve, reject) => {
      if (this.#pending.size === 0) setImmediate(() => void this.#flush());
      const waiting = this.#pending.get(key);
      if (waiting) waiting.push({ resolve, reject });
      else this.#pending.set(key, [{ resolve, reject }]);
    });
  }

  async #flush(): Promise<void> {
    const batch = [...this.#pending];
    this.#pending = new Map();
    for (let i = 0; i < batch.length; i += this.#max) {
      const part = batch.slice(i, i + this.#max);
      void this.#many(part.map(([k]) => k)).then(
        (found) => {
          for (const [k, waiting] of part) for (const w of waiting) w.resolve(found.get(k) ?? null);
        },
        (err) => {
          for (const [, waiting] of part) for (const w of waiting) w.reject(err);
        },
      );
    }
  }
}
