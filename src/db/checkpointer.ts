import type { Database } from "bun:sqlite";

/**
 * Moves WAL checkpoints off the main thread. While it runs, the main connection's automatic checkpoints
 * are off (they fsync inside whichever commit crosses the threshold — 1 ms+ stalls on small commits);
 * if the worker dies, automatic checkpoints come back on so the WAL can never grow without bound.
 */
export class Checkpointer {
  readonly #db: Database;
  readonly #path: string;
  readonly #intervalMs: number;
  #worker: Worker | null = null;
  readonly #waiting: (() => void)[] = [];

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
      worker.postMessage({ path: this.#path, intervalMs: this.#intervalMs });
    });
    worker.onmessage = (e) => {
      if (e.data === "checkpointed") this.#waiting.shift()?.();
    };
    worker.onerror = () => this.#fallback();
    worker.addEventListener("close", () => this.#fallback());
    this.#db.exec("PRAGMA wal_autocheckpoint = 0");
  }

  /**
   * A PASSIVE checkpoint now, resolved when it is done (at once without a worker). Long runs of writes
   * (retention) pause on it so the checkpoint can catch up and the next commit rewinds the WAL.
   */
  checkpointNow(): Promise<void> {
    const worker = this.#worker;
    if (!worker) return Promise.resolve();
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waiting.push(resolve);
    worker.postMessage("now");
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
    for (const resolve of this.#waiting.splice(0)) resolve();
    try {
      this.#db.exec("PRAGMA wal_autocheckpoint = 1000");
    } catch {
      // The connection is already closed: nothing left to protect.
    }
  }
}
