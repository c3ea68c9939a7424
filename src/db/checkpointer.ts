import type { Database } from "bun:sqlite";
import type { Done, Upkeep } from "./checkpoint-worker";
import { sqliteClient } from "./sqlite";

/**
 * Moves WAL checkpoints off the main thread. While it runs, the main connection's automatic checkpoints
 * are off (they fsync inside whichever commit crosses the threshold — 1 ms+ stalls on small commits);
 * if the worker dies, automatic checkpoints come back on so the WAL can never grow without bound.
 * It also runs the upkeep that retention asks for (incremental vacuum steps, `PRAGMA optimize`) on the
 * worker's connection: the event loop stays free for requests meanwhile.
 */
export class Checkpointer {
  readonly #db: Database;
  readonly #path: string;
  readonly #intervalMs: number;
  #worker: Worker | null = null;
  /** Answers the worker owes, in the order it was asked (it answers one message at a time). */
  readonly #waiting: ((answer: unknown) => void)[] = [];

  constructor(db: Database, path: string, intervalMs = 500) {
    this.#db = db;
    this.#path = path;
    this.#intervalMs = intervalMs;
  }

  async start(): Promise<void> {
    if (this.#path === ":memory:") return;
    const worker = new Worker(new URL("./checkpoint-worker.ts", import.meta.url));
    this.#worker = worker;
    await new Promise<void>((resolve, reject) => {
      worker.onmessage = () => resolve();
      worker.onerror = (e) => reject(e);
      const pragma = (name: string) => this.#db.query(`PRAGMA ${name}`).values()[0]?.[0] as number;
      worker.postMessage({
        path: this.#path,
        intervalMs: this.#intervalMs,
        synchronous: pragma("synchronous"),
        cacheSize: pragma("cache_size"),
      });
    });
    worker.onmessage = (e) => this.#waiting.shift()?.(e.data);
    worker.onerror = () => this.#fallback();
    worker.addEventListener("close", () => this.#fallback());
    this.#db.exec("PRAGMA wal_autocheckpoint = 0");
  }

  /**
   * A PASSIVE checkpoint now, resolved when it is done (at once without a worker). Long runs of writes
   * (retention) pause on it so the checkpoint can catch up and the next commit rewinds the WAL.
   */
  async checkpointNow(): Promise<void> {
    await this.#ask("now");
  }

  /**
   * `PRAGMA incremental_vacuum(pages)` on the worker's connection. Resolves to how long it took, or null
   * when there is no worker or it could not (the caller then runs the step itself).
   */
  vacuum(pages: number): Promise<number | null> {
    return this.#upkeep({ vacuum: pages });
  }

  /** `PRAGMA optimize` on the worker's connection; false when there is no worker or it could not. */
  async optimize(): Promise<boolean> {
    return (await this.#upkeep({ optimize: true })) !== null;
  }

  /**
   * Upkeep writes through the worker's connection while the main one stands aside (SqliteClient#aside):
   * its statements wait asynchronously rather than in SQLite's busy handler, which sleeps on the event loop.
   */
  async #upkeep(job: Upkeep): Promise<number | null> {
    if (!this.#worker) return null;
    const done = (await sqliteClient(this.#db).aside(() => this.#ask(job))) as Done | undefined;
    return done && "ms" in done ? done.ms : null;
  }

  #ask(message: Upkeep | "now"): Promise<unknown> {
    const worker = this.#worker;
    if (!worker) return Promise.resolve(undefined);
    const { promise, resolve } = Promise.withResolvers<unknown>();
    this.#waiting.push(resolve);
    worker.postMessage(message);
    return promise;
  }

  /** Stops the worker after a final TRUNCATE checkpoint (the WAL file shrinks to zero). */
  async stop(): Promise<void> {
    const worker = this.#worker;
    if (!worker) return;
    this.#worker = null;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 5000);
      worker.onmessage = () => {
        clearTimeout(timer);
        resolve();
      };
      worker.postMessage("stop");
    });
    worker.terminate();
    this.#fallback();
  }

  #fallback(): void {
    // Nothing will answer any more: whoever waits goes on (upkeep callers then run it themselves).
    this.#worker = null;
    for (const resolve of this.#waiting.splice(0)) resolve(undefined);
    try {
      this.#db.exec("PRAGMA wal_autocheckpoint = 1000");
    } catch {
      // The connection is already closed: nothing left to protect.
    }
  }
}
