import type { Database } from "bun:sqlite";
import { type Job, type JobStatus, TERMINAL_STATUSES } from "../db/schema";
import { type CountScope, type QueueStats, toJob } from "./store";

/** A list's status filter: a job status, or `waiting` / `delayed` (queued jobs due now / later). */
export type ListStatus = JobStatus | "waiting" | "delayed";

/** Which jobs a list shows. */
export type JobFilter = {
  /** Whose jobs: null for every job; else one owner's, with `withEndUsers` also its end users'. */
  scope: CountScope;
  status?: ListStatus;
  type?: string;
  recipeId?: string;
  /** Types left out; `card.*` leaves out every type starting `card.`. */
  excludeTypes?: readonly string[];
};

/** A page of a list: at most `limit` jobs older (by id) than `cursor`. */
export type JobPage = { limit: number; cursor?: string | null };

export type JobListPage = { jobs: Job[]; nextCursor: string | null };

/** Each job's first item (its key and input) and how many items it has: a list row's summary. */
export type ItemSummary = { key: string; input: unknown; count: number };

/** A piece of SQL with its `?` parameters. */
export type SqlPart = { sql: string; args: (string | number)[] };

const LIVE_INDEX: Partial<Record<ListStatus, string>> = {
  active: "jobs_active_lease_idx",
  queued: "jobs_claim_idx",
  waiting: "jobs_claim_idx",
  delayed: "jobs_claim_idx",
};
const ENDED = new Set<string>(TERMINAL_STATUSES);
const ENDED_SQL = TERMINAL_STATUSES.map((s) => `'${s}'`).join(", ");

/**
 * How a list finds its page, chosen from the exact counts (`QueueStats`) so that no plan reads history:
 * - `live`: a live status reads its partial index (bounded by the queue) and sorts;
 * - `recipe`: a recipe's jobs through jobs_recipe_idx, then a sort (bounded by that recipe's jobs);
 * - `walk`: newest first on the primary key (or jobs_owner_idx for one owner), testing each row, until the
 *   page is full: about `(limit + 1) × scanned / matching` rows;
 * - `gather`: the ids of every job matching the status and type filters from jobs_ended_idx (and the live
 *   indexes, for a type), then the newest `limit + 1` of them: `matching` index entries, all owners;
 * - `users`: an app's own and its end users' jobs through jobs_owner_idx, then a sort: all of the app's jobs.
 * The cheapest by those estimates wins: walking when matches are dense, gathering when they are rare. For a
 * list of every job that bounds the rows read by about `sqrt(limit × jobs)` (7,000 at 1M jobs and a page of
 * 50); a scoped list compares the same estimates over its scope's counts.
 */
type Plan = "live" | "recipe" | "walk" | "gather" | "users";

/** The queue's job lists and the reads that go with a page (statements on `jobs` and `job_items`). */
export class JobLists {
  readonly #db: Database;
  readonly #stats: (now: number, scope: CountScope) => QueueStats;

  constructor(db: Database, stats: (now: number, scope: CountScope) => QueueStats) {
    this.#db = db;
    this.#stats = stats;
  }

  /** A page of the jobs matching `filter` at `now`, newest first (ids are time-ordered), with the next page's cursor. */
  list(filter: JobFilter, page: JobPage, now: number): JobListPage {
    const plan = this.#plan(filter, page.limit, now);
    const q = this.#sql(plan, filter, page, now);
    const rows = this.#db.query(q.sql).all(...q.args) as Record<string, unknown>[];
    const jobs = rows.slice(0, page.limit).map(toJob);
    return { jobs, nextCursor: rows.length > page.limit ? (jobs.at(-1)?.id ?? null) : null };
  }

  /** How many of a job's items there are and how many completed; null for a job without items. */
  itemCounts(jobId: string): { completed: number; total: number } | null {
    const row = this.#db
      .query(
        "SELECT count(*) AS total, coalesce(sum(status = 'completed'), 0) AS completed FROM job_items WHERE job_id = ?",
      )
      .get(jobId) as { total: number; completed: number };
    return row.total > 0 ? row : null;
  }

