import { hostname } from "node:os";
import { INSTANCE_TTL_MS, InstanceRegistry, joinInstances } from "../../db/pg/instances";
import type { PgNotifier } from "../../db/pg/notify";
import type { PgClient } from "../../db/pg/sql";
import { columnList, rowMapper } from "../../db/rows";
import { CLAIM_ORDER, type Job, jobAttempts, jobs, type TerminalStatus } from "../../db/schema";
import type {
  BackendRetentionSlice,
  InsertResult,
  ItemOutcome,
  QueueBackend,
  SettleResult,
  StalledPolicy,
} from "../backend";
import type { JobLogger } from "../define";
import { PG_DEPTH, QueueDepth } from "../depth";
import type { JobFilter, JobPage } from "../list";
import { endedStalled, isStalled, leaseLostAttempt, requeuedStalled, tooManyStalls } from "../stalled";
import {
  type CountMove,
  type CountScope,
  claimRank,
  countDeltas,
  countsFrom,
  markFinished,
  type NewItem,
  type NewJob,
  ownersOf,
  RETRYABLE_STATUSES,
  type RetentionCursor,
  type Settlement,
  supersededError,
  syntheticJob,
  toItem,
  toJob,
} from "../store";
import { PgQueueFeatures } from "./features";
import { PgJobLists } from "./list";

/**
 * The queue's statements on PostgreSQL, each with its contract first. They are written for PostgreSQL (`$n`
 * parameters, `FOR UPDATE SKIP LOCKED`, jsonb), run through `pgSql` (src/db/pg/sql.ts), and read rows with the
 * same row mappers as SQLite's store. A set of ids or rows travels as one jsonb parameter (`ids($1)`,
 * `jsonb_to_recordset`), so a statement's text, and its prepared plan, is the same whatever the set's size.
 *
 * Where SQLite relies on its single writer, this relies on row locks: a claim takes rows with SKIP LOCKED (two
 * instances never take the same job, nor wait for each other), a read that decides a write locks its row
 * (`FOR UPDATE`), and `job_counts` rows are upserted in key order so two group commits never deadlock.
 */

/** The channel an enqueue notifies on commit, so pools of other instances claim at once. */
export const JOBS_CHANNEL = "easel_jobs";

const JOB_COLUMNS = columnList(jobs);
/**
 * The same, qualified (the claim also reads its CTE's `id`), with the JSON columns as text: the row mapper
 * parses text once, where jsonb would be parsed by the driver, then turned back into text (pg/sql.ts).
 */
const JSON_COLUMNS = new Set(["input", "result", "error", "metadata"]);
const JOBS_COLUMNS = JOB_COLUMNS.split(", ")
  .map((c) => (JSON_COLUMNS.has(c) ? `jobs.${c}::text AS ${c}` : `jobs.${c}`))
  .join(", ");
const toAttempt = rowMapper(jobAttempts);
/**
 * The ids in a JSON array parameter, as an array an index probe (`= ANY`) takes. Sets and rows travel as JSON
 * text cast on the server (`$n::text::jsonb`): typed as text, the client binds the string as it is instead of
 * parsing it for Bun to serialize again.
 */
const ids = (param: string) => `ARRAY(SELECT jsonb_array_elements_text(${param}::text::jsonb))`;

const INSERT_COLUMNS = `id, type, status, priority, input, max_attempts, run_at, timeout_ms, dedupe_key, owner_id,
  recipe_id, credits_charged, webhook_url, metadata, created_at, updated_at`;
const INSERT_VALUES = "$1, $2, 'queued', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $14";
// Notifies in the same statement: one round trip, sent when the enqueue commits.
const INSERT = `WITH inserted AS (INSERT INTO jobs (${INSERT_COLUMNS}) VALUES (${INSERT_VALUES}) RETURNING 1)
  SELECT pg_notify('${JOBS_CHANNEL}', '') FROM inserted`;
// The partial unique index allows one queued job per key, cluster-wide: a second enqueue replaces its input
// but keeps its run_at (debounce). ON CONFLICT takes the existing row's lock, so racing enqueues serialize.
const UPSERT_DEDUPED = `INSERT INTO jobs (${INSERT_COLUMNS}) VALUES (${INSERT_VALUES})
  ON CONFLICT (dedupe_key) WHERE status = 'queued' AND dedupe_key IS NOT NULL
  DO UPDATE SET input = excluded.input, priority = GREATEST(jobs.priority, excluded.priority),
    metadata = coalesce(excluded.metadata, jobs.metadata), timeout_ms = excluded.timeout_ms,
    max_attempts = excluded.max_attempts, webhook_url = excluded.webhook_url, recipe_id = excluded.recipe_id,
    credits_charged = excluded.credits_charged, updated_at = excluded.updated_at
  RETURNING ${JOB_COLUMNS}`;
// Locked, so the charge read is the one the upsert replaces (a claim skips the locked row meanwhile).
const QUEUED_CHARGE =
  "SELECT credits_charged AS c FROM jobs WHERE dedupe_key = $1 AND status = 'queued' FOR UPDATE";
const INSERT_BULK = `WITH inserted AS (
    INSERT INTO jobs (${INSERT_COLUMNS})
    SELECT x.id, $1::text, 'queued', $2::bigint, x.input, $3::bigint, $4::bigint, $5::bigint, NULL, $6::text,
      $7::text, $8::bigint, $9::text, $10::text::jsonb, $11::bigint, $11::bigint
    FROM jsonb_to_recordset($12::text::jsonb) AS x(id text, input jsonb)
    RETURNING 1)
  SELECT pg_notify('${JOBS_CHANNEL}', '') FROM (SELECT count(*) FROM inserted) n`;
