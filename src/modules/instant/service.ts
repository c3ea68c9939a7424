import type { Job, Recipe, User } from "../../db/schema";
import { allStatements, type Sql } from "../../db/sql";
import { ApiError } from "../../errors";
import type { Queue } from "../../queue";
import type { BacklogService } from "../backlog/service";
import { type CreditService, InsufficientCreditsError } from "../credits/service";
import type { AssetService } from "../generate/service";
import { type IdempotentAnswer, NO_KEY } from "../idempotency/service";
import { jobView, summaryOf } from "../jobs/service";
import type { RecipeService, VariableValues } from "../recipes/service";
import type { InstantClaimView } from "./model";

export type InstantDeps = {
  /** The connection whose group-commit transaction every claim runs in. */
  sql: Sql;
  /** The queue owns the jobs a claim takes. */
  queue: Pick<Queue, "features" | "itemSummaries">;
  recipes: RecipeService;
  credits: CreditService;
  backlog: BacklogService;
  assets: AssetService;
  /**
   * The database is a server reached over the network (PostgreSQL): each statement is a round trip and
   * transactions run side by side. Then a group waits for the previous one to commit (claims arriving
   * meanwhile join the next), since overlapping groups would only queue on the rows every claim writes (the
   * backlog's ended-job count, the recipe's usage) and each pay a commit alone; a claim's independent
   * statements are issued together, pipelined on the transaction's connection; and no look at the backlog is
   * made before queueing (a statement per request: the group's take tells). On SQLite statements are
   * function calls and transactions take turns behind the connection's gate: none of this would help.
   * @defaultValue false
   */
  networked?: boolean;
  now?: () => number;
};

/** What a claim answers (the recipe, its variable values, the job, its images, the balance after). */
export type InstantClaim = InstantClaimView;

/** How one claim of a group ended. */
type Outcome = { ok: true; claim: InstantClaim } | { ok: false; err: unknown };

