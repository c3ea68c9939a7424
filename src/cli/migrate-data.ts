import { existsSync } from "node:fs";
import type { Config } from "../config";
import { CopyMismatchError, copySqliteToPostgres, type TableCount, TargetNotEmptyError } from "../db/copy";
import { openPostgres, openSqlite } from "../db/open";
import { isPostgresUrl } from "../db/pg/client";
import { LOCK_FILE, runningServer } from "../modules/ops/lock";
import { parse, UsageError } from "./args";

const USAGE = "usage: easel migrate-data --to postgres://user:pass@host:5432/db [--force]";

/**
 * `easel migrate-data --to postgres://…`: copies the SQLite database in DATA_DIR into PostgreSQL (migrating it
 * first), every table in one transaction, and prints each table's rows. Commits only when every count on the
 * target equals the source's; otherwise prints the differences and exits 1 with nothing written.
 *
 * A target that already holds data is refused (exit 1): `--force` replaces its rows instead (same
 * transaction). A server running on the data dir is refused too: what it wrote after the copy began would
 * not be copied.
 */
export async function migrateDataCommand(config: Config, argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, { to: { type: "string" }, force: { type: "boolean" } });
  if (!values.to || positionals.length > 0) throw new UsageError(USAGE);
  if (!isPostgresUrl(values.to))
    throw new UsageError(`--to must be a postgres:// or postgresql:// URL\n${USAGE}`);
  const server = runningServer(config.dataDir);
  if (server) {
    return fail(
      `a server (pid ${server.pid} on ${server.host}, port ${server.port}) uses ${config.dataDir}; stop it first, so nothing it writes is left behind (if it is not running, delete ${LOCK_FILE} there)`,
    );
  }
  if (!existsSync(config.databasePath)) return fail(`no SQLite database at ${config.databasePath} to copy`);
  const source = openSqlite(config);
  if (source.backend !== "sqlite") throw new Error("unreachable");
  try {
    const target = await openPostgres(values.to, { max: 1, applicationName: "easel migrate-data" });
    if (target.backend !== "postgres") throw new Error("unreachable");
    try {
      const counts = await copySqliteToPostgres(source.db.$client, target.sql, { replace: values.force });
      process.stdout.write(table(counts));
      const rows = counts.reduce((s, c) => s + c.source, 0);
      process.stdout.write(
        `copied ${rows} rows in ${counts.length} tables from ${source.where} to ${target.where}; counts verified\n`,
      );
      // Fresh planner statistics: the copied tables are new to PostgreSQL.
      await target.sql.run("ANALYZE");
      return 0;
    } catch (err) {
      if (err instanceof TargetNotEmptyError)
        return fail(`${target.where}: ${err.message}; pass --force to replace it (nothing was written)`);
      if (err instanceof CopyMismatchError) {
        process.stdout.write(table(err.counts));
        return fail(`${err.message}: nothing was committed to ${target.where}`);
      }
      throw err;
    } finally {
      await target.close();
    }
  } finally {
    await source.close();
  }
}

function fail(message: string): number {
  process.stderr.write(`easel migrate-data: ${message}\n`);
  return 1;
}

/** One line per table: its name, the source's rows, and the target's when they differ. */
function table(counts: TableCount[]): string {
  const width = Math.max(...counts.map((c) => c.table.length));
  return counts
    .map((c) => {
      const differs = c.target !== c.source ? `  target ${c.target}  MISMATCH` : "";
      return `${c.table.padEnd(width)}  ${String(c.source).padStart(8)}${differs}\n`;
    })
    .join("");
}
