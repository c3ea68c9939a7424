import type { PgClient } from "../../db/pg/sql";
import {
  filterConditions,
  type ItemSummary,
  type JobFilter,
  type JobListPage,
  type JobPage,
  ownerCondition,
} from "../list";
import { toJob } from "../store";

const ITEM_COUNTS = `SELECT count(*) AS total, count(*) FILTER (WHERE status = 'completed') AS completed
  FROM job_items WHERE job_id = $1`;
const ITEM_SUMMARIES = `SELECT job_id, count(*) AS count, max(CASE WHEN idx = 0 THEN key END) AS key,
    (array_agg(input) FILTER (WHERE idx = 0))[1] AS input
  FROM job_items WHERE job_id = ANY(ARRAY(SELECT jsonb_array_elements_text($1::text::jsonb))) GROUP BY job_id`;

/**
 * The queue's job lists on PostgreSQL: the same filters and pages as SQLite's (../list.ts), newest first by
 * id. PostgreSQL's planner chooses between the partial indexes (claim, active lease, ended, owner, recipe)
 * and a walk of the primary key from the statistics it keeps, which SQLite's plans in list.ts choose by hand.
 */
export class PgJobLists {
  readonly #sql: PgClient;

  constructor(sql: PgClient) {
    this.#sql = sql;
  }

  /** A page of the jobs matching `filter` at `now`, newest first, with the next page's cursor. */
  async list(f: JobFilter, page: JobPage, now: number): Promise<JobListPage> {
    const { where, args } = filterConditions(f, page, now, {
      scope: ownerCondition(f.scope),
      column: (name) => name,
      // A parameter: a literal would make every list a statement text of its own to prepare.
      time: (at) => ({ sql: "?", args: [at] }),
    });
    const cond = where.length ? `WHERE ${where.join(" AND ")}` : "";
    const rows = await this.#sql.all(`SELECT * FROM jobs ${cond} ORDER BY id DESC LIMIT ?`, [
      ...args,
      page.limit + 1,
    ]);
    const jobs = rows.slice(0, page.limit).map(toJob);
    return { jobs, nextCursor: rows.length > page.limit ? (jobs.at(-1)?.id ?? null) : null };
  }

  /** How many of a job's items there are and how many completed; null for a job without items. */
  async itemCounts(jobId: string): Promise<{ completed: number; total: number } | null> {
    const row = (await this.#sql.get<{ total: number; completed: number }>(ITEM_COUNTS, [jobId]))!;
    return row.total > 0 ? row : null;
  }

  /** Each of `jobIds`' first item and item count (jobs without items are absent). */
  async itemSummaries(jobIds: string[]): Promise<Map<string, ItemSummary>> {
    if (jobIds.length === 0) return new Map();
    const rows = await this.#sql.all<{ job_id: string; count: number; key: string; input: string | null }>(
      ITEM_SUMMARIES,
      [JSON.stringify(jobIds)],
    );
    return new Map(
      rows.map((r) => [
        r.job_id,
        { key: r.key, input: r.input === null ? null : JSON.parse(r.input), count: r.count },
      ]),
    );
  }
}
