import type { Config } from "../../config";
import type { InstanceRegistry } from "../../db/pg/instances";
import type { User } from "../../db/schema";
import type { Sql } from "../../db/sql";
import { ApiError } from "../../errors";
import type { ProviderRegistry } from "../../providers/registry";
import type { CountScope, Queue, QueueStats } from "../../queue";
import type { AuthService, Principal } from "../auth/service";
import { type BacklogService, TOPUP_JOB } from "../backlog/service";
import type { CardService } from "../cards/service";
import type { ListJobsQuery } from "../jobs/model";
import { countScope, type JobService } from "../jobs/service";
import type { RecipeService } from "../recipes/service";
import type { UserService } from "../users/service";
import { DELIVER_JOB, type WebhookService } from "../webhooks/service";
import type { Session } from "./session";

/** What the dashboard reads, and nothing more. */
export type DashboardDeps = {
  config: Config;
  sql: Sql;
  queue: Queue;
  auth: AuthService;
  users: UserService;
  jobs: JobService;
  providers: ProviderRegistry;
  cards: CardService;
  webhooks: WebhookService;
  recipes: RecipeService;
  backlog: BacklogService;
  instances: Pick<InstanceRegistry, "live">;
};

export type JobFilters = Pick<
  ListJobsQuery,
  "status" | "type" | "userId" | "recipeId" | "cursor" | "limit"
> & {
  /** Show Easel's own work too (webhook deliveries, card renders, backlog top-ups). */
  internal?: boolean;
};

/**
 * Job types that are Easel's own work, not an app's: hidden from counts and lists unless asked for, so they
 * do not drown the generations people come to look at. `card.*` is a prefix.
 */
export const INTERNAL_JOB_TYPES = [DELIVER_JOB, TOPUP_JOB, "card.*"] as const;

export function isInternalType(type: string): boolean {
  return INTERNAL_JOB_TYPES.some((t) => (t.endsWith(".*") ? type.startsWith(t.slice(0, -1)) : type === t));
}

/** Counts without the internal types, totals recomputed from what is left. */
function withoutInternal(stats: QueueStats): QueueStats {
  const out: QueueStats = { ...stats, byType: {} };
  const totals = out as unknown as Record<string, number>;
  for (const [type, counts] of Object.entries(stats.byType)) {
    if (!isInternalType(type)) {
      out.byType[type] = counts;
      continue;
    }
    for (const [status, n] of Object.entries(counts)) totals[status] = (totals[status] ?? 0) - n;
  }
  return out;
}

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

/** A minute this far behind the clock gets no more ends: a run's end is counted in its own minute. */
const SETTLED_AFTER_MINUTES = 2;
/** Scopes whose settled minutes are kept (one per dashboard viewer's scope), least recently read dropped. */
const SCOPES_KEPT = 64;

type MinuteTotals = { completed: number; failed: number };

/**
 * The chart's per-minute totals by scope, from the throughput rollup. A minute the clock has left behind
 * by SETTLED_AFTER_MINUTES no longer changes (ends are counted in the minute they happen; trimming only
 * drops minutes a week old), so it is read once and kept: a refresh every 2 s reads the last few minutes,
 * not the hour's rows for every type and status (300-700 rows, most of the fragment's time).
 */
class ChartMinutes {
  readonly #queue: Queue;
  readonly #scopes = new Map<string, { from: number; until: number; totals: Map<number, MinuteTotals> }>();

  constructor(queue: Queue) {
    this.#queue = queue;
  }

  /** Totals of the minutes in [from, to) at `nowMinute`, apps' jobs only (internal types left out). */
  async read(
    scope: CountScope,
    from: number,
    to: number,
    nowMinute: number,
  ): Promise<Map<number, MinuteTotals>> {
    const key = JSON.stringify(scope);
    const settled = Math.max(from, Math.min(to, nowMinute - SETTLED_AFTER_MINUTES));
    let kept = this.#scopes.get(key);
    this.#scopes.delete(key);
    // A window that moved back (a clock set back) starts afresh.
    if (!kept || from < kept.from || kept.until > settled) kept = { from, until: from, totals: new Map() };
    for (const minute of kept.totals.keys()) if (minute < from) kept.totals.delete(minute);
    kept.from = from;
    if (kept.until < settled) {
      await this.#add(kept.totals, scope, kept.until, settled);
      kept.until = settled;
    }
    this.#scopes.set(key, kept);
    if (this.#scopes.size > SCOPES_KEPT) this.#scopes.delete(this.#scopes.keys().next().value!);
    const totals = new Map(kept.totals);
    await this.#add(totals, scope, settled, to);
    return totals;
  }

  async #add(totals: Map<number, MinuteTotals>, scope: CountScope, from: number, to: number): Promise<void> {
    if (from >= to) return;
    for (const r of await this.#queue.throughput(scope, from, to)) {
      if (isInternalType(r.type) || r.status === "cancelled") continue;
      const m = totals.get(r.minute) ?? { completed: 0, failed: 0 };
      totals.set(r.minute, m);
      if (r.status === "completed") m.completed += r.n;
      else m.failed += r.n;
    }
  }
}