const INSERT_ITEMS = `INSERT INTO job_items (job_id, idx, key, input, status, attempts, updated_at)
  SELECT $1::text, x.idx, x.key, x.input, 'pending', 0, $2::bigint
  FROM jsonb_to_recordset($3::text::jsonb) AS x(idx bigint, key text, input jsonb)`;
const INSERT_INPUT_KEYS = `INSERT INTO job_input_keys (job_id, key)
  SELECT $1::text, k FROM jsonb_array_elements_text($2::text::jsonb) AS k ON CONFLICT DO NOTHING`;
const NOTIFY = `SELECT pg_notify('${JOBS_CHANNEL}', '')`;

/**
 * The claim for `typeCount` types: the CTE walks jobs_claim_idx in its own order (CLAIM_ORDER, run_at, id),
 * skipping rows another transaction holds, and stops after LIMIT; the UPDATE takes what it found.
 * MATERIALIZED: as a subquery of `id IN (…)` the planner may run it once per outer row, and with SKIP LOCKED
 * each run can find other rows, taking more than LIMIT.
 */
export function pgClaimSql(typeCount: number): string {
  const types = Array.from({ length: typeCount }, (_, i) => `$${i + 5}`).join(", ");
  return `WITH due AS MATERIALIZED (
      SELECT id FROM jobs WHERE status = 'queued' AND run_at <= $3 AND type IN (${types})
      ORDER BY ${CLAIM_ORDER}, run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED)
    UPDATE jobs SET status = 'active', locked_by = $1, locked_until = $2, attempts = attempts + 1,
      started_at = $3, updated_at = $3
    FROM due WHERE jobs.id = due.id
    RETURNING ${JOBS_COLUMNS}`;
}

// `j.id = ANY(…)` makes the jobs side a primary-key probe per row: joined on `j.id = v.id` alone, the planner
// (which guesses 100 rows for any set-returning function) may loop over the set once per job in the table.
const FINISH = `WITH v AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS v(id text, status text, result jsonb, error jsonb))
  UPDATE jobs j SET status = v.status, result = v.result, error = v.error,
    progress = CASE WHEN v.status = 'failed' THEN j.progress ELSE 100 END,
    finished_at = $2, updated_at = $2, locked_by = NULL, locked_until = NULL
  FROM v
  WHERE j.id = ANY(ARRAY(SELECT id FROM v)) AND j.id = v.id AND j.locked_by = $3 AND j.status = 'active'
  RETURNING j.id`;
/** Not while a newer job holds the dedupe key's queued slot: then the job is superseded instead. */
/** The scopes a job's ended count goes to (as the delete trigger of migration job_count_triggers reads them). */
const SCOPES_OF = (rows: string) => `SELECT s.scope, d.type, d.status, count(*) AS n FROM ${rows} d
    LEFT JOIN users u ON u.id = d.owner_id
    CROSS JOIN LATERAL (VALUES (''), ('u:' || d.owner_id), ('c:' || u.parent_id)) AS s(scope)
    WHERE s.scope IS NOT NULL GROUP BY s.scope, d.type, d.status`;
/**
 * The hot path's group commit as one statement (one round trip, one commit): the finishes, and the ended
 * counts and throughput of the jobs they ended, taken from the same rows. Counter rows are upserted in key
 * order (see ADD_COUNTS).
 */
const FINISH_COUNTED = `WITH v AS MATERIALIZED (
    SELECT * FROM jsonb_to_recordset($1::text::jsonb) AS v(id text, status text, result jsonb, error jsonb)),
  done AS (
    UPDATE jobs j SET status = v.status, result = v.result, error = v.error,
      progress = CASE WHEN v.status = 'failed' THEN j.progress ELSE 100 END,
      finished_at = $2, updated_at = $2, locked_by = NULL, locked_until = NULL
    FROM v
    WHERE j.id = ANY(ARRAY(SELECT id FROM v)) AND j.id = v.id AND j.locked_by = $3 AND j.status = 'active'
    RETURNING j.id, j.type, j.owner_id, j.status),
  moved AS MATERIALIZED (${SCOPES_OF("done")}),
  counted AS (
    INSERT INTO job_counts (scope, type, status, n) SELECT scope, type, status, n FROM moved
    ORDER BY scope, type, status
    ON CONFLICT (scope, type, status) DO UPDATE SET n = job_counts.n + excluded.n),
  rolled AS (
    INSERT INTO job_throughput (scope, minute, type, status, n)
    SELECT scope, $4::bigint, type, status, n FROM moved ORDER BY scope, type, status
    ON CONFLICT (scope, minute, type, status) DO UPDATE SET n = job_throughput.n + excluded.n)
  SELECT id FROM done`;
const FREE_KEY = `(dedupe_key IS NULL OR NOT EXISTS
  (SELECT 1 FROM jobs q WHERE q.dedupe_key = jobs.dedupe_key AND q.status = 'queued'))`;
const REQUEUE = `UPDATE jobs SET status = 'queued', run_at = $1, error = $2, attempts = attempts - $3,
    locked_by = NULL, locked_until = NULL, updated_at = $4
  WHERE id = $5 AND locked_by = $6 AND status = 'active' AND ${FREE_KEY}
  RETURNING attempts`;
const SUPERSEDE_MINE = `UPDATE jobs SET status = 'cancelled', error = $1, finished_at = $2, updated_at = $2,
    locked_by = NULL, locked_until = NULL
  WHERE id = $3 AND locked_by = $4 AND status = 'active' AND dedupe_key IS NOT NULL`;
const SUPERSEDE = `UPDATE jobs SET status = 'cancelled', error = $1, finished_at = $2, updated_at = $2,
    locked_by = NULL, locked_until = NULL
  WHERE id = $3 AND status = 'active'`;
