import { defineJob } from "../../queue";
import { CleanupCardInput, RenderCardInput } from "./model";
import { type CardService, CLEANUP_JOB, RENDER_JOB } from "./service";

/**
 * `card.render` (debounced per card by its dedupe key) and `card.cleanup`, which removes superseded images
 * when a grace period is configured or the immediate delete after a render failed.
 */
export function cardJobs(cards: CardService) {
  return [
    defineJob({
      type: RENDER_JOB,
      input: RenderCardInput,
      timeoutMs: 30_000,
      maxAttempts: 3,
      backoff: { delayMs: 500 },
      run: async ({ input }) => ({ rendered: await cards.render(input.cardId) }),
      onTerminal: (job) => {
        if (job.status === "failed") cards.renderFailed((job.input as { cardId: string }).cardId, job.error);
      },
    }),
    defineJob({
      type: CLEANUP_JOB,
      input: CleanupCardInput,
      timeoutMs: 30_000,
      maxAttempts: 5,
      backoff: { delayMs: 1000 },
      run: async ({ input }) => ({ deleted: await cards.cleanup(input.cardId, input.beforeVersion) }),
    }),
  ];
}
