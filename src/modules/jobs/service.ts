import type { Database } from "bun:sqlite";
import type { Job, JobItem } from "../../db/schema";
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
import type { AssetService, AssetView } from "../generate/assets";
import type { EnqueueBody, ListJobsQuery } from "./model";

/**
 * The `jobs.owner_id` condition for what `p` may see — the SQL twin of `AuthService.canAccess`: null for an
 * admin key (everything), an app key's own jobs and its end users', anyone else's own.
 */
export function ownerScope(p: Principal): { sql: string; args: string[] } | null {
  if (isAdminKey(p)) return null;
  if (p.via === "key" && p.user.role === "app") {
    return {
      sql: "(owner_id = ? OR owner_id IN (SELECT id FROM users WHERE parent_id = ?))",
      args: [p.user.id, p.user.id],
    };
  }
  return { sql: "owner_id = ?", args: [p.user.id] };
}

/** The counters' twin of `ownerScope`: which trigger-kept counts `p` may read (null: all of them). */
export function countScope(p: Principal): CountScope {
  if (isAdminKey(p)) return null;
  return { ownerId: p.user.id, withEndUsers: p.via === "key" && p.user.role === "app" };
}

const LIVE_STATUS_INDEX: Partial<Record<string, string>> = {
  active: "jobs_active_lease_idx",
  queued: "jobs_queued_run_at_idx",
  waiting: "jobs_queued_run_at_idx",
  delayed: "jobs_queued_run_at_idx",
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
export type JobView = ReturnType<typeof jobView>;

export function jobView(job: Job, items?: JobItem[], assets?: AssetView[]) {
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
    result: job.result,
    error: job.error,
    ownerId: job.ownerId,
    recipeId: job.recipeId,
    dedupeKey: job.dedupeKey,
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

/** The compact progress view (`GET /api/jobs/:id/status`), also the shape realtime clients get. */
export function statusView(job: Job, counts: { completed: number; total: number } | null) {
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
  readonly #sqlite: Database;
  readonly #assets: AssetService;

  constructor(queue: Queue, auth: AuthService, assets: AssetService) {
    this.#queue = queue;
    this.#auth = auth;
    this.#assets = assets;
    this.#sqlite = queue.store.db;
  }

  /** The job if `p` may see it; 404 otherwise (existence is not revealed). */
  visible(p: Principal, id: string): Job {
    const job = this.#queue.get(id);
    if (!job || !this.#auth.canAccess(p, job.ownerId)) throw notFound("job");
    return job;
  }

  /** The job with its items, assets and the history of its earlier attempts (the timeline). */
  detail(p: Principal, id: string) {
    const job = this.visible(p, id);
    const history = this.#queue.store.attempts(id);
    return { ...jobView(job, this.#queue.items(id), this.#assets.forJob(id)), history };
  }

  status(p: Principal, id: string) {
    const job = this.visible(p, id);
    return statusView(job, this.itemCounts(id));
  }

  itemCounts(jobId: string): { completed: number; total: number } | null {
    const row = this.#sqlite
      .query(
        "SELECT count(*) AS total, coalesce(sum(status = 'completed'), 0) AS completed FROM job_items WHERE job_id = ?",
      )
      .get(jobId) as { total: number; completed: number };
    return row.total > 0 ? row : null;
  }

  list(p: Principal, q: ListJobsQuery) {
    const where: string[] = [];
    const args: (string | number)[] = [];
    if (q.userId) {
      const target = this.#auth.findActingUser(p, q.userId);
      if (!target) return { jobs: [], nextCursor: null };
      where.push("owner_id = ?");
      args.push(target.id);
    } else {
      const scope = ownerScope(p);
      if (scope && countScope(p)?.withEndUsers && !q.recipeId && this.#denseForApp(p, q)) {
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
    const rows = this.#sqlite.query(sql).all(...args, q.limit + 1) as Record<string, unknown>[];
    const jobs = rows.slice(0, q.limit).map((r) => jobView(toJob(r)));
    return { jobs, nextCursor: rows.length > q.limit ? (jobs.at(-1)?.id ?? null) : null };
  }

  /**
   * Whether an app's list should walk all jobs newest first (about `limit × all / theirs` rows) rather
   * than gather its end users' jobs and sort them (`theirs` rows), judged from the exact counts.
   */
  #denseForApp(p: Principal, q: ListJobsQuery): boolean {
    const theirs = matching(this.#queue.stats(countScope(p)), q);
    const all = matching(this.#queue.stats(null), q);
    return theirs > 0 && ((q.limit + 1) * all) / theirs < theirs;
  }

  /** Counts by status and type: every job for admins, the caller's own (and an app's users') otherwise. */
  stats(p: Principal) {
    return this.#queue.stats(countScope(p));
  }

  cancel(p: Principal, id: string) {
    const job = this.visible(p, id);
    const cancelled = this.#queue.cancel(id);
    if (!cancelled) throw conflict("not_cancellable", `job is ${this.#queue.get(id)?.status ?? job.status}`);
    return jobView(cancelled);
  }

  retry(p: Principal, id: string) {
    const job = this.visible(p, id);
    const retried = this.#queue.retry(id);
    if (retried === "conflict")
      throw conflict("dedupe_conflict", "a newer job with the same dedupe key is queued");
    if (!retried)
      throw conflict(
        "not_retryable",
        `only failed, partial or cancelled jobs can be retried (job is ${job.status})`,
      );
    return jobView(retried, this.#queue.items(id));
  }

  /** Admin: enqueue any registered job type (maintenance, replays). */
  enqueue(p: Principal, body: EnqueueBody) {
    const owner = this.#auth.actingUser(p, body.userId);
    try {
      const { job } = this.#queue.enqueue(body.type, body.input, {
        priority: body.priority,
        delayMs: body.delayMs,
        maxAttempts: body.maxAttempts,
        timeoutMs: body.timeoutMs,
        dedupeKey: body.dedupeKey,
        debounceMs: body.debounceMs,
        ownerId: owner.id,
        items: body.items?.map((i) => ({ key: i.id, input: i.input })),
      });
      return jobView(job);
    } catch (err) {
      if (err instanceof UnknownJobTypeError || err instanceof InvalidJobInputError) {
        throw unprocessable(err.code, err.message);
      }
      throw err;
    }
  }
}
