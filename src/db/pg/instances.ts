/**
 * The `instances` table: which Easel processes share the database, how many jobs each runs, and which have
 * died. Portable SQL over `Sql`, so it serves SQLite (one row) as well as a PostgreSQL cluster. Knows nothing
 * of jobs: the queue reports its running count and decides what a dead instance's leases mean.
 */
import { columnList, rowMapper } from "../rows";
import { type Instance, instances } from "../schema";
import type { Sql } from "../sql";

/** How often an instance records that it is alive. */
export const INSTANCE_HEARTBEAT_MS = 5000;
/** An instance counts as live while its last heartbeat is younger than this (three missed beats). */
export const INSTANCE_TTL_MS = 3 * INSTANCE_HEARTBEAT_MS;

const COLUMNS = columnList(instances);
const toInstance = rowMapper(instances);

export type { Instance };

/** Register, heartbeat, list and reap rows of `instances`. Times are epoch ms, passed in (a test's clock). */
export class InstanceRegistry {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Records this instance as started now (again, if its id was reaped while it was paused). */
  async register(instance: { id: string; host: string; version: string }, now: number): Promise<Instance> {
    const row = await this.#sql.get(
      `INSERT INTO instances (id, host, version, started_at, last_heartbeat_at, jobs_running)
       VALUES (?, ?, ?, ?, ?, 0)
       ON CONFLICT (id) DO UPDATE SET host = excluded.host, version = excluded.version,
         last_heartbeat_at = excluded.last_heartbeat_at
       RETURNING ${COLUMNS}`,
      [instance.id, instance.host, instance.version, now, now],
    );
    return toInstance(row!);
  }

  /**
   * Marks the instance alive at `now`, running `jobsRunning` jobs. False when its row is gone: another
   * instance found its heartbeat lapsed and reaped it, so it must treat what it held as lost, and register
   * again.
   */
  async heartbeat(id: string, jobsRunning: number, now: number): Promise<boolean> {
    const { changes } = await this.#sql.run(
      "UPDATE instances SET last_heartbeat_at = ?, jobs_running = ? WHERE id = ?",
      [now, jobsRunning, id],
    );
    return changes === 1;
  }

  /** The instances whose last heartbeat is at most `ttlMs` old, oldest first. */
  async live(now: number, ttlMs = INSTANCE_TTL_MS): Promise<Instance[]> {
    const rows = await this.#sql.all(
      `SELECT ${COLUMNS} FROM instances WHERE last_heartbeat_at >= ? ORDER BY started_at, id`,
      [now - ttlMs],
    );
    return rows.map(toInstance);
  }

  /**
   * Deletes the instances whose heartbeat lapsed (older than `ttlMs`) and returns them: any live instance may
   * call it; each dead row is reaped by exactly one caller (a DELETE … RETURNING takes a row once).
   */
  async reap(now: number, ttlMs: number): Promise<Instance[]> {
    const rows = await this.#sql.all(
      `DELETE FROM instances WHERE last_heartbeat_at < ? RETURNING ${COLUMNS}`,
      [now - ttlMs],
    );
    return rows.map(toInstance);
  }

  /** Removes the instance's row (a clean shutdown). */
  async deregister(id: string): Promise<void> {
    await this.#sql.run("DELETE FROM instances WHERE id = ?", [id]);
  }
}

export type HeartbeatOptions = {
  id: string;
  /** How often. @defaultValue INSTANCE_HEARTBEAT_MS */
  intervalMs?: number;
  /** The running-job count to report. */
  jobsRunning: () => number;
  /** The clock. @defaultValue Date.now */
  now?: () => number;
  /** Called when a heartbeat finds the row reaped (this instance was taken for dead). */
  onReaped?: () => void;
  /** Called when a heartbeat fails (the database is unreachable); the next one tries again. */
  onError?: (err: unknown) => void;
};

/** Heartbeats every `intervalMs` until the returned stop is called; a heartbeat never overlaps the next. */
export function keepAlive(registry: InstanceRegistry, opts: HeartbeatOptions): { stop(): Promise<void> } {
  const interval = opts.intervalMs ?? INSTANCE_HEARTBEAT_MS;
  const now = opts.now ?? Date.now;
  let stopped = false;
  let timer: Timer | null = null;
  let running: Promise<void> = Promise.resolve();
  const beat = async () => {
    try {
      if (!(await registry.heartbeat(opts.id, opts.jobsRunning(), now()))) opts.onReaped?.();
    } catch (err) {
      opts.onError?.(err);
    }
  };
  const schedule = () => {
    if (stopped) return;
    timer = setTimeout(() => {
      running = beat().then(schedule);
    }, interval);
  };
  schedule();
  return {
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}

export type JoinOptions = {
  /** How many jobs this instance runs now (reported with each heartbeat). */
  jobsRunning: () => number;
  /** @defaultValue INSTANCE_HEARTBEAT_MS */
  heartbeatMs?: number;
  log?: { warn(obj: object, msg: string): void };
};

/**
 * Registers `me` and heartbeats it until the returned leave (which deregisters: a clean exit leaves nothing
 * for a reaper). Taken for dead meanwhile (a long pause let its heartbeat lapse), it registers again: it is
 * alive, and whoever reaped it has already dealt with what it held.
 */
export async function joinInstances(
  registry: InstanceRegistry,
  me: { id: string; host: string; version: string },
  opts: JoinOptions,
): Promise<() => Promise<void>> {
  await registry.register(me, Date.now());
  const beat = keepAlive(registry, {
    id: me.id,
    intervalMs: opts.heartbeatMs,
    jobsRunning: opts.jobsRunning,
    onReaped: () => {
      opts.log?.warn({ instance: me.id }, "this instance was taken for dead; registering again");
      registry.register(me, Date.now()).catch((err) => opts.log?.warn({ err }, "could not register again"));
    },
    onError: (err) => opts.log?.warn({ err }, "instance heartbeat failed"),
  });
  return async () => {
    await beat.stop();
    await registry.deregister(me.id);
  };
}
