/**
 * The two databases every repository contract test runs on: a migrated SQLite file and a migrated PostgreSQL
 * database on the test server. Each gives a client and, on demand, more clients on the same database (a
 * second SQLite connection; a second PostgreSQL pool), as a second Easel instance would have.
 */

import { join } from "node:path";
import { SQL } from "bun";
import { openDb } from "../../src/db/client";
import { migratePg } from "../../src/db/pg/migrate";
import { pgSql } from "../../src/db/pg/sql";
import type { Sql } from "../../src/db/sql";
import { sqliteClient } from "../../src/db/sqlite";
import { tempDir } from "../helpers";
import { pgDatabasePerTest } from "./pg-helpers";

export type RepositoryDb = {
  /** The first client. */
  sql: Sql;
  /** Another client on the same database, on its own connection(s). */
  another(): Promise<Sql>;
};

export type RepositoryBackend = {
  name: string;
  /** SQLite runs one writer at a time (a transaction waits for the open one); PostgreSQL runs them side by side. */
  concurrentWriters: boolean;
  open(): Promise<RepositoryDb>;
};

/** Both backends; call once at the top of a test file (it registers the per-test cleanup). */
export function repositoryBackends(): RepositoryBackend[] {
  const { cleanups, database } = pgDatabasePerTest();
  const sqlite: RepositoryBackend = {
    name: "SQLite",
    concurrentWriters: false,
    async open() {
      const tmp = tempDir("easel-repo-");
      cleanups.push(tmp.cleanup);
      const path = join(tmp.dir, "easel.db");
      const connect = () => {
        const db = openDb(path);
        cleanups.push(() => db.$client.close());
        return sqliteClient(db.$client);
      };
      return { sql: connect(), another: async () => connect() };
    },
  };
  const postgres: RepositoryBackend = {
    name: "PostgreSQL",
    concurrentWriters: true,
    async open() {
      const pg = await database();
      await migratePg(pg.sql);
      return {
        sql: pgSql(pg.sql),
        another: async () => {
          const pool = new SQL(pg.url, { max: 4 });
          // Closed before the database is dropped (cleanups run in reverse order).
          cleanups.push(() => pool.close());
          return pgSql(pool);
        },
      };
    },
  };
  return [sqlite, postgres];
}
