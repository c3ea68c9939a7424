import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { SignJWT } from "jose";
import { z } from "zod";
import { silentLogger } from "../../src/log";
import { hashKey } from "../../src/modules/auth/service";
import { defineJob } from "../../src/queue";
import { startRuntime } from "../../src/runtime";
import { ADMIN_KEY, startTestServer, type TestServer, tempDir, testConfig } from "../helpers";

const HOUR = 3_600_000;

type ErrorBody = { error: { code: string; message: string } };
type Created = { user: { id: string; role: string }; key: string | null; keyPrefix: string | null };
type Minted = { token: string; expiresAt: number; userId: string };
type JobList = { jobs: { id: string; ownerId: string }[]; nextCursor: string | null };

const note = defineJob({
  type: "note",
  input: z.object({ n: z.number() }),
  run: async ({ input }) => ({ n: input.n }),
});

/** Asserts the status (showing the body when it differs) and the `{error:{code,message}}` shape. */
async function expectError(res: Response, status: number, code: string): Promise<ErrorBody["error"]> {
  const text = await res.text();
  expect(`${res.status} ${text}`).toStartWith(`${status} `);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = JSON.parse(text) as ErrorBody;
  expect(body.error.code).toBe(code);
  expect(body.error.message.length).toBeGreaterThan(0);
  return body.error;
}

async function ok<T>(res: Response, status = 200): Promise<T> {
  const text = await res.text();
  expect(`${res.status} ${text}`).toStartWith(`${status} `);
  return JSON.parse(text) as T;
}

