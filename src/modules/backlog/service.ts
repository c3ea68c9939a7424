import type { Config } from "../../config";
import type { Job, JobError, Recipe } from "../../db/schema";
import type { Sql } from "../../db/sql";
import { ApiError } from "../../errors";
import type { Queue } from "../../queue";
import type { GenerateService } from "../generate/service";
import { GENERATE_JOB } from "../generate/service";
import type { RecipeService, VariableValues } from "../recipes/service";
import type { UserService } from "../users/service";
import { inputDrawer, NoInputsError, type Random } from "./pick";
import { BacklogRepository } from "./repository";

/** The external id of the user that owns unclaimed backlog generations. */
export const BACKLOG_USER = "system_backlog";
/** Backlog work yields to user jobs queued up to 10 s after it (each level of priority is worth a second of waiting). */
export const BACKLOG_PRIORITY = -10;
export const TOPUP_JOB = "backlog.topup";

export type BacklogOptions = {
  /** BACKLOG_MAX_CONCURRENT: backlog generations queued or running at once, over all recipes. */
  maxConcurrent: number;
  /** BACKLOG_FAILURE_LIMIT: consecutive failures (within the cooldown window) that pause a recipe. */
  failureLimit: number;
  /** BACKLOG_FAILURE_COOLDOWN_MS: how long a paused recipe waits; also the window failures count in. */
  failureCooldownMs: number;
  /** BACKLOG_TOPUP_DELAY_MS: how long after a claim its top-up runs (claims within it share the run). */
  topUpDelayMs: number;
  now?: () => number;
  /** Draws for weighted input choice. @defaultValue Math.random */
  random?: Random;
};

export type BacklogDeps = {
  sql: Sql;
  queue: Queue;
  recipes: RecipeService;
  generate: GenerateService;
  users: UserService;
};

/** Whether a recipe's top-ups are paused after repeated failures, and until when. */
export type FailureBudget = {
  consecutiveFailures: number;
  limit: number;
  lastFailureAt: number | null;
  lastError: JobError | null;
  paused: boolean;
  pausedUntil: number | null;
};

export type BacklogStatus = {
  recipeId: string;
  name: string;
  active: boolean;
  /** backlog_min: ready generations to keep. */
  min: number;
  /** Completed, unclaimed backlog generations. */
  ready: number;
  /** Backlog generations queued or running. */
  inFlight: number;
  /** Generations still to be queued to reach `min`: max(0, min - ready - inFlight). */
  deficit: number;
  oldestReadyAt: number | null;
  failures: FailureBudget;
};

export type RecipeTopUp = {
  recipeId: string;
  /** Jobs queued (or, in a dry run, that would be). */
  enqueued: number;
  jobIds: string[];
  /** The inputs drawn for each job. */
  inputs: VariableValues[];
  deficit: number;
  /** Why nothing (or less than the deficit) was queued. */
  skipped?: "paused" | "concurrency_cap" | "no_inputs" | "provider_unavailable";
  reason?: string;
};

export type MaintainResult = {
  dryRun: boolean;
  enqueued: number;
  /** Backlog generations in flight after this run, over all recipes. */
  inFlight: number;
  maxConcurrent: number;
  recipes: RecipeTopUp[];
};

/**
 * Keeps `backlog_min` completed generations per active recipe, owned by the `system_backlog` user, for
 * instant claims (DESIGN §6). A top-up runs in one IMMEDIATE transaction that counts what is ready and in
 * flight before queueing more, so the cron, the claims' top-ups and the CLI can all run it at once without
 * overfilling or passing the concurrency cap.
 */
export class BacklogService {
  readonly #d: BacklogDeps;
  readonly #o: BacklogOptions;
  readonly #now: () => number;
  readonly #random: Random;
  #systemUserId: string | null = null;
  /** When each recipe's queued top-up (as this process last queued it) is due to run. */
  readonly #topUpDue = new Map<string, number>();
  /** The last top-up left a deficit because of the concurrency cap (see onJobTerminal). */
  #capped = false;
  readonly #state: BacklogRepository;

  constructor(deps: BacklogDeps, opts: BacklogOptions) {
    this.#d = deps;
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    this.#random = opts.random ?? Math.random;
    this.#state = new BacklogRepository(deps.sql);
  }

