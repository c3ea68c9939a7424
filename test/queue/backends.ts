import { SQL } from "bun";
import { PgNotifier } from "../../src/db/pg/notify";
import { pgSql } from "../../src/db/pg/sql";
import { silentLogger } from "../../src/log";
import {
  pgQueueBackend,
  Queue,
  type QueueBackend,
  type QueueOptions,
  sqliteQueueBackend,
} from "../../src/queue";
import { migratedPgDatabasePerTest, type PgTestDb } from "../db/pg-helpers";
import { dbOf, queuesPerTest } from "../helpers";

export type BackendKind = "sqlite" | "postgres";

/** Queues of one backend for the engine's contract tests: each on a fresh database, gone after the test. */
export type QueueFactory = {
  kind: BackendKind;
  /** A queue on a fresh database (not started); stopped and removed after the test. */
  queue(opts?: Partial<QueueOptions>): Promise<Queue>;
  /**
   * The queue's tables as another process would reach them, with no worker pool behind it: a claim or a
   * cancel at a chosen time, or a retention slice.
   */
  peer(q: Queue): QueueBackend;
};

const DEFAULTS = {
  concurrency: 8,
  pollIntervalMs: 20,
  leaseMs: 5000,
  stalledMax: 3,
  defaultTimeoutMs: 5000,
  defaultMaxAttempts: 3,
  log: silentLogger,
} satisfies Partial<QueueOptions>;

/**
 * Both backends, for `describe.each(queueBackends())`: SQLite on a temp file, and PostgreSQL on a database of
 * its own per test (a copy of one migrated per file), with a LISTEN connection for cross-instance wake-ups.
 * Registers its own `afterEach` cleanups; call it once per file, at the top level.
 */
export function queueBackends(): [BackendKind, QueueFactory][] {
  const sqliteQueue = queuesPerTest();
  const { cleanups, database } = migratedPgDatabasePerTest();
  const databases = new WeakMap<Queue, PgTestDb>();
  const sqlite: QueueFactory = {
    kind: "sqlite",
    queue: async (opts = {}) => sqliteQueue(opts),
    peer: (q) => sqliteQueueBackend(dbOf(q)),
  };
  const postgres: QueueFactory = {
    kind: "postgres",
    queue: async (opts = {}) => {
      const pg = await database();
      const q = await pgQueue(pg, opts);
      cleanups.push(() => q.stop(0));
      databases.set(q, pg);
      return q;
    },
    peer: (q) => {
      const pg = databases.get(q);
      if (!pg) throw new TypeError("not a queue of this factory");
      return pgQueueBackend(pgSql(pg.sql));
    },
  };
  /** As `easel serve` builds it: claims on connections that commit without waiting for the WAL flush. */
  async function pgQueue(pg: PgTestDb, opts: Partial<QueueOptions>): Promise<Queue> {
    const sql = pgSql(pg.sql);
    const relaxedPool = new SQL(pg.url, { max: 2, connection: { synchronous_commit: "off" } });
    const notifier = new PgNotifier({ url: pg.url, sql });
    // Closed after the queue has stopped (cleanups run in reverse).
    cleanups.push(
      () => relaxedPool.close(),
      () => notifier.close(),
    );
    const relaxed = pgSql(relaxedPool);
    return new Queue({ ...DEFAULTS, ...opts, backend: pgQueueBackend(sql, { notifier, relaxed }) });
  }
  return [
    ["sqlite", sqlite],
    ["postgres", postgres],
  ];
}
