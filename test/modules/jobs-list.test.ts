import type { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { QueueStore } from "../../src/queue/store";
import { createUser } from "../fixtures/backlog";
import { ADMIN_KEY, startTestServer, type TestServer } from "../helpers";

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

/** Finished jobs for `owners` in turn (every fourth failed, every third of type `card.render`). */
function seedJobs(db: Database, owners: (string | null)[], n: number): void {
  // Written behind the store's back, so counted as the store would have (below).
  const insert = db.prepare(
    `INSERT INTO jobs (id, type, status, priority, input, progress, attempts, max_attempts, run_at, owner_id,
       created_at, started_at, finished_at, updated_at)
     VALUES (?1, ?2, ?3, 0, ?6, 100, 1, 3, ?4, ?5, ?4, ?4, ?4, ?4)`,
  );
  db.transaction(() => {
    for (let i = 0; i < n; i++) {
      const card = i % 3 === 0;
      insert.run(
        Bun.randomUUIDv7(),
        card ? "card.render" : "generate",
        i % 4 === 0 ? "failed" : "completed",
        Date.now() - i,
        owners[i % owners.length] ?? null,
        // Each type's input as its job definition accepts it (the list shows a generation's request).
        JSON.stringify(
          card ? { cardId: "c" } : { provider: "placeholder", size: "1024x1024", n: 1, output: "original" },
        ),
      );
    }
  })();
  new QueueStore(server.ctx.db.$client).recountEnded();
}

type Page = {
  jobs: { id: string; ownerId: string | null; status: string; type: string }[];
  nextCursor: string | null;
};

/** Every page of `GET /api/jobs?<query>` as `key`, followed through `nextCursor`. */
async function listAll(key: string, query: string): Promise<Page["jobs"]> {
  const out: Page["jobs"] = [];
  let cursor: string | null = null;
  do {
    const res = await server.api(`/api/jobs?limit=20&${query}${cursor ? `&cursor=${cursor}` : ""}`, { key });
    const page = (await res.json()) as Page;
    expect({ status: res.status, page: res.status === 200 ? null : page }).toEqual({
      status: 200,
      page: null,
    });
    out.push(...page.jobs);
    cursor = page.nextCursor;
  } while (cursor);
  return out;
}

function truth(db: Database, appId: string, where: string): string[] {
  return (
    db
      .query(
        `SELECT id FROM jobs WHERE (owner_id = ?1 OR owner_id IN (SELECT id FROM users WHERE parent_id = ?1))
         ${where} ORDER BY id DESC`,
      )
      .all(appId) as { id: string }[]
  ).map((r) => r.id);
}

describe("an app's job list, whichever plan the counts pick", () => {
  test("shows exactly its own and its end users' jobs, newest first, for every filter, dense or sparse", async () => {
    const db = server.ctx.db.$client;
    const dense = await createUser(server.api, { role: "app" });
    const sparse = await createUser(server.api, { role: "app" });
    const endUser = db.prepare(
      `INSERT INTO users (id, name, role, parent_id, credits, unlimited, created_at, updated_at)
       VALUES (?, ?, 'user', ?, 0, 0, 0, 0)`,
    );
    for (let i = 0; i < 3; i++) {
      endUser.run(`dense-end-${i}`, `dense end ${i}`, dense.id);
      endUser.run(`sparse-end-${i}`, `sparse end ${i}`, sparse.id);
    }
    // The dense app owns most jobs (its list walks newest first); the sparse one a few (gathered and sorted).
    seedJobs(db, [dense.id, "dense-end-0", "dense-end-1", "dense-end-2", null], 600);
    seedJobs(db, ["sparse-end-1", "sparse-end-2", sparse.id, ...Array(37).fill("dense-end-2")], 400);
    for (const app of [dense, sparse]) {
      const cases: [string, string][] = [
        ["", ""],
        ["status=failed", "AND status = 'failed'"],
        ["status=completed", "AND status = 'completed'"],
        ["type=card.render", "AND type = 'card.render'"],
        ["status=failed&type=card.render", "AND status = 'failed' AND type = 'card.render'"],
      ];
      for (const [query, where] of cases) {
        const listed = await listAll(app.key, query);
        expect(listed.map((j) => j.id)).toEqual(truth(db, app.id, where));
      }
    }
    expect(truth(db, sparse.id, "").length).toBeLessThan(40);
    expect(truth(db, dense.id, "").length).toBeGreaterThan(500);
  }, 30_000);
});

describe("an admin's and a user's job lists, walking or gathering", () => {
  test("show exactly the matching jobs, newest first, for common and rare statuses and types", async () => {
    const db = server.ctx.db.$client;
    const user = await createUser(server.api, { role: "user" });
    const other = await createUser(server.api, { role: "user" });
    // Mostly completed generations; a rare type and a rare status, so some lists walk and others gather.
    seedJobs(db, [other.id, user.id, null], 900);
    const rare = db.prepare(
      `INSERT INTO jobs (id, type, status, priority, input, progress, attempts, max_attempts, run_at, owner_id,
         created_at, started_at, finished_at, updated_at)
       VALUES (?1, ?2, ?3, 0, ?6, 100, 1, 3, ?4, ?5, ?4, ?4, ?4, ?4)`,
    );
    const generation = JSON.stringify({
      provider: "placeholder",
      size: "1024x1024",
      n: 1,
      output: "original",
    });
    for (let i = 0; i < 6; i++) {
      const status = i % 2 ? "cancelled" : "completed";
      rare.run(
        Bun.randomUUIDv7(),
        "card.cleanup",
        status,
        Date.now(),
        user.id,
        JSON.stringify({ cardId: "c" }),
      );
      rare.run(Bun.randomUUIDv7(), "generate", "cancelled", Date.now(), i % 3 ? other.id : null, generation);
    }
    new QueueStore(server.ctx.db.$client).recountEnded();
    const truthFor = (owner: string | null, where: string) =>
      (
        db
          .query(
            `SELECT id FROM jobs WHERE ${owner ? "owner_id = ?1" : "?1 IS NULL"} ${where} ORDER BY id DESC`,
          )
          .all(owner) as { id: string }[]
      ).map((r) => r.id);
    const cases: [string, string][] = [
      ["", ""],
      ["status=completed", "AND status = 'completed'"],
      ["status=cancelled", "AND status = 'cancelled'"],
      ["type=card.cleanup", "AND type = 'card.cleanup'"],
      ["type=generate", "AND type = 'generate'"],
      ["status=cancelled&type=generate", "AND status = 'cancelled' AND type = 'generate'"],
      ["status=completed&type=card.cleanup", "AND status = 'completed' AND type = 'card.cleanup'"],
      ["type=nothing.here", "AND type = 'nothing.here'"],
    ];
    for (const [query, where] of cases) {
      expect({ query, ids: (await listAll(ADMIN_KEY, query)).map((j) => j.id) }).toEqual({
        query,
        ids: truthFor(null, where),
      });
      expect({ query, ids: (await listAll(user.key, query)).map((j) => j.id) }).toEqual({
        query,
        ids: truthFor(user.id, where),
      });
      expect({
        query,
        ids: (await listAll(ADMIN_KEY, `userId=${other.id}&${query}`)).map((j) => j.id),
      }).toEqual({
        query,
        ids: truthFor(other.id, where),
      });
    }
  }, 30_000);
});
