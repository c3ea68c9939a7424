import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { join } from "node:path";
import pkg from "../../package.json";
import { startTestServer, type TestServer, tempDir, waitFor } from "../helpers";

type Instance = { id: string; host: string; version: string; startedAt: number; lastHeartbeatAt: number };
type Status = { workerId: string; instances: Instance[] };

const opened: TestServer[] = [];
const dirs: { cleanup(): void }[] = [];
afterEach(async () => {
  for (const s of opened.splice(0)) await s.close().catch(() => {});
  for (const d of dirs.splice(0)) d.cleanup();
});

/** The status once the server's pool has listed itself (it registers as it starts, without holding start-up). */
const status = (server: TestServer) =>
  waitFor(
    async () => {
      const view = (await (await server.api("/api/queue/status")).json()) as Status;
      return view.instances.some((i) => i.id === view.workerId) ? view : null;
    },
    { what: "the server in its instances" },
  );

const rows = (dir: string) => {
  const db = new Database(join(dir, "easel.db"));
  try {
    return db.query("SELECT id FROM instances ORDER BY id").all() as { id: string }[];
  } finally {
    db.close();
  }
};

describe("instances", () => {
  test("a running server lists itself in /api/queue/status and leaves the list when it stops", async () => {
    const tmp = tempDir();
    dirs.push(tmp);
    const server = await startTestServer({ dir: tmp.dir });
    const view = await status(server);
    expect(view.instances).toEqual([
      expect.objectContaining({ id: view.workerId, version: pkg.version, jobsRunning: 0 }),
    ]);
    expect(view.instances[0]!.host.length).toBeGreaterThan(0);
    expect(rows(tmp.dir)).toEqual([{ id: view.workerId }]);
    await server.close();
    expect(rows(tmp.dir)).toEqual([]);
  });

  test("a process that died without deregistering is reaped by the next start", async () => {
    const tmp = tempDir();
    dirs.push(tmp);
    const first = await startTestServer({ dir: tmp.dir });
    await first.close();
    // What a kill -9 leaves: a row whose heartbeat stopped an hour ago.
    const db = new Database(join(tmp.dir, "easel.db"));
    const old = Date.now() - 3_600_000;
    db.run(
      `INSERT INTO instances (id, host, version, started_at, last_heartbeat_at, jobs_running)
       VALUES ('gone:1:abc', 'gone', '0.0.1', ?, ?, 3)`,
      [old, old],
    );
    db.close();
    const server = await startTestServer({ dir: tmp.dir });
    opened.push(server);
    const view = await status(server);
    expect(view.instances.map((i) => i.id)).toEqual([view.workerId]);
    expect(rows(tmp.dir)).toEqual([{ id: view.workerId }]);
  });
});
