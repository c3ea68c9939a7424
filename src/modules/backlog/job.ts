import { z } from "zod";
import { defineJob } from "../../queue";
import { type BacklogService, TOPUP_JOB } from "./service";

/** `backlog.topup`: tops up one recipe's backlog (queued, debounced, after instant claims). */
export function backlogTopUpJob(backlog: BacklogService) {
  return defineJob({
    type: TOPUP_JOB,
    input: z.object({ recipeId: z.string() }),
    maxAttempts: 1,
    run: async ({ input }) => {
      const { enqueued, recipes } = backlog.maintain({ recipeId: input.recipeId });
      return { enqueued, skipped: recipes[0]?.skipped ?? null };
    },
  });
}
