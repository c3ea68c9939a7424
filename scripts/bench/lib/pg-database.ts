/** A database of its own on a PostgreSQL server for one benchmark run, dropped afterwards. */
import { SQL } from "bun";

export type BenchDatabase = {
  /** The URL of the new database (the maintenance URL with its name). */
  url: string;
  name: string;
  /** The PIDs of the server backends connected to it now (pg_stat_activity). */
  backendPids(): Promise<number[]>;
  /** Drops it, closing whatever is still connected. */
  drop(): Promise<void>;
};

/**
 * Creates `easel_bench_<label>_<pid>` on the server of `maintenanceUrl` (a left-over one of the same name,
 * from a run that was killed, is dropped first), as test/db/pg-helpers.ts does for a test.
 */
export async function benchDatabase(maintenanceUrl: string, label: string): Promise<BenchDatabase> {
  const admin = new SQL(maintenanceUrl, { max: 1 });
  const name = `easel_bench_${label}_${process.pid}`;
  await admin.unsafe(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.unsafe(`CREATE DATABASE ${name}`);
  const u = new URL(maintenanceUrl);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    name,
    backendPids: async () =>
      ((await admin`SELECT pid FROM pg_stat_activity WHERE datname = ${name}`) as { pid: number }[]).map(
        (r) => r.pid,
      ),
    drop: async () => {
      // An autovacuum worker that has just started in the database can refuse the drop for a moment.
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
