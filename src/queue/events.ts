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
  /** A live card has a new image. */
  "card:rendered": { cardId: string; ownerId: string; version: number; imageUrl: string };
};

export type EventName = keyof QueueEvents;
type Listener<K extends EventName> = (payload: QueueEvents[K]) => void;

/**
 * A small typed event bus. A throwing listener is caught and reported, so a failing subscriber
 * (webhook fan-out, metrics) can never leave a job stuck half-settled.
 */
export class EventBus {
  readonly #listeners = new Map<EventName, Set<Listener<EventName>>>();
  readonly #onListenerError: (err: unknown, event: EventName) => void;

  constructor(onListenerError: (err: unknown, event: EventName) => void = () => {}) {
    this.#onListenerError = onListenerError;
  }

  on<K extends EventName>(event: K, listener: Listener<K>): () => void {
    let set = this.#listeners.get(event);
    if (!set) {
      set = new Set();
      this.#listeners.set(event, set);
    }
    set.add(listener as Listener<EventName>);
    return () => set.delete(listener as Listener<EventName>);
  }

  emit<K extends EventName>(event: K, payload: QueueEvents[K]): void {
    const set = this.#listeners.get(event);
    if (!set || set.size === 0) return;
    for (const listener of set) {
      try {
        listener(payload);
      } catch (err) {
        this.#onListenerError(err, event);
      }
    }
  }

  listenerCount(event: EventName): number {
    return this.#listeners.get(event)?.size ?? 0;
  }
}

export const TERMINAL_EVENT: Record<string, EventName> = {
  completed: "job:completed",
  partial: "job:partial",
  failed: "job:failed",
  cancelled: "job:cancelled",
};