  /** The `system_backlog` user's id, created on first use (a second process creating it at once is fine). */
  async systemUserId(): Promise<string> {
    this.#systemUserId ??= (await this.#d.users.ensureSystemUser(BACKLOG_USER, "system", "Backlog")).id;
    return this.#systemUserId;
  }

  async status(recipe: Recipe): Promise<BacklogStatus> {
    const owner = await this.systemUserId();
    const ready = await this.#d.queue.features.ready(recipe.id, owner);
    const inFlight = await this.#d.queue.features.inFlight(recipe.id, owner);
    return {
      recipeId: recipe.id,
      name: recipe.name,
      active: recipe.active,
      min: recipe.backlogMin,
      ready: ready.n,
      inFlight,
      deficit: Math.max(0, recipe.backlogMin - ready.n - inFlight),
      oldestReadyAt: ready.oldest,
      failures: await this.#budget(recipe.id),
    };
  }

  /** Every recipe's backlog (inactive ones too: they may still hold ready generations). */
  async statusAll(): Promise<BacklogStatus[]> {
    const out: BacklogStatus[] = [];
    for (const r of await this.#d.recipes.list({ includeInactive: true })) out.push(await this.status(r));
    return out;
  }

  /**
   * Tops up every active recipe (or one) to its `backlog_min`, emptiest first, never passing the concurrency
   * cap. With `dryRun`, draws inputs and reports what it would queue without writing anything.
   */
  async maintain(opts: { recipeId?: string; dryRun?: boolean } = {}): Promise<MaintainResult> {
    const owner = await this.systemUserId();
    return this.#d.queue.transaction(async () => {
      const allRecipes = (await this.#d.recipes.list({ includeInactive: true })).map((r) => r.id);
      let inFlight = await this.#d.queue.features.inFlightForRecipes(allRecipes, owner);
      const wanted = (await this.#d.recipes.list({ includeInactive: false })).filter(
        (r) => r.backlogMin > 0 && (!opts.recipeId || r.id === opts.recipeId),
      );
      const recipes: { recipe: Recipe; ready: number }[] = [];
      for (const r of wanted) recipes.push({ recipe: r, ready: await this.#countReady(r, owner) });
      recipes.sort((a, b) => a.ready / a.recipe.backlogMin - b.ready / b.recipe.backlogMin);
      const out: RecipeTopUp[] = [];
      let enqueued = 0;
      for (const { recipe, ready } of recipes) {
        const mine = await this.#d.queue.features.inFlight(recipe.id, owner);
        const deficit = Math.max(0, recipe.backlogMin - ready - mine);
        const topUp = await this.#topUp(
          recipe,
          deficit,
          this.#o.maxConcurrent - inFlight,
          opts.dryRun ?? false,
        );
        inFlight += topUp.enqueued;
        enqueued += topUp.enqueued;
        out.push(topUp);
      }
      if (!opts.dryRun) this.#capped ||= out.some((t) => t.skipped === "concurrency_cap");
      return {
        dryRun: opts.dryRun ?? false,
        enqueued,
        inFlight,
        maxConcurrent: this.#o.maxConcurrent,
        recipes: out,
      };
    });
  }

  /**
   * Queues a top-up of one recipe shortly after an instant claim, in the caller's transaction. Debounced on
   * the recipe: a burst of claims shares one queued run. While the run this process queued has not started,
   * there is nothing to add (it reads the backlog when it runs), so the enqueue — and the worker wake-up that
   * comes with it — is skipped; were that job cancelled meanwhile, the next claim after its due time or the
   * cron queues another.
   */
  async scheduleTopUp(recipeId?: string): Promise<void> {
    const slot = recipeId ?? "*";
    if ((this.#topUpDue.get(slot) ?? 0) > this.#now()) return;
    const { job } = await this.#d.queue.enqueue(TOPUP_JOB, recipeId ? { recipeId } : {}, {
      dedupeKey: `backlog:${slot}`,
      debounceMs: this.#o.topUpDelayMs,
      priority: BACKLOG_PRIORITY,
      maxAttempts: 1,
    });
    this.#topUpDue.set(slot, job.runAt);
  }

  /**
   * Whether a job may be a backlog generation, from the row alone (the terminal hook's cheap look): before
   * this process has read the backlog user's id, every recipe generation may be.
   */
  isBacklogJob(job: Job): boolean {
    if (job.type !== GENERATE_JOB || !job.recipeId) return false;
    return this.#systemUserId === null || job.ownerId === this.#systemUserId;
  }

  /** Terminal hook: a finished backlog generation resets or spends its recipe's failure budget. */
  async onJobTerminal(job: Job): Promise<void> {
    if (!this.isBacklogJob(job) || job.ownerId !== (await this.systemUserId())) return;
    // A slot under BACKLOG_MAX_CONCURRENT just freed up: recipes the cap turned away get it now, not at the
    // next cron tick.
    if (this.#capped) {
      this.#capped = false;
      await this.scheduleTopUp();
    }
    const now = this.#now();
    if (job.status === "completed") await this.#state.succeeded(job.recipeId!, now);
    else if (job.status === "failed")
      await this.#state.failed(job.recipeId!, now, JSON.stringify(job.error), this.#o.failureCooldownMs);
  }

  #countReady(recipe: Recipe, owner: string): Promise<number> {
    return this.#d.queue.features.readyUpTo(recipe.id, owner, recipe.backlogMin);
  }