  /** Each of `jobIds`' first item and item count (jobs without items are absent): one index range per job. */
  itemSummaries(jobIds: string[]): Map<string, ItemSummary> {
    if (jobIds.length === 0) return new Map();
    const rows = this.#db
      .query(
        `SELECT job_id, count(*) AS count, max(CASE WHEN idx = 0 THEN key END) AS key,
           max(CASE WHEN idx = 0 THEN input END) AS input
         FROM job_items WHERE job_id IN (SELECT value FROM json_each(?)) GROUP BY job_id`,
      )
      .all(JSON.stringify(jobIds)) as { job_id: string; count: number; key: string; input: string | null }[];
    return new Map(
      rows.map((r) => [
        r.job_id,
        { key: r.key, input: r.input === null ? null : JSON.parse(r.input), count: r.count },
      ]),
    );
  }

  #plan(f: JobFilter, limit: number, now: number): Plan {
    if (f.status && LIVE_INDEX[f.status]) return "live";
    if (f.recipeId) return "recipe";
    const filtered = f.type !== undefined || (f.status !== undefined && ENDED.has(f.status));
    const app = f.scope?.withEndUsers === true;
    // Unfiltered lists of everyone or of one owner: every row walked matches (or the owner's index does).
    if (!filtered && !app) return "walk";
    const all = this.#stats(now, null);
    const mine = f.scope ? this.#stats(now, f.scope) : all;
    const walkedOver = f.scope && !app ? total(mine) : total(all);
    const matches = matching(mine, f);
    const costs: [Plan, number][] = [
      ["walk", matches > 0 ? Math.min(walkedOver, ((limit + 1) * walkedOver) / matches) : walkedOver],
    ];
    if (filtered) costs.push(["gather", matching(all, f)]);
    if (app) costs.push(["users", total(mine)]);
    return costs.reduce((best, c) => (c[1] < best[1] ? c : best))[0];
  }

  #sql(plan: Plan, f: JobFilter, page: JobPage, now: number): SqlPart {
    const { where, args } = filterConditions(f, page, now, {
      scope: scopeSql(f.scope, plan),
      // In a walk the filters must not steer the planner to another index: `+col` keeps it on the walk's order.
      column: (name) => (plan === "walk" ? `+${name}` : name),
      // A literal time, so the planner may use the partial index it matches.
      time: (at) => ({ sql: String(at), args: [] }),
    });
    const status = f.status;
    const limit = page.limit + 1;
    if (plan === "gather") return gatherSql(f, where, args, limit);
    const from = {
      live: status ? `jobs INDEXED BY ${LIVE_INDEX[status]}` : "jobs",
      recipe: "jobs INDEXED BY jobs_recipe_idx",
      walk: f.scope && !f.scope.withEndUsers ? "jobs INDEXED BY jobs_owner_idx" : "jobs",
      users: "jobs",
    }[plan];
    const cond = where.length ? `WHERE ${where.join(" AND ")}` : "";
    return { sql: `SELECT * FROM ${from} ${cond} ORDER BY id DESC LIMIT ?`, args: [...args, limit] };
  }
}

/** How a database spells a list's conditions (see filterConditions). */
export type FilterDialect = {
  /** The owner condition of the filter's scope, or null for every job. */
  scope: SqlPart | null;
  /** A filtered column as the plan wants it named. */
  column: (name: string) => string;
  /** The `now` that `waiting` and `delayed` compare due times with: a literal or a parameter. */
  time: (now: number) => SqlPart;
};

/**
 * The conditions (ANDed, with `?` parameters) of the jobs matching `f` on `page` at `now`, the same on either
 * database: what each filter means is said once, here. Live statuses are literals, so a planner may match
 * them to the partial indexes over live rows.
 */
