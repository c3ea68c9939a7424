/**
 * Instant claims on PostgreSQL through a real server (DATABASE_URL) and real HTTP, on a ready backlog seeded
 * straight into PostgreSQL (test/fixtures/seed-backlog.ts, the benchmark's seeder): concurrent claims for
 * fewer ready generations than requests win exactly once each, a refused claim leaves no trace, and the
 * ended-job counts, the ledger and the recipe's usage agree with the rows after the claims' group commits.
 */
import { describe, expect, test } from "bun:test";
import { pgDatabasePerTest } from "../db/pg-helpers";
import { createRecipe, createUser, expectStatus, seedReadyBacklog } from "../fixtures/backlog";
import { startTestServer } from "../helpers";

const { cleanups, database } = pgDatabasePerTest();

async function pgServer() {
  const pg = await database();
  const server = await startTestServer({
    env: {
      DATABASE_URL: pg.url,
      STORAGE_SHARED: "true",
      INSTANT_RATE_PER_MIN: "0",
      BACKLOG_TOPUP_DELAY_MS: "600000",
      BACKLOG_CRON: "0 0 1 1 *",
    },
  });
  cleanups.push(() => server.close());
  return { pg, server };
}

type ClaimBody = {
  job?: { id: string; ownerId: string };
  assets?: { id: string }[];
  error?: { code: string };
};

