import { z } from "zod";
import { JOB_STATUSES } from "../../db/schema";

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
