/**
 * How long moving an installation to PostgreSQL takes: builds a data directory holding `--rows` finished jobs
 * (with their items, attempts and asset rows, as the history benchmark builds them), then runs the real
 * `easel migrate-data --to <a fresh database>` in a child process and times it, the target's migrations and
 * the count check included.
 *
 * - `rows`: rows copied in all tables (from the command's own report);
 * - `seconds`, `rows_per_s`: the command's wall time, and rows over it;
 * - `source_mb`: the SQLite file's size.
 *
 *   bun run bench migrate-data [--json] [--rows 100000] [--url postgres://…]
 *
 * The server: EASEL_TEST_DATABASE_URL (scripts/pg-test-cluster.sh) or `--url`; the role must be allowed to
 * create databases.
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { PG_TEST_URL } from "../../test/db/pg-helpers";
import { buildHistory } from "./lib/history-data";
import { type BenchDatabase, benchDatabase } from "./lib/pg-database";
import { machine, report, round } from "./machine";

const { values } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    rows: { type: "string", default: "100000" },
    url: { type: "string", default: PG_TEST_URL },
  },
});
const ROOT = resolve(import.meta.dir, "../..");

const dataDir = mkdtempSync(join(tmpdir(), "easel-bench-migrate-"));
let db: BenchDatabase | null = null;
try {
  buildHistory(join(dataDir, "easel.db"), Number(values.rows), Date.now());
  db = await benchDatabase(values.url, "migrate");
  const target = db.url;
  const started = performance.now();
  const proc = Bun.spawn(["bun", "src/main.ts", "migrate-data", "--to", target], {
    cwd: ROOT,
    env: { ...process.env, DATA_DIR: dataDir, LOG_LEVEL: "silent" },
    stdout: "pipe",
    stderr: "inherit",
  });
  const out = await new Response(proc.stdout).text();
  const code = await proc.exited;
  const seconds = (performance.now() - started) / 1000;
  if (code !== 0) throw new Error(`migrate-data exited ${code}:\n${out}`);
  const copied = Number(/copied (\d+) rows/.exec(out)?.[1]);
  report(
    {
      bench: "migrate-data",
      jobs: Number(values.rows),
      rows: copied,
      seconds: round(seconds, 2),
      rows_per_s: Math.round(copied / seconds),
      source_mb: round(statSync(join(dataDir, "easel.db")).size / 2 ** 20, 1),
      machine: machine(),
    },
    values.json,
  );
} finally {
  await db?.drop();
  rmSync(dataDir, { recursive: true, force: true });
}
