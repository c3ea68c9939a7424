/**
 * A scratch database on a PostgreSQL server, created and dropped whole: one per test (pg-helpers.ts) or per
 * benchmark run (scripts/bench/lib/pg-database.ts). No bun:test here, so scripts can use it too.
 */
import { SQL } from "bun";

export type ScratchDatabase = {
  /** The URL of the new database (the maintenance URL with its name). */
  url: string;
  name: string;
  /** The maintenance connection it was created on (for queries about the database from outside it). */
  admin: SQL;
  /** Drops it, closing whatever is still connected, then the maintenance connection. */
  drop(): Promise<void>;
};

/**
 * Creates `name` on the server of `maintenanceUrl` (optionally from `template`). With `replace`, a left-over
 * database of that name (from a run that was killed) is dropped first.
 */
export async function scratchDatabase(
  maintenanceUrl: string,
  name: string,
  opts: { template?: string; replace?: boolean; admin?: SQL } = {},
): Promise<ScratchDatabase> {
  const admin = opts.admin ?? new SQL(maintenanceUrl, { max: 1 });
  if (opts.replace) await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.unsafe(`CREATE DATABASE ${name}${opts.template ? ` TEMPLATE ${opts.template}` : ""}`);
  const u = new URL(maintenanceUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    name,
    admin,
    drop: async () => {
      // FORCE: a child process killed mid-run may leave a session behind. An autovacuum worker that has just
      // started in the database can still refuse the drop for a moment: try again briefly.
      for (let attempt = 1; ; attempt++) {
        try {
          await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
          break;
        } catch (err) {
          if (attempt >= 20) throw err;
          await Bun.sleep(100);
        }
      }
      await admin.close();
    },
  };
}
