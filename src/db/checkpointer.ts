import type { Database } from "bun:sqlite";
import type { Done, Upkeep } from "./checkpoint-worker";
import { sqliteClient } from "./sqlite";

/**
 * Moves WAL checkpoints off the main thread. While it runs, the main connection's automatic checkpoints
 * are off (they fsync inside whichever commit crosses the threshold — 1 ms+ stalls on small commits);
 * if the worker dies, automatic checkpoints come back on so the WAL can never grow without bound.
 * It also runs the upkeep that retention asks for (incremental vacuum steps, `PRAGMA optimize`) on a
 * second worker's connection, started on first use: the event loop stays free for requests meanwhile, and
 * checkpoints go on beside it (on the checkpoint worker's own thread they ran between the vacuum's steps,
 * each with its fsync, and the vacuum took twice as long as on the main thread).
 */
export class Checkpointer {
  readonly #db: Database;
  readonly #path: string;
  readonly #intervalMs: number;
  #checkpoints: DbWorker | null = null;
  #upkeep: Promise<DbWorker | null> | null = null;

  constructor(db: Database, path: string, intervalMs = 500) {
    this.#db = db;
    this.#path = path;
    this.#intervalMs = intervalMs;
  }

  async start(): Promise<void> {
    if (this.#path === ":memory:") return;
    this.#checkpoints = await DbWorker.start(this.#db, this.#path, this.#intervalMs, () => this.#fallback());
    this.#db.exec("PRAGMA wal_autocheckpoint = 0");
  }

  /**
   * A PASSIVE checkpoint now, resolved when it is done (at once without a worker). Long runs of writes
   * (retention) pause on it so the checkpoint can catch up and the next commit rewinds the WAL.
   */
  async checkpointNow(): Promise<void> {
    await this.#checkpoints?.ask("now");
  }

  /**
   * `PRAGMA incremental_vacuum(pages)` on the upkeep worker's connection. Resolves to how long it took, or
   * null when there is no worker or it could not (the caller then runs the step itself).
   */
  vacuum(pages: number): Promise<number | null> {
    return this.#run({ vacuum: pages });
  }

  /** `PRAGMA optimize` on the upkeep worker's connection; false when there is no worker or it could not. */
  async optimize(): Promise<boolean> {
    return (await this.#run({ optimize: true })) !== null;
  }

  /**
   * Upkeep writes through the upkeep worker's connection while the main one stands aside
   * (SqliteClient#aside): its statements wait asynchronously rather than in SQLite's busy handler, which
   * sleeps on the event loop.
   */
  async #run(job: Upkeep): Promise<number | null> {
    if (!this.#checkpoints) return null;
    this.#upkeep ??= DbWorker.start(this.#db, this.#path, 0, () => {
      this.#upkeep = null;
    }).catch(() => null);
    const worker = await this.#upkeep;
    if (!worker) return null;
    const done = (await sqliteClient(this.#db).aside(() => worker.ask(job))) as Done | undefined;
    return done && "ms" in done ? done.ms : null;
  }

  /** Stops the workers, the checkpoint worker after a final TRUNCATE checkpoint (the WAL shrinks to zero). */
  async stop(): Promise<void> {
    const upkeep = this.#upkeep;
    this.#upkeep = null;
    await (await upkeep)?.stop();
    const checkpoints = this.#checkpoints;
    if (!checkpoints) return;
    this.#checkpoints = null;
    await checkpoints.stop();
    this.#fallback();
  }

  #fallback(): void {
    this.#checkpoints = null;
    try {
      this.#db.exec("PRAGMA wal_autocheckpoint = 1000");
    } catch {
      // The connection is already closed: nothing left to protect.
    }
  }
}

/** A worker thread running checkpoint-worker.ts on its own connection; answers its messages in order. */
class DbWorker {
  readonly #worker: Worker;
  /** Answers the worker owes, in the order it was asked (it answers one message at a time). */
  readonly #waiting: ((answer: unknown) => void)[] = [];
  #gone = false;

  private constructor(worker: Worker) {
    this.#worker = worker;
  }

  /** `intervalMs` 0: no checkpoint timer (the upkeep worker). `onGone` runs if the thread dies. */
  static async start(db: Database, path: string, intervalMs: number, onGone: () => void): Promise<DbWorker> {
    const worker = new Worker(new URL("./checkpoint-worker.ts", import.meta.url));
    await new Promise<void>((resolve, reject) => {
      worker.onmessage = () => resolve();
      worker.onerror = (e) => reject(e);
      const pragma = (name: string) => db.query(`PRAGMA ${name}`).values()[0]?.[0] as number;
      worker.postMessage({
        path,
        intervalMs,
        synchronous: pragma("synchronous"),
        cacheSize: pragma("cache_size"),
      });
    });
    const started = new DbWorker(worker);
    worker.onmessage = (e) => started.#waiting.shift()?.(e.data);
    const gone = () => {
      if (started.#gone) return;
      started.#gone = true;
      // Nothing will answer any more: whoever waits goes on (upkeep callers then run it themselves).
      for (const resolve of started.#waiting.splice(0)) resolve(undefined);
      onGone();
    };
    worker.onerror = gone;
    worker.addEventListener("close", gone);
    return started;
  }

  ask(message: Upkeep | "now"): Promise<unknown> {
    if (this.#gone) return Promise.resolve(undefined);
    const { promise, resolve } = Promise.withResolvers<unknown>();
    this.#waiting.push(resolve);
    this.#worker.postMessage(message);
    return promise;
  }

  async stop(): Promise<void> {
    if (this.#gone) return;
    this.#gone = true;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 5000);
      this.#worker.onmessage = (e) => {
        if (e.data !== "stopped") return this.#waiting.shift()?.(e.data);
        clearTimeout(timer);
        resolve();
      };
      this.#worker.postMessage("stop");
    });
    this.#worker.terminate();
    for (const resolve of this.#waiting.splice(0)) resolve(undefined);
  }
}
