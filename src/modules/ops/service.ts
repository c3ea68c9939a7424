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

/**
 * The database accepts a write transaction (takes and releases the write lock). bun:sqlite calls block the
 * thread, so the lock is tried without waiting (busy_timeout 0 for that one statement) and retried on a
 * timer: a lock held elsewhere shows as a failing check instead of freezing the server for busy_timeout.
 */
export function dbWritableCheck(sqlite: Database, retryMs = 50, giveUpMs = 5000): Check {
  const tryOnce = (): boolean => {
    const { timeout } = sqlite.query("PRAGMA busy_timeout").get() as { timeout: number };
    sqlite.exec("PRAGMA busy_timeout = 0");
    try {
      sqlite.exec("BEGIN IMMEDIATE");
      sqlite.exec("ROLLBACK");
      return true;
    } catch (err) {
      if ((err as { code?: string }).code === "SQLITE_BUSY") return false;
      throw err;
    } finally {
      sqlite.exec(`PRAGMA busy_timeout = ${timeout}`);
    }
  };
  return {
    name: "db",
    run: async () => {
      const deadline = Date.now() + giveUpMs;
      while (!tryOnce()) {
        if (Date.now() > deadline) throw new Error("database is locked");
        await Bun.sleep(retryMs);
      }
    },
  };
}
