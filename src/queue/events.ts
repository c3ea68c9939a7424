import type { Job, JobError, JobItem } from "../db/schema";

/** Progress of one job, as realtime clients and webhooks see it. */
export type JobProgress = {
  job: Job;
  progress: number;
  message: string | null;
  /** Batch items that succeeded so far. */
  completedItems?: number;
  /** Batch items that failed for good so far. */
  failedItems?: number;
  totalItems?: number;
};

/** Every event the engine (and the features built on it) emits. Payloads carry the job row as settled. */
export type QueueEvents = {
  /** A job was inserted (or its queued input replaced by a dedupe enqueue). Emitted after commit. */
  "job:queued": { job: Job; deduped: boolean };
  /** A worker claimed the job and started an attempt. */
  "job:active": { job: Job };
  /** The handler reported progress, or a batch item finished. */
  "job:progress": JobProgress;
  /** One attempt of a batch item ended: `error` null when it succeeded (the job's own abort is not reported). */
  "item:attempt": { job: Job; item: JobItem; seconds: number; error: unknown };
  /** An attempt failed and the job went back to the queue for `job.runAt`. */
  "job:retrying": { job: Job; error: JobError };
  "job:completed": { job: Job; result: unknown };
  /** A batch ended with some items failed; `result.failedIds` names them. */
  "job:partial": { job: Job; result: unknown };
  "job:failed": { job: Job; error: JobError };
  "job:cancelled": { job: Job };
};

export type EventName = keyof QueueEvents;
type Listener<P> = (payload: P) => void;

/**
 * A small typed event bus over an event map (the queue's own, or a feature's). A throwing listener is caught
 * and reported, so a failing subscriber (webhook fan-out, metrics) can never leave a job stuck half-settled.
 */
export class EventBus<M extends object = QueueEvents> {
  readonly #listeners = new Map<keyof M, Set<Listener<never>>>();
  readonly #onListenerError: (err: unknown, event: keyof M) => void;

  constructor(onListenerError: (err: unknown, event: keyof M) => void = () => {}) {
    this.#onListenerError = onListenerError;
  }

  on<K extends keyof M>(event: K, listener: Listener<M[K]>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<never>);
    return () => set.delete(listener as Listener<never>);
  }

  emit<K extends keyof M>(event: K, payload: M[K]): void {
    const set = this.#listeners.get(event);
    if (!set || set.size === 0) return;
    for (const listener of set) {
      try {
        (listener as Listener<M[K]>)(payload);
      } catch (err) {
        this.#onListenerError(err, event);
      }
    }
  }

  listenerCount(event: keyof M): number {
    return this.#listeners.get(event)?.size ?? 0;
  }
}

export const TERMINAL_EVENT: Record<string, EventName> = {
  completed: "job:completed",
  partial: "job:partial",
  failed: "job:failed",
  cancelled: "job:cancelled",
};