  async #topUp(recipe: Recipe, deficit: number, room: number, dryRun: boolean): Promise<RecipeTopUp> {
    const out: RecipeTopUp = { recipeId: recipe.id, enqueued: 0, jobIds: [], inputs: [], deficit };
    if (deficit === 0) return out;
    const budget = await this.#budget(recipe.id);
    if (budget.paused) {
      return { ...out, skipped: "paused", reason: `${budget.consecutiveFailures} failures in a row` };
    }
    const n = Math.min(deficit, Math.max(0, room));
    if (n < deficit) out.skipped = "concurrency_cap";
    let draw: ((random: Random) => VariableValues) | undefined;
    for (let i = 0; i < n; i++) {
      let values: VariableValues;
      try {
        draw ??= inputDrawer(recipe, await this.#d.recipes.usage(recipe.id));
        values = draw(this.#random);
      } catch (err) {
        if (!(err instanceof NoInputsError)) throw err;
        return { ...out, skipped: "no_inputs", reason: err.message };
      }
      out.inputs.push(values);
      out.enqueued++;
      if (dryRun) continue;
      try {
        out.jobIds.push(await this.#enqueue(recipe, values));
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
        return { ...out, enqueued: out.jobIds.length, skipped: "provider_unavailable", reason: err.message };
      }
    }
    return out;
  }

  async #enqueue(recipe: Recipe, values: VariableValues): Promise<string> {
    const e = this.#d.recipes.expansionOf(recipe, values);
    const job = await this.#d.generate.enqueueDirect({
      ownerId: await this.systemUserId(),
      recipeId: recipe.id,
      provider: e.provider,
      model: e.model,
      prompt: e.prompt,
      negativePrompt: e.negativePrompt,
      output: e.output ?? "original",
      size: e.size ?? "1024x1024",
      priority: BACKLOG_PRIORITY,
      // keep: retention never deletes an unclaimed backlog image; a claim removes it.
      metadata: { keep: true, backlog: true, recipeVariables: values },
    });
    return job.id;
  }

  async #budget(recipeId: string): Promise<FailureBudget> {
    const row = await this.#state.state(recipeId);
    const failures = row?.consecutive_failures ?? 0;
    const lastFailureAt = row?.last_failure_at ?? null;
    const until = lastFailureAt === null ? null : lastFailureAt + this.#o.failureCooldownMs;
    const paused = failures >= this.#o.failureLimit && until !== null && this.#now() < until;
    return {
      consecutiveFailures: failures,
      limit: this.#o.failureLimit,
      lastFailureAt,
      lastError: row?.last_error ? (JSON.parse(row.last_error) as JobError) : null,
      paused,
      pausedUntil: paused ? until : null,
    };
  }
}

export function backlogOptions(config: Config, now?: () => number): BacklogOptions {
  return {
    maxConcurrent: config.BACKLOG_MAX_CONCURRENT,
    failureLimit: config.BACKLOG_FAILURE_LIMIT,
    failureCooldownMs: config.BACKLOG_FAILURE_COOLDOWN_MS,
    topUpDelayMs: config.BACKLOG_TOPUP_DELAY_MS,
    now,
  };
}
