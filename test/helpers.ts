import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Config, loadConfig } from "../src/config";
import { openDb } from "../src/db/client";
import { silentLogger } from "../src/log";
import { type AnyJobDefinition, Queue, type QueueOptions } from "../src/queue";
import { type Runtime, startRuntime } from "../src/runtime";

export const ADMIN_KEY = "esk_test_admin_key_0123456789abcdef";

/** A fresh temp dir, removed by the returned cleanup. */
export function tempDir(prefix = "easel-test-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Config for tests: a temp data dir, a free port, quiet logs, fast timings. */
export function testConfig(dataDir: string, env: Record<string, string> = {}): Config {
  return loadConfig({
    NODE_ENV: "test",
    DATA_DIR: dataDir,
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "silent",
    ADMIN_KEY,
    JWT_SECRET: "test-secret-test-secret-test-secret-0123",
    POLL_INTERVAL_MS: "25",
    ...env,
  });
}

export type TestServer = Runtime & {
  dir: string;
  /** fetch against the server with the admin key unless `key` says otherwise (null: no auth header). */
  api: (path: string, init?: RequestInit & { key?: string | null; json?: unknown }) => Promise<Response>;
  close: () => Promise<void>;
};

/** A real listening server on a temp data dir. */
export async function startTestServer(
  opts: { env?: Record<string, string>; jobs?: AnyJobDefinition[]; dir?: string } = {},
): Promise<TestServer> {
  const tmp = opts.dir ? { dir: opts.dir, cleanup: () => {} } : tempDir();
  const rt = await startRuntime(testConfig(tmp.dir, opts.env), { log: silentLogger, jobs: opts.jobs });
  const api: TestServer["api"] = (path, init = {}) => {
    const { key = ADMIN_KEY, json, headers, ...rest } = init;
    const h = new Headers(headers);
    if (key) h.set("authorization", `Bearer ${key}`);
    if (json !== undefined) h.set("content-type", "application/json");
    return fetch(`${rt.url}${path}`, {
      ...rest,
      headers: h,
      body: json !== undefined ? JSON.stringify(json) : rest.body,
    });
  };
  return {
    ...rt,
    dir: tmp.dir,
    api,
    close: async () => {
      await rt.stop();
      tmp.cleanup();
    },
  };
}

/** A queue on a real SQLite file, not started; the test defines its job types and starts it. */
export function testQueue(path: string, opts: Partial<QueueOptions> = {}): Queue {
  const db = openDb(path);
  return new Queue({
    db: db.$client,
    concurrency: 8,
    pollIntervalMs: 20,
    leaseMs: 5000,
    stalledMax: 3,
    defaultTimeoutMs: 5000,
    defaultMaxAttempts: 3,
    log: silentLogger,
    ...opts,
  });
}

/** Resolves when `predicate` holds, polling every few ms; rejects after `timeoutMs`. */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  { timeoutMs = 5000, intervalMs = 10, what = "condition" } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await predicate();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(intervalMs);
  }
}
