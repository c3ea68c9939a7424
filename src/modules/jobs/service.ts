import type { Job, JobItem } from "../../db/schema";
import { conflict, notFound, unprocessable } from "../../errors";
import {
  type CountScope,
  InvalidJobInputError,
  type ItemSummary,
  type Queue,
  UnknownJobTypeError,
} from "../../queue";
import { type AuthService, isAdminKey, type Principal } from "../auth/service";
import { callerMetadata } from "../generate/model";
import type { AssetService, AssetView } from "../generate/service";
import {
  type GenerationRequestDetail,
  type GenerationRequestSummary,
  generationRequest,
  generationSummary,
  isGeneration,
} from "../generate/service";
import { type IdempotentAnswer, NO_KEY } from "../idempotency/service";
import type { EnqueueBody, JobStatusView, JobView, ListJobsQuery } from "./model";

/**
 * Which jobs (and counts) `p` may see — the scope twin of `AuthService.canAccess`: null for an admin key
 * (everything), an app key's own jobs and its end users', anyone else's own.
 */
export function countScope(p: Principal): CountScope {
  if (isAdminKey(p)) return null;
  return { ownerId: p.user.id, withEndUsers: p.via === "key" && p.user.role === "app" };
}

/** A job as the API shows it. */
export type { JobView };

/**
 * What `jobView` shows beyond the row: the items (with their assets) of a detail view, or the generation
 * summary of a list row.
 */
export type JobViewParts = {
  items?: JobItem[];
  assets?: AssetView[];
  summary?: { key: string; prompt: string | null; count: number };
};

export function jobView(job: Job, parts: JobViewParts = {}): JobView {
  const { items, assets } = parts;
  return {
    id: job.id,
    type: job.type,
    status: job.status,
    priority: job.priority,
    progress: job.progress,
    progressMessage: job.progressMessage,
    attempts: job.attempts,
    maxAttempts: job.maxAttempts,
    input: job.input,
    /** A generation's request as accepted (null for other job types); a summary in lists. */
    request: requestOf(job, parts),
    /** The caller's own `metadata`, as given. */
    metadata: callerMetadata(job.metadata),
    /** A backlog image claimed instantly: `finishedAt` is the claim; `generatedAt` when it was made. */
    instantClaim: instantClaimOf(job.metadata),
    result: job.result,
    error: job.error,
    ownerId: job.ownerId,
    recipeId: job.recipeId,
    dedupeKey:
      job.ownerId && job.dedupeKey?.startsWith(`${job.ownerId}:`)
        ? job.dedupeKey.slice(job.ownerId.length + 1)
        : job.dedupeKey,
    creditsCharged: job.creditsCharged,
    creditsRefunded: job.creditsRefunded,
    runAt: job.runAt,
    createdAt: job.createdAt,
    startedAt: job.startedAt,
    finishedAt: job.finishedAt,
    updatedAt: job.updatedAt,
    ...(items
      ? {
          items: items.map((i) => ({
            id: i.key,
            idx: i.idx,
            status: i.status,
            attempts: i.attempts,
            result: i.result,
            assetId: i.assetId,
            assets: assets?.filter((a) => a.itemIdx === i.idx) ?? [],
            error: i.error,
          })),
        }
      : {}),
    ...(assets ? { assets } : {}),
  };
}

/** A list row's request summary from its first item: the item's key, prompt and the job's item count. */
export function summaryOf(first: ItemSummary | undefined): JobViewParts["summary"] {
  if (!first) return undefined;
  const prompt = (first.input as { prompt?: unknown } | null)?.prompt;
  return { key: first.key, prompt: typeof prompt === "string" ? prompt : null, count: first.count };
}

function instantClaimOf(
  metadata: Record<string, unknown> | null,
): { claimedAt: number; generatedAt: number | null } | null {
  if (metadata?.instant !== true || typeof metadata.claimedAt !== "number") return null;
  const generatedAt = typeof metadata.generatedAt === "number" ? metadata.generatedAt : null;
  return { claimedAt: metadata.claimedAt, generatedAt };
}

function requestOf(
  job: Job,
  { items, summary }: JobViewParts,
): GenerationRequestDetail | GenerationRequestSummary | null {
  if (!isGeneration(job)) return null;
  return items ? generationRequest(job, items) : generationSummary(job, summary);
}

/**
 * A finished job's outcome as its webhooks and realtime frames carry it, so a receiver needs no follow-up
 * GET: every stored image (with the id of the item it belongs to), the failed items with their error codes,
 * and the caller's metadata.
 */
export type JobOutcome = {
  assets: (AssetView & { itemId: string | null })[];
  failedItems: { id: string; code: string; message: string }[];
  metadata: Record<string, unknown> | null;
};

/** The compact progress view (`GET /api/jobs/:id/status`), also the shape realtime clients get. */
export function statusView(job: Job, counts: { completed: number; total: number } | null): JobStatusView {
  return {
    jobId: job.id,
    type: job.type,
    status: job.status,
    progress: job.progress,
    message: job.progressMessage,
    completedItems: counts?.completed ?? null,
    totalItems: counts?.total ?? null,
    attempts: job.attempts,
    error: job.error,
    result: job.status === "completed" || job.status === "partial" ? job.result : null,
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
  };
}

/** Reading and controlling jobs on behalf of a caller; other users' jobs are 404, never 403. */
export class JobService {
  readonly #queue: Queue;
  readonly #auth: AuthService;
  readonly #assets: AssetService;

  constructor(queue: Queue, auth: AuthService, assets: AssetService) {
    this.#queue = queue;
    this.#auth = auth;
    this.#assets = assets;
  }