export function filterConditions(f: JobFilter, page: JobPage, now: number, dialect: FilterDialect) {
  const where: string[] = [];
  const args: (string | number)[] = [];
  const add = (part: SqlPart) => {
    where.push(part.sql);
    args.push(...part.args);
  };
  if (dialect.scope) add(dialect.scope);
  const status = f.status;
  if (status === "waiting" || status === "delayed") {
    const at = dialect.time(now);
    add({
      sql: `status = 'queued' AND run_at ${status === "waiting" ? "<=" : ">"} ${at.sql}`,
      args: at.args,
    });
  } else if (status === "queued" || status === "active") where.push(`status = '${status}'`);
  else if (status)
    add({ sql: `${dialect.column("status")} = ? AND finished_at IS NOT NULL`, args: [status] });
  if (f.type !== undefined) add({ sql: `${dialect.column("type")} = ?`, args: [f.type] });
  for (const t of f.excludeTypes ?? []) {
    add(
      t.endsWith(".*")
        ? { sql: "type NOT LIKE ?", args: [`${t.slice(0, -1)}%`] }
        : { sql: "type <> ?", args: [t] },
    );
  }
  if (f.recipeId) add({ sql: "recipe_id = ?", args: [f.recipeId] });
  if (page.cursor) add({ sql: "id < ?", args: [page.cursor] });
  return { where, args };
}

/**
 * The owner condition for a scope. An app's walk tests each row's owner (its own, or one whose parent it is);
 * every other plan lists the app's end users once into an `IN` set.
 */
function scopeSql(scope: CountScope, plan: Plan): SqlPart | null {
  if (scope?.withEndUsers && plan === "walk") {
    return {
      sql: "(+owner_id = ? OR (SELECT parent_id FROM users WHERE users.id = jobs.owner_id) = ?)",
      args: [scope.ownerId, scope.ownerId],
    };
  }
  return ownerCondition(scope);
}

/** Whose jobs a scope lists: an owner's own, or an app's own and its end users' (listed once into a set). */
export function ownerCondition(scope: CountScope): SqlPart | null {
  if (!scope) return null;
  if (!scope.withEndUsers) return { sql: "owner_id = ?", args: [scope.ownerId] };
  return {
    sql: "(owner_id = ? OR owner_id IN (SELECT id FROM users WHERE parent_id = ?))",
    args: [scope.ownerId, scope.ownerId],
  };
}

/**
 * The gather: ended jobs from jobs_ended_idx (status, type, …) and, for a type without a status, the live
 * ones from their partial indexes; only the page's ids are sorted, then its rows read by primary key.
 */
function gatherSql(f: JobFilter, where: string[], args: (string | number)[], limit: number): SqlPart {
  const rest = where.length ? ` AND ${where.join(" AND ")}` : "";
  const arms: string[] = [];
  const armArgs: (string | number)[] = [];
  if (f.status) {
    arms.push(`SELECT id FROM jobs INDEXED BY jobs_ended_idx WHERE 1${rest}`);
    armArgs.push(...args);
  } else {
    arms.push(
      `SELECT id FROM jobs INDEXED BY jobs_ended_idx WHERE status IN (${ENDED_SQL}) AND finished_at IS NOT NULL${rest}`,
      `SELECT id FROM jobs INDEXED BY jobs_claim_idx WHERE status = 'queued'${rest}`,
      `SELECT id FROM jobs INDEXED BY jobs_active_lease_idx WHERE status = 'active'${rest}`,
    );
    armArgs.push(...args, ...args, ...args);
  }
  return {
    sql: `SELECT * FROM jobs WHERE id IN (SELECT id FROM (${arms.join(" UNION ALL ")}) ORDER BY id DESC LIMIT ?)
          ORDER BY id DESC`,
    args: [...armArgs, limit],
  };
}

function total(stats: QueueStats): number {
  const { byType: _, ...totals } = stats;
  return Object.values(totals).reduce((a, b) => a + b, 0);
}

/** How many jobs in `stats` match the status, type and excluded types of `f`. */
function matching(stats: QueueStats, f: JobFilter): number {
  const excluded = (type: string) =>
    (f.excludeTypes ?? []).some((t) => (t.endsWith(".*") ? type.startsWith(t.slice(0, -1)) : type === t));
  let n = 0;
  for (const [type, counts] of Object.entries(stats.byType)) {
    if ((f.type !== undefined && type !== f.type) || excluded(type)) continue;
    for (const [status, count] of Object.entries(counts)) {
      if (!f.status || status === f.status) n += count;
    }
  }
  return n;
}
