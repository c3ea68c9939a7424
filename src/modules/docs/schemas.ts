/**
 * Response shapes for the API reference. Routes validate their input with zod; what they return is plain
 * objects built by the services (`jobView`, `statusView`, `CardService.view`…), so these schemas describe
 * those views. test/docs/schemas.test.ts checks live responses against them, so they cannot drift silently.
 */
import { z } from "zod";
import { ITEM_STATUSES, JOB_STATUSES } from "../../db/schema";

export const ErrorBody = z
  .object({
    error: z.object({
      code: z.string().meta({ description: "Stable, machine-readable code, e.g. `not_found`" }),
      message: z.string(),
      details: z.unknown().optional(),
    }),
  })
  .meta({ title: "Error", description: "Every 4xx/5xx answer has this shape." });

const JobError = z
  .object({
    code: z.string(),
    message: z.string(),
    retryable: z.boolean(),
    refundable: z.boolean(),
    details: z.unknown().optional(),
  })
  .nullable();

const Status = z.enum(JOB_STATUSES);

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
    error: JobError,
    result: z.unknown(),
    createdAt: z.number().int(),
    updatedAt: z.number().int(),
  })
  .meta({ title: "JobStatus" });

const AssetView = z.object({
  id: z.string(),
  itemIdx: z.number().int().nullable(),
  url: z.string(),
  thumbnailUrl: z.string().nullable(),
  contentType: z.string(),
  bytes: z.number().int(),
  width: z.number().int().nullable(),
  height: z.number().int().nullable(),
  createdAt: z.number().int(),
});

const GenerationRequest = z
  .object({
    provider: z.string(),
    model: z.string().nullable(),
    prompt: z.string().nullable().meta({ description: "The prompt of a one-prompt job; null for a batch" }),
    negativePrompt: z.string().nullable(),
    size: z.string(),
    n: z.number().int(),
    seed: z.number().int().nullable(),
    output: z.unknown().meta({ description: "Output preset name or inline preset" }),
    params: z.record(z.string(), z.unknown()).nullable(),
    edit: z.boolean(),
    recipeId: z.string().nullable(),
    variables: z.record(z.string(), z.union([z.string(), z.number()])).nullable(),
    items: z
      .array(
        z.object({
          id: z.string(),
          prompt: z.string(),
          negativePrompt: z.string().optional(),
          size: z.string().optional(),
          n: z.number().int().optional(),
          seed: z.number().int().optional(),
        }),
      )
      .optional()
      .meta({ description: "Every item's id and prompt (GET /api/jobs/:id)" }),
    itemCount: z.number().int().optional().meta({ description: "How many items (in lists)" }),
  })
  .nullable()
  .meta({ description: "A generation's request as accepted; null for other job types" });

const Metadata = z
  .record(z.string(), z.unknown())
  .nullable()
  .meta({ description: "The caller's `metadata` as given (free JSON, at most 16 KB serialized)" });

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
    request: GenerationRequest,
    metadata: Metadata,
    instantClaim: z
      .object({ claimedAt: z.number().int(), generatedAt: z.number().int().nullable() })
      .nullable()
      .meta({
        description:
          "A backlog image claimed instantly: finishedAt is the claim, generatedAt when it was made",
      }),
    result: z.unknown(),
    error: JobError,
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
          error: JobError,
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
          error: JobError,
          retryAt: z.number().int().nullable(),
        }),
      )
      .optional(),
  })
  .meta({ title: "Job" });

export const JobList = z.object({ jobs: z.array(JobView), nextCursor: z.string().nullable() });

export const InstantClaimView = z
  .object({
    recipeId: z.string(),
    variables: z
      .record(z.string(), z.union([z.string(), z.number()]))
      .meta({ description: "The variable values the image was made with" }),
    job: JobView,
    assets: z.array(AssetView),
    creditsRemaining: z.number().int().meta({ description: "The user's balance after the charge" }),
    claimedAt: z.number().int(),
  })
  .meta({ title: "InstantClaim" });

export const CardView = z
  .object({
    id: z.string(),
    template: z.string(),
    data: z.record(z.string(), z.unknown()),
    version: z.number().int(),
    renderedVersion: z.number().int(),
    status: z.enum(["rendered", "rendering", "failed"]),
    imageUrl: z.string().nullable(),
    stableImageUrl: z.string(),
    renderError: JobError,
    ownerId: z.string(),
    createdAt: z.number().int(),
    updatedAt: z.number().int(),
  })
  .meta({ title: "Card" });

export const CardList = z.object({ cards: z.array(CardView), nextCursor: z.string().nullable() });

export const TokenView = z.object({
  token: z.string(),
  expiresAt: z.number().int(),
  userId: z.string(),
  websocketUrl: z.string(),
});

const Counts = z.object({
  waiting: z.number().int(),
  delayed: z.number().int(),
  active: z.number().int(),
  completed: z.number().int(),
  partial: z.number().int(),
  failed: z.number().int(),
  cancelled: z.number().int(),
  byType: z.record(z.string(), z.record(z.string(), z.number().int())),
});

export const JobStats = Counts.meta({ title: "JobCounts" });

export { HealthReport } from "../ops/service";
