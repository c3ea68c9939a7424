import { z } from "zod";
import { defineJob } from "../../queue";
import { type BacklogService, TOPUP_JOB } from "./service";

/**
 * `backlog.topup`: tops up one recipe's backlog (queued, debounced, after instant claims and recipe changes),
 * or every recipe's when a backlog generation frees a slot the concurrency cap had held back.
 */
export function backlogTopUpJob(backlog: BacklogService) {
  return defineJob({
    type: TOPUP_JOB,
    input: z.object({ recipeId: z.string().optional() }),
    maxAttempts: 1,
    run: async ({ input }) => {
      const { enqueued, recipes } = await backlog.maintain({ recipeId: input.recipeId });
      return input.recipeId ? { enqueued, skipped: recipes[0]?.skipped ?? null } : { enqueued };
    },
  });
}
