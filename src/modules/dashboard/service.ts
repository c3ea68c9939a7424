/**
 * What the dashboard pages show, read on behalf of the signed-in principal: admins see everything, an app
 * sees itself and its end users (the same rules as the API, whose services do most of the reading).
 */
import type { Database } from "bun:sqlite";
import type { AppContext } from "../../context";
import type { Job, User } from "../../db/schema";
import { ApiError } from "../../errors";
import { toJob } from "../../queue/store";
import type { Principal } from "../auth/service";
import type { ListJobsQuery } from "../jobs/model";
import { jobView } from "../jobs/service";
import { deliveryView } from "../webhooks/service";
import type { Session } from "./session";

export type DashboardDeps = Pick<
  AppContext,
  "config" | "db" | "queue" | "users" | "jobs" | "providers" | "cards" | "webhooks" | "recipes" | "backlog"
>;

export type JobFilters = Pick<ListJobsQuery, "status" | "type" | "userId" | "recipeId" | "cursor" | "limit">;

export type ThroughputBucket = { start: number; completed: number; failed: number };

export type BacklogRow = {
  id: string;
  name: string;
  provider: string;
  active: boolean;
  min: number;
  ready: number;
  inFlight: number;
  /** Top-ups paused after repeated failures. */
  paused: boolean;
  lastError: string | null;
};

const BUCKET_MS = 5 * 60_000;
const HOUR_MS = 60 * 60_000;

export class DashboardService {
  readonly #d: DashboardDeps;
  readonly #sql: Database;

  constructor(deps: DashboardDeps) {
    this.#d = deps;
    this.#sql = deps.db.$client;
  }

  /** The principal behind a session, while its key is unrevoked and its role may use the dashboard. */
  principal(session: Session): Principal | null {
    const key = this.#sql
      .query("SELECT user_id AS userId, revoked_at AS revokedAt FROM api_keys WHERE id = ?")
      .get(session.keyId) as { userId: string; revokedAt: number | null } | null;
    if (!key || key.revokedAt !== null || key.userId !== session.userId) return null;
    const user = this.#d.users.get(key.userId);
    if (!user || !canUseDashboard(user)) return null;
    return { user, via: "key", keyId: session.keyId };
  }

  /** `owner_id` restriction for a principal ("" for admins). */
  #scope(p: Principal): { where: string; args: string[] } {
    if (p.user.role === "admin") return { where: "", args: [] };
    return {
      where: "AND (owner_id = ? OR owner_id IN (SELECT id FROM users WHERE parent_id = ?))",
      args: [p.user.id, p.user.id],
    };
  }

  counts(p: Principal) {
    return this.#d.jobs.stats(p);
  }

  /** Finished jobs per 5 minutes over the last hour, oldest first (12 buckets). */
  throughput(p: Principal, now = Date.now()): ThroughputBucket[] {
    const end = Math.ceil(now / BUCKET_MS) * BUCKET_MS;
    const start = end - HOUR_MS;
    const scope = this.#scope(p);
    const rows = this.#sql
      .query(
        `SELECT (finished_at - ?) / ${BUCKET_MS} AS bucket, sum(status = 'completed') AS completed,
           sum(status IN ('failed', 'partial')) AS failed
         FROM jobs WHERE finished_at >= ? ${scope.where} GROUP BY bucket`,
      )
      .all(start, start, ...scope.args) as { bucket: number; completed: number; failed: number }[];
    const buckets = Array.from({ length: HOUR_MS / BUCKET_MS }, (_, i) => ({
      start: start + i * BUCKET_MS,
      completed: 0,
      failed: 0,
    }));
    for (const r of rows) {
      const b = buckets[r.bucket];
      if (b) Object.assign(b, { completed: r.completed, failed: r.failed });
    }
    return buckets;
  }

  activeJobs(p: Principal, limit = 12): Job[] {
    const scope = this.#scope(p);
    const rows = this.#sql
      .query(`SELECT * FROM jobs WHERE status = 'active' ${scope.where} ORDER BY started_at LIMIT ?`)
      .all(...scope.args, limit) as Record<string, unknown>[];
    return rows.map(toJob);
  }

  providers() {
    const stats = this.#d.providers.stats();
    return this.#d.providers.list().map((info) => ({
      ...info,
      isDefault: info.name === this.#d.providers.defaultName,
      stats: stats[info.name] ?? {
        active: 0,
        waiting: 0,
        startsInWindow: 0,
        health: { ok: 0, failed: 0, lastError: null, lastSuccessAt: null, state: "idle" as const },
      },
    }));
  }

  workers() {
    const pool = this.#d.queue.pool;
    return { running: pool.running, total: this.#d.config.WORKER_CONCURRENCY, free: pool.freeSlots };
  }

  jobs(p: Principal, f: JobFilters) {
    const page = this.#d.jobs.list(p, f);
    return { ...page, owners: this.owners(page.jobs.map((j) => j.ownerId)) };
  }

  /** A job found by id, if the principal may see it. */
  findJob(p: Principal, id: string) {
    try {
      return jobView(this.#d.jobs.visible(p, id));
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return null;
      throw err;
    }
  }

  job(p: Principal, id: string) {
    const job = this.#d.jobs.detail(p, id);
    return { job, owner: job.ownerId ? this.#d.users.get(job.ownerId) : null };
  }

  /** Display names for owner ids (`name (externalId)`). */
  owners(ids: (string | null)[]): Map<string, User> {
    const out = new Map<string, User>();
    for (const id of new Set(ids)) {
      const user = id ? this.#d.users.get(id) : null;
      if (user) out.set(user.id, user);
    }
    return out;
  }

  /** Job types seen, for the filter's suggestions. */
  jobTypes(): string[] {
    return [...this.#d.queue.defs.keys()].sort();
  }

  /** Per recipe: the minimum, completed unclaimed backlog generations, and those queued or running. */
  backlog(): BacklogRow[] {
    const recipes = new Map(this.#d.recipes.list({ includeInactive: true }).map((r) => [r.id, r]));
    return this.#d.backlog.statusAll().map((s) => ({
      id: s.recipeId,
      name: s.name,
      provider: recipes.get(s.recipeId)?.provider ?? "",
      active: s.active,
      min: s.min,
      ready: s.ready,
      inFlight: s.inFlight,
      paused: s.failures.paused,
      lastError: s.failures.lastError?.message ?? null,
    }));
  }

  /** Queues what a recipe's backlog lacks now; says why nothing was queued when nothing was. */
  topUp(recipeId: string): { enqueued: number; skipped: string | null } {
    const result = this.#d.backlog.maintain({ recipeId }).recipes[0];
    if (!result) return { enqueued: 0, skipped: "inactive" };
    return { enqueued: result.enqueued, skipped: result.skipped ?? (result.enqueued === 0 ? "full" : null) };
  }

  cards(p: Principal) {
    return this.#d.cards.list(p, { limit: 48 });
  }

  webhooks(p: Principal) {
    const { endpoints } = this.#d.webhooks.listEndpoints(p);
    const deliveries =
      p.user.role === "admin"
        ? this.#d.webhooks.store.listDeliveries({ limit: 50 }).map(deliveryView)
        : this.#d.webhooks.deliveries(p, { limit: 50 }).deliveries;
    return { endpoints, deliveries };
  }
}

export function canUseDashboard(user: User): boolean {
  return user.role === "admin" || user.role === "app";
}
