import type { Job, JobItem } from "../../db/schema";
import type { Sql } from "../../db/sql";
import { conflict, notFound, unprocessable } from "../../errors";
import {
  type CountScope,
  InvalidJobInputError,
  type Queue,
  type QueueStats,
  UnknownJobTypeError,
} from "../../queue";
import { toJob } from "../../queue/store";
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
 * The `jobs.owner_id` condition for what `p` may see — the SQL twin of `AuthService.canAccess`: null for an
 * admin key (everything), an app key's own jobs and its end users', anyone else's own.
 */
export function ownerScope(p: Principal): { sql: string; args: string[] } | null {
  const scope = countScope(p);
  if (!scope) return null;
  return scope.withEndUsers
    ? {
        sql: "(owner_id = ? OR owner_id IN (SELECT id FROM users WHERE parent_id = ?))",
        args: [scope.ownerId, scope.ownerId],
      }
    : { sql: "owner_id = ?", args: [scope.ownerId] };
}

/** Which jobs (and counts) `p` may see: null for all of them; the one decision `ownerScope` writes as SQL. */
export function countScope(p: Principal): CountScope {
  if (isAdminKey(p)) return null;
  return { ownerId: p.user.id, withEndUsers: p.via === "key" && p.user.role === "app" };
}

const LIVE_STATUS_INDEX: Partial<Record<string, string>> = {
  active: "jobs_active_lease_idx",
  queued: "jobs_claim_idx",
  waiting: "jobs_claim_idx",
  delayed: "jobs_claim_idx",
};

/** How many jobs in `stats` a list with these status and type filters matches. */
function matching(stats: QueueStats, q: Pick<ListJobsQuery, "status" | "type">): number {
  const counts: Record<string, number> = q.type
    ? (stats.byType[q.type] ?? {})
    : (({ byType: _, ...totals }) => totals)(stats);
  if (!q.status) return Object.values(counts).reduce((a, b) => a + b, 0);
  if (q.status === "queued") return (counts.waiting ?? 0) + (counts.delayed ?? 0);
  return counts[q.status] ?? 0;
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
  /** The queue's connection: the job list's own SQL on the queue's tables is a known exception (ARCHITECTURE.md). */
  readonly #sql: Sql;
  readonly #assets: AssetService;

  constructor(queue: Queue, auth: AuthService, assets: AssetService) {
    this.#queue = queue;
    this.#auth = auth;
    this.#assets = assets;
    this.#sql = queue.sql;
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

  async itemCounts(jobId: string): Promise<{ completed: number; total: number } | null> {
    const row = (await this.#sql.get<{ total: number; completed: number }>(
      "SELECT count(*) AS total, coalesce(sum(CASE WHEN status = 'completed' THEN 1 ELSE 0 END), 0) AS completed FROM job_items WHERE job_id = ?",
      [jobId],
    ))!;
    return row.total > 0 ? row : null;
  }

  /**
   * A page of the jobs `p` may see, newest first. `excludeTypes` leaves types out (`card.*` for a prefix):
   * the dashboard hides internal work unless asked.
   */
  async list(p: Principal, q: ListJobsQuery, opts: { excludeTypes?: readonly string[] } = {}) {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.userId) {
      const target = await this.#auth.findActingUser(p, q.userId);
      if (!target) return { jobs: [], nextCursor: null };
      where.push("owner_id = ?");
      args.push(target.id);
    } else {
      const scope = ownerScope(p);
      if (scope && countScope(p)?.withEndUsers && !q.recipeId && (await this.#denseForApp(p, q))) {
        // Most matching jobs are this app's: walking newest first and testing each row's owner stops
        // within a few pages, where gathering every job of its end users to sort them would not.
        where.push("(+owner_id = ? OR (SELECT parent_id FROM users WHERE users.id = jobs.owner_id) = ?)");
        args.push(p.user.id, p.user.id);
      } else if (scope) {
        where.push(scope.sql);
        args.push(...scope.args);
      }
    }
    const now = Date.now();
    const status = q.status;
    if (status === "waiting") where.push(`status = 'queued' AND run_at <= ${now}`);
    else if (status === "delayed") where.push(`status = 'queued' AND run_at > ${now}`);
    // Literal live statuses, so the planner may use their partial indexes (bounded by the queue, not by
    // history); an end status pages through jobs_finished_status_idx, which only ended jobs are in.
    else if (status === "queued" || status === "active") where.push(`status = '${status}'`);
    else if (status) {
      where.push("status = ? AND finished_at IS NOT NULL");
      args.push(status);
    }
    if (q.type) {
      where.push("type = ?");
      args.push(q.type);
    }
    for (const t of opts.excludeTypes ?? []) {
      where.push(t.endsWith(".*") ? "type NOT LIKE ?" : "type != ?");
      args.push(t.endsWith(".*") ? `${t.slice(0, -1)}%` : t);
    }
    if (q.recipeId) {
      where.push("recipe_id = ?");
      args.push(q.recipeId);
    }
    if (q.cursor) {
      where.push("id < ?");
      args.push(q.cursor);
    }
    // Live jobs are few: read them all through their partial index and sort. Left alone, the planner walks
    // the primary key for ORDER BY id, through all of history when there are fewer than `limit`.
    const live = status ? LIVE_STATUS_INDEX[status] : undefined;
    const from = live ? `jobs INDEXED BY ${live}` : "jobs";
    const sql = `SELECT * FROM ${from} ${where.length ? `WHERE ${where.join(" AND ")}` : ""} ORDER BY id DESC LIMIT ?`;
    const rows = await this.#sql.all(sql, [...args, q.limit + 1]);
    const page = rows.slice(0, q.limit).map(toJob);
    const firstItems = await this.#firstItems(page.filter(isGeneration).map((j) => j.id));
    const jobs = page.map((j) => jobView(j, { summary: firstItems.get(j.id) }));
    return { jobs, nextCursor: rows.length > q.limit ? (jobs.at(-1)?.id ?? null) : null };
  }

  /**
   * Whether an app's list should walk all jobs newest first (about `limit × all / theirs` rows) rather
   * than gather its end users' jobs and sort them (`theirs` rows), judged from the exact counts.
   */
  async #denseForApp(p: Principal, q: ListJobsQuery): Promise<boolean> {
    const theirs = matching(await this.#queue.stats(countScope(p)), q);
    const all = matching(await this.#queue.stats(null), q);
    return theirs > 0 && ((q.limit + 1) * all) / theirs < theirs;
  }

  /** Each job's first item (its key and prompt) and item count, for the list's request summaries. */
  async #firstItems(
    jobIds: string[],
  ): Promise<Map<string, { key: string; prompt: string | null; count: number }>> {
    if (jobIds.length === 0) return new Map();
    const rows = await this.#sql.all<{ job_id: string; count: number; key: string; prompt: string | null }>(
      `SELECT job_id, count(*) AS count, max(CASE WHEN idx = 0 THEN key END) AS key,
         max(CASE WHEN idx = 0 THEN json_extract(input, '$.prompt') END) AS prompt
       FROM job_items WHERE job_id IN (SELECT value FROM json_each(?)) GROUP BY job_id`,
      [JSON.stringify(jobIds)],
    );
    return new Map(rows.map((r) => [r.job_id, { key: r.key, prompt: r.prompt, count: r.count }]));
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