export class DashboardService {
  readonly #d: DashboardDeps;
  readonly #minutes: ChartMinutes;

  constructor(deps: DashboardDeps) {
    this.#d = deps;
    this.#minutes = new ChartMinutes(deps.queue);
  }

  /** The principal behind a session, while its key is unrevoked and its role may use the dashboard. */
  async principal(session: Session): Promise<Principal | null> {
    const p = await this.#d.auth.principalForKeyId(session.keyId, session.userId);
    return p && canUseDashboard(p.user) ? p : null;
  }

  /** Jobs by status; without the internal types unless `internal`. */
  async counts(p: Principal, internal = false) {
    const stats = await this.#d.jobs.stats(p);
    return internal ? stats : withoutInternal(stats);
  }

  /**
   * Finished jobs per 5 minutes over the last hour, oldest first (12 buckets), from the throughput rollup;
   * the internal types are left out.
   */
  async throughput(p: Principal, now = Date.now()): Promise<ThroughputBucket[]> {
    const end = Math.ceil(now / BUCKET_MS) * BUCKET_MS;
    const start = end - HOUR_MS;
    const minutes = await this.#minutes.read(
      countScope(p),
      start / 60_000,
      end / 60_000,
      Math.floor(now / 60_000),
    );
    const buckets = Array.from({ length: HOUR_MS / BUCKET_MS }, (_, i) => ({
      start: start + i * BUCKET_MS,
      completed: 0,
      failed: 0,
    }));
    for (const [minute, m] of minutes) {
      const b = buckets[Math.floor((minute * 60_000 - start) / BUCKET_MS)];
      if (!b) continue;
      b.completed += m.completed;
      b.failed += m.failed;
    }
    return buckets;
  }

  async activeJobs(p: Principal, limit = 12) {
    return (await this.#d.jobs.list(p, { status: "active", limit }, { excludeTypes: INTERNAL_JOB_TYPES }))
      .jobs;
  }

  providers() {
    const stats = this.#d.providers.stats();
    return this.#d.providers.list().map((info) => ({
      ...info,
      isDefault: info.name === this.#d.providers.defaultName,
      // list() and stats() cover the same enabled providers.
      stats: stats[info.name]!,
    }));
  }

  workers() {
    const { queue } = this.#d;
    return { running: queue.running, total: this.#d.config.WORKER_CONCURRENCY, free: queue.freeSlots };
  }

  /** The Easel processes whose heartbeat is recent (one on SQLite; the cluster on PostgreSQL). */
  instances() {
    return this.#d.instances.live(Date.now());
  }

  /** A page of jobs; internal types only when asked for, or when the type filter names one. */
  async jobs(p: Principal, { internal, ...f }: JobFilters) {
    const page = await this.#d.jobs.list(p, f, {
      excludeTypes: internal || f.type ? [] : INTERNAL_JOB_TYPES,
    });
    return { ...page, owners: await this.owners(page.jobs.map((j) => j.ownerId)) };
  }

  /** A job's detail and owner, or null when there is no such job or the principal may not see it. */
  async job(p: Principal, id: string) {
    let job: Awaited<ReturnType<JobService["detail"]>>;
    try {
      job = await this.#d.jobs.detail(p, id);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) return null;
      throw err;
    }
    return { job, owner: job.ownerId ? await this.#d.users.get(job.ownerId) : null };
  }

  /** Display names for owner ids (`name (externalId)`). */
  async owners(ids: (string | null)[]): Promise<Map<string, User>> {
    const wanted = [...new Set(ids.filter((id): id is string => id !== null))];
    return new Map((await this.#d.users.getMany(wanted)).map((u) => [u.id, u]));
  }

  /** The registered job types, for the filter's suggestions. */
  jobTypes(): string[] {
    return [...this.#d.queue.defs.keys()].sort();
  }

  /** Per recipe: the minimum, completed unclaimed backlog generations, and those queued or running. */
  async backlog(): Promise<BacklogRow[]> {
    const recipes = new Map((await this.#d.recipes.list({ includeInactive: true })).map((r) => [r.id, r]));
    return (await this.#d.backlog.statusAll()).map((s) => ({
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
  async topUp(recipeId: string): Promise<{ enqueued: number; skipped: string | null }> {
    const result = (await this.#d.backlog.maintain({ recipeId })).recipes[0];
    if (!result) return { enqueued: 0, skipped: "inactive" };
    return { enqueued: result.enqueued, skipped: result.skipped ?? (result.enqueued === 0 ? "full" : null) };
  }

  cards(p: Principal) {
    return this.#d.cards.list(p, { limit: 48 });
  }

  async webhooks(p: Principal) {
    const { endpoints } = await this.#d.webhooks.listEndpoints(p);
    return { endpoints, deliveries: (await this.#d.webhooks.deliveries(p, { limit: 50 })).deliveries };
  }
}

export function canUseDashboard(user: User): boolean {
  return user.role === "admin" || user.role === "app";
}
