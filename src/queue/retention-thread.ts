import type { Database } from "bun:sqlite";
import { sqliteClient } from "../db/sqlite";
import type { RetentionStart, SliceAsk, SliceDone } from "./retention-worker";

/**
 * A worker thread that deletes retention slices on its own connection to the queue's SQLite file, while the
 * main connection stands aside (`SqliteClient#aside`): the event loop stays free for requests, sockets and
 * jobs however large the slice, and only statements on the main connection wait for it, asynchronously
 * (never in SQLite's busy handler, which sleeps on the event loop). One run of retention starts it and
 * stops it.
 */
export class RetentionThread {
  readonly #db: Database;
  readonly #worker: Worker;
  /** Set to 1 while something waits for the main connection during a slice (read by the worker). */
  readonly #wanted: Int32Array;
  /** Answers the worker owes, in the order it was asked (it answers one message at a time). */
  readonly #waiting: ((answer: SliceDone | undefined) => void)[] = [];
  #gone = false;

  private constructor(db: Database, worker: Worker, wanted: Int32Array) {
    this.#db = db;
    this.#worker = worker;
    this.#wanted = wanted;
  }

  /** Starts the thread on `db`'s file; null for an in-memory database or when the thread cannot start. */
  static async start(db: Database): Promise<RetentionThread | null> {
    const path = db.filename;
    if (!path || path === ":memory:") return null;
    const pragma = (name: string) => db.query(`PRAGMA ${name}`).values()[0]?.[0] as number;
    let worker: Worker;
    try {
      worker = new Worker(new URL("./retention-worker.ts", import.meta.url));
    } catch {
      return null;
    }
    const wanted = new SharedArrayBuffer(4);
    const started = await new Promise<boolean>((resolve) => {
      worker.onmessage = (e) => resolve(e.data === "started");
      worker.onerror = () => resolve(false);
      const start: RetentionStart = {
        path,
        synchronous: pragma("synchronous"),
        cacheSize: pragma("cache_size"),
        wanted,
      };
      worker.postMessage(start);
    });
    if (!started) {
      worker.terminate();
      return null;
    }
    const thread = new RetentionThread(db, worker, new Int32Array(wanted));
    worker.onmessage = (e) => thread.#waiting.shift()?.(e.data as SliceDone);
    const gone = () => {
      if (thread.#gone) return;
      thread.#gone = true;
      // Nothing will answer any more: whoever waits goes on (the caller then deletes in process).
      for (const resolve of thread.#waiting.splice(0)) resolve(undefined);
    };
    worker.onerror = gone;
    worker.addEventListener("close", gone);
    return thread;
  }

  /**
   * One slice on the thread's connection, with the main connection standing aside until it has committed:
   * it grows up to `capMs` while nothing waits for the main connection, and ends after its current chunk
   * (`chunkMs`) once something does, so a statement waits about a chunk and a commit, while an idle server
   * lets retention delete in large transactions (a deleted job costs less in a larger one: each page of
   * the per-owner index it dirties then holds several of its jobs). Null when the thread is gone or the
   * slice failed (nothing of it was committed): the caller carries on in process.
   */
  async slice(ask: SliceAsk): Promise<Exclude<SliceDone, { failed: string }> | null> {
    if (this.#gone) return null;
    const done = await sqliteClient(this.#db).aside(
      () => {
        const { promise, resolve } = Promise.withResolvers<SliceDone | undefined>();
        this.#waiting.push(resolve);
        this.#worker.postMessage(ask);
        return promise;
      },
      { wanted: () => Atomics.store(this.#wanted, 0, 1) },
    );
    Atomics.store(this.#wanted, 0, 0);
    if (!done || "failed" in done) return null;
    return done;
  }

  async stop(): Promise<void> {
    if (this.#gone) return;
    this.#gone = true;
    const stopped = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 5000);
      this.#worker.onmessage = (e) => {
        if (e.data !== "stopped") return this.#waiting.shift()?.(e.data as SliceDone);
        clearTimeout(timer);
        resolve(true);
      };
      this.#worker.postMessage("stop");
    });
    // A thread that said it stopped ends itself (terminating it from here blocks the event loop while its
    // heap is torn down); one that did not answer is terminated.
    if (stopped) this.#worker.unref();
    else this.#worker.terminate();
    for (const resolve of this.#waiting.splice(0)) resolve(undefined);
  }
}
