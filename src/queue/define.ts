import type { z } from "zod";
import type { Job, JobItem } from "../db/schema";
import type { BackoffOptions } from "./backoff";

export type JobLogger = {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  debug(obj: object, msg?: string): void;
};

/** What a handler gets for one attempt. */
export type JobContext<I> = {
  job: Job;
  input: I;
  /** Fires on timeout, cancel or shutdown. The slot is freed when it fires, whatever the handler does. */
  signal: AbortSignal;
  progress(pct: number, message?: string): void;
  log: JobLogger;
};

/** What a batch item handler gets: its own signal (item timeout or job abort) and its stored row. */
export type ItemContext<I> = JobContext<I> & {
  item: JobItem;
  itemInput: unknown;
  itemSignal: AbortSignal;
  attempt: number;
};

export type ItemOutcome = { result?: unknown; assetId?: string | null };

export type BatchOptions<I> = {
  /** Items of one job run in parallel up to this many. @defaultValue 4 */
  concurrency?: number;
  /** Per-item attempt timeout. @defaultValue the job's timeout */
  timeoutMs?: number;
  /** Attempts per item within one job attempt. @defaultValue 3 */
  maxAttempts?: number;
  /** Backoff between item attempts. @defaultValue { delayMs: 500, maxDelayMs: 30000 } */
  backoff?: BackoffOptions;
  run(ctx: ItemContext<I>): Promise<ItemOutcome | undefined>;
};

/**
 * Called inside the transaction that records a job's terminal state (completed, partial, failed,
 * cancelled), so bookkeeping such as refunds commits atomically with the state change.
 */
export type TerminalHook = {
  /**
   * Whether `run` has anything to do for this job, decided from the row alone (no I/O). When no hook applies
   * to any job of a group, the group's terminal write stays one synchronous transaction (the hot path).
   */
  applies: (job: Job) => boolean;
  /** Awaited inside the terminal transaction, in a savepoint of its own. Never awaits real I/O. */
  run: (job: Job) => Promise<void> | void;
};

export type JobDefinition<S extends z.ZodType = z.ZodType> = {
  type: string;
  input: S;
  /** Max attempts of this type running at once in this process. @defaultValue unlimited (pool size) */
  concurrency?: number;
  /** @defaultValue config JOB_TIMEOUT_MS */
  timeoutMs?: number;
  /** @defaultValue config JOB_MAX_ATTEMPTS */
  maxAttempts?: number;
  backoff?: BackoffOptions;
  /** A plain job. Its return value is stored as the result. */
  run?: (ctx: JobContext<z.infer<S>>) => Promise<unknown>;
  /** A batch job: the engine runs each pending item, checkpoints it and derives the end state. */
  items?: BatchOptions<z.infer<S>>;
  onTerminal?: TerminalHook;
};

/** Declares a job type; the payload type is `z.infer` of its input schema. */
export function defineJob<S extends z.ZodType>(def: JobDefinition<S>): JobDefinition<S> {
  if (!def.run === !def.items) throw new Error(`job ${def.type}: define exactly one of run or items`);
  return def;
}

// biome-ignore lint/suspicious/noExplicitAny: a registry holds definitions of every payload type
export type AnyJobDefinition = JobDefinition<any>;
