import type { Database } from "bun:sqlite";

export type Check = { name: string; run: () => void | Promise<void> };
export type CheckResult = { name: string; ok: boolean; ms: number; error?: string };
export type HealthReport = {
  ok: boolean;
  status: "ok" | "unavailable";
  checks: CheckResult[];
  uptimeS: number;
};

/**
 * Readiness: every registered check must pass (db writable, worker pool running, and whatever storage,
 * render and providers add). Liveness is just "the process answers".
 */
export class HealthService {
  readonly #checks: Check[] = [];
  readonly #startedAt = Date.now();

  add(check: Check): this {
    this.#checks.push(check);
    return this;
  }

  async readiness(timeoutMs = 2000): Promise<HealthReport> {
    const checks = await Promise.all(this.#checks.map((c) => runCheck(c, timeoutMs)));
    const ok = checks.every((c) => c.ok);
    return {
      ok,
      status: ok ? "ok" : "unavailable",
      checks,
      uptimeS: Math.round((Date.now() - this.#startedAt) / 1000),
    };
  }
}

async function runCheck(c: Check, timeoutMs: number): Promise<CheckResult> {
  const t0 = performance.now();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(c.run),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { name: c.name, ok: true, ms: Math.round(performance.now() - t0) };
  } catch (err) {
    return { name: c.name, ok: false, ms: Math.round(performance.now() - t0), error: (err as Error).message };
  } finally {
    clearTimeout(timer);
  }
}

/** The database accepts a write transaction (takes and releases the write lock). */
export function dbWritableCheck(sqlite: Database): Check {
  return {
    name: "db",
    run: () => {
      sqlite.exec("BEGIN IMMEDIATE");
      sqlite.exec("ROLLBACK");
    },
  };
}
