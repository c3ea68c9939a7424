import { defineJob } from "../../queue";
import { CleanupCardInput, RenderCardInput } from "./model";
import { type CardService, CLEANUP_JOB, RENDER_JOB } from "./service";

/**
 * `card.render` (debounced per card by its dedupe key) and `card.cleanup`, which removes superseded images
 * when a grace period is configured or the immediate delete after a render failed. `renderConcurrency` caps
 * renders holding worker slots: beyond what the render threads can take (one rendering and one ready per
 * thread), a render only waits for a thread while generations, cleanups and webhooks wait for its slot.
 */
export function cardJobs(cards: CardService, opts: { renderConcurrency: number }) {
  return [
    defineJob({
      type: RENDER_JOB,
      input: RenderCardInput,
      concurrency: opts.renderConcurrency,
      timeoutMs: 30_000,
      maxAttempts: 3,
      backoff: { delayMs: 500 },
      run: async ({ input }) => ({ rendered: await cards.render(input.cardId) }),
      onTerminal: {
        applies: (job) => job.status === "failed",
        run: (job) => cards.renderFailed((job.input as { cardId: string }).cardId, job.error),
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
