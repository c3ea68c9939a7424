import { Database } from "bun:sqlite";
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { openDb } from "../../src/db/client";
import { sqliteClient } from "../../src/db/sqlite";
import type { HealthReport } from "../../src/modules/ops/model";
import { dbWritableCheck, HealthService } from "../../src/modules/ops/service";
import { startTestServer, tempDir } from "../helpers";

type Health = HealthReport;

async function readiness(server: { api: (p: string, i?: { key: null }) => Promise<Response> }) {
  const res = await server.api("/api/health", { key: null });
  return { status: res.status, body: (await res.json()) as Health };
}

const failing = (h: Health) => h.checks.filter((c) => !c.ok).map((c) => c.name);

describe("readiness and liveness", () => {
  test("unreachable storage makes readiness 503 naming `storage`; liveness stays 200", async () => {
    // A port nothing listens on: bind one, then close it.
    const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
    const endpoint = `http://127.0.0.1:${probe.port}`;
    await probe.stop(true);
    const server = await startTestServer({
      env: {
        STORAGE: "s3",
        S3_BUCKET: "gone",
        S3_ENDPOINT: endpoint,
        S3_ACCESS_KEY_ID: "a",
        S3_SECRET_ACCESS_KEY: "b",
      },
    });
    try {
      const { status, body } = await readiness(server);
      expect(status).toBe(503);
      expect(body).toMatchObject({ ok: false, status: "unavailable" });
      expect(failing(body)).toEqual(["storage"]);
      expect((await server.api("/api/health/live", { key: null })).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  test("a stopped worker pool makes readiness 503 naming `workers`", async () => {
    const server = await startTestServer();
    try {
      expect((await readiness(server)).status).toBe(200);
      await server.ctx.queue.stop(0);
      const { status, body } = await readiness(server);
      expect(status).toBe(503);
      expect(failing(body)).toEqual(["workers"]);
      expect(body.checks.find((c) => c.name === "workers")?.error).toContain("not running");
    } finally {
      await server.close();
    }
  });

  test("a database that cannot take a write fails the `db` check without blocking the event loop", async () => {
    const tmp = tempDir("easel-health-");
    const path = join(tmp.dir, "easel.db");
    const db = openDb(path).$client;
    const health = new HealthService().add(dbWritableCheck(sqliteClient(db)));
    const other = new Database(path);
    try {
      expect((await health.readiness()).ok).toBe(true);
      other.exec("BEGIN IMMEDIATE");
      // A timer due during the check must fire on time: the check waits on timers, not in SQLite.
      const t0 = performance.now();
      let firedAfter = -1;
      setTimeout(() => {
        firedAfter = performance.now() - t0;
      }, 20);
      const report = await health.readiness(300);
      expect(report.ok).toBe(false);
      expect(report.checks).toEqual([expect.objectContaining({ name: "db", ok: false })]);
      expect(report.checks[0]?.error).toContain("timed out");
      expect(firedAfter).toBeGreaterThan(0);
      expect(firedAfter).toBeLessThan(150);
      other.exec("ROLLBACK");
      await Bun.sleep(100);
      expect((await health.readiness()).ok).toBe(true);
      // The connection's own busy_timeout is left as it was.
      expect(db.query("PRAGMA busy_timeout").get()).toEqual({ timeout: 5000 });
    } finally {
      other.close();
      db.close();
      tmp.cleanup();
    }
  });
});
