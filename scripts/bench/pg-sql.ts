/**
 * What the PostgreSQL `Sql` client (src/db/pg/sql.ts) costs over Bun's SQL client used directly, on the real
 * `jobs` table of a fresh migrated database, each on one connection:
 *
 * - `read_p50_us`, `read_p99_us`, `read_qps`: one `SELECT <jobs columns> WHERE id = ?`, awaited before the
 *   next. Direct: Bun's rows as they come; Sql: rows converted for the row mappers (int8 to numbers, jsonb to
 *   text), then decoded by `rowMapper(jobs)`, as a repository reads them.
 * - `pipelined_qps`: the same read with 64 outstanding.
 * - `insert_per_s`: one job inserted per statement, awaited, binding JSON text (Sql) or a JS object (direct).
 * - `tx_per_s`: transactions of three statements (insert a job, update it, read it back), awaited.
 *
 * The two alternate, round after round (`--rounds`); each figure is the median over rounds. The server:
 * EASEL_TEST_DATABASE_URL (scripts/pg-test-cluster.sh) or `--url`; the role must be allowed to create databases.
 *
 *   bun run bench pg-sql [--json] [--url postgres://…] [--rounds 3] [--reads 3000] [--inserts 2000] [--txs 1000]
 */
import { parseArgs } from "node:util";
import { SQL } from "bun";
import { migratePg } from "../../src/db/pg/migrate";
import { pgSql } from "../../src/db/pg/sql";
import { columnList, rowMapper } from "../../src/db/rows";
import { jobs } from "../../src/db/schema";
import { PG_TEST_URL } from "../../test/db/pg-helpers";
import { benchDatabase } from "./lib/pg-database";
import { machine, percentile, report, round } from "./machine";

const { values } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    url: {
      type: "string",
      default: PG_TEST_URL,
    },
    rounds: { type: "string", default: "3" },
    reads: { type: "string", default: "3000" },
    inserts: { type: "string", default: "2000" },
    txs: { type: "string", default: "1000" },
  },
});
const ROUNDS = Number(values.rounds);
const READS = Number(values.reads);
const INSERTS = Number(values.inserts);
const TXS = Number(values.txs);
const INFLIGHT = 64;
const COLUMNS = columnList(jobs);
const toJob = rowMapper(jobs);

type Client = {
  name: string;
  read(id: string): Promise<unknown>;
  insert(id: string, now: number): Promise<unknown>;
  tx(id: string, now: number): Promise<unknown>;
};

const INSERT =
  "INSERT INTO jobs (id, type, status, input, max_attempts, run_at, created_at, updated_at) VALUES (?, 'bench', 'queued', ?, 3, ?, ?, ?)";
const dollar = (text: string) => {
  let n = 0;
  return text.replace(/\?/g, () => `$${++n}`);
};

function direct(pool: SQL): Client {
  const read = `SELECT ${COLUMNS} FROM jobs WHERE id = $1`;
  const insert = dollar(INSERT);
  return {
    name: "direct",
    read: (id) => pool.unsafe(read, [id]),
    insert: (id, now) => pool.unsafe(insert, [id, { prompt: "a fox", n: 1 }, now, now, now]),
    tx: (id, now) =>
      pool.begin(async (tx) => {
        await tx.unsafe(insert, [id, { prompt: "a fox", n: 1 }, now, now, now]);
        await tx.unsafe("UPDATE jobs SET progress = $1, updated_at = $2 WHERE id = $3", [50, now, id]);
        return tx.unsafe(read, [id]);
      }),
  };
}

function viaSql(pool: SQL): Client {
  const sql = pgSql(pool);
  const read = `SELECT ${COLUMNS} FROM jobs WHERE id = ?`;
  return {
    name: "sql",
    read: async (id) => toJob((await sql.get(read, [id]))!),
    insert: (id, now) => sql.run(INSERT, [id, JSON.stringify({ prompt: "a fox", n: 1 }), now, now, now]),
    tx: (id, now) =>
      sql.transaction(async () => {
        await sql.run(INSERT, [id, JSON.stringify({ prompt: "a fox", n: 1 }), now, now, now]);
        await sql.run("UPDATE jobs SET progress = ?, updated_at = ? WHERE id = ?", [50, now, id]);
        return toJob((await sql.get(read, [id]))!);
      }),
  };
}

async function measure(client: Client): Promise<Record<string, number>> {
  const ids: string[] = [];
  const insertStart = performance.now();
  for (let i = 0; i < INSERTS; i++) {
    const id = Bun.randomUUIDv7();
    await client.insert(id, Date.now());
    ids.push(id);
  }
  const insertS = (performance.now() - insertStart) / 1000;

  // Warm: the first run of each statement prepares it (and, for Sql, reads its parameter types).
  for (let i = 0; i < 200; i++) await client.read(ids[i % ids.length]!);
  await client.tx(Bun.randomUUIDv7(), Date.now());
  const rtt: number[] = [];
  for (let i = 0; i < READS; i++) {
    const t = performance.now();
    await client.read(ids[i % ids.length]!);
    rtt.push((performance.now() - t) * 1000);
  }
  rtt.sort((a, b) => a - b);

  let next = 0;
  const pipelinedStart = performance.now();
  await Promise.all(
    Array.from({ length: INFLIGHT }, async () => {
      while (next < READS * 4) await client.read(ids[next++ % ids.length]!);
    }),
  );
  const pipelinedS = (performance.now() - pipelinedStart) / 1000;

  const txStart = performance.now();
  for (let i = 0; i < TXS; i++) await client.tx(Bun.randomUUIDv7(), Date.now());
  const txS = (performance.now() - txStart) / 1000;

  return {
    read_p50_us: round(percentile(rtt, 50), 1),
    read_p99_us: round(percentile(rtt, 99), 1),
    read_qps: Math.round(READS / (rtt.reduce((a, b) => a + b, 0) / 1e6)),
    pipelined_qps: Math.round((READS * 4) / pipelinedS),
    insert_per_s: Math.round(INSERTS / insertS),
    tx_per_s: Math.round(TXS / txS),
  };
}

const db = await benchDatabase(values.url, "pgsql");
const pool = new SQL(db.url, { max: 1 });
try {
  await migratePg(pool);
  const clients = [viaSql(pool), direct(pool)];
  const rounds: Record<string, Record<string, number>[]> = { sql: [], direct: [] };
  for (let r = 0; r < ROUNDS; r++) {
    for (const client of r % 2 === 0 ? clients : [...clients].reverse()) {
      await pool`TRUNCATE jobs CASCADE`;
      rounds[client.name]!.push(await measure(client));
    }
  }
  const medians = (rs: Record<string, number>[]) =>
    Object.fromEntries(
      Object.keys(rs[0]!).map((k) => [
        k,
        percentile(
          rs.map((r) => r[k]!).sort((a, b) => a - b),
          50,
        ),
      ]),
    );
  report(
    {
      bench: "pg-sql",
      sql: medians(rounds.sql!),
      direct: medians(rounds.direct!),
      rounds,
      params: { rounds: ROUNDS, reads: READS, inserts: INSERTS, txs: TXS, inflight: INFLIGHT },
      machine: machine(),
    },
    values.json,
  );
} finally {
  await pool.close();
  await db.drop();
}
