import type { Config } from "../../config";
import type { EnqueueHookContext, GenerateService } from "../generate/service";
import type { CreditOptions, CreditService } from "./service";

export function creditOptions(config: Config, now?: () => number): CreditOptions {
  return {
    enabled: config.CREDITS_ENABLED,
    perImage: config.CREDITS_PER_IMAGE,
    providerCosts: config.PROVIDER_CREDIT_COSTS,
    now,
  };
}

/** A generation's price: the recipe's cost per image, else the provider's (or the default) per image. */
export function generationCost(credits: CreditService, c: EnqueueHookContext): number {
  return c.recipe ? c.recipe.creditCost * c.imageCount : credits.imageCost(c.provider, c.imageCount);
}

/**
 * Charges generations when they are enqueued, in the enqueue transaction: the job row records what its owner
 * pays, and the ledger row (which names the job) is written once the row exists. Too few credits → 402 and
 * the insert rolls back. A request deduped into an already queued job replaces that job's request, so it is
 * priced anew: the owner pays the difference (402, and the queued job untouched, when they can't) or gets it
 * back when the replacement costs less.
 */
export function chargeGenerations(generate: GenerateService, credits: CreditService): void {
  generate.onEnqueue((c) => ({ creditsCharged: credits.priceFor(c.owner, generationCost(credits, c)) }));
  generate.onEnqueued(async (c) => {
    const price = generationCost(credits, c);
    if (!c.deduped) {
      await credits.debit(c.owner, price, "charge", { jobId: c.job.id });
      return;
    }
    const difference = c.job.creditsCharged - c.previousCharge;
    const note = `dedupe replacement: ${c.previousCharge} → ${c.job.creditsCharged}`;
    if (difference > 0) await credits.debit(c.owner, difference, "charge", { jobId: c.job.id, note });
    else if (difference < 0)
      await credits.credit(c.owner.id, -difference, "refund", { jobId: c.job.id, note });
  });
}
