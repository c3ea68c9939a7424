/** A database of its own on a PostgreSQL server for one benchmark run, dropped afterwards. */
import { type ScratchDatabase, scratchDatabase } from "../../../test/db/pg-database";

export type BenchDatabase = Omit<ScratchDatabase, "admin"> & {
  /** The PIDs of the server backends connected to it now (pg_stat_activity). */
  backendPids(): Promise<number[]>;
};

/**
 * Creates `easel_bench_<label>_<pid>` on the server of `maintenanceUrl` (a left-over one of the same name,
 * from a run that was killed, is dropped first).
 */
export async function benchDatabase(maintenanceUrl: string, label: string): Promise<BenchDatabase> {
  const name = `easel_bench_${label}_${process.pid}`;
  const db = await scratchDatabase(maintenanceUrl, name, { replace: true });
  return {
    url: db.url,
    name,
    backendPids: async () =>
      ((await db.admin`SELECT pid FROM pg_stat_activity WHERE datname = ${name}`) as { pid: number }[]).map(
        (r) => r.pid,
      ),
    drop: db.drop,
  };
}