function count(server: TestServer, table: string): number {
  return (server.ctx.db.$client.query(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
}

async function createUser(server: TestServer, role: "app" | "user", name = `${role}-${Bun.randomUUIDv7()}`) {
  const created = await ok<Created>(
    await server.api("/api/users", { method: "POST", json: { name, role } }),
    201,
  );
  return { id: created.user.id, key: created.key! };
}

async function mint(server: TestServer, key: string, body: { userId?: string; ttlSeconds?: number } = {}) {
  return ok<Minted>(await server.api("/api/tokens", { method: "POST", key, json: body }), 201);
}

async function enqueueFor(server: TestServer, ownerId: string): Promise<string> {
  return (await server.ctx.queue.enqueue("note", { n: 1 }, { ownerId, delayMs: HOUR })).id;
}

function sign(secret: string, claims: Record<string, unknown>, opts: { alg?: string; exp?: number } = {}) {
  const now = Math.floor(Date.now() / 1000);
  return new SignJWT(claims)
    .setProtectedHeader({ alg: opts.alg ?? "HS256" })
    .setIssuedAt(now - 60)
    .setExpirationTime(opts.exp ?? now + 600)
    .sign(new TextEncoder().encode(secret));
}

const b64url = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");

describe("auth over HTTP", () => {
  let server: TestServer;
  beforeAll(async () => {
    server = await startTestServer({ jobs: [note] });
  });
  afterAll(() => server.close());

  test("requests without credentials get 401 and write nothing", async () => {
    const before = [count(server, "users"), count(server, "jobs"), count(server, "api_keys")];
    const calls: [string, string, unknown?][] = [
      ["GET", "/api/jobs"],
      ["GET", "/api/profile"],
      ["GET", "/api/jobs/stats"],
      ["GET", "/api/queue/status"],
      ["GET", "/api/jobs/0190a000-0000-7000-8000-000000000000"],
      ["POST", "/api/jobs/0190a000-0000-7000-8000-000000000000/cancel"],
      ["POST", "/api/users", { name: "x", role: "app" }],
      ["POST", "/api/tokens", { userId: "someone" }],
      ["POST", "/api/jobs", { type: "note", input: { n: 1 } }],
    ];
    for (const [method, path, json] of calls) {
      await expectError(await server.api(path, { method, json, key: null }), 401, "unauthorized");
    }
    expect([count(server, "users"), count(server, "jobs"), count(server, "api_keys")]).toEqual(before);
  });

  test("malformed headers and unknown keys get 401", async () => {
    for (const authorization of [
      "Basic YWRtaW46YWRtaW4=",
      "Bearer",
      "Bearer   ",
      ADMIN_KEY,
      `Token ${ADMIN_KEY}`,
    ]) {
      const res = await fetch(`${server.url}/api/profile`, { headers: { authorization } });
      await expectError(res, 401, "unauthorized");
    }
    for (const key of [
      "esk_unknown_key_000000000000000000000",
      "no-such-key",
      `${ADMIN_KEY}x`,
      "a.b.c",
      "....",
    ]) {
      await expectError(await server.api("/api/profile", { key }), 401, "unauthorized");
    }
  });

  test("a revoked key gets 401 while the user's other keys keep working", async () => {
    const app = await createUser(server, "app");
    const spare = await server.ctx.auth.createKey(app.id, "spare");
    expect(
      (await ok<{ id: string; role: string }>(await server.api("/api/profile", { key: app.key }))).role,
    ).toBe("app");

    const row = server.ctx.db.$client
      .query("SELECT id FROM api_keys WHERE hash = ?")
      .get(hashKey(app.key)) as {
      id: string;
    };
    await server.ctx.auth.revokeKey(row.id);

    await expectError(await server.api("/api/profile", { key: app.key }), 401, "unauthorized");
    await expectError(await server.api("/api/jobs", { key: app.key }), 401, "unauthorized");
    expect((await ok<{ id: string }>(await server.api("/api/profile", { key: spare.key }))).id).toBe(app.id);
  });

  test("a key without the role gets 403 and writes nothing", async () => {
    const app = await createUser(server, "app");
    const user = await createUser(server, "user");
    const endUser = await mint(server, app.key, { userId: "role-check" });
    const jobId = await enqueueFor(server, endUser.userId);
    const before = [count(server, "users"), count(server, "jobs"), count(server, "api_keys")];

    const forbidden: [string, string, string, unknown?][] = [
      [user.key, "POST", "/api/users", { name: "sneaky", role: "admin" }],
      [app.key, "POST", "/api/users", { name: "sneaky", role: "user" }],
      [app.key, "POST", "/api/jobs", { type: "note", input: { n: 1 } }],
      [user.key, "POST", "/api/jobs", { type: "note", input: { n: 1 } }],
      [app.key, "GET", "/api/queue/status"],
      [user.key, "GET", "/api/queue/status"],
      [endUser.token, "POST", "/api/tokens", {}],
      [endUser.token, "POST", "/api/users", { name: "sneaky", role: "user" }],
      [endUser.token, "POST", `/api/jobs/${jobId}/cancel`],
      [endUser.token, "POST", `/api/jobs/${jobId}/retry`],
      [endUser.token, "GET", "/api/jobs/stats"],
      [endUser.token, "GET", "/api/queue/status"],
    ];
    for (const [key, method, path, json] of forbidden) {
      await expectError(await server.api(path, { method, json, key }), 403, "forbidden");
    }
    expect([count(server, "users"), count(server, "jobs"), count(server, "api_keys")]).toEqual(before);
    expect((await server.ctx.queue.get(jobId))?.status).toBe("queued");
  });

  test("another user's job is 404 on every route, exactly like a missing one", async () => {
    const alice = await createUser(server, "user");
    const bob = await createUser(server, "user");
    const jobId = await enqueueFor(server, alice.id);
    const missing = await expectError(
      await server.api("/api/jobs/0190a000-0000-7000-8000-00000000dead"),
      404,
      "not_found",
    );

    for (const [method, path] of [
      ["GET", `/api/jobs/${jobId}`],
      ["GET", `/api/jobs/${jobId}/status`],
      ["POST", `/api/jobs/${jobId}/cancel`],
      ["POST", `/api/jobs/${jobId}/retry`],
    ] as const) {
      const err = await expectError(await server.api(path, { method, key: bob.key }), 404, "not_found");
      expect(err).toEqual(missing);
    }
    expect((await ok<JobList>(await server.api("/api/jobs", { key: bob.key }))).jobs).toEqual([]);
    expect((await server.ctx.queue.get(jobId))?.status).toBe("queued");

    expect((await ok<{ id: string }>(await server.api(`/api/jobs/${jobId}`, { key: alice.key }))).id).toBe(
      jobId,
    );
    expect(
      (await ok<{ jobId: string }>(await server.api(`/api/jobs/${jobId}/status`, { key: alice.key }))).jobId,
    ).toBe(jobId);
  });

  test("an app sees its own end users' jobs, not another app's", async () => {
    const appA = await createUser(server, "app");
    const appB = await createUser(server, "app");
    const aliceOfA = (await mint(server, appA.key, { userId: "alice" })).userId;
    const aliceOfB = (await mint(server, appB.key, { userId: "alice" })).userId;
    expect(aliceOfB).not.toBe(aliceOfA);
    const jobA = await enqueueFor(server, aliceOfA);
    const jobB = await enqueueFor(server, aliceOfB);

    expect(
      (await ok<{ ownerId: string }>(await server.api(`/api/jobs/${jobA}`, { key: appA.key }))).ownerId,
    ).toBe(aliceOfA);
    await ok(await server.api(`/api/jobs/${jobA}/status`, { key: appA.key }));
    await expectError(await server.api(`/api/jobs/${jobA}`, { key: appB.key }), 404, "not_found");
    await expectError(
      await server.api(`/api/jobs/${jobA}/cancel`, { method: "POST", key: appB.key }),
      404,
      "not_found",
    );

    const ids = async (key: string, query = "") =>
      (await ok<JobList>(await server.api(`/api/jobs${query}`, { key }))).jobs.map((j) => j.id);
    expect(await ids(appA.key)).toEqual([jobA]);
    expect(await ids(appB.key)).toEqual([jobB]);
    // By the app's own external id, or by the internal id of one of its users.
    expect(await ids(appA.key, "?userId=alice")).toEqual([jobA]);
    expect(await ids(appA.key, `?userId=${aliceOfA}`)).toEqual([jobA]);
    expect(await ids(appB.key, "?userId=alice")).toEqual([jobB]);

    // Naming another app's user (or nobody) finds nothing, and a read never creates a user.
    const users = count(server, "users");
    expect(await ids(appB.key, `?userId=${aliceOfA}`)).toEqual([]);
    expect(await ids(appB.key, "?userId=nobody-yet")).toEqual([]);
    expect(count(server, "users")).toBe(users);
  });

  test("an app mints client tokens for its end users, creating each user on first use", async () => {
    const app = await createUser(server, "app");
    const users = count(server, "users");
    const t0 = Date.now();
    const first = await mint(server, app.key, { userId: "carol", ttlSeconds: 120 });
    expect(count(server, "users")).toBe(users + 1);
    expect(first.expiresAt).toBeGreaterThanOrEqual(t0 + 119_000);
    expect(first.expiresAt).toBeLessThanOrEqual(Date.now() + 121_000);
    const carol = await server.ctx.users.get(first.userId);
    expect(carol).toMatchObject({ role: "user", externalId: "carol", parentId: app.id });

    const again = await mint(server, app.key, { userId: "carol" });
    expect(again.userId).toBe(first.userId);
    expect(count(server, "users")).toBe(users + 1);
  });

  test("a client token reads its own user's jobs, status and list, and nothing else", async () => {
    const app = await createUser(server, "app");
    const { token, userId: daveId } = await mint(server, app.key, { userId: "dave" });
    const erinId = (await mint(server, app.key, { userId: "erin" })).userId;
    const mine = [await enqueueFor(server, daveId), await enqueueFor(server, daveId)];
    const erins = await enqueueFor(server, erinId);
    const appOwn = await enqueueFor(server, app.id);

    const profile = await ok<{ id: string; via: string }>(await server.api("/api/profile", { key: token }));
    expect(profile).toMatchObject({ id: daveId, via: "token" });

    const list = await ok<JobList>(await server.api("/api/jobs", { key: token }));
    expect(list.jobs.map((j) => j.id).sort()).toEqual([...mine].sort());
    for (const id of mine) {
      expect((await ok<{ id: string }>(await server.api(`/api/jobs/${id}`, { key: token }))).id).toBe(id);
      const status = await ok<{ jobId: string; status: string }>(
        await server.api(`/api/jobs/${id}/status`, { key: token }),
      );
      expect(status).toMatchObject({ jobId: id, status: "queued" });
    }
    // Only routes a browser opens without headers (EventSource, WebSocket) take it as ?token=.
    const viaQuery = await fetch(`${server.url}/api/jobs/${mine[0]}/status?token=${token}`);
    await expectError(viaQuery, 401, "unauthorized");
    const events = await fetch(`${server.url}/api/jobs/${mine[0]}/events?token=${token}`);
    expect(events.status).toBe(200);
    await events.body?.cancel();

    for (const id of [erins, appOwn]) {
      await expectError(await server.api(`/api/jobs/${id}`, { key: token }), 404, "not_found");
      await expectError(await server.api(`/api/jobs/${id}/status`, { key: token }), 404, "not_found");
    }
    await expectError(await server.api("/api/jobs?userId=erin", { key: token }), 403, "forbidden");
    await expectError(
      await server.api(`/api/jobs/${mine[0]}/cancel`, { method: "POST", key: token }),
      403,
      "forbidden",
    );
    await expectError(
      await server.api("/api/tokens", { method: "POST", key: token, json: {} }),
      403,
      "forbidden",
    );
    expect((await server.ctx.queue.get(mine[0]!))?.status).toBe("queued");
  });

  test("a user key mints tokens only for itself", async () => {
    const user = await createUser(server, "user");
    expect((await mint(server, user.key)).userId).toBe(user.id);
    expect((await mint(server, user.key, { userId: user.id })).userId).toBe(user.id);
    const users = count(server, "users");
    await expectError(
      await server.api("/api/tokens", { method: "POST", key: user.key, json: { userId: "someone-else" } }),
      403,
      "forbidden",
    );
    expect(count(server, "users")).toBe(users);
  });

  test("an expired client token gets 401", async () => {
    const user = await createUser(server, "user");
    const secret = server.ctx.config.JWT_SECRET!;
    const claims = { scope: "client", sub: user.id, iss: "easel" };
    // Same secret and claims, still valid: proves the forged variants below fail for the reason they test.
    const valid = await sign(secret, claims);
    expect((await ok<{ id: string }>(await server.api("/api/profile", { key: valid }))).id).toBe(user.id);

    const expired = await sign(secret, claims, { exp: Math.floor(Date.now() / 1000) - 5 });
    await expectError(await server.api("/api/profile", { key: expired }), 401, "unauthorized");
    await expectError(await server.api("/api/jobs", { key: expired }), 401, "unauthorized");
  });

  test("forged client tokens get 401", async () => {
    const user = await createUser(server, "user");
    const other = await createUser(server, "user");
    const secret = server.ctx.config.JWT_SECRET!;
    const claims = { scope: "client", sub: user.id, iss: "easel" };
    const valid = await sign(secret, claims);
    const [header, , signature] = valid.split(".");
    const now = Math.floor(Date.now() / 1000);

    const forged: Record<string, string> = {
      otherSecret: await sign("another-secret-another-secret-another-0", claims),
      algNone: `${b64url({ alg: "none", typ: "JWT" })}.${b64url({ ...claims, iat: now, exp: now + 600 })}.`,
      tamperedPayload: `${header}.${b64url({ ...claims, sub: other.id, iat: now, exp: now + 600 })}.${signature}`,
      otherAlgorithm: await sign(secret, claims, { alg: "HS512" }),
      wrongIssuer: await sign(secret, { ...claims, iss: "someone-else" }),
      noScope: await sign(secret, { sub: user.id, iss: "easel" }),
      unknownUser: await sign(secret, { ...claims, sub: "0190a000-0000-7000-8000-000000000000" }),
      truncated: valid.slice(0, -4),
    };
    for (const [name, token] of Object.entries(forged)) {
      const res = await server.api("/api/profile", { key: token });
      expect(`${name}: ${res.status}`).toBe(`${name}: 401`);
      expect(((await res.json()) as ErrorBody).error.code).toBe("unauthorized");
    }
  });

  test("keys are stored only as SHA-256 hashes, also when an Idempotency-Key replays the creation", async () => {
    const headers = { "idempotency-key": "create-hashed-app" };
    const json = { name: "hashed-app", role: "app" };
    const first = await ok<Created>(await server.api("/api/users", { method: "POST", json, headers }), 201);
    const key = first.key!;
    expect(key).toStartWith("esk_");
    // A replay returns the same user but not the key again: it was shown once and never persisted.
    const replay = await ok<Created>(await server.api("/api/users", { method: "POST", json, headers }), 201);
    expect(replay.user.id).toBe(first.user.id);
    expect(replay.key).toBeNull();
    const user = await createUser(server, "user");
    const { token } = await mint(server, user.key);
    expect((await ok<{ id: string }>(await server.api("/api/profile", { key }))).id).toBe(first.user.id);

    const sqlite = server.ctx.db.$client;
    const secrets = [key, user.key, ADMIN_KEY];
    for (const plain of secrets) {
      const row = sqlite.query("SELECT hash, prefix FROM api_keys WHERE hash = ?").get(hashKey(plain)) as {
        hash: string;
        prefix: string;
      } | null;
      expect(row?.hash).toBe(new Bun.CryptoHasher("sha256").update(plain).digest("hex"));
      expect(row!.prefix.length).toBeLessThanOrEqual(12);
      expect(plain.length - row!.prefix.length).toBeGreaterThanOrEqual(20);
    }
    const tables = sqlite.query("SELECT name FROM sqlite_master WHERE type = 'table'").all() as {
      name: string;
    }[];
    for (const { name } of tables) {
      const dump = JSON.stringify(sqlite.query(`SELECT * FROM "${name}"`).all());
      for (const plain of [...secrets, token]) expect(dump.includes(plain)).toBe(false);
    }
    sqlite.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    const path = server.ctx.config.databasePath;
    const raw = Buffer.concat([
      readFileSync(path),
      existsSync(`${path}-wal`) ? readFileSync(`${path}-wal`) : Buffer.alloc(0),
    ]);
    for (const plain of secrets) expect(raw.includes(plain)).toBe(false);
  });
});

describe("client token expiry on the server's clock", () => {
  test("a token minted with ttlSeconds 10 works until it expires, then gets 401", async () => {
    const tmp = tempDir();
    let clock = Date.parse("2030-01-01T00:00:00Z");
    const rt = await startRuntime(testConfig(tmp.dir), { log: silentLogger, now: () => clock });
    const call = (path: string, key: string, json?: unknown) =>
      fetch(`${rt.url}${path}`, {
        method: json ? "POST" : "GET",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: json ? JSON.stringify(json) : undefined,
      });
    try {
      const minted = await ok<Minted>(
        await call("/api/tokens", ADMIN_KEY, { userId: "ttl-user", ttlSeconds: 10 }),
        201,
      );
      expect(minted.expiresAt).toBe(clock + 10_000);
      expect((await ok<{ id: string }>(await call("/api/profile", minted.token))).id).toBe(minted.userId);
      clock += 9_000;
      await ok(await call("/api/profile", minted.token));
      clock += 2_000;
      await expectError(await call("/api/profile", minted.token), 401, "unauthorized");
      await expectError(await call("/api/jobs", minted.token), 401, "unauthorized");
    } finally {
      await rt.stop();
      tmp.cleanup();
    }
  });
});

describe("bootstrap secrets", () => {
  /** Starts a server on `dir`, returning it with whatever it printed to stdout while starting. */
  async function startCapturing(dir: string, env: Record<string, string>) {
    const write = process.stdout.write;
    let printed = "";
    process.stdout.write = ((chunk: string | Uint8Array) => {
      printed += String(chunk);
      return true;
    }) as typeof process.stdout.write;
    try {
      return { server: await startTestServer({ dir, env }), printed };
    } finally {
      process.stdout.write = write;
    }
  }

  test("without ADMIN_KEY a key is generated into DATA_DIR/admin-key once, printed once, and works", async () => {
    const tmp = tempDir();
    try {
      const first = await startCapturing(tmp.dir, { ADMIN_KEY: "" });
      const file = join(tmp.dir, "admin-key");
      let key: string;
      try {
        expect(existsSync(file)).toBe(true);
        expect(statSync(file).mode & 0o777).toBe(0o600);
        key = readFileSync(file, "utf8").trim();
        expect(key).toStartWith("esk_");
        expect(first.printed).toContain(key);
        const res = await first.server.api("/api/queue/status", { key });
        expect(res.status).toBe(200);
        await expectError(await first.server.api("/api/queue/status"), 401, "unauthorized");
      } finally {
        await first.server.close();
      }

      const second = await startCapturing(tmp.dir, { ADMIN_KEY: "" });
      try {
        expect(second.printed).toBe("");
        expect(readFileSync(file, "utf8").trim()).toBe(key);
        expect((await second.server.api("/api/queue/status", { key })).status).toBe(200);
        const generated = second.server.ctx.db.$client
          .query("SELECT count(*) AS n FROM api_keys WHERE name = 'generated'")
          .get() as { n: number };
        expect(generated.n).toBe(1);
      } finally {
        await second.server.close();
      }
    } finally {
      tmp.cleanup();
    }
  });

  test("changing ADMIN_KEY revokes the previous one", async () => {
    const tmp = tempDir();
    // The shortest key config allows: what is stored beside its hash must not give most of it away.
    const next = "rotated-key-0123";
    try {
      const first = await startTestServer({ dir: tmp.dir });
      expect((await first.api("/api/queue/status")).status).toBe(200);
      await first.close();

      const second = await startTestServer({ dir: tmp.dir, env: { ADMIN_KEY: next } });
      try {
        expect((await second.api("/api/queue/status", { key: next })).status).toBe(200);
        await expectError(await second.api("/api/queue/status"), 401, "unauthorized");
        expect(existsSync(join(tmp.dir, "admin-key"))).toBe(false);
        const row = second.ctx.db.$client
          .query("SELECT prefix FROM api_keys WHERE hash = ?")
          .get(hashKey(next)) as {
          prefix: string;
        };
        expect(next.length - row.prefix.length).toBeGreaterThanOrEqual(12);
      } finally {
        await second.close();
      }
    } finally {
      tmp.cleanup();
    }
  });

  test("without JWT_SECRET a secret is generated into DATA_DIR and tokens survive a restart", async () => {
    const tmp = tempDir();
    try {
      const first = await startTestServer({ dir: tmp.dir, env: { JWT_SECRET: "" } });
      const { token, userId } = await mint(first, ADMIN_KEY, { userId: "survivor" });
      await first.close();
      expect(statSync(join(tmp.dir, "jwt-secret")).mode & 0o777).toBe(0o600);

      const second = await startTestServer({ dir: tmp.dir, env: { JWT_SECRET: "" } });
      try {
        expect((await ok<{ id: string }>(await second.api("/api/profile", { key: token }))).id).toBe(userId);
      } finally {
        await second.close();
      }
    } finally {
      tmp.cleanup();
    }
  });
});
