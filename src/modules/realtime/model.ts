import { z } from "zod";
import { isTerminalStatus, type Job, type JobError } from "../../db/schema";
import type { JobOutcome } from "../jobs/service";

const JobId = z.string().min(1).max(64);

/** What a WebSocket client may send. */
export const ClientMessage = z.discriminatedUnion("type", [
  z.object({ type: z.literal("subscribe_to_job"), jobId: JobId }),
  z.object({ type: z.literal("unsubscribe_from_job"), jobId: JobId }),
  z.object({ type: z.literal("ping") }),
]);
export type ClientMessage = z.infer<typeof ClientMessage>;
export const CLIENT_MESSAGE_TYPES = ["subscribe_to_job", "unsubscribe_from_job", "ping"] as const;

export const JobEventsParams = z.object({ id: JobId });

export type ProgressFrame = {
  type: "job_progress";
  jobId: string;
  progress: number;
  message: string | null;
  completedItems: number | null;
  totalItems: number | null;
};

/**
 * A job's last frame. Beside the result or error it carries the outcome (assets with their item ids, failed
 * items with their codes, the caller's metadata), so a client needs no GET after it.
 */
export type TerminalFrame = JobOutcome &
  (
    | { type: "job_completed"; jobId: string; result: unknown }
    | { type: "job_partial"; jobId: string; result: unknown }
    | { type: "job_failed"; jobId: string; error: JobError | null }
    | { type: "job_cancelled"; jobId: string; error: JobError | null }
  );

/** How a terminal frame learns a job's outcome (JobService.outcome). */
export type DescribeOutcome = (job: Job) => Promise<JobOutcome>;

export type JobFrame = ProgressFrame | TerminalFrame;

/** Everything the server sends over `/ws`; SSE uses the job frames' `type` as its `event:` name. */
export type ServerFrame =
  | JobFrame
  | { type: "connection_confirmed"; clientId: string; userId: string }
  | { type: "subscribed"; jobId: string; status: string; progress: number; message: string | null }
  | { type: "unsubscribed"; jobId: string }
  | { type: "card_rendered"; cardId: string; imageUrl: string; version: number }
  | { type: "pong" }
  | { type: "error"; code: string; message: string };

export type ErrorCode =
  | "invalid_json"
  | "unknown_type"
  | "invalid_message"
  | "not_found"
  | "too_many_subscriptions"
  /** The server could not answer (its database refused the read); the client may send the message again. */
  | "internal_error";

export const errorFrame = (code: ErrorCode, message: string): ServerFrame => ({
  type: "error",
  code,
  message,
});

export const isTerminal = (job: Job): boolean => isTerminalStatus(job.status);

/** The terminal frame of a finished job, from its stored row and outcome (live, replays, late subscribers). */
export function terminalFrame(job: Job, outcome: JobOutcome): TerminalFrame {
  switch (job.status) {
    case "completed":
      return { type: "job_completed", jobId: job.id, result: job.result, ...outcome };
    case "partial":
      return { type: "job_partial", jobId: job.id, result: job.result, ...outcome };
    case "failed":
      return { type: "job_failed", jobId: job.id, error: job.error, ...outcome };
    default:
      return { type: "job_cancelled", jobId: job.id, error: job.error, ...outcome };
  }
}

export function progressFrame(
  job: Job,
  counts: { completed: number; total: number } | null,
  progress = job.progress,
  message = job.progressMessage,
): ProgressFrame {
  return {
    type: "job_progress",
    jobId: job.id,
    progress,
    message,
    completedItems: counts?.completed ?? null,
    totalItems: counts?.total ?? null,
  };
}
