/**
 * PostgreSQL drivers under Bun, on the local server: Bun's built-in SQL client (`import { SQL } from "bun"`)
 * against the `postgres` package, on the real `jobs` table (a fresh database migrated by src/db/pg/migrate.ts),
 * each on one connection so that nothing but the driver differs. Per driver:
 *
 * - `roundtrip_p50_us`, `roundtrip_p99_us`: one prepared `SELECT * FROM jobs WHERE id = $1`, awaited before
 *   the next (the latency a single request sees);
 * - `sequential_qps`: those awaited round trips per second; `pipelined_qps`: the same statement with
 *   `--inflight` queries outstanding on the one connection;
 * - `insert_1000_ms` (median) and `insert_rows_per_s`: 1,000 jobs in one `INSERT … SELECT FROM unnest(…)`;
 * - `claim_100_ms` (median, p99) and `claim_jobs_per_s`: the claim a PostgreSQL queue makes, one round trip:
 *   `UPDATE jobs … WHERE id IN (SELECT id … ORDER BY claim order LIMIT 100 FOR UPDATE SKIP LOCKED)
 *   RETURNING *`, every row parsed;
 * - `notify_p50_us`, `notify_p99_us`: from `NOTIFY` sent on the pool until the LISTEN callback runs on the
 *   driver's listening connection, one at a time.
 *
 * The drivers alternate, round after round (`--rounds`); each figure is the median over rounds, and every
 * round is printed too. The server: EASEL_TEST_DATABASE_URL (scripts/pg-test-cluster.sh) or `--url`; the
 * role must be allowed to create databases.
 *
 *   bun run bench pg-driver [--json] [--url postgres://…] [--rounds 3] [--roundtrips 3000]
 *     [--pipelined 20000] [--inflight 256] [--inserts 30] [--claims 50] [--notifies 1000]
 */
import { parseArgs } from "node:util";
import { SQL } from "bun";
import postgres from "postgres";
import { migratePg } from "../../src/db/pg/migrate";
import { CLAIM_ORDER } from "../../src/db/schema";
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
    roundtrips: { type: "string", default: "3000" },
    pipelined: { type: "string", default: "20000" },
    inflight: { type: "string", default: "256" },
    inserts: { type: "string", default: "30" },
    claims: { type: "string", default: "50" },
    notifies: { type: "string", default: "1000" },
  },
});
const ROUNDS = Number(values.rounds);
const ROUNDTRIPS = Number(values.roundtrips);
const PIPELINED = Number(values.pipelined);
const INFLIGHT = Number(values.inflight);
const INSERTS = Number(values.inserts);
const CLAIMS = Number(values.claims);
const NOTIFIES = Number(values.notifies);
const BATCH = 1000;
const CLAIM_LIMIT = 100;

