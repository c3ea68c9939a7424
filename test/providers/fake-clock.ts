import type { Clock } from "../../src/providers/limiter";

/** A clock that only moves when told; sleepers wake on `advance`. */
export class FakeClock implements Clock {
  t = 0;
  #sleepers: Array<{ at: number; resolve: () => void }> = [];

  now(): number {
    return this.t;
  }

  sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise((resolve, reject) => {
      const sleeper = { at: this.t + ms, resolve };
      this.#sleepers.push(sleeper);
      signal.addEventListener(
        "abort",
        () => {
          this.#sleepers = this.#sleepers.filter((s) => s !== sleeper);
          reject(signal.reason);
        },
        { once: true },
      );
    });
  }

  async advance(ms: number): Promise<void> {
    this.t += ms;
    const due = this.#sleepers.filter((s) => s.at <= this.t);
    this.#sleepers = this.#sleepers.filter((s) => s.at > this.t);
    for (const s of due) s.resolve();
    await flush();
  }
}

/** Lets pending promise chains run. */
export const flush = async () => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};
