import type { Database } from "bun:sqlite";
import { afterEach, expect } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type Config, loadConfig } from "../src/config";
import { openDb } from "../src/db/client";
import { silentLogger } from "../src/log";
import { type AnyJobDefinition, Queue, type QueueOptions } from "../src/queue";
import { SqliteQueueBackend } from "../src/queue/sqlite-backend";
import { QueueStore } from "../src/queue/store";
import { type Runtime, startRuntime } from "../src/runtime";

export const ADMIN_KEY = "esk_test_admin_key_0123456789abcdef";
const ROOT = resolve(import.meta.dir, "..");

/** A fresh temp dir, removed by the returned cleanup. */
export function tempDir(prefix = "easel-test-"): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Config for tests: a temp data dir, a free port, quiet logs, fast timings. */
export function testConfig(dataDir: string, env: Record<string, string> = {}): Config {
  return loadConfig(testEnv(dataDir, env));
}

/** The environment of a test server, in-process (testConfig) or a child process (spawnServer). */
function testEnv(dataDir: string, env: Record<string, string>): Record<string, string> {
  return {
    NODE_ENV: "test",
    DATA_DIR: dataDir,
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "silent",
    ADMIN_KEY,
    JWT_SECRET: "test-secret-test-secret-test-secret-0123",
    POLL_INTERVAL_MS: "25",
    ...env,
  };
}

export type Run = { code: number; stdout: string; stderr: string };

/** Runs `bun <args>` from the repository root as a child process, as an operator at a shell would. */
export async function runBun(args: string[], env: Record<string, string> = {}): Promise<Run> {
  const proc = Bun.spawn(["bun", ...args], {
    cwd: ROOT,
    env: { ...process.env, LOG_LEVEL: "silent", ...env },
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  return { code, stdout, stderr };
}

/** `easel <args>` on a data dir. */
export function runEasel(dataDir: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return runBun(["src/main.ts", ...args], { DATA_DIR: dataDir, ...env });
}

/** Asserts the exit code, showing stderr when it differs. */
export function expectExit(run: Run, code: number, label = ""): void {
  expect(`${label}exit ${run.code}\n${run.stderr}`).toStartWith(`${label}exit ${code}\n`);
}

export type ServerProcess = { proc: Bun.Subprocess<"ignore", "pipe", "inherit">; url: string };

/**
 * test/fixtures/server.ts in a child process on `dataDir` (for kill -9 and restart tests); resolves once it
 * prints "ready <url>". The caller kills it.
 */
export async function spawnServer(dataDir: string, env: Record<string, string> = {}): Promise<ServerProcess> {
  const proc = Bun.spawn(["bun", join(import.meta.dir, "fixtures/server.ts")], {
    env: { ...process.env, ...testEnv(dataDir, env) },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "inherit",
  });
  const reader = proc.stdout.getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) {
      proc.kill(9);
      throw new Error(`server exited before it was ready: ${out}`);
    }
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const m = /^ready (\S+)/m.exec(out);
  if (!m) {
    proc.kill(9);
    throw new Error(`unexpected server output: ${out}`);
  }
  return { proc, url: m[1]! };
}

export type TestServer = Runtime & {
  dir: string;
  /** fetch against the server with the admin key unless `key` says otherwise (null: no auth header). */
  api: (path: string, init?: RequestInit & { key?: string | null; json?: unknown }) => Promise<Response>;
  close: () => Promise<void>;
};

/** `TestServer["api"]` for the server at `url` (an in-process one, or a child process). */
export function apiAt(url: string): TestServer["api"] {
  return (path, init = {}) => {
    const { key = ADMIN_KEY, json, headers, ...rest } = init;
    const h = new Headers(headers);
    if (key) h.set("authorization", `Bearer ${key}`);
    if (json !== undefined) h.set("content-type", "application/json");
    return fetch(`${url}${path}`, {
      ...rest,
      headers: h,
      body: json !== undefined ? JSON.stringify(json) : rest.body,
    });
  };
}

/** Signs in to the dashboard at `url` with `key` through its form, as a browser would; the session cookie. */
export async function dashboardCookie(url: string, key = ADMIN_KEY): Promise<string> {
  const res = await fetch(`${url}/dashboard/login`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: url },
    body: new URLSearchParams({ key }),
  });
  expect(res.status).toBe(303);
  return res.headers.get("set-cookie")!.split(";")[0]!;
}

/** A real listening server on a temp data dir. */
export async function startTestServer(
  opts: { env?: Record<string, string>; jobs?: AnyJobDefinition[]; dir?: string } = {},
): Promise<TestServer> {
  const tmp = opts.dir ? { dir: opts.dir, cleanup: () => {} } : tempDir();
  const rt = await startRuntime(testConfig(tmp.dir, opts.env), { log: silentLogger, jobs: opts.jobs });
  return {
    ...rt,
    dir: tmp.dir,
    api: apiAt(rt.url),
    close: async () => {
      await rt.stop();
      tmp.cleanup();
    },
  };
}

/** A queue on a real SQLite file, not started; the test defines its job types and starts it. */
export function testQueue(path: string, opts: Partial<QueueOptions> = {}): Queue {
  const db = openDb(path);
  const queue = new Queue({
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
  return queue;
}

/** The SQLite connection a queue runs on (the queue keeps its store private; its backend holds the connection). */
export function dbOf(queue: Queue): Database {
  if (!(queue.backend instanceof SqliteQueueBackend)) throw new TypeError("dbOf needs a queue on SQLite");
  return queue.backend.db;
}

/**
 * The queue's SQL on a test queue's connection, for tests of the store itself: a claim or cancel at a chosen
 * time, or as another process would run it (no worker pool behind it).
 */
export function storeOf(queue: Queue): QueueStore {
  const store = queueStores.get(queue) ?? new QueueStore(dbOf(queue));
  queueStores.set(queue, store);
  return store;
}

const queueStores = new WeakMap<Queue, QueueStore>();

/**
 * A factory of queues on fresh temp files for one test file: every queue it made is stopped and its files
 * removed after each test (registers the `afterEach` itself).
 */
export function queuesPerTest(): (opts?: Partial<QueueOptions>) => Queue {
  const open: Queue[] = [];
  const cleanups: (() => void)[] = [];
  afterEach(async () => {
    for (const q of open.splice(0)) await q.stop(0);
    for (const c of cleanups.splice(0)) c();
  });
  return (opts = {}) => {
    const tmp = tempDir();
    cleanups.push(tmp.cleanup);
    const q = testQueue(join(tmp.dir, "q.db"), opts);
    open.push(q);
    return q;
  };
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
