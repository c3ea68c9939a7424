/**
 * Contract tests of the repositories that must be exact under concurrency (webhook endpoints, secrets and
 * deliveries; idempotency keys), each run on SQLite and on PostgreSQL. On PostgreSQL the racers use separate
 * pools, as two Easel instances would.
 */
import { describe, expect, test } from "bun:test";
import type { Sql } from "../../src/db/sql";
import { IdempotencyRepository } from "../../src/modules/idempotency/repository";
import { type NewDelivery, WebhookRepository } from "../../src/modules/webhooks/repository";
import { type RepositoryBackend, type RepositoryDb, repositoryBackends } from "./repository-backends";
import { insertUser, T0 } from "./repository-rows";

/** The clients racers run on: one per "instance" on PostgreSQL; SQLite's one connection per process. */
async function racers(backend: RepositoryBackend, db: RepositoryDb, n: number): Promise<Sql[]> {
  if (!backend.concurrentWriters) return [db.sql];
  return [db.sql, ...(await Promise.all(Array.from({ length: n - 1 }, () => db.another())))];
}

describe.each(repositoryBackends())("delivery repositories on $name", (backend) => {
  test("webhook endpoints: created whole, listed, counted, disabled (no longer active), deleted with their deliveries", async () => {
    const { sql } = await backend.open();
    const repo = new WebhookRepository(sql);
    const app = await insertUser(sql, { role: "app" });
    const child = await insertUser(sql, { parentId: app.id, externalId: "ext-7" });
    expect(await repo.userLink(child.id)).toEqual({ parentId: app.id, externalId: "ext-7" });
    expect(await repo.userLink("nobody")).toBeNull();
    const e1 = await repo.createEndpoint({
      ownerId: app.id,
      url: "https://a.test/h",
      events: ["*"],
      now: T0,
    });
    const e2 = await repo.createEndpoint({
      ownerId: app.id,
      url: "https://b.test/h",
      events: ["job.completed", "card.rendered"],
      now: T0,
    });
    expect(await repo.endpoint(e2.id)).toEqual(e2);
    expect(await repo.listEndpoints(app.id)).toEqual([e2, e1]);
    expect(await repo.listEndpoints(null)).toEqual([e2, e1]);
    expect(await repo.countEndpoints(app.id)).toBe(2);
    await repo.disableEndpoint(e1.id, "receiver answered 410 Gone", T0 + 1);
    expect(await repo.activeEndpoints()).toEqual([e2]);
    expect(await repo.endpoint(e1.id)).toMatchObject({
      active: false,
      disabledReason: "receiver answered 410 Gone",
    });
    await repo.insertDelivery(delivery(app.id, e2.id, "d-1"));
    expect(await repo.deleteEndpoint(e2.id)).toBe(true);
    expect(await repo.delivery("d-1")).toBeNull();
    expect(await repo.deleteEndpoint(e2.id)).toBe(false);
  });

  test("webhook deliveries: attempts recorded with the endpoint's health; filters, failing, pruning", async () => {
    const { sql } = await backend.open();
    const repo = new WebhookRepository(sql);
    const e = await repo.createEndpoint({ ownerId: "o", url: "https://a.test/h", events: ["*"], now: T0 });
    await repo.insertDelivery(delivery("o", e.id, "d-1"));
    await repo.insertDelivery({ ...delivery("o", null, "d-2"), jobId: "job-2" });
    const d1 = (await repo.delivery("d-1"))!;
    expect(d1).toMatchObject({ status: "pending", attempts: 0, payload: '{"type":"job.completed"}' });
    const failedAttempt = { at: T0 + 1, statusCode: 500, error: "receiver answered 500", durationMs: 12 };
    await repo.recordAttempt(d1, { ...failedAttempt, delivered: false, nextAttemptAt: T0 + 5000 });
    expect(await repo.endpoint(e.id)).toMatchObject({ failureCount: 1, failingSince: T0 + 1 });
    await repo.recordAttempt(d1, {
      ...failedAttempt,
      at: T0 + 2,
      delivered: false,
      nextAttemptAt: T0 + 9000,
    });
    expect(await repo.endpoint(e.id)).toMatchObject({ failureCount: 2, failingSince: T0 + 1 });
    const again = (await repo.delivery("d-1"))!;
    await repo.recordAttempt(again, {
      at: T0 + 3,
      statusCode: 200,
      error: null,
      durationMs: 5,
      delivered: true,
      nextAttemptAt: null,
    });
    expect(await repo.delivery("d-1")).toMatchObject({
      status: "delivered",
      attempts: 3,
      deliveredAt: T0 + 3,
      nextAttemptAt: null,
    });
    expect(await repo.endpoint(e.id)).toMatchObject({ failureCount: 0, failingSince: null });
    await repo.failDelivery("d-2", "gave up", T0 + 4);
    await repo.failDelivery("d-1", "too late", T0 + 4);
    expect((await repo.delivery("d-2"))?.status).toBe("failed");
    expect((await repo.delivery("d-1"))?.status).toBe("delivered");
    expect((await repo.listDeliveries({ ownerId: "o", limit: 10 })).map((d) => d.id)).toEqual(["d-2", "d-1"]);
    expect(
      (await repo.listDeliveries({ status: "failed", jobId: "job-2", limit: 10 })).map((d) => d.id),
    ).toEqual(["d-2"]);
    expect(
      (await repo.listDeliveries({ endpointId: e.id, cursor: "d-2", limit: 10 })).map((d) => d.id),
    ).toEqual(["d-1"]);
    await repo.insertDelivery(delivery("o", e.id, "d-3"));
    expect(await repo.prune(T0 + 1, 1)).toBe(1);
    expect(await repo.prune(T0 + 1, 10)).toBe(1);
    expect((await repo.listDeliveries({ limit: 10 })).map((d) => d.id)).toEqual(["d-3"]);
  });

  test("webhook deliveries: of concurrent claimers of one attempt exactly one wins, and again after its lease", async () => {
    const db = await backend.open();
    await new WebhookRepository(db.sql).insertDelivery(delivery("o", null, "d-1"));
    const clients = await racers(backend, db, 4);
    const claim = (i: number, now: number) =>
      new WebhookRepository(clients[i % clients.length]!).claimAttempt("d-1", 0, now, now + 1000);
    const first = await Promise.all(Array.from({ length: 8 }, (_, i) => claim(i, T0)));
    expect(first.filter(Boolean)).toHaveLength(1);
    // Still held before its lease ends; after it (the winner died mid-send), one of the next racers takes it.
    expect(await claim(0, T0 + 999)).toBe(false);
    const second = await Promise.all(Array.from({ length: 8 }, (_, i) => claim(i, T0 + 1000)));
    expect(second.filter(Boolean)).toHaveLength(1);
    // Once the attempt is recorded, a claim made from the stale read (attempts 0) loses.
    const repo = new WebhookRepository(db.sql);
    await repo.recordAttempt((await repo.delivery("d-1"))!, {
      at: T0 + 1001,
      statusCode: 503,
      error: "busy",
      durationMs: 1,
      delivered: false,
      nextAttemptAt: T0 + 2000,
    });
    expect(await claim(1, T0 + 5000)).toBe(false);
    expect(await repo.claimAttempt("d-1", 1, T0 + 1500, T0 + 2500)).toBe(false);
    expect(await repo.claimAttempt("d-1", 1, T0 + 2000, T0 + 3000)).toBe(true);
  });

  test("webhook secrets: concurrent first uses create one secret; rotation keeps the previous one in grace", async () => {
    const db = await backend.open();
    const clients = await racers(backend, db, 3);
    const secrets = await Promise.all(
      Array.from({ length: 6 }, (_, i) =>
        new WebhookRepository(clients[i % clients.length]!).ownerSecret("o", T0),
      ),
    );
    expect(new Set(secrets.map((s) => s.secret)).size).toBe(1);
    const repo = new WebhookRepository(db.sql);
    const rotated = await repo.rotateSecret("o", T0 + 10);
    expect(rotated).not.toBe(secrets[0]!.secret);
    expect(await repo.signingSecrets("o", T0 + 20)).toEqual([rotated, secrets[0]!.secret]);
    expect(await repo.signingSecrets("o", T0 + 10 + 24 * 3_600_000)).toEqual([rotated]);
  });

  test("idempotency keys: of concurrent reservations of one key exactly one wins; the answer is stored once", async () => {
    const db = await backend.open();
    const clients = await racers(backend, db, 4);
    const reserve = (i: number) =>
      new IdempotencyRepository(clients[i % clients.length]!).reserve(
        "owner",
        "key-1",
        "hash",
        `holder-${i}`,
        T0,
        T0 + 1000,
      );
    const won = await Promise.all(Array.from({ length: 12 }, (_, i) => reserve(i)));
    expect(won.filter(Boolean)).toHaveLength(1);
    const winner = `holder-${won.indexOf(true)}`;
    const repo = new IdempotencyRepository(db.sql);
    expect(await repo.read("owner", "key-1")).toEqual({
      request_hash: "hash",
      status: 0,
      response: "null",
      locked_by: winner,
      locked_until: T0 + 1000,
    });
    expect(await repo.answer("owner", "key-1", "someone-else", 202, '{"jobId":"j"}')).toBe(false);
    const answers = await Promise.all(
      clients.map((c) => new IdempotencyRepository(c).answer("owner", "key-1", winner, 202, '{"jobId":"j"}')),
    );
    expect(answers.filter(Boolean)).toHaveLength(1);
    expect(await repo.read("owner", "key-1")).toMatchObject({
      status: 202,
      response: '{"jobId":"j"}',
      locked_by: null,
    });
    // Another owner's key of the same name is its own.
    expect(await repo.reserve("other", "key-1", "hash", "h", T0, T0 + 1000)).toBe(true);
  });

  test("idempotency keys: a dead holder's reservation is taken over by exactly one racer; release and prune", async () => {
    const db = await backend.open();
    const repo = new IdempotencyRepository(db.sql);
    await repo.reserve("owner", "k", "hash", "dead", T0, T0 + 1000);
    const clients = await racers(backend, db, 4);
    const taken = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        new IdempotencyRepository(clients[i % clients.length]!).takeOver(
          "owner",
          "k",
          "hash-2",
          `h-${i}`,
          "dead",
          T0 + 2000,
          T0 + 3000,
        ),
      ),
    );
    expect(taken.filter(Boolean)).toHaveLength(1);
    const holder = `h-${taken.indexOf(true)}`;
    expect(await repo.read("owner", "k")).toMatchObject({
      locked_by: holder,
      request_hash: "hash-2",
      locked_until: T0 + 3000,
    });
    await repo.release("owner", "k", "not-the-holder");
    expect(await repo.read("owner", "k")).not.toBeNull();
    await repo.release("owner", "k", holder);
    expect(await repo.read("owner", "k")).toBeNull();
    // Prune: answered keys and lapsed reservations created before the cut-off; a live reservation stays.
    await repo.reserve("owner", "answered", "h", "x", T0, T0 + 1000);
    await repo.answer("owner", "answered", "x", 200, "{}");
    await repo.reserve("owner", "lapsed", "h", "x", T0, T0 + 1000);
    await repo.reserve("owner", "live", "h", "x", T0, T0 + 10_000);
    expect(await repo.prune(T0 + 1, T0 + 5000, 1)).toBe(1);
    expect(await repo.prune(T0 + 1, T0 + 5000, 10)).toBe(1);
    expect(await db.sql.all("SELECT key FROM idempotency_keys")).toEqual([{ key: "live" }]);
  });
});

function delivery(ownerId: string, endpointId: string | null, id: string): NewDelivery {
  return {
    id,
    ownerId,
    endpointId,
    jobId: null,
    url: "https://a.test/h",
    eventType: "job.completed",
    payload: '{"type":"job.completed"}',
    now: T0,
  };
}
