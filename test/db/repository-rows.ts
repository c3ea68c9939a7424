/** Rows the repository contract tests insert: whole rows of the drizzle tables, with what a test varies. */
import type { ApiKey, User } from "../../src/db/schema";
import type { Sql } from "../../src/db/sql";
import { KeyRepository } from "../../src/modules/auth/repository";
import { UserRepository } from "../../src/modules/users/repository";

export const T0 = 1_760_000_000_000;

export function userRow(over: Partial<User> = {}): User {
  return {
    id: Bun.randomUUIDv7(),
    externalId: null,
    name: "someone",
    role: "user",
    parentId: null,
    credits: 0,
    unlimited: false,
    createdAt: T0,
    updatedAt: T0,
    ...over,
  };
}

export async function insertUser(sql: Sql, over: Partial<User> = {}): Promise<User> {
  const u = userRow(over);
  await new UserRepository(sql).insert(u);
  return u;
}

export function keyRow(userId: string, over: Partial<ApiKey> = {}): ApiKey {
  const id = Bun.randomUUIDv7();
  return {
    id,
    userId,
    name: "key",
    prefix: "esk_test",
    hash: `hash-${id}`,
    createdAt: T0,
    lastUsedAt: null,
    revokedAt: null,
    expiresAt: null,
    ...over,
  };
}

export async function insertKey(sql: Sql, userId: string, over: Partial<ApiKey> = {}): Promise<ApiKey> {
  const k = keyRow(userId, over);
  await new KeyRepository(sql).insert(k);
  return k;
}
