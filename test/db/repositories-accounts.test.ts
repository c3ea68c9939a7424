/**
 * Contract tests of the account repositories (users, API keys, credits, dashboard sessions), each run on
 * SQLite and on PostgreSQL through the same `Sql` calls the services make.
 */
import { describe, expect, test } from "bun:test";
import { columnList, rowMapper } from "../../src/db/rows";
import { type CreditLedgerRow, creditLedger } from "../../src/db/schema";
import { type Sql, UniqueViolation } from "../../src/db/sql";
import { KeyRepository } from "../../src/modules/auth/repository";
import { CreditRepository } from "../../src/modules/credits/repository";
import { SessionRepository } from "../../src/modules/dashboard/repository";
import { UserRepository } from "../../src/modules/users/repository";
import { UserService } from "../../src/modules/users/service";
import { repositoryBackends } from "./repository-backends";
import { insertKey, insertUser, keyRow, T0, userRow } from "./repository-rows";

const toLedger = rowMapper(creditLedger);

describe.each(repositoryBackends())("account repositories on $name", (backend) => {
  test("users: an inserted row reads back whole; lookups by id, external id, parent, several ids", async () => {
    const { sql } = await backend.open();
    const repo = new UserRepository(sql);
    const app = await insertUser(sql, { role: "app", name: "the app", unlimited: true, credits: 5 });
    const child = await insertUser(sql, { parentId: app.id, externalId: "u-1", name: "ünïcode ✓" });
    const top = await insertUser(sql, { externalId: "u-1" });
    expect(await repo.get(app.id)).toEqual(app);
    expect(await repo.get(child.id)).toEqual(child);
    expect(await repo.byExternalId(app.id, "u-1")).toEqual(child);
    expect(await repo.byExternalId(null, "u-1")).toEqual(top);
    expect((await repo.byIdOrExternalId("u-1", 3)).map((u) => u.id).sort()).toEqual(
      [child.id, top.id].sort(),
    );
    expect((await repo.getMany([app.id, top.id, "nobody"])).map((u) => u.id).sort()).toEqual(
      [app.id, top.id].sort(),
    );
    expect(await repo.list(app.id, 10)).toEqual([child]);
    expect((await repo.list(undefined, 10)).map((u) => u.id)).toEqual([app.id, child.id, top.id]);
  });

  test("users: a taken external id is a UniqueViolation, under a parent and at the top level", async () => {
    const { sql } = await backend.open();
    const repo = new UserRepository(sql);
    const app = await insertUser(sql, { role: "app" });
    await insertUser(sql, { parentId: app.id, externalId: "same" });
    await insertUser(sql, { externalId: "top" });
    const underParent = await repo.insert(userRow({ parentId: app.id, externalId: "same" })).catch((e) => e);
    expect(underParent).toBeInstanceOf(UniqueViolation);
    expect((underParent as UniqueViolation).table ?? "users").toBe("users");
    expect(await repo.insert(userRow({ externalId: "top" })).catch((e) => e)).toBeInstanceOf(UniqueViolation);
    // The service turns it into its 409.
    await expect(
      new UserService(sql).create({ name: "x", role: "user", externalId: "top" }),
    ).rejects.toMatchObject({ status: 409, code: "user_exists" });
  });

  test("keys: insert, by hash with their users, newest first; a duplicate hash is a UniqueViolation unless ifAbsent", async () => {
    const { sql } = await backend.open();
    const keys = new KeyRepository(sql);
    const u = await insertUser(sql);
    const older = await insertKey(sql, u.id, { createdAt: T0 });
    const newer = await insertKey(sql, u.id, { createdAt: T0 + 1, expiresAt: T0 + 90_000 });
    const both = await keys.withUsersByHash([newer.hash, older.hash, "unknown"]);
    expect([...both.keys()].sort()).toEqual([newer.hash, older.hash].sort());
    expect(both.get(newer.hash)).toEqual({ key: newer, user: u });
    expect(await keys.listOf(u.id)).toEqual([newer, older]);
    const dup = keyRow(u.id, { hash: older.hash });
    expect(await keys.insert(dup).catch((e) => e)).toBeInstanceOf(UniqueViolation);
    await keys.insert(dup, true);
    expect(await keys.get(dup.id)).toBeNull();
    await keys.touch(older.id, T0 + 5);
    expect((await keys.get(older.id))?.lastUsedAt).toBe(T0 + 5);
  });

  test("keys: a revocation returns the row once and is seen at once through a second client", async () => {
    const db = await backend.open();
    const other = await db.another();
    const u = await insertUser(db.sql);
    const k = await insertKey(db.sql, u.id);
    expect((await new KeyRepository(other).withUsersByHash([k.hash])).get(k.hash)?.key.revokedAt).toBeNull();
    const revoked = await new KeyRepository(db.sql).revoke(k.id, T0 + 10);
    expect(revoked).toEqual({ ...k, revokedAt: T0 + 10 });
    // Revoking again keeps the first time.
    expect((await new KeyRepository(db.sql).revoke(k.id, T0 + 99))?.revokedAt).toBe(T0 + 10);
    expect((await new KeyRepository(other).withUsersByHash([k.hash])).get(k.hash)?.key.revokedAt).toBe(
      T0 + 10,
    );
    expect(await new KeyRepository(other).revoke("unknown", T0)).toBeNull();
  });

  test("dashboard sessions: live until revoked or expired, as every client sees it; expired ones deleted", async () => {
    const db = await backend.open();
    const other = await db.another();
    const u = await insertUser(db.sql);
    const k = await insertKey(db.sql, u.id);
    const sessions = new SessionRepository(db.sql);
    const base = { userId: u.id, keyId: k.id, createdAt: T0 };
    await sessions.insert({ ...base, id: "s-live", expiresAt: T0 + 1000 });
    await sessions.insert({ ...base, id: "s-old", expiresAt: T0 + 10 });
    expect(await new SessionRepository(other).live("s-live", T0 + 500)).toBe(true);
    expect(await new SessionRepository(other).live("s-old", T0 + 500)).toBe(false);
    await sessions.revoke("s-live", T0 + 600);
    expect(await new SessionRepository(other).live("s-live", T0 + 601)).toBe(false);
    await sessions.deleteExpired(T0 + 500);
    expect(await db.sql.all("SELECT id FROM dashboard_sessions ORDER BY id")).toEqual([{ id: "s-live" }]);
    expect(await sessions.insert({ ...base, id: "s-live", expiresAt: T0 }).catch((e) => e)).toBeInstanceOf(
      UniqueViolation,
    );
  });

  test("credits: take refuses an unlimited user and a short balance; give and account", async () => {
    const { sql } = await backend.open();
    const credits = new CreditRepository(sql);
    const limited = await insertUser(sql, { credits: 5 });
    const unlimited = await insertUser(sql, { credits: 5, unlimited: true });
    expect(await credits.take(limited.id, 3, T0)).toBe(2);
    expect(await credits.take(limited.id, 3, T0)).toBeNull();
    expect(await credits.take(unlimited.id, 1, T0)).toBeNull();
    expect(await credits.give(limited.id, 10, T0)).toBe(12);
    expect(await credits.give("nobody", 1, T0)).toBeNull();
    expect(await credits.account(limited.id)).toEqual({ credits: 12, unlimited: false });
    expect(await credits.account(unlimited.id)).toEqual({ credits: 5, unlimited: true });
    expect(await credits.account("nobody")).toBeNull();
  });

  test("credits: concurrent charges and grants keep the balance equal to the ledger, on several clients", async () => {
    const db = await backend.open();
    // SQLite: one connection per process (a second one's BEGIN would block the event loop on the first's
    // lock); its transactions take turns on it. PostgreSQL: real concurrency on three pools.
    const clients = backend.concurrentWriters ? [db.sql, await db.another(), await db.another()] : [db.sql];
    const on = (i: number) => clients[i % clients.length]!;
    const u = await insertUser(db.sql);
    const grant = (sql: Sql, amount: number, note: string) =>
      sql.transaction(async () => {
        const balance = await new CreditRepository(sql).give(u.id, amount, T0);
        await new CreditRepository(sql).insert(ledger(u.id, amount, balance!, "grant", note));
      });
    const charge = (sql: Sql, i: number) =>
      sql.transaction(async () => {
        const credits = new CreditRepository(sql);
        const balance = await credits.take(u.id, 2, T0 + i);
        if (balance === null) return false;
        await credits.insert(ledger(u.id, -2, balance, "charge", `charge ${i}`));
        return true;
      });
    const readLedger = async () =>
      (
        await db.sql.all(`SELECT ${columnList(creditLedger)} FROM credit_ledger WHERE user_id = ?`, [u.id])
      ).map(toLedger);
    await grant(db.sql, 50, "opening");
    // 40 charges of 2 against 50 credits: exactly 25 pass, and each saw the balance the one before it left.
    const first = await Promise.all(Array.from({ length: 40 }, (_, i) => charge(on(i), i)));
    expect(first.filter(Boolean)).toHaveLength(25);
    const charges = (await readLedger()).filter((r) => r.reason === "charge");
    expect(charges.map((r) => r.balanceAfter).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 25 }, (_, i) => i * 2),
    );
    // Grants racing charges: whatever the order, what was taken plus what is left is what was given.
    const second = await Promise.all([
      ...Array.from({ length: 30 }, (_, i) => charge(on(i), 100 + i)),
      grant(on(1), 20, "mid-run"),
      grant(on(2), 10, "mid-run"),
    ]);
    const won = second.filter((o) => o === true).length;
    const account = await new CreditRepository(db.sql).account(u.id);
    expect(won * 2 + account!.credits).toBe(30);
    const rows = await readLedger();
    expect(rows).toHaveLength(1 + 25 + 2 + won);
    expect(rows.reduce((s, r) => s + r.delta, 0)).toBe(account!.credits);
    const page = await new CreditRepository(db.sql).page(u.id, null, 5);
    expect(page.map((r) => r.id)).toEqual(
      rows
        .map((r) => r.id)
        .sort()
        .reverse()
        .slice(0, 5),
    );
    expect(await new CreditRepository(db.sql).page(u.id, page[4]!.id, 100)).toHaveLength(rows.length - 5);
  });
});

function ledger(
  userId: string,
  delta: number,
  balanceAfter: number,
  reason: CreditLedgerRow["reason"],
  note: string,
): CreditLedgerRow {
  return {
    id: Bun.randomUUIDv7(),
    userId,
    delta,
    balanceAfter,
    reason,
    jobId: null,
    note,
    createdAt: T0,
  };
}