const ATTEMPT = `INSERT INTO job_attempts (job_id, attempt, outcome, started_at, ended_at, error, retry_at)
  VALUES ($1, $2, $3, $4, $5, $6, $7)`;
const PARENTS = `SELECT id, parent_id FROM users WHERE id = ANY(${ids("$1")}) AND parent_id IS NOT NULL`;
// In key order: two instances' group commits lock the shared counter rows in the same order, never a cycle.
const ADD_COUNTS = `WITH counted AS (
    INSERT INTO job_counts (scope, type, status, n)
    SELECT scope, type, status, n FROM jsonb_to_recordset($1::text::jsonb) AS x(scope text, type text, status text, n bigint)
    ORDER BY scope, type, status
    ON CONFLICT (scope, type, status) DO UPDATE SET n = job_counts.n + excluded.n RETURNING 1)
  INSERT INTO job_throughput (scope, minute, type, status, n)
  SELECT scope, minute, type, status, n
  FROM jsonb_to_recordset($2::text::jsonb) AS x(scope text, minute bigint, type text, status text, n bigint)
  ORDER BY scope, minute, type, status
  ON CONFLICT (scope, minute, type, status) DO UPDATE SET n = job_throughput.n + excluded.n`;
const HEARTBEAT = `UPDATE jobs SET locked_until = $1 WHERE id = ANY(${ids("$2")}) AND locked_by = $3 AND status = 'active'
  RETURNING id`;
const PROGRESS =
  "UPDATE jobs SET progress = $1, progress_message = $2, updated_at = $3 WHERE id = $4 AND status = 'active'";
const NEXT_RUN_AT = "SELECT min(run_at) AS t FROM jobs WHERE status = 'queued'";
const RELEASE = `UPDATE jobs SET status = 'queued', run_at = $1, attempts = GREATEST(0, attempts - 1), locked_by = NULL,
    locked_until = NULL, updated_at = $1
  WHERE id = ANY(${ids("$2")}) AND locked_by = $3 AND status = 'active' AND ${FREE_KEY}`;
const BY_ID = `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = $1`;
const ITEMS = "SELECT * FROM job_items WHERE job_id = $1 ORDER BY idx";
const ITEM_ATTEMPT =
  "UPDATE job_items SET attempts = attempts + $1, updated_at = $2 WHERE job_id = $3 AND idx = $4";
const CHECKPOINT = `UPDATE job_items SET status = $1, result = $2, asset_id = $3, error = $4, updated_at = $5
  WHERE job_id = $6 AND idx = $7 AND status = 'pending'`;
const ATTEMPTS = `SELECT attempt, outcome, started_at, ended_at, error, retry_at FROM job_attempts
  WHERE job_id = $1 ORDER BY ended_at, attempt`;
const CANCEL = `UPDATE jobs SET status = 'cancelled', error = $1, finished_at = $2, updated_at = $2, locked_by = NULL,
    locked_until = NULL
  WHERE id = $3 AND status IN ('queued', 'active')
  RETURNING ${JOB_COLUMNS}`;
const CANCEL_ITEMS =
  "UPDATE job_items SET status = 'cancelled', updated_at = $1 WHERE job_id = $2 AND status = 'pending'";
const LOCK_BY_ID = `SELECT ${JOB_COLUMNS} FROM jobs WHERE id = $1 FOR UPDATE`;
const RETRY = `UPDATE jobs SET status = 'queued', attempts = 0, run_at = $1, error = NULL, result = NULL,
    finished_at = NULL, progress = 0, progress_message = NULL, stalled_count = 0, updated_at = $1
  WHERE id = $2 AND ${FREE_KEY}
  RETURNING ${JOB_COLUMNS}`;
const RETRY_ITEMS = `UPDATE job_items SET status = 'pending', attempts = 0, error = NULL, updated_at = $1
  WHERE job_id = $2 AND status IN ('failed', 'cancelled')`;
const STALLED = `SELECT ${JOB_COLUMNS} FROM jobs WHERE status = 'active' ORDER BY id FOR UPDATE SKIP LOCKED`;
const STALLED_EXPIRED = `SELECT ${JOB_COLUMNS} FROM jobs WHERE status = 'active' AND locked_until < $1
  ORDER BY id FOR UPDATE SKIP LOCKED`;
const STALLED_EXPIRED_OR_HELD = `SELECT ${JOB_COLUMNS} FROM jobs
  WHERE status = 'active' AND (locked_until < $1 OR locked_by = ANY(${ids("$2")}))
  ORDER BY id FOR UPDATE SKIP LOCKED`;
const FAIL_STALLED = `UPDATE jobs SET status = 'failed', error = $1, stalled_count = stalled_count + 1, finished_at = $2,
    updated_at = $2, locked_by = NULL, locked_until = NULL
  WHERE id = $3 AND status = 'active'`;
const REQUEUE_STALLED = `UPDATE jobs SET status = 'queued', run_at = $1, attempts = GREATEST(0, attempts - 1),
    stalled_count = stalled_count + 1, locked_by = NULL, locked_until = NULL, updated_at = $1
  WHERE id = $2 AND status = 'active' AND ${FREE_KEY}`;
// `metadata.keep` as SQLite's json_extract reads it in a boolean context: true, or a non-zero number.
const KEPT = `CASE jsonb_typeof(metadata->'keep') WHEN 'boolean' THEN (metadata->>'keep')::boolean
  WHEN 'number' THEN (metadata->>'keep')::numeric <> 0 ELSE false END`;
const RETENTION_SCAN = `SELECT id, finished_at, ${KEPT} AS keep
  FROM jobs WHERE status = $1 AND type = $2 AND finished_at IS NOT NULL AND finished_at < $3
    AND (finished_at, id) > ($4::bigint, $5::text)
  ORDER BY finished_at, id LIMIT $6`;
