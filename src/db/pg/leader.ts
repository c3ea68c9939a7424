/**
 * "Once per cluster": work that must run on one instance at a time (the schedules: retention, backlog top-up,
 * the stalled sweep) runs on the instance holding a PostgreSQL session advisory lock. The lock lives exactly
 * as long as the session holding it, so when that instance dies (a crash, kill -9, a lost network) the
 * server ends its session, frees the lock, and another instance takes it. Knows nothing of what is led.
 */
import { type ReservedSQL, SQL } from "bun";
import type { PgLog } from "./notify";

export type LeaderOptions = {
  /** The database (the instance's DATABASE_URL). */
  url: string;
  /**
   * How often a follower asks for the lock, and how often the leader checks that its session is alive.
   * A leader whose session died meanwhile keeps leading until the next check fails (a session the server
   * ended is noticed at once; a silent network after max(5 × this, 5 s) without an answer).
   * @defaultValue 1000
   */
  intervalMs?: number;
  /** Shown in pg_stat_activity. @defaultValue "easel-leader" */
  applicationName?: string;
  log?: PgLog;
};

export type Leadership = {
  /** Whether this instance leads now. */
  readonly leading: boolean;
  /** Stops competing: a leader calls `onLose`, frees the lock at once (another instance takes it), and closes. */
  stop(): Promise<void>;
};

/**
 * Competes for leadership of `name` until stopped: `onLead` runs when this instance takes the lock, `onLose`
 * when it stops holding it (its session died, or `stop`). A follower keeps asking every `intervalMs`.
 * `onLead` and `onLose` alternate, starting with `onLead`; an error thrown by either is logged.
 *
 * The lock is held on a connection of its own, never the pool's: a pool would hand the session (and with it
 * the lock) to other work, or close it when idle.
 */
export function runAsLeader(
  name: string,
  onLead: () => void | Promise<void>,
  onLose: () => void | Promise<void>,
  opts: LeaderOptions,
): Leadership {
  return new LeaderLoop(name, onLead, onLose, opts).start();
}

class LeaderLoop implements Leadership {
  readonly #name: string;
  readonly #onLead: () => void | Promise<void>;
  readonly #onLose: () => void | Promise<void>;
  readonly #interval: number;
  readonly #log: PgLog | undefined;
  readonly #sql: SQL;
  #conn: ReservedSQL | null = null;
  #leading = false;
  #stopped = false;
  #timer: Timer | null = null;
  /** The running step: `stop` waits for it, so it never races a lock being taken. */
  #step: Promise<void> = Promise.resolve();

  constructor(
    name: string,
    onLead: () => void | Promise<void>,
    onLose: () => void | Promise<void>,
    opts: LeaderOptions,
  ) {
    this.#name = name;
    this.#onLead = onLead;
    this.#onLose = onLose;
    this.#interval = opts.intervalMs ?? 1000;
    this.#log = opts.log;
    this.#sql = new SQL(opts.url, {
      max: 1,
      connection: { application_name: opts.applicationName ?? "easel-leader" },
      // A session the server ended is noticed here at once, not at the next check.
      onclose: () => {
        if (this.#leading) this.#tick();
      },
    });
  }

  get leading(): boolean {
    return this.#leading;
  }

  start(): this {
    this.#tick();
    return this;
  }

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    await this.#step;
    if (this.#leading) {
      await this.#conn
        ?.unsafe("SELECT pg_advisory_unlock(hashtextextended($1, 0))", [this.#key])
        .catch(() => {});
      await this.#lose();
    }
    await this.#conn?.release().catch(() => {});
    await this.#sql.close().catch(() => {});
  }

  get #key(): string {
    return `easel:leader:${this.#name}`;
  }

  /** One step now (chained after the running one), then the next after the interval. */
  #tick(): void {
    if (this.#timer) clearTimeout(this.#timer);
    this.#step = this.#step.then(() => this.#once());
    void this.#step.then(() => {
      if (!this.#stopped) this.#timer = setTimeout(() => this.#tick(), this.#interval);
    });
  }

  async #once(): Promise<void> {
    if (this.#stopped) return;
    try {
      this.#conn ??= await this.#sql.reserve();
      if (this.#leading) {
        // A session lock lasts as long as its session: a session that answers still holds it. One that does
        // not answer in time (a network gone silent) is given up: losing is the safe side.
        await answersWithin(this.#conn.unsafe("SELECT 1"), Math.max(5 * this.#interval, 5000));
        return;
      }
      const [row] = await this.#conn.unsafe("SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS took", [
        this.#key,
      ]);
      if (row.took && !this.#stopped) {
        this.#leading = true;
        await this.#call(this.#onLead, "onLead");
      }
    } catch (err) {
      // The session is gone, and the lock with it: stop leading, and ask again on a new connection.
      const conn = this.#conn;
      this.#conn = null;
      await conn?.close().catch(() => {});
      if (this.#leading) {
        this.#log?.warn({ err, name: this.#name }, "lost leadership: its database session ended");
        await this.#lose();
      }
    }
  }

  async #lose(): Promise<void> {
    this.#leading = false;
    await this.#call(this.#onLose, "onLose");
  }

  async #call(fn: () => void | Promise<void>, what: string): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.#log?.error({ err, name: this.#name }, `the leader's ${what} threw`);
    }
  }
}

async function answersWithin(query: Promise<unknown>, ms: number): Promise<void> {
  let timer: Timer | undefined;
  const silent = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the leader's session did not answer within ${ms} ms`)), ms);
  });
  try {
    await Promise.race([query, silent]);
  } finally {
    clearTimeout(timer);
  }
}
