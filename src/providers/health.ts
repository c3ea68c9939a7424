import { REQUEST_FAULT_CODES } from "./http";
import type { Clock } from "./limiter";

/** A provider's recent record, as the dashboard shows it. */
export type HealthStats = {
  /** Calls in the window that returned images (or a verdict: a content-policy refusal is an answer). */
  ok: number;
  /** Calls in the window that failed: rate limits, 5xx, timeouts, network, auth, quota, bad responses. */
  failed: number;
  lastError: { code: string; message: string; at: number } | null;
  lastSuccessAt: number | null;
  /** `failing`: the latest call failed and none succeeded since; `degraded`: some failed in the window. */
  state: "ok" | "degraded" | "failing" | "idle";
};

/** Outcomes of one provider's calls over a sliding window (15 minutes by default). */
export class ProviderHealth {
  readonly #windowMs: number;
  readonly #clock: Clock;
  /** [time, ok] of each call in the window, oldest first. */
  #calls: [number, boolean][] = [];
  #lastError: HealthStats["lastError"] = null;
  #lastSuccessAt: number | null = null;

  constructor(clock: Clock, windowMs = 15 * 60_000) {
    this.#clock = clock;
    this.#windowMs = windowMs;
  }

  success(): void {
    const now = this.#clock.now();
    this.#lastSuccessAt = now;
    this.#push(now, true);
  }

  failure(err: unknown): void {
    const code = (err as { code?: unknown })?.code;
    // Our adapter refused the request before calling the provider: nothing to judge it by.
    if (code === "provider_unsupported") return;
    // The provider answered, correctly: the request was at fault.
    if (typeof code === "string" && REQUEST_FAULT_CODES.has(code)) {
      this.success();
      return;
    }
    const now = this.#clock.now();
    this.#lastError = {
      code: typeof code === "string" ? code : "error",
      message: err instanceof Error ? err.message.slice(0, 300) : String(err).slice(0, 300),
      at: now,
    };
    this.#push(now, false);
  }

  stats(): HealthStats {
    this.#prune(this.#clock.now());
    const failed = this.#calls.filter(([, ok]) => !ok).length;
    const ok = this.#calls.length - failed;
    const last = this.#calls.at(-1);
    const state =
      this.#calls.length === 0 ? "idle" : last && !last[1] ? "failing" : failed > 0 ? "degraded" : "ok";
    return { ok, failed, lastError: this.#lastError, lastSuccessAt: this.#lastSuccessAt, state };
  }

  #push(now: number, ok: boolean): void {
    this.#calls.push([now, ok]);
    this.#prune(now);
  }

  #prune(now: number): void {
    let drop = 0;
    while (drop < this.#calls.length && this.#calls[drop]![0] <= now - this.#windowMs) drop++;
    if (drop > 0) this.#calls.splice(0, drop);
  }
}
