/**
 * The credits invariant as a property (issue "Trust" §1): seeded random sequences of generations (single,
 * batches, provider failures, content-policy refusals, slow ones), dedupe replacements, cancels, retries and
 * grants against a real server process, killed with SIGKILL and restarted part-way. When every job has ended:
 * for every job, charged − refunded is the price of what it delivered (content-policy refusals are the request's
 * fault and cost full price), and every balance is its ledger's sum and what its owner was granted less what
 * their jobs kept.
 */
import { Database } from "bun:sqlite";
import { afterAll, expect, test } from "bun:test";
import { join } from "node:path";
import { expectLedgerInvariants, seededRandom } from "../fixtures/backlog";
import { ADMIN_KEY, type ServerProcess, spawnServer, tempDir, waitFor } from "../helpers";

const OPS = 70;
const SEED = Number(process.env.CREDITS_PROPERTY_SEED ?? 20261207);
const tmp = tempDir();
afterAll(() => tmp.cleanup());

type User = { id: string; key: string; granted: number };

test(`credits property (seed ${SEED}): charged − refunded = price of what was delivered, for every job`, async () => {
  const random = seededRandom(SEED);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
  const env = {
    WORKER_CONCURRENCY: "3",
    ITEM_MAX_ATTEMPTS: "1",
    JOB_MAX_ATTEMPTS: "1",
    BACKLOG_CRON: "0 0 1 1 *",
    STALLED_AFTER_MS: "2000",
  };
  let server: ServerProcess = await spawnServer(tmp.dir, env);
  const call = async (method: string, path: string, key: string, json?: unknown) => {
    const res = await fetch(`${server.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(json !== undefined && { "content-type": "application/json" }),
      },
      body: json === undefined ? undefined : JSON.stringify(json),
    });
    const body = (await res.json()) as Record<string, unknown>;
    // Money moves only on purpose: any refusal must be a clear 4xx, never a 5xx.
    expect(`${method} ${path} ${res.status}`).not.toMatch(/ 5\d\d$/);
    return { status: res.status, body };
  };
  const users: User[] = [];
  for (const name of ["ann", "bob"]) {
    const { body } = await call("POST", "/api/users", ADMIN_KEY, { name, role: "user" });
    const user = body as { user: { id: string }; key: string };
    users.push({ id: user.user.id, key: user.key, granted: 0 });
  }
  const grant = async (u: User, amount: number) => {
    await call("POST", `/api/users/${u.id}/credits`, ADMIN_KEY, { amount });
    u.granted += amount;
  };
  for (const u of users) await grant(u, 20);

  const prompt = () => pick(["an owl", "[fail] an owl", "[unsafe] an owl", "[slow] an owl", "a fox"]);
  const jobs: { id: string; user: User }[] = [];
  const killAt = 25 + Math.floor(random() * 20);
  for (let op = 0; op < OPS; op++) {
    if (op === killAt) {
      server.proc.kill(9);
      await server.proc.exited;
      server = await spawnServer(tmp.dir, env);
    }
    const user = pick(users);
    const r = random();
    if (r < 0.45) {
      const batch = random() < 0.4;
      const body = batch
        ? {
            items: Array.from({ length: 2 + Math.floor(random() * 3) }, (_, i) => ({
              id: `i${i}`,
              prompt: prompt(),
            })),
          }
        : { prompt: prompt(), n: 1 + Math.floor(random() * 3) };
      const dedupe = random() < 0.3 ? { dedupeKey: pick(["d1", "d2"]) } : {};
      const out = await call("POST", "/api/jobs/generate-image", user.key, { ...body, ...dedupe });
      expect([202, 402]).toContain(out.status);
      if (out.status === 202 && !jobs.some((j) => j.id === out.body.jobId)) {
        jobs.push({ id: out.body.jobId as string, user });
      }
    } else if (r < 0.65 && jobs.length) {
      const job = pick(jobs);
      const out = await call("POST", `/api/jobs/${job.id}/cancel`, job.user.key);
      expect([200, 409]).toContain(out.status);
    } else if (r < 0.9 && jobs.length) {
      const job = pick(jobs);
      const out = await call("POST", `/api/jobs/${job.id}/retry`, job.user.key);
      expect([200, 402, 409]).toContain(out.status);
    } else {
      await grant(user, 1 + Math.floor(random() * 10));
    }
  }

  const db = new Database(join(tmp.dir, "easel.db"), { readonly: true });
  try {
    await waitFor(
      () =>
        (
          db.query("SELECT count(*) AS n FROM jobs WHERE status IN ('queued', 'active')").get() as {
            n: number;
          }
        ).n === 0,
      { timeoutMs: 60_000, what: "every job to end" },
    );
    server.proc.kill("SIGTERM");
    await server.proc.exited;
    expectLedgerInvariants(db);
    for (const { id } of jobs) {
      const job = db
        .query(
          "SELECT credits_charged AS charged, credits_refunded AS refunded, input FROM jobs WHERE id = ?",
        )
        .get(id) as { charged: number; refunded: number; input: string };
      const jobN = (JSON.parse(job.input) as { n?: number }).n ?? 1;
      const items = db.query("SELECT status, input, error FROM job_items WHERE job_id = ?").all(id) as {
        status: string;
        input: string;
        error: string | null;
      }[];
      let delivered = 0;
      for (const item of items) {
        const images = (JSON.parse(item.input) as { n?: number }).n ?? jobN;
        const code = item.error ? (JSON.parse(item.error) as { code: string }).code : null;
        if (item.status === "completed" || (item.status === "failed" && code === "content_policy")) {
          delivered += images;
        }
      }
      // The job's ledger rides along so a failure shows how it got there.
      const ledger = db
        .query("SELECT delta, reason, note FROM credit_ledger WHERE job_id = ? ORDER BY id")
        .all(id);
      expect({ id, kept: job.charged - job.refunded, ledger }).toEqual({ id, kept: delivered, ledger });
    }
    for (const u of users) {
      const row = db
        .query(
          `SELECT u.credits AS credits, coalesce((SELECT sum(credits_charged - credits_refunded) FROM jobs
             WHERE owner_id = u.id), 0) AS kept FROM users u WHERE u.id = ?`,
        )
        .get(u.id) as { credits: number; kept: number };
      expect(row.credits).toBe(u.granted - row.kept);
    }
  } finally {
    db.close();
    server.proc.kill(9);
  }
}, 240_000);