/** What each benchmark needs of a driver; both speak the same tagged-template SQL. */
type Driver = {
  name: string;
  byId(id: string): Promise<unknown>;
  insert(batch: JobBatch): Promise<unknown>;
  claim(worker: string, now: number): Promise<unknown[]>;
  /** Subscribes; resolves once the server confirmed LISTEN, with the function that unsubscribes. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  notify(channel: string, payload: string): Promise<unknown>;
  truncate(): Promise<unknown>;
  analyze(): Promise<unknown>;
  close(): Promise<void>;
};

type JobBatch = { ids: string[]; inputs: string[]; runAts: number[]; priorities: number[]; now: number };

// The statements, identical for both drivers (the tags differ only in their import).
const INSERT_COLUMNS = "id, type, status, input, priority, max_attempts, run_at, created_at, updated_at";
const CLAIM = `UPDATE jobs SET status = 'active', locked_by = $1, locked_until = $2 + 30000, attempts = attempts + 1,
    started_at = $2, updated_at = $2
  WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' AND run_at <= $2
               ORDER BY ${CLAIM_ORDER}, run_at, id LIMIT ${CLAIM_LIMIT} FOR UPDATE SKIP LOCKED)
  RETURNING *`;

function bunDriver(url: string): Driver {
  const sql = new SQL(url, { max: 1 });
  return {
    name: "bun",
    byId: (id) => sql`SELECT * FROM jobs WHERE id = ${id}`,
    insert: (b) => sql`INSERT INTO jobs (${sql.unsafe(INSERT_COLUMNS)})
      SELECT id, 'bench', 'queued', input::jsonb, priority, 3, run_at, ${b.now}, ${b.now}
        FROM unnest(${b.ids}::text[], ${b.inputs}::text[], ${b.priorities}::int8[], ${b.runAts}::int8[])
          AS t(id, input, priority, run_at)`,
    claim: (worker, now) => sql.unsafe(CLAIM, [worker, now]),
    listen: async (channel, onPayload) => {
      const subscription = await sql.listen(channel, onPayload);
      return () => subscription.unlisten();
    },
    notify: (channel, payload) => sql.notify(channel, payload),
    truncate: () => sql`TRUNCATE jobs CASCADE`,
    analyze: () => sql`ANALYZE jobs`,
    close: () => sql.close(),
  };
}

function postgresDriver(url: string): Driver {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  return {
    name: "postgres",
    byId: (id) => sql`SELECT * FROM jobs WHERE id = ${id}`,
    insert: (b) => sql`INSERT INTO jobs (${sql.unsafe(INSERT_COLUMNS)})
      SELECT id, 'bench', 'queued', input::jsonb, priority, 3, run_at, ${b.now}, ${b.now}
        FROM unnest(${b.ids}::text[], ${b.inputs}::text[], ${b.priorities}::int8[], ${b.runAts}::int8[])
          AS t(id, input, priority, run_at)`,
    claim: (worker, now) => sql.unsafe(CLAIM, [worker, now], { prepare: true }),
    listen: async (channel, onPayload) => {
      const { unlisten } = await sql.listen(channel, onPayload);
      return unlisten;
    },
    notify: (channel, payload) => sql.notify(channel, payload),
    truncate: () => sql`TRUNCATE jobs CASCADE`,
    analyze: () => sql`ANALYZE jobs`,
    close: () => sql.end(),
  };
}

function jobBatch(size: number, now: number): JobBatch {
  const ids = Array.from({ length: size }, () => Bun.randomUUIDv7());
  return {
    ids,
    inputs: ids.map((id, i) => JSON.stringify({ prompt: `a fox no. ${i}`, ref: id, n: 1 })),
    runAts: ids.map((_, i) => now - 60_000 + i),
    priorities: ids.map((_, i) => i % 3),
    now,
  };
}

const median = (xs: number[]) =>
  percentile(
    [...xs].sort((a, b) => a - b),
    50,
  );
const sortedOf = (xs: number[]) => [...xs].sort((a, b) => a - b);

async function measure(driver: Driver): Promise<Record<string, number>> {
  await driver.truncate();

  // Multi-row insert: also seeds the rows the reads and claims use.
  const insertMs: number[] = [];
  const ids: string[] = [];
  for (let i = 0; i < INSERTS; i++) {
    const batch = jobBatch(BATCH, Date.now());
    const t = performance.now();
    await driver.insert(batch);
    insertMs.push(performance.now() - t);
    ids.push(...batch.ids);
  }
  // Fresh statistics, so the claim plans the walk down jobs_claim_idx whichever driver seeded first.
  await driver.analyze();

  const rtt: number[] = [];
  for (let i = 0; i < ROUNDTRIPS; i++) {
    const t = performance.now();
    await driver.byId(ids[i % ids.length]!);
    rtt.push((performance.now() - t) * 1000);
  }

  let next = 0;
  const pipelinedStart = performance.now();
  await Promise.all(
    Array.from({ length: INFLIGHT }, async () => {
      while (next < PIPELINED) await driver.byId(ids[next++ % ids.length]!);
    }),
  );
  const pipelinedS = (performance.now() - pipelinedStart) / 1000;

  const claimMs: number[] = [];
  let claimed = 0;
  for (let i = 0; i < CLAIMS; i++) {
    const t = performance.now();
    claimed += (await driver.claim(`bench-${driver.name}`, Date.now())).length;
    claimMs.push(performance.now() - t);
  }
  if (claimed !== Math.min(CLAIMS * CLAIM_LIMIT, ids.length)) {
    throw new Error(`${driver.name}: claimed ${claimed} jobs, expected ${CLAIMS * CLAIM_LIMIT}`);
  }

  const latencies: number[] = [];
  let delivered: ((payload: string) => void) | null = null;
  const unlisten = await driver.listen("easel_bench", (payload) => delivered?.(payload));
  for (let i = 0; i < NOTIFIES; i++) {
    const got = new Promise<string>((resolve) => (delivered = resolve));
    const t = performance.now();
    await driver.notify("easel_bench", String(i));
    if ((await got) !== String(i)) throw new Error(`${driver.name}: notification ${i} out of order`);
    latencies.push((performance.now() - t) * 1000);
  }
  await unlisten();

  const rttSorted = sortedOf(rtt);
  const rttTotalS = rtt.reduce((a, b) => a + b, 0) / 1e6;
  const claimSorted = sortedOf(claimMs);
  const notifySorted = sortedOf(latencies);
  return {
    roundtrip_p50_us: round(percentile(rttSorted, 50), 0),
    roundtrip_p99_us: round(percentile(rttSorted, 99), 0),
    sequential_qps: Math.round(ROUNDTRIPS / rttTotalS),
    pipelined_qps: Math.round(PIPELINED / pipelinedS),
    insert_1000_ms: round(median(insertMs)),
    insert_rows_per_s: Math.round((BATCH * INSERTS) / (insertMs.reduce((a, b) => a + b, 0) / 1000)),
    claim_100_ms: round(percentile(claimSorted, 50)),
    claim_100_p99_ms: round(percentile(claimSorted, 99)),
    claim_jobs_per_s: Math.round(claimed / (claimMs.reduce((a, b) => a + b, 0) / 1000)),
    notify_p50_us: round(percentile(notifySorted, 50), 0),
    notify_p99_us: round(percentile(notifySorted, 99), 0),
  };
}

const db = await benchDatabase(values.url, "pgdriver");
const benchUrl = db.url;
try {
  const setup = new SQL(benchUrl, { max: 1 });
  await migratePg(setup);
  const [{ version }] = await setup`SELECT current_setting('server_version') AS version`;
  await setup.close();

  const rounds: Record<string, Record<string, number>[]> = { bun: [], postgres: [] };
  for (let r = 0; r < ROUNDS; r++) {
    // Alternating which goes first, so neither always runs on the warmer (or busier) machine.
    const order = r % 2 === 0 ? [bunDriver, postgresDriver] : [postgresDriver, bunDriver];
    for (const make of order) {
      const driver = make(benchUrl);
      try {
        rounds[driver.name]!.push(await measure(driver));
      } finally {
        await driver.close();
      }
    }
  }
  const summary = (runs: Record<string, number>[]) =>
    Object.fromEntries(Object.keys(runs[0]!).map((k) => [k, median(runs.map((run) => run[k]!))]));
  report(
    {
      bench: "pg-driver",
      postgres_server: version,
      bun_sql: summary(rounds.bun!),
      postgres_js: summary(rounds.postgres!),
      rounds,
      settings: {
        rounds: ROUNDS,
        roundtrips: ROUNDTRIPS,
        pipelined: PIPELINED,
        inflight: INFLIGHT,
        inserts: INSERTS,
        claims: CLAIMS,
        notifies: NOTIFIES,
      },
      machine: machine(),
    },
    Boolean(values.json),
  );
} finally {
  await db.drop();
}
