import type { PgClient } from "../../db/pg/sql";
import type { Job, JobItem } from "../../db/schema";
import type { QueueFeatures } from "../backend";
import { toItem, toJob } from "../store";

const ids = (param: string) => `ARRAY(SELECT jsonb_array_elements_text(${param}::text::jsonb))`;

const CREDITS = "SELECT credits_charged AS charged, credits_refunded AS refunded FROM jobs WHERE id = $1";
// Guarded so the refunded total can never pass the charge, whatever the caller computed.
const ADD_REFUND = `UPDATE jobs SET credits_refunded = credits_refunded + $1
  WHERE id = $2 AND credits_refunded + $1 <= credits_charged`;
const TAKE_BACK_REFUND =
  "UPDATE jobs SET credits_refunded = credits_refunded - $1 WHERE id = $2 AND credits_refunded >= $1";
const ITEMS = "SELECT * FROM job_items WHERE job_id = $1 ORDER BY idx";
// The backlog counts ride jobs_recipe_idx (recipe_id, owner_id, status, finished_at, id).
const READY = `SELECT count(*) AS n, min(finished_at) AS oldest FROM jobs
  WHERE recipe_id = $1 AND owner_id = $2 AND status = 'completed'`;
const READY_UP_TO = `SELECT count(*) AS n FROM (SELECT 1 FROM jobs
  WHERE recipe_id = $1 AND owner_id = $2 AND status = 'completed' LIMIT $3) r`;
const IN_FLIGHT =
  "SELECT count(*) AS n FROM jobs WHERE recipe_id = $1 AND owner_id = $2 AND status IN ('queued', 'active')";
const IN_FLIGHT_FOR_RECIPES = `SELECT count(*) AS n FROM jobs WHERE recipe_id = ANY(${ids("$1")}) AND owner_id = $2
  AND status IN ('queued', 'active')`;
const HAS_COMPLETED =
  "SELECT 1 AS x FROM jobs WHERE recipe_id = $1 AND owner_id = $2 AND status = 'completed' LIMIT 1";
// The take of one claim or a group (one statement, one round trip, whatever their number): each claim (`ord`,
// its recipe, claimer and price) is matched to one of its recipe's oldest ready jobs. SKIP LOCKED: concurrent
// claims (on any instance) each take a different row, none waits for another's; a claim finds none only when
// every ready job is taken or being taken. finished_at moves to the claim (the new owner's retention counts
// from when they got the image) and `keep` is cleared. The ended-job counts move from the old owner's scopes
// to the new ones', upserted once per scope in key order, as every count move is, so two claims never
// deadlock on them; a parent shared by both owners nets to no change. Claims of a recipe with too few ready
// jobs are matched in arrival order; the rest get no row.
const TRANSFER_MANY = `WITH want AS MATERIALIZED (
    SELECT w.ord, w.recipe_id, w.to_id, w.price,
      row_number() OVER (PARTITION BY w.recipe_id ORDER BY w.ord) AS rn
    FROM jsonb_to_recordset($1::text::jsonb) AS w(ord int, recipe_id text, to_id text, price bigint)),
  per_recipe AS (SELECT recipe_id, count(*) AS n FROM want GROUP BY recipe_id),
  picked AS MATERIALIZED (
    SELECT p.recipe_id, j.id, row_number() OVER (PARTITION BY p.recipe_id ORDER BY j.finished_at, j.id) AS rn
    FROM per_recipe p CROSS JOIN LATERAL (
      SELECT id, finished_at FROM jobs WHERE recipe_id = p.recipe_id AND owner_id = $2 AND status = 'completed'
      ORDER BY finished_at, id LIMIT p.n FOR UPDATE SKIP LOCKED) j),
  taken AS (
    UPDATE jobs SET owner_id = w.to_id, credits_charged = w.price, finished_at = $3, updated_at = $3,
      metadata = coalesce(jobs.metadata, '{}'::jsonb) || jsonb_build_object('keep', false, 'instant', true,
        'claimedAt', $3::bigint, 'generatedAt', jobs.finished_at)
    FROM want w JOIN picked p ON p.recipe_id = w.recipe_id AND p.rn = w.rn
    WHERE jobs.id = p.id
    RETURNING jobs.*, w.ord AS claim_ord),
  moves AS (
    SELECT m.scope, t.type, t.status, sum(m.delta) AS n FROM taken t
    CROSS JOIN LATERAL (VALUES
      ('u:' || $2, -1), ('c:' || (SELECT parent_id FROM users WHERE id = $2), -1),
      ('u:' || t.owner_id, 1), ('c:' || (SELECT parent_id FROM users WHERE id = t.owner_id), 1)) AS m(scope, delta)
    WHERE m.scope IS NOT NULL
    GROUP BY m.scope, t.type, t.status HAVING sum(m.delta) <> 0),
  counted AS (
    INSERT INTO job_counts (scope, type, status, n) SELECT scope, type, status, n FROM moves ORDER BY scope
    ON CONFLICT (scope, type, status) DO UPDATE SET n = job_counts.n + excluded.n RETURNING 1)
  SELECT * FROM taken`;