const FIRST_ENDED_TYPE = `SELECT type FROM jobs WHERE status = $1 AND finished_at IS NOT NULL
  ORDER BY status, type LIMIT 1`;
const ENDED_TYPE_AFTER = `SELECT type FROM jobs WHERE status = $1 AND type > $2 AND finished_at IS NOT NULL
  ORDER BY status, type LIMIT 1`;
const ENDED_BEFORE = `SELECT 1 AS x FROM jobs WHERE status = $1 AND type = $2 AND finished_at IS NOT NULL
  AND finished_at < $3 LIMIT 1`;
// The marker row makes the delete trigger (migration job_count_triggers) stand aside: the slice counts itself.
// It is never committed, so it is invisible to every other transaction.
const DEFER_COUNTS = "INSERT INTO job_counts_deferred (id) VALUES (1)";
const UNDEFER_COUNTS = "DELETE FROM job_counts_deferred";
/**
 * A retention slice's delete and its count in one statement: the ended counts go down by the rows it deleted,
 * read from those rows (no round trip for the owners' parents, no per-job work in the server), upserted in
 * key order like every count move. The foreign keys cascade to items, attempts and input keys, and unlink
 * assets.
 */
const DELETE_COUNTED = `WITH gone AS (DELETE FROM jobs WHERE id = ANY(${ids("$1")}) RETURNING type, owner_id, status),
  moved AS MATERIALIZED (${SCOPES_OF("gone")})
  INSERT INTO job_counts (scope, type, status, n) SELECT scope, type, status, -n FROM moved
  ORDER BY scope, type, status
  ON CONFLICT (scope, type, status) DO UPDATE SET n = job_counts.n + excluded.n`;
const TRIM_THROUGHPUT = `DELETE FROM job_throughput WHERE ctid IN
  (SELECT ctid FROM job_throughput WHERE minute < $1 LIMIT $2)`;
const THROUGHPUT = `SELECT minute, type, status, sum(n) AS n FROM job_throughput
  WHERE scope IN ($1, $2) AND minute >= $3 AND minute < $4 GROUP BY minute, type, status`;
const DEBOUNCED = `SELECT dedupe_key AS "dedupeKey", id AS "jobId", type, run_at AS "runAt" FROM jobs
  WHERE status = 'queued' AND dedupe_key IS NOT NULL ORDER BY run_at LIMIT $1`;
const REFERENCED_KEYS = `SELECT DISTINCT key FROM job_input_keys WHERE key = ANY(${ids("$1")})`;

/** Counts by type of live jobs (queued split at `$1`) and of ended ones from job_counts, for one scope filter. */
const counts = (owner: string, scopes: string) =>
  `SELECT type, 'queued' AS s, count(*) AS n, count(*) FILTER (WHERE run_at > $1) AS later FROM jobs
     WHERE status = 'queued'${owner} GROUP BY type
   UNION ALL SELECT type, 'active', count(*), 0 FROM jobs WHERE status = 'active'${owner} GROUP BY type
   UNION ALL SELECT type, status, sum(n), 0 FROM job_counts WHERE scope IN (${scopes}) AND n > 0 GROUP BY type, status`;
const COUNTS_ALL = counts("", "''");
const COUNTS_OWNER = counts(" AND owner_id = $2", "$3");
const COUNTS_APP = counts(
  " AND (owner_id = $2 OR owner_id IN (SELECT id FROM users WHERE parent_id = $2))",
  "$3, $4",
);

const CANCELLED_ERROR = { code: "cancelled", message: "cancelled", retryable: false, refundable: true };

export type PgQueueBackendOptions = {
  /**
   * Instance leases: each started pool is a row of `instances` (src/db/pg/instances.ts) heartbeated every
   * `heartbeatMs`; the stalled sweep of any instance reaps rows older than `ttlMs` and re-queues the jobs
   * their pools held, without waiting for the jobs' own leases. Off when omitted (leases alone).
   */
  instances?: { version: string; heartbeatMs?: number; ttlMs?: number };
  /**
   * A client on connections whose commits do not wait for the WAL flush (`synchronous_commit = off`), for
   * the worker pool's claims, lease heartbeats and progress. What a database crash can lose of them is a
   * claim, an extended lease or a progress figure: the job is then claimed and run again (at least once, as
   * after any crash mid-job), never lost. It spares the claim one flush, half of what an enqueue → start
   * waits for. Enqueues, completions and every other write stay durable on `sql`.
   */
  relaxed?: PgClient;
  /**
   * The instance's LISTEN connection (src/db/pg/notify.ts): with it, a job enqueued by another instance
   * wakes this instance's pool within milliseconds; without it, the pool finds it at its next poll.
   */
  notifier?: PgNotifier;
};

/** The queue's backend on PostgreSQL, over the instance's `pgSql` client. */
export function pgQueueBackend(sql: PgClient, opts: PgQueueBackendOptions = {}): PgQueueBackend {
  return new PgQueueBackend(sql, opts);
}

/**
 * The engine's operations on PostgreSQL. Every operation is async; one that writes more than one statement
 * runs in a transaction of `sql` (joining the caller's when one is open). A claim is one statement; a group
 * commit is one transaction of a few statements whatever the batch size.
 */
export class PgQueueBackend implements QueueBackend {
  readonly kind = "postgres" as const;
  readonly sql: PgClient;
  readonly features: PgQueueFeatures;
  readonly depth: QueueDepth;
  readonly busy = false;
  readonly #notifier: PgNotifier | undefined;
  /** Where claims, heartbeats and progress commit (see PgQueueBackendOptions.relaxed). */
  readonly #relaxed: PgClient;
  readonly #instances: PgQueueBackendOptions["instances"];
  readonly #registry: InstanceRegistry;
  readonly #lists: PgJobLists;

