import type { Database, Statement } from "bun:sqlite";
import type { Recipe, User } from "../../db/schema";
import { ApiError } from "../../errors";
import { toJob } from "../../queue/store";
import type { BacklogService } from "../backlog/service";
import { type CreditService, InsufficientCreditsError } from "../credits/service";
import type { AssetService, AssetView } from "../generate/service";
import { type IdempotentAnswer, NO_KEY } from "../idempotency/service";
import { jobView } from "../jobs/service";
import type { RecipeService, VariableValues } from "../recipes/service";

export type InstantDeps = {
  db: Database;
  recipes: RecipeService;
  credits: CreditService;
  backlog: BacklogService;
  assets: AssetService;
  now?: () => number;
};

export type InstantClaim = {
  /** The recipe claimed from, and the variable values the image was made with. */
  recipeId: string;
  variables: VariableValues;
  job: ReturnType<typeof jobView>;
  assets: AssetView[];
  /** The user's balance after the charge. */
  creditsRemaining: number;
  claimedAt: number;
};

/** A claim waiting for the next group commit. */
type Pending = {
  user: User;
  recipe: Recipe;
  price: number;
  idem: IdempotentAnswer;
  resolve: (claim: InstantClaim) => void;
  reject: (err: unknown) => void;
};

const noInstant = () =>
  new ApiError(404, "no_instant_available", "no ready generation for this recipe; generate one instead", {
    extra: { fallbackToModal: true },
  });

const taken = () =>
  new ApiError(409, "instant_taken", "the last ready generation was just claimed; generate one instead", {
    extra: { fallbackToModal: true },
  });

/**
 * Instant claims (DESIGN §6): a user takes the oldest completed backlog generation of a recipe, paying its
 * credit cost. The claim, the ownership transfer of the job and its assets, the charge, the usage count and
 * the top-up are one transaction: either all of it happened or none.
 *
 * Claims are group-committed: those arriving in the same event-loop turn share one IMMEDIATE transaction,
 * each inside its own savepoint (a refused claim rolls back alone), and every caller hears back only after
 * the commit. A commit costs far more than a claim's statements, so under load this is most of the throughput.
 */
export class InstantService {
  readonly #d: InstantDeps;
  readonly #now: () => number;
  readonly #peek: Statement;
  readonly #claim: Statement;
  readonly #firstItem: Statement;
  #pending: Pending[] = [];

  constructor(deps: InstantDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
    this.#peek = deps.db.prepare(
      "SELECT 1 FROM jobs WHERE recipe_id = ? AND owner_id = ? AND status = 'completed' LIMIT 1",
    );
    // One UPDATE picks and takes the row under the write lock, so two claims can never get the same one.
    // finished_at moves to the claim: the user's normal retention counts from when they got the image, and
    // `keep` (which shielded the unclaimed image from retention) is cleared.
    this.#claim = deps.db.prepare(
      `UPDATE jobs SET owner_id = ?1, credits_charged = ?2, finished_at = ?3, updated_at = ?3,
         metadata = json_set(coalesce(metadata, '{}'), '$.keep', json('false'), '$.instant', json('true'),
                             '$.claimedAt', ?3, '$.generatedAt', finished_at)
       WHERE id = (SELECT id FROM jobs WHERE recipe_id = ?4 AND owner_id = ?5 AND status = 'completed'
                   ORDER BY finished_at, id LIMIT 1)
       RETURNING *`,
    );
    this.#firstItem = deps.db.prepare(
      `SELECT key, json_extract(input, '$.prompt') AS prompt, (SELECT count(*) FROM job_items WHERE job_id = ?1) AS count
       FROM job_items WHERE job_id = ?1 AND idx = 0`,
    );
  }

  /**
   * Claims one ready generation of `recipeId` for `user`. 404 `recipe_not_found` (unknown or inactive),
   * 402 `insufficient_credits`, 404 `no_instant_available` (empty backlog) or 409 `instant_taken` (emptied
   * between the look and the claim), the last two with `fallbackToModal: true`.
   */
  async claim(user: User, recipeId: string, idem: IdempotentAnswer = NO_KEY): Promise<InstantClaim> {
    const { recipes, credits, backlog } = this.#d;
    const recipe = recipes.active(recipeId);
    const price = credits.priceFor(user, recipe.creditCost);
    // Cheap reads before queueing for the write lock: most refusals never contend with other writers.
    if (price > 0) {
      const available = credits.balance(user.id);
      if (available < price) throw new InsufficientCreditsError(price, available);
    }
    if (!this.#peek.get(recipe.id, backlog.systemUserId)) throw noInstant();
    return new Promise((resolve, reject) => {
      if (this.#pending.length === 0) setImmediate(() => this.#flush());
      this.#pending.push({ user, recipe, price, idem, resolve, reject });
    });
  }

  /** Commits every pending claim in one transaction, then answers each; one top-up per recipe claimed from. */
  #flush(): void {
    const batch = this.#pending;
    this.#pending = [];
    const { db, backlog } = this.#d;
    const outcomes: ({ ok: true; claim: InstantClaim } | { ok: false; err: unknown })[] = [];
    try {
      db.transaction(() => {
        const claimed = new Set<string>();
        for (const p of batch) {
          try {
            outcomes.push({ ok: true, claim: db.transaction(() => this.#claimOne(p))() });
            claimed.add(p.recipe.id);
          } catch (err) {
            outcomes.push({ ok: false, err });
          }
        }
        for (const recipeId of claimed) backlog.scheduleTopUp(recipeId);
      }).immediate();
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    batch.forEach((p, i) => {
      const out = outcomes[i]!;
      if (out.ok) p.resolve(out.claim);
      else p.reject(out.err);
    });
  }

  /**
   * One claim, inside its savepoint: take the job, transfer it and its assets, charge, count usage, and record
   * the caller's idempotent answer.
   */
  #claimOne({ user, recipe, price, idem }: Pending): InstantClaim {
    const now = this.#now();
    const row = this.#claim.get(user.id, price, now, recipe.id, this.#d.backlog.systemUserId) as Record<
      string,
      unknown
    > | null;
    if (!row) throw taken();
    const job = toJob(row);
    const assets = this.#d.assets.transferJob(job.id, user.id);
    const { balance } = this.#d.credits.debit(user, recipe.creditCost, "instant", { jobId: job.id });
    const variables = valuesOf(job.metadata);
    this.#d.recipes.recordUsage(recipe.id, variables);
    const summary = this.#firstItem.get(job.id) as {
      key: string;
      prompt: string | null;
      count: number;
    } | null;
    const claim = {
      recipeId: recipe.id,
      variables,
      job: jobView(job, { summary: summary ?? undefined }),
      assets,
      creditsRemaining: balance,
      claimedAt: now,
    };
    idem.commit(claim);
    return claim;
  }
}

/** The variable values a backlog generation was made with (recorded in its metadata). */
function valuesOf(metadata: Record<string, unknown> | null): VariableValues {
  const values = metadata?.recipeVariables;
  if (!values || typeof values !== "object") return {};
  return Object.fromEntries(
    Object.entries(values).filter(([, v]) => typeof v === "string" || typeof v === "number"),
  ) as VariableValues;
}