const FIRST_ITEM = `SELECT key, input->>'prompt' AS prompt,
    (SELECT count(*) FROM job_items WHERE job_id = $1) AS count
  FROM job_items WHERE job_id = $1 AND idx = 0`;

/** The statements features ask of the queue's tables (see ../feature-store.ts), on PostgreSQL. */
export class PgQueueFeatures implements QueueFeatures {
  readonly #sql: PgClient;

  constructor(sql: PgClient) {
    this.#sql = sql;
  }

  credits(jobId: string): Promise<{ charged: number; refunded: number } | null> {
    return this.#sql.get(CREDITS, [jobId]);
  }

  async addRefund(jobId: string, amount: number): Promise<boolean> {
    return (await this.#sql.run(ADD_REFUND, [amount, jobId])).changes === 1;
  }

  async takeBackRefund(jobId: string, amount: number): Promise<boolean> {
    return (await this.#sql.run(TAKE_BACK_REFUND, [amount, jobId])).changes === 1;
  }

  async items(jobId: string): Promise<JobItem[]> {
    return (await this.#sql.all(ITEMS, [jobId])).map(toItem);
  }

  async ready(recipeId: string, ownerId: string): Promise<{ n: number; oldest: number | null }> {
    return (await this.#sql.get<{ n: number; oldest: number | null }>(READY, [recipeId, ownerId]))!;
  }

  async readyUpTo(recipeId: string, ownerId: string, limit: number): Promise<number> {
    return (await this.#sql.get<{ n: number }>(READY_UP_TO, [recipeId, ownerId, limit]))!.n;
  }

  async inFlight(recipeId: string, ownerId: string): Promise<number> {
    return (await this.#sql.get<{ n: number }>(IN_FLIGHT, [recipeId, ownerId]))!.n;
  }

  async inFlightForRecipes(recipeIds: string[], ownerId: string): Promise<number> {
    return (await this.#sql.get<{ n: number }>(IN_FLIGHT_FOR_RECIPES, [JSON.stringify(recipeIds), ownerId]))!
      .n;
  }

  async hasCompleted(recipeId: string, ownerId: string): Promise<boolean> {
    return (await this.#sql.get(HAS_COMPLETED, [recipeId, ownerId])) != null;
  }

  async transferOldestCompleted(
    recipeId: string,
    from: string,
    to: string,
    price: number,
    now: number,
  ): Promise<Job | null> {
    return (await this.transferOldestCompletedMany(from, [{ recipeId, to, price }], now))[0] ?? null;
  }

  async transferOldestCompletedMany(
    from: string,
    claims: readonly { recipeId: string; to: string; price: number }[],
    now: number,
  ): Promise<(Job | null)[]> {
    const want = claims.map((c, ord) => ({ ord, recipe_id: c.recipeId, to_id: c.to, price: c.price }));
    const rows = await this.#sql.all<Record<string, unknown>>(TRANSFER_MANY, [
      JSON.stringify(want),
      from,
      now,
    ]);
    const out: (Job | null)[] = claims.map(() => null);
    for (const { claim_ord, ...row } of rows) out[Number(claim_ord)] = toJob(row);
    return out;
  }

  firstItem(jobId: string): Promise<{ key: string; prompt: string | null; count: number } | null> {
    return this.#sql.get(FIRST_ITEM, [jobId]);
  }
}