  constructor(sql: PgClient, opts: PgQueueBackendOptions = {}) {
    this.sql = sql;
    this.#notifier = opts.notifier;
    this.#relaxed = opts.relaxed ?? sql;
    this.#instances = opts.instances;
    this.#registry = new InstanceRegistry(sql);
    this.features = new PgQueueFeatures(sql);
    this.depth = new QueueDepth(sql, PG_DEPTH);
    this.#lists = new PgJobLists(sql);
  }

  async idle(): Promise<void> {}

  outside<T>(fn: () => T): T {
    return this.sql.outside(fn);
  }

  async onWake(fn: () => void): Promise<(() => Promise<void>) | null> {
    if (!this.#notifier) return null;
    const sub = await this.#notifier.listen(JOBS_CHANNEL, fn);
    // Enqueues notified while the LISTEN connection was down were missed: look for them now.
    const off = this.#notifier.onReconnect(fn);
    return async () => {
      off();
      await sub.unlisten();
    };
  }

  async register(workerId: string, jobsRunning: () => number, log: JobLogger): Promise<() => Promise<void>> {
    const opts = this.#instances;
    if (!opts) return async () => {};
    return joinInstances(
      this.#registry,
      { id: workerId, host: hostname(), version: opts.version },
      { jobsRunning, heartbeatMs: opts.heartbeatMs, log },
    );
  }

  /**
   * Inserts one job (its items and input keys in the same transaction), or upserts into the queued job of its
   * dedupe key. A plain job is one statement (its own transaction), notifying listeners as it commits.
   */
  async insert(job: NewJob, items?: NewItem[], inputKeys?: readonly string[]): Promise<InsertResult> {
    const args = insertArgs(job);
    if (!job.dedupeKey && !items && !inputKeys?.length) {
      await this.sql.run(INSERT, args);
      return { job: syntheticJob(job), deduped: false, previousCharge: 0 };
    }
    return this.sql.transaction(async () => {
      let stored: Job;
      let deduped = false;
      let previousCharge = 0;
      if (job.dedupeKey) {
        // Ownerless system work (card renders, cleanups) is never charged, so it skips the read.
        if (job.ownerId)
          previousCharge = (await this.sql.get<{ c: number }>(QUEUED_CHARGE, [job.dedupeKey]))?.c ?? 0;
        stored = toJob((await this.sql.get(UPSERT_DEDUPED, args))!);
        deduped = stored.id !== job.id;
        if (deduped && items) await this.sql.run("DELETE FROM job_items WHERE job_id = $1", [stored.id]);
        // The replaced input's keys go with it: the sweep may take an upload only the old request named.
        if (deduped) await this.sql.run("DELETE FROM job_input_keys WHERE job_id = $1", [stored.id]);
        await this.sql.get(NOTIFY);
      } else {
        await this.sql.run(INSERT, args);
        stored = syntheticJob(job);
      }
      if (items?.length) {
        const rows = items.map((item, idx) => ({ idx, key: item.key, input: item.input ?? null }));
        await this.sql.run(INSERT_ITEMS, [stored.id, job.now, JSON.stringify(rows)]);
      }
      if (inputKeys?.length) await this.sql.run(INSERT_INPUT_KEYS, [stored.id, JSON.stringify(inputKeys)]);
      return { job: stored, deduped, previousCharge: deduped ? previousCharge : 0 };
    });
  }

  /** Inserts jobs that share every option but their id and input: one statement, one notification. */
  async insertBulk(rows: NewJob[]): Promise<Job[]> {
    const first = rows[0];
    if (!first) return [];
    const list = JSON.stringify(rows.map((r) => ({ id: r.id, input: r.input })));
    await this.sql.get(INSERT_BULK, [
      first.type,
      first.priority,
      first.maxAttempts,
      first.runAt,
      first.timeoutMs,
      first.ownerId,
      first.recipeId,
      first.creditsCharged,
      first.webhookUrl,
      first.metadata ? JSON.stringify(first.metadata) : null,
      first.now,
      list,
    ]);
    return rows.map(syntheticJob);
  }

  async claim(
    workerId: string,
    types: readonly string[],
    limit: number,
    now: number,
    leaseMs: number,
  ): Promise<Job[]> {
    if (limit <= 0 || types.length === 0) return [];
    const rows = await this.#relaxed.all(pgClaimSql(types.length), [
      workerId,
      now + leaseMs,
      now,
      limit,
      ...types,
    ]);
    // RETURNING gives no order guarantee; start them in claim order.
    return rows
      .map(toJob)
      .sort((a, b) => claimRank(a) - claimRank(b) || a.runAt - b.runAt || (a.id < b.id ? -1 : 1));
  }

  claimRounds(
    workerId: string,
    now: number,
    leaseMs: number,
    next: (got: Job[]) => { types: readonly string[]; limit: number } | null,
  ): Promise<Job[]> {
    return this.#relaxed.transaction(async () => {
      const claimed: Job[] = [];
      for (let round = next([]); round; ) {
        const got = await this.claim(workerId, round.types, round.limit, now, leaseMs);
        claimed.push(...got);
        round = next(got);
      }
      return claimed;
    });
  }

  /**
   * Applies a group of finished attempts in one transaction: every finish in one UPDATE, then each re-queue
   * (rare), then the counts in one statement. Guarded by `locked_by` + `active`, so a late result from an
   * attempt that lost its lease changes nothing. The jobs are updated in place with values that do not
   * depend on their previous ones, so a run again after a deadlock leaves them the same.
   */
  settle(workerId: string, batch: Settlement[], now: number): Promise<SettleResult> {
    if (batch.every((s) => s.kind === "finish")) return this.#finishAll(workerId, batch, now);
    return this.sql.transaction(async () => {
      const applied: Settlement[] = [];
      const superseded: Job[] = [];
      const ended: Job[] = [];
      const moved: CountMove[] = [];
      const finishes = batch.filter((s) => s.kind === "finish");
      if (finishes.length > 0) {
        const rows = finishes.map((s) => ({
          id: s.job.id,
          status: s.status,
          result: s.result === undefined ? null : s.result,
          error: s.error,
        }));
        const done = new Set(
          (await this.sql.all<{ id: string }>(FINISH, [JSON.stringify(rows), now, workerId])).map(
            (r) => r.id,
          ),
        );
        for (const s of finishes) {
          if (!done.has(s.job.id)) continue;
          const j = s.job;
          markFinished(j, s, now);
          moved.push({ type: j.type, ownerId: j.ownerId, from: "active", to: s.status, endedAt: now });
          ended.push(j);
          applied.push(s);
        }
      }
      for (const s of batch) {
        if (s.kind !== "requeue") continue;
        const j = s.job;
        const errJson = s.error ? JSON.stringify(s.error) : null;
        const row = await this.sql.get<{ attempts: number }>(REQUEUE, [
          s.runAt,
          errJson,
          s.refundAttempt ? 1 : 0,
          now,
          j.id,
          workerId,
        ]);
        if (!row) {
          const err = supersededError();
          const { changes } = await this.sql.run(SUPERSEDE_MINE, [JSON.stringify(err), now, j.id, workerId]);
          if (changes === 1) {
            Object.assign(j, { status: "cancelled", error: err, finishedAt: now, lockedBy: null });
            moved.push({ type: j.type, ownerId: j.ownerId, from: "active", to: "cancelled", endedAt: now });
            ended.push(j);
            superseded.push(j);
          }
          continue;
        }
        const attempt = row.attempts + (s.refundAttempt ? 1 : 0);
        await this.sql.run(ATTEMPT, [j.id, attempt, "retried", j.startedAt, now, errJson, s.runAt]);
        Object.assign(j, {
          status: "queued",
          runAt: s.runAt,
          error: s.error,
          attempts: row.attempts,
          lockedBy: null,
          lockedUntil: null,
          updatedAt: now,
        });
        applied.push(s);
      }
      await this.#count(moved);
      return { applied, superseded, ended };
    });
  }

  /** A group of finishes only (the hot path): one statement that also counts them. */
  async #finishAll(workerId: string, batch: Settlement[], now: number): Promise<SettleResult> {
    const rows = batch.map((s) =>
      s.kind === "finish"
        ? { id: s.job.id, status: s.status, result: s.result === undefined ? null : s.result, error: s.error }
        : null,
    );
    const done = new Set(
      (
        await this.sql.all<{ id: string }>(FINISH_COUNTED, [
          JSON.stringify(rows),
          now,
          workerId,
          Math.floor(now / 60_000),
        ])
      ).map((r) => r.id),
    );
    const applied: Settlement[] = [];
    const ended: Job[] = [];
    for (const s of batch) {
      if (s.kind !== "finish" || !done.has(s.job.id)) continue;
      markFinished(s.job, s, now);
      ended.push(s.job);
      applied.push(s);
    }
    return { applied, superseded: [], ended };
  }

  async heartbeat(workerId: string, jobIds: string[], lockedUntil: number): Promise<Set<string>> {
    const rows = await this.#relaxed.all<{ id: string }>(HEARTBEAT, [
      lockedUntil,
      JSON.stringify(jobIds),
      workerId,
    ]);
    return new Set(rows.map((r) => r.id));
  }

  async progress(id: string, pct: number, message: string | null, now: number): Promise<void> {
    await this.#relaxed.run(PROGRESS, [pct, message, now, id]);
  }

  async nextRunAt(): Promise<number | null> {
    return (await this.sql.get<{ t: number | null }>(NEXT_RUN_AT))?.t ?? null;
  }

  async release(workerId: string, jobIds: string[], now: number): Promise<number> {
    return this.sql.transaction(async () => {
      const { changes } = await this.sql.run(RELEASE, [now, JSON.stringify(jobIds), workerId]);
      if (changes > 0) await this.sql.get(NOTIFY);
      return changes;
    });
  }

  async bumpItemAttempt(jobId: string, idx: number, delta: number, now: number): Promise<void> {
    await this.sql.run(ITEM_ATTEMPT, [delta, now, jobId, idx]);
  }

  async checkpointItem(
    jobId: string,
    idx: number,
    status: "completed" | "failed",
    out: ItemOutcome,
    now: number,
  ): Promise<boolean> {
    const { changes } = await this.sql.run(CHECKPOINT, [
      status,
      out.result === undefined ? null : JSON.stringify(out.result),
      out.assetId ?? null,
      out.error ? JSON.stringify(out.error) : null,
      now,
      jobId,
      idx,
    ]);
    return changes > 0;
  }

  /** PostgreSQL reports a full disk as an error of the statement; nothing to record here. */
  writeFault(): void {}

  async get(id: string): Promise<Job | null> {
    const row = await this.sql.get(BY_ID, [id]);
    return row ? toJob(row) : null;
  }

  async items(jobId: string) {
    return (await this.sql.all(ITEMS, [jobId])).map(toItem);
  }

  async attempts(jobId: string) {
    return (await this.sql.all(ATTEMPTS, [jobId])).map((r) => {
      const { jobId: _, ...attempt } = toAttempt(r);
      return attempt;
    });
  }

  cancel(id: string, now: number): Promise<Job | null> {
    return this.sql.transaction(async () => {
      const row = await this.sql.get(CANCEL, [JSON.stringify(CANCELLED_ERROR), now, id]);
      if (!row) return null;
      // Unfinished items end with their job; an item still running cannot checkpoint over this (pending only).
      await this.sql.run(CANCEL_ITEMS, [now, id]);
      const job = toJob(row);
      // From queued or active: both live, so only the end is counted.
      await this.#count([
        { type: job.type, ownerId: job.ownerId, from: "queued", to: "cancelled", endedAt: now },
      ]);
      return job;
    });
  }

  retry(id: string, now: number): Promise<{ job: Job; before: Job } | null | "conflict"> {
    return this.sql.transaction(async () => {
      const row = await this.sql.get(LOCK_BY_ID, [id]);
      if (!row) return null;
      const before = toJob(row);
      if (!RETRYABLE_STATUSES.has(before.status)) return null;
      const retried = await this.sql.get(RETRY, [now, id]);
      // A newer job with the same dedupe key is queued: the key's slot is taken.
      if (!retried) return "conflict";
      await this.#count([{ type: before.type, ownerId: before.ownerId, from: before.status, to: "queued" }]);
      // The run being retried becomes history: its attempt, how it ended and why.
      const ended = before.error ?? {
        code: before.status,
        message: `ended ${before.status}`,
        retryable: true,
        refundable: false,
      };
      await this.sql.run(ATTEMPT, [
        id,
        before.attempts,
        "rerun",
        before.startedAt,
        before.finishedAt ?? now,
        JSON.stringify(ended),
        now,
      ]);
      await this.sql.run(RETRY_ITEMS, [now, id]);
      await this.sql.get(NOTIFY);
      return { job: toJob(retried), before };
    });
  }

  /**
   * Re-queues active jobs whose lease lapsed (or that `isDead` says belong to a dead holder), counting a stall
   * and giving back the attempt; past `stalledMax` stalls a job fails with code `stalled` (the rules:
   * ../stalled.ts). Rows another instance's sweep holds are skipped: each stalled job is recovered by
   * exactly one sweep.
   */
  recoverStalled(
    now: number,
    stalledMax: number,
    policy: StalledPolicy,
  ): Promise<{ requeued: Job[]; failed: Job[] }> {
    return this.sql.transaction(async () => {
      const requeued: Job[] = [];
      const failed: Job[] = [];
      const moved: CountMove[] = [];
      // Instances whose heartbeat lapsed: their jobs are stalled whatever their leases say. Reaped in this
      // transaction, so a rolled-back sweep leaves them for the next.
      const dead = this.#instances
        ? (await this.#registry.reap(now, this.#instances.ttlMs ?? INSTANCE_TTL_MS)).map((i) => i.id)
        : [];
      const rows = !policy.expiredOnly
        ? await this.sql.all(STALLED)
        : dead.length > 0
          ? await this.sql.all(STALLED_EXPIRED_OR_HELD, [now, JSON.stringify(dead)])
          : await this.sql.all(STALLED_EXPIRED, [now]);
      const deadHolders = new Set(dead);
      const heldByDead = (holder: string) => deadHolders.has(holder) || policy.isDead?.(holder) === true;
      for (const job of rows.map(toJob)) {
        if (!isStalled(job, now, heldByDead)) continue;
        const tooMany = tooManyStalls(job, stalledMax);
        if (tooMany) {
          await this.sql.run(FAIL_STALLED, [JSON.stringify(tooMany), now, job.id]);
          failed.push(endedStalled(job, "failed", tooMany, now, moved));
          continue;
        }
        const { changes } = await this.sql.run(REQUEUE_STALLED, [now, job.id]);
        if (changes === 0) {
          const err = supersededError();
          await this.sql.run(SUPERSEDE, [JSON.stringify(err), now, job.id]);
          failed.push(endedStalled(job, "cancelled", err, now, moved));
          continue;
        }
        await this.sql.run(ATTEMPT, leaseLostAttempt(job, now));
        requeuedStalled(job, now);
        requeued.push(job);
      }
      await this.#count(moved);
      if (requeued.length > 0) await this.sql.get(NOTIFY);
      return { requeued, failed };
    });
  }

  /**
   * A slice here is awaited I/O, not a hold on the event loop: requests run while it does. It costs about ten
   * round trips whatever its size, plus its rows, so slices sized for SQLite's 5 ms (50 to a few hundred
   * rows) spent most of their time on round trips: 4,000 rows/s at 1M rows (docs/BENCHMARKS.md). From 2,000
   * rows on the round trips are a few percent; larger slices went no faster and left longer gaps in the event
   * loop (the server's own work per slice: its rows, their asset files). Its locks do not grow with it: the
   * deleted jobs are finished (nothing else takes them), and the counter rows that completions also update
   * are taken by its last statement, just before it commits.
   */
  readonly retentionSliceRows = 2000;

  retentionTransaction<T>(fn: () => Promise<T>): Promise<T> {
    return this.sql.transaction(fn);
  }

  /**
   * One retention slice (see QueueStore#deleteFinishedSlice): walks jobs_ended_idx by (status, type,
   * finished_at, id) from the cursor. `delete` deletes the jobs (the foreign keys take their children) and
   * counts them itself, with the delete trigger standing aside.
   */
  async retentionSlice(
    status: TerminalStatus,
    before: number,
    from: RetentionCursor | null,
    limit: number,
  ): Promise<BackendRetentionSlice> {
    const type = from ? from.type : await this.#nextEndedType(status, null);
    if (type === null) return { ids: [], next: null, delete: async () => {} };
    const at = from ?? { finishedAt: -1, id: "" };
    const rows = await this.sql.all<{ id: string; finished_at: number; keep: boolean }>(RETENTION_SCAN, [
      status,
      type,
      before,
      at.finishedAt,
      at.id,
      limit,
    ]);
    const jobIds = rows.filter((r) => !r.keep).map((r) => r.id);
    const last = rows.at(-1);
    let next: RetentionCursor | null;
    if (rows.length === limit && last) next = { type, finishedAt: last.finished_at, id: last.id };
    else {
      const nextType = await this.#nextEndedType(status, type);
      next = nextType === null ? null : { type: nextType, finishedAt: -1, id: "" };
    }
    return {
      ids: jobIds,
      next,
      delete: async () => {
        if (jobIds.length === 0) return;
        await this.sql.transaction(async () => {
          await this.sql.run(DEFER_COUNTS);
          await this.sql.run(DELETE_COUNTED, [JSON.stringify(jobIds)]);
          await this.sql.run(UNDEFER_COUNTS);
        });
      },
    };
  }

  async endedBefore(status: TerminalStatus, before: number): Promise<boolean> {
    for (
      let type = await this.#nextEndedType(status, null);
      type !== null;
      type = await this.#nextEndedType(status, type)
    ) {
      if (await this.sql.get(ENDED_BEFORE, [status, type, before])) return true;
    }
    return false;
  }

  async #nextEndedType(status: TerminalStatus, after: string | null): Promise<string | null> {
    const row =
      after === null
        ? await this.sql.get<{ type: string }>(FIRST_ENDED_TYPE, [status])
        : await this.sql.get<{ type: string }>(ENDED_TYPE_AFTER, [status, after]);
    return row?.type ?? null;
  }

  async trimThroughput(beforeMinute: number, limit: number): Promise<number> {
    return (await this.sql.run(TRIM_THROUGHPUT, [beforeMinute, limit])).changes;
  }

  /** Counts by status and type in `scope`: live jobs from their partial indexes, ended ones from job_counts. */
  async stats(now: number, scope: CountScope) {
    const rows =
      scope === null
        ? await this.sql.all<CountRow>(COUNTS_ALL, [now])
        : scope.withEndUsers
          ? await this.sql.all<CountRow>(COUNTS_APP, [
              now,
              scope.ownerId,
              `u:${scope.ownerId}`,
              `c:${scope.ownerId}`,
            ])
          : await this.sql.all<CountRow>(COUNTS_OWNER, [now, scope.ownerId, `u:${scope.ownerId}`]);
    const out: { type: string; s: string; n: number }[] = [];
    for (const r of rows) {
      const n = Number(r.n);
      const later = Number(r.later);
      if (r.s !== "queued") out.push({ type: r.type, s: r.s, n });
      else {
        if (n - later > 0) out.push({ type: r.type, s: "waiting", n: n - later });
        if (later > 0) out.push({ type: r.type, s: "delayed", n: later });
      }
    }
    return countsFrom(out);
  }

  async throughput(scope: CountScope, fromMinute: number, toMinute: number) {
    const keys =
      scope === null
        ? [""]
        : scope.withEndUsers
          ? [`u:${scope.ownerId}`, `c:${scope.ownerId}`]
          : [`u:${scope.ownerId}`];
    const rows = await this.sql.all<{ minute: number; type: string; status: TerminalStatus; n: number }>(
      THROUGHPUT,
      [keys[0]!, keys[1] ?? keys[0]!, fromMinute, toMinute],
    );
    return rows.map((r) => ({ ...r, n: Number(r.n) }));
  }

  debounced(limit = 100) {
    return this.sql.all<{ dedupeKey: string; jobId: string; type: string; runAt: number }>(DEBOUNCED, [
      limit,
    ]);
  }

  async referencedInputKeys(keys: readonly string[]): Promise<Set<string>> {
    if (keys.length === 0) return new Set();
    const rows = await this.sql.all<{ key: string }>(REFERENCED_KEYS, [JSON.stringify(keys)]);
    return new Set(rows.map((r) => r.key));
  }

  list(filter: JobFilter, page: JobPage, now: number) {
    return this.#lists.list(filter, page, now);
  }

  itemCounts(jobId: string) {
    return this.#lists.itemCounts(jobId);
  }

  itemSummaries(jobIds: string[]) {
    return this.#lists.itemSummaries(jobIds);
  }

  /**
   * Applies `moves` to `job_counts` and `job_throughput` in the caller's transaction: one statement whatever
   * their number (plus one read of the owners' parents when owners are named).
   */
  async #count(moves: CountMove[]): Promise<void> {
    if (moves.length === 0) return;
    const owners = ownersOf(moves);
    const parents = new Map<string, string>();
    if (owners.length > 0) {
      for (const u of await this.sql.all<{ id: string; parent_id: string }>(PARENTS, [
        JSON.stringify(owners),
      ]))
        parents.set(u.id, u.parent_id);
    }
    const { counts, ended } = countDeltas(moves, parents);
    const countRows: { scope: string; type: string; status: string; n: number }[] = [];
    for (const [key, n] of counts) {
      const [scope, type, status] = key.split("\u0000");
      if (n !== 0) countRows.push({ scope: scope!, type: type!, status: status!, n });
    }
    const endedRows: { scope: string; minute: number; type: string; status: string; n: number }[] = [];
    for (const [key, n] of ended) {
      const [scope, minute, type, status] = key.split("\u0000");
      endedRows.push({ scope: scope!, minute: Number(minute), type: type!, status: status!, n });
    }
    if (countRows.length === 0 && endedRows.length === 0) return;
    await this.sql.run(ADD_COUNTS, [JSON.stringify(countRows), JSON.stringify(endedRows)]);
  }
}

type CountRow = { type: string; s: string; n: number; later: number };

function insertArgs(job: NewJob) {
  return [
    job.id,
    job.type,
    job.priority,
    JSON.stringify(job.input),
    job.maxAttempts,
    job.runAt,
    job.timeoutMs,
    job.dedupeKey,
    job.ownerId,
    job.recipeId,
    job.creditsCharged,
    job.webhookUrl,
    job.metadata ? JSON.stringify(job.metadata) : null,
    job.now,
  ];
}
