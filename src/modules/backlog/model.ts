import { z } from "zod";

/** `GET /api/recipes/:id/backlog`: how many ready generations a recipe holds, and whether top-ups are paused. */
export const BacklogView = z
  .object({
    min: z.number().int().meta({ description: "backlog_min: ready generations to keep" }),
    ready: z.number().int().meta({ description: "Completed, unclaimed backlog generations" }),
    inFlight: z.number().int().meta({ description: "Backlog generations queued or running" }),
    deficit: z
      .number()
      .int()
      .meta({ description: "Still to queue to reach min: max(0, min - ready - inFlight)" }),
    oldestReadyAt: z.number().int().nullable(),
    active: z.boolean(),
    failures: z
      .object({
        consecutiveFailures: z.number().int(),
        limit: z.number().int(),
        lastFailureAt: z.number().int().nullable(),
        lastError: z
          .object({
            code: z.string(),
            message: z.string(),
            retryable: z.boolean().optional(),
            refundable: z.boolean().optional(),
            details: z.unknown().optional(),
          })
          .nullable(),
        paused: z.boolean(),
        pausedUntil: z.number().int().nullable(),
      })
      .meta({ description: "Top-ups pause after BACKLOG_FAILURE_LIMIT failures in a row, for the cooldown" }),
  })
  .meta({ title: "Backlog" });
