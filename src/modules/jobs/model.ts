import { z } from "zod";
import { ITEM_STATUSES, JOB_STATUSES } from "../../db/schema";
import { AssetView, GenerationRequestView } from "../generate/model";

export const JobIdParams = z.object({ id: z.string().min(1).max(64) });

export const ListJobsQuery = z.object({
  status: z.enum([...JOB_STATUSES, "waiting", "delayed"]).optional(),
  type: z.string().max(64).optional(),
  recipeId: z.string().max(128).optional(),
  /** Admins and apps: only this end user's jobs (their external id or internal id). */
  userId: z.string().max(128).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  /** Opaque cursor from the previous page's `nextCursor`. */
  cursor: z.string().max(64).optional(),
});
export type ListJobsQuery = z.infer<typeof ListJobsQuery>;

export const EnqueueBody = z.strictObject({
  type: z.string().min(1).max(64),
  input: z.unknown(),
  priority: z.number().int().min(-1000).max(1000).optional(),
  delayMs: z
    .number()
    .int()
    .min(0)
    .max(30 * 24 * 3_600_000)
    .optional(),
  maxAttempts: z.number().int().min(1).max(100).optional(),
  timeoutMs: z
    .number()
    .int()
    .min(100)
    .max(24 * 3_600_000)
    .optional(),
  dedupeKey: z.string().min(1).max(200).optional(),
  debounceMs: z.number().int().min(0).max(3_600_000).optional(),
  userId: z.string().max(128).optional(),
  items: z
    .array(z.strictObject({ id: z.string().min(1).max(128), input: z.unknown() }))
    .min(1)
    .max(1000)
    .optional(),
});
export type EnqueueBody = z.infer<typeof EnqueueBody>;

/** A failure as the API shows it (null while there is none). */
export const JobErrorView = z
  .object({
    code: z.string(),
    message: z.string(),
    retryable: z.boolean(),
    refundable: z.boolean(),
    details: z.unknown().optional(),
  })
  .nullable();

const Status = z.enum(JOB_STATUSES);

/** `GET /api/jobs/:id/status`: the compact progress view, also the shape realtime clients get. */
export const JobStatusView = z
  .object({
    jobId: z.string(),
    type: z.string(),
    status: Status,
    progress: z.number().int().min(0).max(100),
    message: z.string().nullable(),
    completedItems: z.number().int().nullable(),
    totalItems: z.number().int().nullable(),
    attempts: z.number().int(),
    error: JobErrorView,
    result: z.unknown(),
    createdAt: z.number().int(),
    updatedAt: z.number().int(),
  })
  .meta({ title: "JobStatus" });
export type JobStatusView = z.infer<typeof JobStatusView>;

const Metadata = z
  .record(z.string(), z.unknown())
  .nullable()
  .meta({ description: "The caller's `metadata` as given (free JSON, at most 16 KB serialized)" });

/** A job as the API shows it; `items`, `assets` and `history` only in the detail (GET /api/jobs/:id). */
export const JobView = z
  .object({
    id: z.string(),
    type: z.string(),
    status: Status,
    priority: z.number().int(),
    progress: z.number().int(),
    progressMessage: z.string().nullable(),
    attempts: z.number().int(),
    maxAttempts: z.number().int(),
    input: z.unknown(),
    request: GenerationRequestView,
    metadata: Metadata,
    instantClaim: z
      .object({ claimedAt: z.number().int(), generatedAt: z.number().int().nullable() })
      .nullable()
      .meta({
        description:
          "A backlog image claimed instantly: finishedAt is the claim, generatedAt when it was made",
      }),
    result: z.unknown(),
    error: JobErrorView,
    ownerId: z.string().nullable(),
    recipeId: z.string().nullable(),
    dedupeKey: z.string().nullable(),
    creditsCharged: z.number().int(),
    creditsRefunded: z.number().int(),
    runAt: z.number().int(),
    createdAt: z.number().int(),
    startedAt: z.number().int().nullable(),
    finishedAt: z.number().int().nullable(),
    updatedAt: z.number().int(),
    items: z
      .array(
        z.object({
          id: z.string(),
          idx: z.number().int(),
          status: z.enum(ITEM_STATUSES),
          attempts: z.number().int(),
          result: z.unknown(),
          assetId: z.string().nullable(),
          assets: z.array(AssetView),
          error: JobErrorView,
        }),
      )
      .optional(),
    assets: z.array(AssetView).optional(),
    /** Earlier attempts, oldest first (GET /api/jobs/:id only): the latest attempt is the job itself. */
    history: z
      .array(
        z.object({
          attempt: z.number().int(),
          outcome: z.enum(["retried", "stalled", "rerun"]),
          startedAt: z.number().int().nullable(),
          endedAt: z.number().int(),
          error: JobErrorView,
          retryAt: z.number().int().nullable(),
        }),
      )
      .optional(),
  })
  .meta({ title: "Job" });
export type JobView = z.infer<typeof JobView>;

export const JobList = z.object({ jobs: z.array(JobView), nextCursor: z.string().nullable() });

/** `GET /api/jobs/stats`: counts by status, and by type and status. */
export const JobStats = z
  .object({
    waiting: z.number().int(),
    delayed: z.number().int(),
    active: z.number().int(),
    completed: z.number().int(),
    partial: z.number().int(),
    failed: z.number().int(),
    cancelled: z.number().int(),
    byType: z.record(z.string(), z.record(z.string(), z.number().int())),
  })
  .meta({ title: "JobCounts" });
