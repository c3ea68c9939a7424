import type { JobError } from "../db/schema";

/** Base of every error the engine understands. `code` is stable and ends up in `jobs.error.code`. */
export class JobFailure extends Error {
  override name = "JobFailure";
  readonly code: string;
  readonly retryable: boolean;
  readonly refundable: boolean;
  readonly details?: unknown;

  constructor(
    message: string,
    opts: {
      code?: string;
      retryable?: boolean;
      refundable?: boolean;
      details?: unknown;
      cause?: unknown;
    } = {},
  ) {
    super(message, { cause: opts.cause });
    this.code = opts.code ?? "job_failed";
    this.retryable = opts.retryable ?? true;
    this.refundable = opts.refundable ?? true;
    this.details = opts.details;
  }
}

/** A transient failure: the attempt is spent and the job is retried with backoff while attempts remain. */
export class RetryableError extends JobFailure {
  override name = "RetryableError";
  constructor(message: string, opts: { code?: string; details?: unknown; cause?: unknown } = {}) {
    super(message, { ...opts, code: opts.code ?? "retryable", retryable: true, refundable: true });
  }
}

/** A failure no retry can fix (bad input, quota, safety): the job fails now. */
export class UnrecoverableError extends JobFailure {
  override name = "UnrecoverableError";
  constructor(
    message: string,
    opts: { code?: string; refundable?: boolean; details?: unknown; cause?: unknown } = {},
  ) {
    super(message, { ...opts, code: opts.code ?? "unrecoverable", retryable: false });
  }
}

/**
 * Re-queue the job at `delayMs` from now without spending an attempt (a provider said "try again later").
 * The engine caps the delay so a hostile Retry-After cannot park a job for days.
 */
export class RetryAfterError extends JobFailure {
  override name = "RetryAfterError";
  readonly delayMs: number;
  constructor(delayMs: number, message = "retry later", opts: { code?: string; details?: unknown } = {}) {
    super(message, { ...opts, code: opts.code ?? "retry_after", retryable: true, refundable: true });
    this.delayMs = Math.max(0, delayMs);
  }
}

/** The attempt ran past its timeout; the slot was freed even if the handler ignored the signal. */
export class TimeoutError extends JobFailure {
  override name = "TimeoutError";
  constructor(ms: number) {
    super(`attempt timed out after ${ms} ms`, { code: "timeout", retryable: true, refundable: true });
  }
}

export class CancelledError extends JobFailure {
  override name = "CancelledError";
  constructor(message = "cancelled") {
    super(message, { code: "cancelled", retryable: false, refundable: true });
  }
}

/** Maps anything thrown by a handler to the stored error shape. Unknown errors are retryable. */
export function toJobError(err: unknown): JobError {
  if (err instanceof JobFailure) {
    const out: JobError = {
      code: err.code,
      message: err.message,
      retryable: err.retryable,
      refundable: err.refundable,
    };
    if (err.details !== undefined) out.details = err.details;
    return out;
  }
  if (err instanceof Error) {
    return { code: "internal", message: err.message || err.name, retryable: true, refundable: true };
  }
  return { code: "internal", message: String(err), retryable: true, refundable: true };
}
