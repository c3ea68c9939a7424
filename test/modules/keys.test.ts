/**
 * Key management over HTTP (`/api/keys`): several keys per user, create (shown once), list, revoke and
 * rotate, who may touch whose keys, expiry; and where a credential may travel in the URL (`?token=`).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { KeyList, KeyView as KeyViewSchema, NewKeyView } from "../../src/modules/auth/model";
import { defineJob } from "../../src/queue";
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from "../helpers";
import { WsClient } from "../realtime/client";

type ErrorBody = { error: { code: string; message: string } };
type KeyView = z.infer<typeof KeyViewSchema>;
type NewKey = z.infer<typeof NewKeyView>;

const note = defineJob({
  type: "note",
  input: z.object({ n: z.number() }),
  run: async ({ input }) => ({ n: input.n }),
});

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ jobs: [note] });
});
afterAll(() => server.close());

async function expectError(res: Response, status: number, code: string): Promise<string> {
  const text = await res.text();
  expect(`${res.status} ${text}`).toStartWith(`${status} `);
  const body = JSON.parse(text) as ErrorBody;
  expect(body.error.code).toBe(code);
  return body.error.message;
}

async function ok<T>(res: Response, status = 200): Promise<T> {
  const text = await res.text();
  expect(`${res.status} ${text}`).toStartWith(`${status} `);
  return JSON.parse(text) as T;
}

async function createUser(role: "app" | "user", externalId?: string) {
  const created = await ok<{ user: { id: string }; key: string }>(
    await server.api("/api/users", { method: "POST", json: { name: `a ${role}`, role, externalId } }),
    201,
  );
  return { id: created.user.id, key: created.key };
}

const createKey = async (key: string, body: object) =>
  ok<NewKey>(await server.api("/api/keys", { method: "POST", key, json: body }), 201);
const listKeys = async (key: string, query = "") =>
  (await ok<{ keys: KeyView[] }>(await server.api(`/api/keys${query}`, { key }))).keys;
const profile = (key: string) => server.api("/api/profile", { key });

describe("a user's own keys", () => {
  test("create shows the key once; list shows prefix, created, last used; only the hash is stored", async () => {
    const u = await createUser("user");
    const made = await createKey(u.key, { name: "laptop" });
    // The answers are what the API reference documents.
    expect(NewKeyView.safeParse(made).error).toBeUndefined();
    expect(KeyList.safeParse(await ok(await server.api("/api/keys", { key: u.key }))).error).toBeUndefined();
    expect(made).toMatchObject({ userId: u.id, name: "laptop", status: "active", expiresAt: null });
    expect(made.key).toStartWith("esk_");
    expect(made.prefix).toBe(made.key.slice(0, 12));
    expect((await ok<{ id: string }>(await profile(made.key))).id).toBe(u.id);

    const keys = await listKeys(u.key);
    expect(keys.map((k) => k.name).sort()).toEqual(["default", "laptop"]);
    const listed = keys.find((k) => k.id === made.id)!;
    expect(listed).not.toHaveProperty("key");
    expect(listed).not.toHaveProperty("hash");
    expect(listed.lastUsedAt).toBeGreaterThanOrEqual(made.createdAt);

    // Neither the database file nor its WAL holds the key itself.
    server.ctx.db.$client.exec("PRAGMA wal_checkpoint(PASSIVE)");
    for (const file of readdirSync(server.dir).filter((f) => f.startsWith("easel.db"))) {
      expect(readFileSync(join(server.dir, file)).includes(made.key)).toBe(false);
    }
  });

  test("a revoked key gets 401 on its very next request; the user's other keys keep working", async () => {
    const u = await createUser("user");
    const spare = await createKey(u.key, { name: "spare" });
    expect((await profile(spare.key)).status).toBe(200);
    const revoked = await ok<KeyView>(
      await server.api(`/api/keys/${spare.id}`, { method: "DELETE", key: u.key }),
    );
    expect(revoked).toMatchObject({ id: spare.id, status: "revoked" });
    expect(KeyViewSchema.safeParse(revoked).error).toBeUndefined();
    expect(revoked.revokedAt).toBeNumber();
    expect(await expectError(await profile(spare.key), 401, "unauthorized")).toContain("revoked");
    expect((await profile(u.key)).status).toBe(200);
    // Revoking again keeps the first revocation.
    const again = await ok<KeyView>(
      await server.api(`/api/keys/${spare.id}`, { method: "DELETE", key: u.key }),
    );
    expect(again.revokedAt).toBe(revoked.revokedAt);
    // A key may revoke itself: the request that does it is the last one it makes.
    const self = (await listKeys(u.key)).find((k) => k.name === "default")!;
    await ok(await server.api(`/api/keys/${self.id}`, { method: "DELETE", key: u.key }));
    await expectError(await profile(u.key), 401, "unauthorized");
  });

  test("rotate: a new secret with the same name; the old key is refused at once", async () => {
    const u = await createUser("user");
    const ci = await createKey(u.key, { name: "ci", expiresInSeconds: 3600 });
    const rotated = await ok<NewKey>(
      await server.api(`/api/keys/${ci.id}/rotate`, { method: "POST", key: u.key }),
      201,
    );
    expect(rotated).toMatchObject({ name: "ci", userId: u.id, status: "active", rotatedFrom: ci.id });
    expect(rotated.id).not.toBe(ci.id);
    expect(rotated.key).not.toBe(ci.key);
    // The new key lives as long as the old one was meant to, counted from the rotation.
    expect(rotated.expiresAt! - rotated.createdAt).toBe(3_600_000);
    await expectError(await profile(ci.key), 401, "unauthorized");
    expect((await ok<{ id: string }>(await profile(rotated.key))).id).toBe(u.id);
    const byId = new Map((await listKeys(u.key)).map((k) => [k.id, k]));
    expect(byId.get(ci.id)?.status).toBe("revoked");
    expect(byId.get(rotated.id)?.status).toBe("active");
    // A revoked key cannot be brought back by rotating it.
    await expectError(
      await server.api(`/api/keys/${ci.id}/rotate`, { method: "POST", key: u.key }),
      409,
      "key_revoked",
    );
  });

  test("an expired key gets 401 and is listed as expired", async () => {
    const u = await createUser("user");
    const short = await createKey(u.key, { name: "short", expiresInSeconds: 60 });
    expect(short.expiresAt! - short.createdAt).toBe(60_000);
    expect((await profile(short.key)).status).toBe(200);
    // The minute passes: move the expiry into the past rather than wait for it.
    server.ctx.db.$client.run("UPDATE api_keys SET expires_at = ? WHERE id = ?", [Date.now() - 1, short.id]);
    await expectError(await profile(short.key), 401, "unauthorized");
    expect((await listKeys(u.key)).find((k) => k.id === short.id)?.status).toBe("expired");
  });

  test("bad input is a 4xx naming the problem", async () => {
    const u = await createUser("user");
    const post = (json: unknown) => server.api("/api/keys", { method: "POST", key: u.key, json });
    await expectError(await post({ name: "" }), 422, "validation_failed");
    await expectError(await post({ name: "x", expiresInSeconds: 5 }), 422, "validation_failed");
    await expectError(await post({ name: "x", expiresInSeconds: "soon" }), 422, "validation_failed");
    await expectError(await post({ name: "ADMIN_KEY" }), 422, "reserved_name");
    await expectError(await post({ name: "x", userId: "someone-else" }), 403, "forbidden");
    await expectError(await server.api("/api/keys?userId=someone-else", { key: u.key }), 403, "forbidden");
    await expectError(
      await server.api("/api/keys/no-such-key", { method: "DELETE", key: u.key }),
      404,
      "not_found",
    );
    await expectError(await server.api("/api/keys", { key: null }), 401, "unauthorized");
    const { token } = await ok<{ token: string }>(
      await server.api("/api/tokens", { method: "POST", key: u.key, json: {} }),
      201,
    );
    await expectError(await server.api("/api/keys", { key: token }), 403, "forbidden");
  });
});

describe("whose keys", () => {
  test("another caller's key id is 404 for every action, and the key keeps working", async () => {
    const a = await createUser("user");
    const b = await createUser("user");
    const bKey = await createKey(b.key, { name: "b's" });
    await expectError(
      await server.api(`/api/keys/${bKey.id}`, { method: "DELETE", key: a.key }),
      404,
      "not_found",
    );
    await expectError(
      await server.api(`/api/keys/${bKey.id}/rotate`, { method: "POST", key: a.key }),
      404,
      "not_found",
    );
    expect((await listKeys(a.key)).some((k) => k.id === bKey.id)).toBe(false);
    expect((await profile(bKey.key)).status).toBe(200);
  });

  test("an app manages its own and its end users' keys, not another app's", async () => {
    const app = await createUser("app");
    const other = await createUser("app");
    const player = await createKey(app.key, { name: "player key", userId: "player-7" });
    const me = await ok<{ id: string; externalId: string; parentId: string }>(await profile(player.key));
    expect(me).toMatchObject({ externalId: "player-7", parentId: app.id });
    expect((await listKeys(app.key, "?userId=player-7")).map((k) => k.id)).toEqual([player.id]);
    // Another app's "player-7" would be a user of its own: this one is unknown to it, and so is its key.
    await expectError(await server.api("/api/keys?userId=player-7", { key: other.key }), 404, "not_found");
    await expectError(
      await server.api(`/api/keys/${player.id}`, { method: "DELETE", key: other.key }),
      404,
      "not_found",
    );
    const rotated = await ok<NewKey>(
      await server.api(`/api/keys/${player.id}/rotate`, { method: "POST", key: app.key }),
      201,
    );
    await expectError(await profile(player.key), 401, "unauthorized");
    expect((await profile(rotated.key)).status).toBe(200);
    // The end user can't reach its app's keys.
    const appKeys = await listKeys(app.key);
    await expectError(
      await server.api(`/api/keys/${appKeys[0]!.id}`, { method: "DELETE", key: rotated.key }),
      404,
      "not_found",
    );
  });

  test("an admin manages anyone's keys, by internal or external id; ADMIN_KEY itself is not rotated", async () => {
    const externalId = `shop-${Bun.randomUUIDv7()}`;
    const app = await createUser("app", externalId);
    const appKeys = await listKeys(ADMIN_KEY, `?userId=${app.id}`);
    expect(appKeys).toHaveLength(1);
    expect(await listKeys(ADMIN_KEY, `?userId=${externalId}`)).toEqual(appKeys);
    const made = await createKey(ADMIN_KEY, { name: "issued by admin", userId: app.id });
    expect(made.userId).toBe(app.id);
    await ok(await server.api(`/api/keys/${made.id}`, { method: "DELETE" }));
    await expectError(await profile(made.key), 401, "unauthorized");
    await expectError(await server.api("/api/keys?userId=nobody-at-all"), 404, "not_found");

    const env = (await listKeys(ADMIN_KEY)).find((k) => k.name === "ADMIN_KEY")!;
    expect(env.prefix).toBe(ADMIN_KEY.slice(0, 4));
    await expectError(await server.api(`/api/keys/${env.id}/rotate`, { method: "POST" }), 409, "managed_key");
    expect((await profile(ADMIN_KEY)).status).toBe(200);
  });
});

describe("?token= in the URL", () => {
  const finished = (id: string) =>
    waitFor(async () => (await server.ctx.queue.get(id))?.status === "completed", { what: `job ${id}` });

  test("is refused on ordinary routes, even with a valid key or client token", async () => {
    const u = await createUser("user");
    const { token } = await ok<{ token: string }>(
      await server.api("/api/tokens", { method: "POST", key: u.key, json: {} }),
      201,
    );
    const job = (await server.ctx.queue.enqueue("note", { n: 1 }, { ownerId: u.id })).id;
    for (const credential of [ADMIN_KEY, u.key, token]) {
      for (const path of ["/api/jobs", `/api/jobs/${job}/status`, "/api/profile", "/api/keys"]) {
        const res = await fetch(`${server.url}${path}?token=${encodeURIComponent(credential)}`);
        expect(`${path} ${res.status}`).toBe(`${path} 401`);
      }
    }
  });

  test("SSE takes a client token, never an API key", async () => {
    const u = await createUser("user");
    const { token } = await ok<{ token: string }>(
      await server.api("/api/tokens", { method: "POST", key: u.key, json: {} }),
      201,
    );
    const job = (await server.ctx.queue.enqueue("note", { n: 1 }, { ownerId: u.id })).id;
    await finished(job);
    const events = (credential: string) =>
      fetch(`${server.url}/api/jobs/${job}/events?token=${encodeURIComponent(credential)}`);
    for (const key of [u.key, ADMIN_KEY]) {
      expect(await expectError(await events(key), 401, "unauthorized")).toContain("not accepted in the URL");
    }
    const streamed = await events(token);
    expect(streamed.status).toBe(200);
    expect(await streamed.text()).toContain("job_completed");
    // The header still takes a key.
    const viaHeader = await fetch(`${server.url}/api/jobs/${job}/events`, {
      headers: { authorization: `Bearer ${u.key}` },
    });
    expect(viaHeader.status).toBe(200);
    await viaHeader.body?.cancel();
  });

  test("the WebSocket takes a client token, never an API key (closed with 4401)", async () => {
    const u = await createUser("user");
    const { token } = await ok<{ token: string }>(
      await server.api("/api/tokens", { method: "POST", key: u.key, json: {} }),
      201,
    );
    const ws = (query: string) => WsClient.connect(`${server.url.replace(/^http/, "ws")}/ws?token=${query}`);
    for (const key of [u.key, ADMIN_KEY]) {
      const refused = await ws(encodeURIComponent(key));
      expect((await refused.closed).code).toBe(4401);
      expect(refused.frames).toEqual([]);
    }
    const accepted = await ws(encodeURIComponent(token));
    expect(accepted.ofType("connection_confirmed")[0]?.userId).toBe(u.id);
    accepted.close();
  });
});
