import type { Job, JobError } from "../db/schema";
import type { CountMove } from "./store";

/**
 * The stalled sweep's rules, the same on both databases (QueueStore#recoverStalled on SQLite,
 * PgQueueBackend#recoverStalled): each backend reads the active jobs and writes with its own statements, and
 * asks these what to do with each job and how the job then looks. A stalled job is re-queued with its attempt
 * given back and its stall counted; one stalled more than `stalledMax` times fails; one whose dedupe key a
 * newer queued job holds (the re-queue is refused) is cancelled as superseded.
 */

/** Whether the sweep takes `job`: its lease lapsed, or `deadHolder` says the process holding it is gone. */
export function isStalled(job: Job, now: number, deadHolder: (lockedBy: string) => boolean): boolean {
  return (job.lockedUntil ?? 0) < now || (job.lockedBy !== null && deadHolder(job.lockedBy));
}

/** The error `job` fails with when this stall is one too many; null when it is re-queued instead. */
export function tooManyStalls(job: Job, stalledMax: number): JobError | null {
  if (job.stalledCount + 1 <= stalledMax) return null;
  return {
    code: "stalled",
    message: `job stalled ${job.stalledCount + 1} times (worker died or lost its lease)`,
    retryable: false,
    refundable: true,
  };
}

/** What a re-queued job's attempt records: the attempt ended without a result, through no fault of its own. */
const LEASE_LOST: JobError = {
  code: "stalled",
  message: "the worker died or lost its lease",
  retryable: true,
  refundable: true,
};

/**
 * The `job_attempts` row of a re-queued job's lost attempt, in the columns' order both backends insert:
 * job_id, attempt, outcome, started_at, ended_at, error (JSON), retry_at (now: it is due again at once).
 */
export function leaseLostAttempt(
  job: Job,
  now: number,
): [string, number, "stalled", number | null, number, string, number] {
  return [job.id, job.attempts, "stalled", job.startedAt, now, JSON.stringify(LEASE_LOST), now];
}

/** `job` as the sweep ended it (failed or cancelled, with `error`), and its move for the counts. */
export function endedStalled(
  job: Job,
  status: "failed" | "cancelled",
  error: JobError,
  now: number,
  moved: CountMove[],
): Job {
  Object.assign(job, { status, error, finishedAt: now, lockedBy: null });
  moved.push({ type: job.type, ownerId: job.ownerId, from: "active", to: status, endedAt: now });
  return job;
}

/** `job` as the sweep re-queued it (queued now, one more stall, no holder). */
export function requeuedStalled(job: Job, now: number): Job {
  Object.assign(job, { status: "queued", runAt: now, stalledCount: job.stalledCount + 1, lockedBy: null });
  return job;
}
