import type { Sql } from "../../db/sql";
import type { SqliteClient } from "../../db/sqlite";
import { writeHealth } from "../../db/write-health";
import type { CheckResult, HealthReport } from "./model";

/** A readiness check; `signal` aborts when the probe gives up on it, so a slow check stops working too. */
export type Check = { name: string; run: (signal: AbortSignal) => void | Promise<void> };

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
  const ac = new AbortController();
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      Promise.resolve().then(() => c.run(ac.signal)),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    return { name: c.name, ok: true, ms: Math.round(performance.now() - t0) };
  } catch (err) {
    return { name: c.name, ok: false, ms: Math.round(performance.now() - t0), error: (err as Error).message };
  } finally {
    clearTimeout(timer);
    ac.abort();
  }
}

/**
 * The database accepts a write transaction (takes and releases the write lock). bun:sqlite calls block the
 * thread, so the lock is tried without waiting (busy_timeout 0 for that one statement) and retried on a
 * timer: a lock held elsewhere shows as a failing check instead of freezing the server for busy_timeout.
 */
export function dbWritableCheck(client: SqliteClient, retryMs = 50): Check {
  const sqlite = client.db;
  const probe = (): boolean => {
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
    // Until it succeeds or the probe gives up (then the readiness report says "timed out").
    run: async (signal) => {
      // Behind the connection's gate: a transaction of this process already holds the lock it would probe.
      while (!(await client.exclusive(probe))) {
        if (signal.aborted) throw new Error("database is locked");
        await Bun.sleep(retryMs);
      }
      // Taking the lock writes nothing: a full disk shows only on writes, which record it (write-health.ts).
      const health = writeHealth(sqlite);
      if (health.fault) await client.exclusive(() => health.probe(sqlite));
    },
  };
}

/**
 * PostgreSQL answers a query on the pool (a lost connection shows here; the pool reconnects on the next
 * query). Named "db" as SQLite's check is, so probes and dashboards read one name.
 */
export function pgReachableCheck(sql: Sql): Check {
  return {
    name: "db",
    run: async () => {
      await sql.get("SELECT 1 AS ok");
    },
  };
}

/**
 * The LISTEN connection is up (cluster mode): without it, wake-ups and other instances' frames arrive only
 * by polling. It reconnects with backoff; this check fails meanwhile.
 */
export function listenCheck(notifier: { readonly connected: boolean }): Check {
  return {
    name: "listen",
    run: () => {
      if (!notifier.connected) throw new Error("the LISTEN connection to PostgreSQL is down; reconnecting");
    },
  };
}