  /** The job if `p` may see it; 404 otherwise (existence is not revealed). */
  async visible(p: Principal, id: string): Promise<Job> {
    const job = await this.#queue.get(id);
    if (!job || !(await this.#auth.canAccess(p, job.ownerId))) throw notFound("job");
    return job;
  }

  /** The job with its items, assets and the history of its earlier attempts (the timeline). */
  async detail(p: Principal, id: string) {
    const job = await this.visible(p, id);
    const history = await this.#queue.attempts(id);
    const view = jobView(job, { items: await this.#queue.items(id), assets: await this.#assets.forJob(id) });
    // Given the items, jobView builds the detailed request: say so in the type, for clients and views.
    return { ...view, request: view.request as GenerationRequestDetail | null, history };
  }

  /** What a terminal webhook or frame says about `job` beyond its row (see JobOutcome). */
  async outcome(job: Job): Promise<JobOutcome> {
    const items = await this.#queue.items(job.id);
    // Images belong to items: a job without any (deliveries, renders, top-ups) needs no asset lookup.
    if (items.length === 0) return { assets: [], failedItems: [], metadata: callerMetadata(job.metadata) };
    const keyOf = new Map(items.map((i) => [i.idx, i.key]));
    return {
      assets: (await this.#assets.forJob(job.id)).map((a) => ({
        ...a,
        itemId: a.itemIdx === null ? null : (keyOf.get(a.itemIdx) ?? null),
      })),
      failedItems: items
        .filter((i) => i.status === "failed")
        .map((i) => ({ id: i.key, code: i.error?.code ?? "failed", message: i.error?.message ?? "" })),
      metadata: callerMetadata(job.metadata),
    };
  }

  async status(p: Principal, id: string) {
    const job = await this.visible(p, id);
    return statusView(job, await this.itemCounts(id));
  }

  itemCounts(jobId: string): Promise<{ completed: number; total: number } | null> {
    return this.#queue.itemCounts(jobId);
  }

  /**
   * A page of the jobs `p` may see, newest first. `excludeTypes` leaves types out (`card.*` for a prefix):
   * the dashboard hides internal work unless asked.
   */
  async list(p: Principal, q: ListJobsQuery, opts: { excludeTypes?: readonly string[] } = {}) {
    let scope = countScope(p);
    if (q.userId) {
      const target = await this.#auth.findActingUser(p, q.userId);
      if (!target) return { jobs: [], nextCursor: null };
      scope = { ownerId: target.id, withEndUsers: false };
    }
    const page = await this.#queue.list(
      {
        scope,
        ...(q.status && { status: q.status }),
        ...(q.type !== undefined && { type: q.type }),
        ...(q.recipeId && { recipeId: q.recipeId }),
        ...(opts.excludeTypes && { excludeTypes: opts.excludeTypes }),
      },
      { limit: q.limit, cursor: q.cursor ?? null },
    );
    const firstItems = await this.#queue.itemSummaries(page.jobs.filter(isGeneration).map((j) => j.id));
    const jobs = page.jobs.map((j) => jobView(j, { summary: summaryOf(firstItems.get(j.id)) }));
    return { jobs, nextCursor: page.nextCursor };
  }

  /** Counts by status and type: every job for admins, the caller's own (and an app's users') otherwise. */
  stats(p: Principal) {
    return this.#queue.stats(countScope(p));
  }

  /** Cancels (refunding in the same transaction, which also records `idem`'s answer). */
  async cancel(p: Principal, id: string, idem: IdempotentAnswer = NO_KEY) {
    const job = await this.visible(p, id);
    let view: JobView | undefined;
    const cancelled = await this.#queue.cancel(id, async (j) => {
      view = await this.#withItems(j);
      await idem.commit(view);
    });
    if (!cancelled || !view)
      throw conflict("not_cancellable", `job is ${(await this.#queue.get(id))?.status ?? job.status}`);
    return view;
  }

  /** Re-queues; what was refunded is charged again in the same transaction (402 leaves the job as it was). */
  async retry(p: Principal, id: string, idem: IdempotentAnswer = NO_KEY) {
    const job = await this.visible(p, id);
    let view: JobView | undefined;
    const retried = await this.#queue.retry(id, async (j) => {
      view = await this.#withItems(j);
      await idem.commit(view);
    });
    if (retried === "conflict")
      throw conflict("dedupe_conflict", "a newer job with the same dedupe key is queued");
    if (!retried)
      throw conflict(
        "not_retryable",
        `only failed, partial or cancelled jobs can be retried (job is ${job.status})`,
      );
    return view!;
  }

  /** The job with its items and the images made so far (finished items are checkpoints: a retry keeps them). */
  async #withItems(job: Job) {
    return jobView(job, {
      items: await this.#queue.items(job.id),
      assets: await this.#assets.forJob(job.id),
    });
  }

  /** Admin: enqueue any registered job type (maintenance, replays). */
  async enqueue(p: Principal, body: EnqueueBody, idem: IdempotentAnswer = NO_KEY) {
    const owner = await this.#auth.actingUser(p, body.userId);
    try {
      return await this.#queue.transaction(async () => {
        const { job } = await this.#queue.enqueue(body.type, body.input, {
          priority: body.priority,
          delayMs: body.delayMs,
          maxAttempts: body.maxAttempts,
          timeoutMs: body.timeoutMs,
          dedupeKey: body.dedupeKey,
          debounceMs: body.debounceMs,
          ownerId: owner.id,
          items: body.items?.map((i) => ({ key: i.id, input: i.input })),
        });
        const view = jobView(job);
        await idem.commit(view);
        return view;
      });
    } catch (err) {
      if (err instanceof UnknownJobTypeError || err instanceof InvalidJobInputError) {
        throw unprocessable(err.code, err.message);
      }
      throw err;
    }
  }
}