describe("instant claims on PostgreSQL", () => {
  test("64 concurrent claims for 40 ready: 40 distinct wins, 24 fallbacks, counts, ledger and usage exact", async () => {
    const READY = 40;
    const { pg, server } = await pgServer();
    await createRecipe(server.api, { id: "fox", creditCost: 2, backlogMin: 3 });
    const seeded = await seedReadyBacklog(server.ctx, "fox", READY);
    const users = await Promise.all(
      Array.from({ length: 16 }, () => createUser(server.api, { credits: 100 })),
    );
    const results = await Promise.all(
      Array.from({ length: 64 }, async (_, i) => {
        const res = await server.api("/api/generate/instant", {
          method: "POST",
          key: users[i % users.length]!.key,
          json: { recipeId: "fox" },
        });
        return {
          status: res.status,
          body: (await res.json()) as ClaimBody,
          user: users[i % users.length]!.id,
        };
      }),
    );
    const won = results.filter((r) => r.status === 200);
    expect(won).toHaveLength(READY);
    expect(new Set(won.map((r) => r.body.job!.id))).toEqual(new Set(seeded));
    for (const r of won) {
      expect(r.body.job!.ownerId).toBe(r.user);
      expect(r.body.assets).toHaveLength(1);
    }
    for (const r of results.filter((r) => r.status !== 200)) {
      expect([404, 409]).toContain(r.status);
      expect(["no_instant_available", "instant_taken"]).toContain(r.body.error!.code);
    }

    // Each winner's job and asset moved to them, once.
    const owners = await pg.sql`SELECT j.owner_id AS job, a.owner_id AS asset FROM jobs j
      JOIN assets a ON a.job_id = j.id WHERE j.id IN ${pg.sql(seeded)}`;
    const byOwner = new Map<string, number>();
    for (const o of owners as { job: string; asset: string }[]) {
      expect(o.asset).toBe(o.job);
      byOwner.set(o.job, (byOwner.get(o.job) ?? 0) + 1);
    }
    for (const u of users) expect(byOwner.get(u.id) ?? 0).toBe(won.filter((r) => r.user === u.id).length);

    // The ended-job counts (job_counts keeps ended jobs only) the claims moved equal a full count per scope.
    const drift = await pg.sql`
      WITH ended AS (SELECT * FROM jobs WHERE status IN ('completed', 'partial', 'failed', 'cancelled')),
      actual AS (
        SELECT '' AS scope, type, status, count(*) AS n FROM ended GROUP BY type, status
        UNION ALL SELECT 'u:' || owner_id, type, status, count(*) FROM ended WHERE owner_id IS NOT NULL
          GROUP BY owner_id, type, status),
      kept AS (SELECT scope, type, status, n FROM job_counts WHERE scope NOT LIKE 'c:%' AND n <> 0)
      (SELECT * FROM actual EXCEPT SELECT * FROM kept) UNION ALL (SELECT * FROM kept EXCEPT SELECT * FROM actual)`;
    expect(drift).toEqual([]);

    // Credits: each winner paid 2 with one ledger row; balances equal the ledger sums.
    const [{ n, spent }] = await pg.sql`SELECT count(*)::int AS n, coalesce(-sum(delta), 0)::int AS spent
      FROM credit_ledger WHERE reason = 'instant'`;
    expect({ n, spent }).toEqual({ n: READY, spent: READY * 2 });
    expect(
      await pg.sql`SELECT u.id FROM users u LEFT JOIN credit_ledger l ON l.user_id = u.id
        GROUP BY u.id, u.credits HAVING u.credits <> coalesce(sum(l.delta), 0)`,
    ).toEqual([]);
    const [usage] = await pg.sql`SELECT count::int AS count FROM recipe_usage
      WHERE recipe_id = 'fox' AND variable = 'color' AND value = 'red'`;
    expect(usage.count).toBe(READY);
  }, 60_000);

  test("a claim refused for credits in a busy group rolls back alone", async () => {
    const { pg, server } = await pgServer();
    await createRecipe(server.api, { id: "fox", creditCost: 5, backlogMin: 3 });
    await seedReadyBacklog(server.ctx, "fox", 20);
    const rich = await Promise.all(Array.from({ length: 8 }, () => createUser(server.api, { credits: 50 })));
    // Enough for one claim: of its three concurrent claims, one wins and two are refused with 402.
    const poor = await createUser(server.api, { credits: 5 });
    const claim = (key: string) =>
      server.api("/api/generate/instant", { method: "POST", key, json: { recipeId: "fox" } });
    const results = await Promise.all([
      ...rich.map((u) => claim(u.key)),
      claim(poor.key),
      claim(poor.key),
      claim(poor.key),
    ]);
    const statuses = results.map((r) => r.status);
    expect(statuses.slice(0, 8)).toEqual(Array(8).fill(200));
    expect(statuses.slice(8).sort()).toEqual([200, 402, 402]);
    const poorJobs = await pg.sql`SELECT id FROM jobs WHERE owner_id = ${poor.id}`;
    expect(poorJobs).toHaveLength(1);
    const balance = await expectStatus<{ credits: number }>(
      await server.api("/api/credits", { key: poor.key }),
      200,
    );
    expect(balance.credits).toBe(0);
    const [{ ready }] = await pg.sql`SELECT count(*)::int AS ready FROM jobs
      WHERE recipe_id = 'fox' AND owner_id <> ALL(${pg.sql.array([...rich.map((u) => u.id), poor.id])})`;
    expect(ready).toBe(20 - 9);
  }, 60_000);

  test("a group's transaction run again after a conflict answers with what the last run committed", async () => {
    const { pg, server } = await pgServer();
    await createRecipe(server.api, { id: "fox", creditCost: 1, backlogMin: 3 });
    await seedReadyBacklog(server.ctx, "fox", 10);
    // The first COMMIT with a ledger row in it fails as a serialization failure would (a deferred trigger;
    // the sequence is not rolled back, so only that first COMMIT fails): the claims' transaction runs again.
    await pg.sql
      .unsafe(`CREATE SEQUENCE commit_tries;
      CREATE FUNCTION fail_first_commit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF nextval('commit_tries') = 1 THEN
          RAISE EXCEPTION 'forced conflict' USING ERRCODE = 'serialization_failure';
        END IF;
        RETURN NULL;
      END $$;
      CREATE CONSTRAINT TRIGGER fail_first_commit AFTER INSERT ON credit_ledger
        DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
        WHEN (NEW.reason = 'instant') EXECUTE FUNCTION fail_first_commit();`)
      .simple();
    const users = await Promise.all(Array.from({ length: 4 }, () => createUser(server.api, { credits: 10 })));
    const claims = await Promise.all(
      users.map(async (u) =>
        expectStatus<{ job: { id: string }; claimedAt: number; creditsRemaining: number }>(
          await server.api("/api/generate/instant", {
            method: "POST",
            key: u.key,
            json: { recipeId: "fox" },
          }),
          200,
        ),
      ),
    );
    const [{ tries }] = await pg.sql`SELECT last_value::int AS tries FROM commit_tries`;
    expect(tries).toBeGreaterThan(4);
    for (const c of claims) {
      const [row] =
        await pg.sql`SELECT finished_at::float8 AS finished, (metadata->>'claimedAt')::float8 AS claimed
        FROM jobs WHERE id = ${c.job.id}`;
      expect(row).toEqual({ finished: c.claimedAt, claimed: c.claimedAt });
      expect(c.creditsRemaining).toBe(9);
    }
    expect(new Set(claims.map((c) => c.job.id)).size).toBe(4);
  }, 60_000);

  test("one group over two recipes: unlimited and limited payers, a sold-out recipe and an empty one", async () => {
    const { pg, server } = await pgServer();
    await createRecipe(server.api, { id: "fox", creditCost: 3, backlogMin: 3 });
    await createRecipe(server.api, { id: "owl", creditCost: 3, backlogMin: 3 });
    await createRecipe(server.api, { id: "cat", creditCost: 3, backlogMin: 3 });
    await seedReadyBacklog(server.ctx, "fox", 6);
    await seedReadyBacklog(server.ctx, "owl", 2);
    // "cat" had one ready, claimed before the group: empty when the group comes.
    await seedReadyBacklog(server.ctx, "cat", 1);
    const early = await createUser(server.api, { credits: 3 });
    await expectStatus(
      await server.api("/api/generate/instant", {
        method: "POST",
        key: early.key,
        json: { recipeId: "cat" },
      }),
      200,
    );
    const payers = await Promise.all(Array.from({ length: 4 }, () => createUser(server.api, { credits: 9 })));
    const vip = await createUser(server.api, { unlimited: true });
    const claim = (key: string, recipeId: string) =>
      server.api("/api/generate/instant", { method: "POST", key, json: { recipeId } });
    const [vipFox, ...rest] = await Promise.all([
      claim(vip.key, "fox"),
      ...payers.map((u) => claim(u.key, "fox")),
      ...payers.map((u) => claim(u.key, "owl")),
      claim(payers[0]!.key, "cat"),
    ]);
    expect(vipFox!.status).toBe(200);
    const fox = rest.slice(0, 4);
    const owl = rest.slice(4, 8);
    const cat = rest[8]!;
    expect(fox.map((r) => r.status)).toEqual([200, 200, 200, 200]);
    // Two ready owls for four claims: two win; the other two lost the last ones in their group (409), or came
    // in a later group and found none (404): never a 402 or a 500.
    expect(owl.filter((r) => r.status === 200)).toHaveLength(2);
    for (const r of owl.filter((r) => r.status !== 200)) {
      expect([404, 409]).toContain(r.status);
      expect(((await r.json()) as ClaimBody).error!.code).toBe(
        r.status === 409 ? "instant_taken" : "no_instant_available",
      );
    }
    expect(cat.status).toBe(404);
    expect(((await cat.json()) as ClaimBody).error!.code).toBe("no_instant_available");

    // The unlimited user paid nothing and has a 0-delta row with its note; each payer paid 3 per win.
    const vipRows = await pg.sql`SELECT delta::int, note FROM credit_ledger WHERE user_id = ${vip.id}`;
    expect(vipRows).toEqual([{ delta: 0, note: "unlimited: 3 not charged" }]);
    const [vipJob] =
      await pg.sql`SELECT credits_charged::int AS charged FROM jobs WHERE owner_id = ${vip.id}`;
    expect(vipJob.charged).toBe(0);
    const owlWinners = new Set(owl.flatMap((r, i) => (r.status === 200 ? [i] : [])));
    for (const [i, u] of payers.entries()) {
      const wins = 1 + (owlWinners.has(i) ? 1 : 0);
      const rows = await pg.sql`SELECT delta::int AS delta, balance_after::int AS after FROM credit_ledger
        WHERE user_id = ${u.id} AND reason = 'instant' ORDER BY id`;
      expect(rows.map((r: { delta: number }) => r.delta)).toEqual(Array(wins).fill(-3));
      // Each row's balance is the one after it, in order.
      expect(rows.map((r: { after: number }) => r.after)).toEqual(wins === 1 ? [6] : [6, 3]);
      const balance = await expectStatus<{ credits: number }>(
        await server.api("/api/credits", { key: u.key }),
        200,
      );
      expect(balance.credits).toBe(9 - 3 * wins);
    }
    expect(
      await pg.sql`SELECT u.id FROM users u LEFT JOIN credit_ledger l ON l.user_id = u.id
        GROUP BY u.id, u.credits HAVING u.credits <> coalesce(sum(l.delta), 0)`,
    ).toEqual([]);
    // Usage counted once per win, per recipe.
    const usage = await pg.sql`SELECT recipe_id, sum(count)::int AS n FROM recipe_usage GROUP BY recipe_id
      ORDER BY recipe_id`;
    expect(usage).toEqual([
      { recipe_id: "cat", n: 1 },
      { recipe_id: "fox", n: 5 },
      { recipe_id: "owl", n: 2 },
    ]);
  }, 60_000);

  test("keys read together: concurrent requests with a valid, a revoked and an unknown key each get their own answer", async () => {
    const { server } = await pgServer();
    const users = await Promise.all(Array.from({ length: 6 }, () => createUser(server.api)));
    const spare = await expectStatus<{ id: string; key: string }>(
      await server.api("/api/keys", { method: "POST", key: users[0]!.key, json: { name: "spare" } }),
      201,
    );
    await expectStatus(
      await server.api(`/api/keys/${spare.id}`, { method: "DELETE", key: users[0]!.key }),
      200,
    );
    const me = (key: string) => server.api("/api/credits", { key });
    for (let round = 0; round < 5; round++) {
      const results = await Promise.all([
        ...users.map((u) => me(u.key)),
        me(spare.key),
        me("esk_unknown_key_0123456789abcdefghijkl"),
        ...users.map((u) => me(u.key)),
      ]);
      expect(results.map((r) => r.status)).toEqual([...Array(6).fill(200), 401, 401, ...Array(6).fill(200)]);
      // Each answer is its own caller's.
      const ids = await Promise.all(
        [...results.slice(0, 6), ...results.slice(8)].map(
          async (r) => ((await r.json()) as { userId: string }).userId,
        ),
      );
      expect(ids).toEqual([...users, ...users].map((u) => u.id));
    }
  }, 60_000);

  test("one group answers as if its claims ran one by one: an empty backlog costs nothing, so a later claim can pay", async () => {
    const { pg, server } = await pgServer();
    await createRecipe(server.api, { id: "fox", creditCost: 2, backlogMin: 3 });
    await createRecipe(server.api, { id: "cat", creditCost: 2, backlogMin: 3 });
    await seedReadyBacklog(server.ctx, "fox", 10);
    // Enough for two claims. Claimed in one turn of the event loop, so the three form one group: the claim on
    // the empty "cat" takes nothing and so pays nothing, and both "fox" claims are served.
    const payer = await createUser(server.api, { credits: 4 });
    const user = (await server.ctx.users.get(payer.id))!;
    const { instant } = server.ctx;
    const [cat, fox1, fox2] = await Promise.allSettled([
      instant.claim(user, "cat"),
      instant.claim(user, "fox"),
      instant.claim(user, "fox"),
    ]);
    expect(cat.status === "rejected" && (cat.reason as { code: string }).code).toBe("no_instant_available");
    expect([fox1.status, fox2.status]).toEqual(["fulfilled", "fulfilled"]);
    // A fourth cannot pay: 402, with what is left.
    const poorer = (await server.ctx.users.get(payer.id))!;
    const refused = await instant.claim(poorer, "fox").catch((err) => err);
    expect(refused.code).toBe("insufficient_credits");
    const [{ n }] = await pg.sql`SELECT count(*)::int AS n FROM jobs WHERE owner_id = ${payer.id}`;
    expect(n).toBe(2);
    const balance = await expectStatus<{ credits: number }>(
      await server.api("/api/credits", { key: payer.key }),
      200,
    );
    expect(balance.credits).toBe(0);
  }, 60_000);
});