/** A claim waiting for the next group commit. */
type Pending = {
  user: User;
  recipe: Recipe;
  /** The backlog user, who holds the ready generations. */
  owner: string;
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
 * Claims are group-committed: those arriving in the same event-loop turn share one transaction, and every
 * caller hears back only after the commit. A group's claims are taken as one set, a statement per step
 * whatever their number (#claimSet); a claim alone, or one with an Idempotency-Key, runs on its own, inside
 * a savepoint when others share the transaction (a refused claim rolls back alone). A commit costs far more
 * than a claim's statements, so under load this is most of the throughput.
 */
export class InstantService {
  readonly #d: InstantDeps;
  readonly #now: () => number;
  #pending: Pending[] = [];
  /** A group is being committed (only tracked when `networked`). */
  #flushing = false;

  constructor(deps: InstantDeps) {
    this.#d = deps;
    this.#now = deps.now ?? Date.now;
  }

  /**
   * Claims one ready generation of `recipeId` for `user`. 404 `recipe_not_found` (unknown or inactive),
   * 402 `insufficient_credits`, 404 `no_instant_available` (empty backlog) or 409 `instant_taken` (emptied
   * between the look and the claim), the last two with `fallbackToModal: true`.
   */
  async claim(user: User, recipeId: string, idem: IdempotentAnswer = NO_KEY): Promise<InstantClaim> {
    const { recipes, credits, backlog } = this.#d;
    const recipe = await recipes.active(recipeId);
    const price = credits.priceFor(user, recipe.creditCost);
    // Cheap looks before queueing for the write lock: most refusals never contend with other writers. The
    // balance is the caller's row as this request read it (no second read): only the charge inside the claim's
    // transaction decides.
    if (price > 0 && user.credits < price) throw new InsufficientCreditsError(price, user.credits);
    const owner = await backlog.systemUserId();
    // Over the network a look per request would cost a statement each: the group's take tells instead.
    if (!this.#d.networked && !(await this.#d.queue.features.hasCompleted(recipe.id, owner)))
      throw noInstant();
    return new Promise((resolve, reject) => {
      if (this.#pending.length === 0 && !this.#flushing) setImmediate(() => void this.#flushGroups());
      this.#pending.push({ user, recipe, owner, price, idem, resolve, reject });
    });
  }

  /** Commits the pending group; when `networked`, then each group that gathered meanwhile, in turn. */
  async #flushGroups(): Promise<void> {
    if (!this.#d.networked) return this.#flush();
    this.#flushing = true;
    try {
      while (this.#pending.length > 0) await this.#flush();
    } finally {
      this.#flushing = false;
    }
  }

  /** Commits every pending claim in one transaction, then answers each; one top-up per recipe claimed from. */
  async #flush(): Promise<void> {
    const batch = this.#pending;
    this.#pending = [];
    const { sql, backlog } = this.#d;
    let outcomes: Outcome[] = [];
    try {
      await sql.transaction(async () => {
        // PostgreSQL runs this again after a deadlock or serialization failure: only the last run's outcomes
        // are what committed.
        outcomes = [];
        const claimed = new Set<string>();
        // Two or more claims that record no idempotent answer are taken as one set (#claimSet); the others
        // (a claim alone, claims with an Idempotency-Key, whose answer is written in their own savepoint)
        // one by one.
        const unkeyed = batch.filter((p) => p.idem === NO_KEY);
        const inSet = unkeyed.length >= 2 ? unkeyed : [];
        const setOutcomes = new Map(
          inSet.length > 0 ? (await this.#claimSet(inSet)).map((out, i) => [inSet[i]!, out]) : [],
        );
        const alone = batch.length === 1 && inSet.length === 0;
        for (const p of batch) {
          const out = setOutcomes.get(p);
          if (out) {
            outcomes.push(out);
            if (out.ok) claimed.add(p.recipe.id);
            continue;
          }
          try {
            // Alone in the transaction, a claim needs no savepoint: its refusal rolls the transaction back.
            const claim = alone ? await this.#claimOne(p) : await sql.savepoint(() => this.#claimOne(p));
            outcomes.push({ ok: true, claim });
            claimed.add(p.recipe.id);
          } catch (err) {
            if (alone) throw err;
            outcomes.push({ ok: false, err });
          }
        }
        for (const recipeId of claimed) await backlog.scheduleTopUp(recipeId);
      });
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
   * A group's claims as one set, a statement per step whatever their number (DESIGN §6), so a group of 60
   * costs about what one claim does: lock and read every claimer's balance; decide in arrival order which
   * claims are affordable; take one ready job per affordable claim (oldest first per recipe); then, issued
   * together, move the taken jobs' assets, charge the winners with their ledger rows, count the recipes'
   * usage and read the item summaries. The answers are those of the claims run one by one (see the loop).
   * Refusals never write, so nothing needs undoing and no savepoint is needed. Outcomes are in `group`'s order.
   */
  async #claimSet(group: Pending[]): Promise<Outcome[]> {
    const { credits, queue, assets, recipes } = this.#d;
    const now = this.#now();
    // In id order: groups on two instances lock shared payers in the same order.
    const accounts = await credits.accounts([...new Set(group.map((p) => p.user.id))].sort());
    const outcomes: (Outcome | undefined)[] = group.map(() => undefined);
    const balances = new Map([...accounts].map(([id, a]) => [id, a.credits]));
    const backlogOf = (p: Pending) => `${p.owner}\u0000${p.recipe.id}`;
    // Backlogs a claim found empty in this group, and those that served one.
    const emptied = new Set<string>();
    const served = new Set<string>();
    const winners: { p: Pending; i: number; job: Job; values: VariableValues }[] = [];
    // As if the claims ran one by one in arrival order, where each takes its job before it pays: a claim
    // whose backlog was emptied before its turn gets 404/409 whatever its balance, and a 402 only when the
    // wins before it left too little. A round decides with balances net of every claim still taking; a
    // claim left without a job gives its reservation back, and the claims refused for credits are decided
    // again in another round (at most one more per backlog emptied).
    let undecided = group.map((_, i) => i);
    while (undecided.length > 0) {
      const payers: { i: number; price: number }[] = [];
      const short: { i: number; price: number; balance: number }[] = [];
      for (const i of undecided) {
        const p = group[i]!;
        const account = accounts.get(p.user.id);
        if (!account) {
          outcomes[i] = { ok: false, err: new ApiError(404, "not_found", "user not found") };
          continue;
        }
        if (emptied.has(backlogOf(p))) continue;
        const price = credits.priceFor(account, p.recipe.creditCost);
        const balance = balances.get(p.user.id)!;
        if (price > balance) {
          short.push({ i, price, balance });
          continue;
        }
        balances.set(p.user.id, balance - price);
        payers.push({ i, price });
      }
      let released = false;
      for (const owner of new Set(payers.map(({ i }) => group[i]!.owner))) {
        const mine = payers.filter(({ i }) => group[i]!.owner === owner);
        const jobs = await queue.features.transferOldestCompletedMany(
          owner,
          mine.map(({ i, price }) => ({ recipeId: group[i]!.recipe.id, to: group[i]!.user.id, price })),
          now,
        );
        mine.forEach(({ i, price }, k) => {
          const p = group[i]!;
          const job = jobs[k];
          if (job) {
            winners.push({ p, i, job, values: valuesOf(job.metadata) });
            served.add(backlogOf(p));
            return;
          }
          emptied.add(backlogOf(p));
          balances.set(p.user.id, balances.get(p.user.id)! + price);
          released = true;
        });
      }
      if (!released) {
        // Run one by one, a claim takes before it pays: one whose backlog is empty by now would have been
        // told so (404/409), not 402. One look per backlog, and only when a claim was refused for credits.
        const looks = new Map(short.map(({ i }) => [backlogOf(group[i]!), group[i]!] as const));
        for (const [key, p] of looks) {
          if (!emptied.has(key) && !(await queue.features.hasCompleted(p.recipe.id, p.owner)))
            emptied.add(key);
        }
        for (const { i, price, balance } of short) {
          if (!emptied.has(backlogOf(group[i]!)))
            outcomes[i] = { ok: false, err: new InsufficientCreditsError(price, balance) };
        }
        break;
      }
      undecided = short.map(({ i }) => i);
    }
    // The rest found their backlog emptied: by the claims before them, or after the look each made before
    // queueing (409); or, with no look made (networked), empty from the start (404).
    const won = new Set(winners.map((w) => w.i));
    const looked = !this.#d.networked;
    group.forEach((p, i) => {
      if (outcomes[i] || won.has(i)) return;
      outcomes[i] = { ok: false, err: served.has(backlogOf(p)) || looked ? taken() : noInstant() };
    });
    // Charged in arrival order, so each ledger row's balance is the one after it.
    winners.sort((a, b) => a.i - b.i);
    if (winners.length === 0) return outcomes as Outcome[];
    const work = [
      assets.transferJobs(new Map(winners.map(({ p, job }) => [job.id, p.user.id]))),
      credits.debitMany(
        winners.map(({ p, job }) => ({
          userId: p.user.id,
          amount: p.recipe.creditCost,
          reason: "instant",
          jobId: job.id,
        })),
        accounts,
      ),
      recipes.recordUsageMany(winners.map(({ p, values }) => ({ recipeId: p.recipe.id, values }))),
      queue.itemSummaries(winners.map(({ job }) => job.id)),
    ] as const;
    const [moved, debits, , summaries] = await allStatements(work);
    winners.forEach(({ p, i, job, values }, k) => {
      outcomes[i] = {
        ok: true,
        claim: {
          recipeId: p.recipe.id,
          variables: values,
          job: jobView(job, { summary: summaryOf(summaries.get(job.id)) }),
          assets: moved.get(job.id) ?? [],
          creditsRemaining: debits[k]!.balance,
          claimedAt: now,
        },
      };
    });
    return outcomes as Outcome[];
  }

  /**
   * One claim, inside its savepoint: take the job, transfer it and its assets, charge, count usage, and record
   * the caller's idempotent answer.
   */
  async #claimOne({ user, recipe, owner, price, idem }: Pending): Promise<InstantClaim> {
    const now = this.#now();
    const { features } = this.#d.queue;
    const job = await features.transferOldestCompleted(recipe.id, owner, user.id, price, now);
    // Without the look before (networked), none left means none was ready.
    if (!job) throw this.#d.networked ? noInstant() : taken();
    const variables = valuesOf(job.metadata);
    const transferAssets = () => this.#d.assets.transferJob(job.id, user.id);
    const charge = () => this.#d.credits.debit(user, recipe.creditCost, "instant", { jobId: job.id });
    const countUsage = () => this.#d.recipes.recordUsage(recipe.id, variables);
    const itemSummary = () => features.firstItem(job.id);
    // Independent of each other once the job is taken. Over the network they are issued together (one round
    // trip instead of four), and all settle before this claim's savepoint ends, so a refusal (402 from the
    // charge) rolls back every one of them.
    const [assets, { balance }, , summary] = this.#d.networked
      ? await allStatements([transferAssets(), charge(), countUsage(), itemSummary()] as const)
      : [await transferAssets(), await charge(), await countUsage(), await itemSummary()];
    const claim = {
      recipeId: recipe.id,
      variables,
      job: jobView(job, { summary: summary ?? undefined }),
      assets,
      creditsRemaining: balance,
      claimedAt: now,
    };
    await idem.commit(claim);
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
