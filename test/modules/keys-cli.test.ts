/**
 * `easel keys list|create|revoke|rotate` through the real CLI (a child process) on the data dir of a running
 * server: what the CLI does is seen by the server on the very next request.
 */
import { afterAll, beforeAll, expect, test } from "bun:test";
import { expectExit, runEasel, startTestServer, type TestServer } from "../helpers";

type KeyJson = {
  id: string;
  userId: string;
  name: string;
  prefix: string;
  status: string;
  createdAt: number;
  expiresAt: number | null;
  revokedAt: number | null;
  key?: string;
  rotatedFrom?: string;
};

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(() => server.close());

const easel = (args: string[]) => runEasel(server.dir, args);
const status = async (key: string) => (await server.api("/api/profile", { key })).status;

test("create, list, rotate and revoke a user's keys; the running server follows at once", async () => {
  const made = await easel([
    "users",
    "create",
    "--name",
    "shop",
    "--role",
    "app",
    "--external-id",
    "shop",
    "--json",
  ]);
  expectExit(made, 0);
  const { user, key: first } = JSON.parse(made.stdout) as { user: { id: string }; key: string };

  const created = await easel(["keys", "create", "shop", "--name", "ci", "--expires-in", "30d", "--json"]);
  expectExit(created, 0);
  const ci = JSON.parse(created.stdout) as KeyJson;
  expect(ci).toMatchObject({ userId: user.id, name: "ci", status: "active" });
  expect(ci.expiresAt! - ci.createdAt).toBe(30 * 86_400_000);
  expect(await status(ci.key!)).toBe(200);

  const listed = await easel(["keys", "list", user.id]);
  expectExit(listed, 0);
  expect(listed.stdout).toContain("2 keys");
  expect(listed.stdout).toContain(`${ci.prefix}…  active   ci`);
  expect(listed.stdout).not.toContain(ci.key!);

  const rotated = await easel(["keys", "rotate", ci.id, "--json"]);
  expectExit(rotated, 0);
  const next = JSON.parse(rotated.stdout) as KeyJson;
  expect(next).toMatchObject({ name: "ci", rotatedFrom: ci.id, status: "active" });
  expect(next.expiresAt! - next.createdAt).toBe(30 * 86_400_000);
  expect(await status(ci.key!)).toBe(401);
  expect(await status(next.key!)).toBe(200);

  const revoked = await easel(["keys", "revoke", next.id]);
  expectExit(revoked, 0);
  expect(revoked.stdout).toContain(`revoked ${next.id}`);
  expect(await status(next.key!)).toBe(401);
  expect(await status(first)).toBe(200);

  const all = await easel(["keys", "list", "shop", "--json"]);
  const statuses = (JSON.parse(all.stdout) as { keys: KeyJson[] }).keys.map((k) => [k.name, k.status]);
  expect(statuses.sort()).toEqual([
    ["ci", "revoked"],
    ["ci", "revoked"],
    ["cli", "active"],
  ]);
}, 60_000);

test("bad usage exits 2; an unknown key or user exits 1 naming it", async () => {
  for (const args of [
    ["keys"],
    ["keys", "create", "admin"],
    ["keys", "create", "admin", "--name", "x", "--expires-in", "5x"],
    ["keys", "create", "admin", "--name", "x", "--expires-in", "10s"],
    ["keys", "burn", "admin"],
  ]) {
    const run = await easel(args);
    expectExit(run, 2, `${args.join(" ")}: `);
    expect(run.stderr).toContain("usage: easel keys");
  }
  const unknownKey = await easel(["keys", "revoke", "no-such-key"]);
  expectExit(unknownKey, 1);
  expect(unknownKey.stderr).toContain("not_found: key not found");
  const unknownUser = await easel(["keys", "list", "nobody"]);
  expectExit(unknownUser, 1);
  expect(unknownUser.stderr).toContain("not_found: user not found");
  const reserved = await easel(["keys", "create", "admin", "--name", "ADMIN_KEY"]);
  expectExit(reserved, 1);
  expect(reserved.stderr).toContain("reserved_name");
}, 60_000);
