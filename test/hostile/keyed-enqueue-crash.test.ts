/**
 * A crash between a job and its Idempotency-Key (issue "Trust" §2): 3,000 keyed generations are sent to a real
 * server process, which is killed with SIGKILL 100–400 ms in; a new process on the same data directory gets all
 * 3,000 again. Every request ends with exactly one job and one charge, because the key's answer commits in the
 * job's own transaction and a reservation held by the dead process is taken over.
 */
import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { expectLedgerInvariants } from "../fixtures/backlog";
import { ADMIN_KEY, spawnServer, tempDir, waitFor } from "../helpers";

const REQUESTS = 3000;
const PARALLEL = 48;
const tmp = tempDir();
afterAll(() => tmp.cleanup());

/** Sends request i for every i, PARALLEL at a time; a refused connection (the server died) is skipped. */
async function sendAll(url: string, key: string, statuses: (number | null)[]): Promise<void> {
  let next = 0;
  const lane = async () => {
    for (let i = next++; i < REQUESTS; i = next++) {
      try {
        const res = await fetch(`${url}/api/jobs/generate-image`, {
          method: "POST",
          headers: {
            authorization: `Bearer ${key}`,
            "content-type": "application/json",
            "idempotency-key": `crash-${i}`,
          },
          body: JSON.stringify({ prompt: `owl ${i}` }),
        });
        statuses[i] = res.status;
        await res.arrayBuffer();
      } catch {
        statuses[i] = null;
      }
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, lane));
}

test("kill -9 during 3,000 keyed enqueues, then every request again: 3,000 jobs and 3,000 charges", async () => {
  // One user sends all 3,000 at once: the per-owner queue limit must not refuse them.
  const env = { WORKER_CONCURRENCY: "2", BACKLOG_CRON: "0 0 1 1 *", MAX_QUEUED_PER_OWNER: "10000" };
  let server = await spawnServer(tmp.dir, env);
  const admin = (path: string, json: unknown) =>
    fetch(`${server.url}${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
      body: JSON.stringify(json),
    }).then((r) => r.json());
  const created = (await admin("/api/users", { name: "crash", role: "user" })) as {
    user: { id: string };
    key: string;
  };
  await admin(`/api/users/${created.user.id}/credits`, { amount: 10_000 });

  const first: (number | null)[] = Array(REQUESTS).fill(null);
  const sending = sendAll(server.url, created.key, first);
  // The kill lands mid-stream: after the first answers, at a random moment 100–400 ms later.
  await waitFor(() => first.includes(202), { timeoutMs: 20_000, what: "the first accepted request" });
  await Bun.sleep(100 + Math.floor(Math.random() * 300));
  server.proc.kill(9);
  await server.proc.exited;
  await sending;
  const acceptedBefore = first.filter((s) => s === 202).length;
  expect(acceptedBefore).toBeGreaterThan(0);
  expect(acceptedBefore).toBeLessThan(REQUESTS);

  server = await spawnServer(tmp.dir, env);
  try {
    const again: (number | null)[] = Array(REQUESTS).fill(null);
    await sendAll(server.url, created.key, again);
    expect(again.filter((s) => s !== 202)).toEqual([]);
  } finally {
    server.proc.kill("SIGTERM");
    await server.proc.exited;
  }

  const db = new Database(join(tmp.dir, "easel.db"), { readonly: true });
  try {
    const jobs = db.query("SELECT count(*) AS n FROM jobs WHERE owner_id = ?").get(created.user.id) as {
      n: number;
    };
    expect(jobs.n).toBe(REQUESTS);
    const charges = db
      .query(
        "SELECT count(*) AS n, count(DISTINCT job_id) AS jobs FROM credit_ledger WHERE user_id = ? AND reason = 'charge'",
      )
      .get(created.user.id) as { n: number; jobs: number };
    expect(charges).toEqual({ n: REQUESTS, jobs: REQUESTS });
    const keys = db
      .query("SELECT count(*) AS n FROM idempotency_keys WHERE owner_id = ? AND status = 202")
      .get(created.user.id) as { n: number };
    expect(keys.n).toBe(REQUESTS);
    expectLedgerInvariants(db);
  } finally {
    db.close();
  }
}, 180_000);
