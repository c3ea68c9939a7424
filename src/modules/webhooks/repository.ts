import { columnList, insertStatement, rowEncoder, rowMapper } from "../../db/rows";
import {
  type DeliveryStatus,
  type WebhookDelivery,
  type WebhookEndpoint,
  webhookDeliveries,
  webhookEndpoints,
} from "../../db/schema";
import type { Sql, SqlParam } from "../../db/sql";
import { generateSecret } from "./signing";

const ENDPOINT_COLUMNS = columnList(webhookEndpoints);
const DELIVERY_COLUMNS = columnList(webhookDeliveries);
const toEndpoint = rowMapper(webhookEndpoints);
const toDelivery = rowMapper(webhookDeliveries);
const encodeEndpoint = rowEncoder(webhookEndpoints);
const INSERT_ENDPOINT = insertStatement(webhookEndpoints);

export type NewDelivery = {
  id: string;
  ownerId: string;
  endpointId: string | null;
  jobId: string | null;
  url: string;
  eventType: string;
  payload: string;
  now: number;
};

export type AttemptRecord = {
  at: number;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
  delivered: boolean;
  /** When the next attempt is due; null when there is none. */
  nextAttemptAt: number | null;
};

/** How long a rotated-out owner secret still signs (as a second signature). */
export const SECRET_ROTATION_GRACE_MS = 24 * 3_600_000;

/** The owner secret row as the signing code reads it. */
export type OwnerSecret = { secret: string; previousSecret: string | null; rotatedAt: number | null };

/** All webhook SQL: endpoints, per-account secrets and deliveries. */
export class WebhookRepository {
  readonly #sql: Sql;

  constructor(sql: Sql) {
    this.#sql = sql;
  }

  /** Inserts a pending delivery (caller's transaction). */
  async insertDelivery(d: NewDelivery): Promise<void> {
    await this.#sql.run(
      `INSERT INTO webhook_deliveries (id, owner_id, endpoint_id, job_id, url, event_type, payload, status, attempts,
         created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)`,
      [d.id, d.ownerId, d.endpointId, d.jobId, d.url, d.eventType, d.payload, d.now, d.now],
    );
  }

  /** A user's parent (the app that created it) and external id; null for an unknown user. */
  userLink(userId: string): Promise<{ parentId: string | null; externalId: string | null } | null> {
    return this.#sql.get<{ parentId: string | null; externalId: string | null }>(
      'SELECT parent_id AS "parentId", external_id AS "externalId" FROM users WHERE id = ?',
      [userId],
    );
  }

  async activeEndpoints(): Promise<WebhookEndpoint[]> {
    const rows = await this.#sql.all(`SELECT ${ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE active`);
    return rows.map(toEndpoint);
  }

  async endpoint(id: string): Promise<WebhookEndpoint | null> {
    const row = await this.#sql.get(`SELECT ${ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?`, [id]);
    return row ? toEndpoint(row) : null;
  }

  async createEndpoint(e: {
    ownerId: string;
    url: string;
    events: string[];
    now: number;
  }): Promise<WebhookEndpoint> {
    const endpoint: WebhookEndpoint = {
      id: Bun.randomUUIDv7(),
      ownerId: e.ownerId,
      url: e.url,
      secret: generateSecret(),
      events: e.events,
      active: true,
      failureCount: 0,
      failingSince: null,
      disabledReason: null,
      createdAt: e.now,
      updatedAt: e.now,
    };
    await this.#sql.run(INSERT_ENDPOINT, encodeEndpoint(endpoint));
    return endpoint;
  }

  /** Endpoints of one owner (all owners when null), newest first. */
  async listEndpoints(ownerId: string | null): Promise<WebhookEndpoint[]> {
    const rows = ownerId
      ? await this.#sql.all(
          `SELECT ${ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE owner_id = ? ORDER BY id DESC`,
          [ownerId],
        )
      : await this.#sql.all(`SELECT ${ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY id DESC`);
    return rows.map(toEndpoint);
  }

  async countEndpoints(ownerId: string): Promise<number> {
    const row = await this.#sql.get<{ n: number }>(
      "SELECT count(*) AS n FROM webhook_endpoints WHERE owner_id = ?",
      [ownerId],
    );
    return row?.n ?? 0;
  }

  /** Deletes an endpoint and (cascade) its deliveries; their pending jobs then find nothing to send. */
  async deleteEndpoint(id: string): Promise<boolean> {
    return (await this.#sql.run("DELETE FROM webhook_endpoints WHERE id = ?", [id])).changes > 0;
  }

  async disableEndpoint(id: string, reason: string, now: number): Promise<void> {
    await this.#sql.run(
      "UPDATE webhook_endpoints SET active = ?, disabled_reason = ?, updated_at = ? WHERE id = ?",
      [0, reason, now, id],
    );
  }

  async delivery(id: string): Promise<WebhookDelivery | null> {
    const row = await this.#sql.get(`SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?`, [id]);
    return row ? toDelivery(row) : null;
  }

  /**
   * Takes the next attempt of a pending delivery: true for exactly one of several callers that read it with
   * `attempts` made, once its scheduled time has come. The winner's claim holds `next_attempt_at` at
   * `leaseUntil` until it records the attempt, so a second run of the same delivery (a job re-run after a
   * lost lease, on another instance) cannot send it again meanwhile; if the winner dies, the lease lapses.
   */
  async claimAttempt(id: string, attempts: number, now: number, leaseUntil: number): Promise<boolean> {
    const { changes } = await this.#sql.run(
      `UPDATE webhook_deliveries SET next_attempt_at = ?, updated_at = ?
       WHERE id = ? AND status = 'pending' AND attempts = ? AND coalesce(next_attempt_at, 0) <= ?`,
      [leaseUntil, now, id, attempts, now],
    );
    return changes === 1;
  }

  /**
   * Records one attempt and its effect on the endpoint's health in one transaction: a success clears the
   * failure streak; a failure counts it and starts `failing_since` if not already failing.
   */
  recordAttempt(d: WebhookDelivery, a: AttemptRecord): Promise<void> {
    return this.#sql.transaction(async () => {
      await this.#sql.run(
        `UPDATE webhook_deliveries SET attempts = attempts + 1, status = ?, last_attempt_at = ?, last_status_code = ?,
           last_error = ?, last_duration_ms = ?, next_attempt_at = ?, delivered_at = ?, updated_at = ? WHERE id = ?`,
        [
          a.delivered ? "delivered" : "pending",
          a.at,
          a.statusCode,
          a.error,
          a.durationMs,
          a.nextAttemptAt,
          a.delivered ? a.at : null,
          a.at,
          d.id,
        ],
      );
      if (!d.endpointId) return;
      if (a.delivered) {
        await this.#sql.run(
          "UPDATE webhook_endpoints SET failure_count = 0, failing_since = NULL, updated_at = ? WHERE id = ?",
          [a.at, d.endpointId],
        );
      } else {
        await this.#sql.run(
          `UPDATE webhook_endpoints SET failure_count = failure_count + 1, failing_since = coalesce(failing_since, ?),
             updated_at = ? WHERE id = ?`,
          [a.at, a.at, d.endpointId],
        );
      }
    });
  }

  /** Marks a still-pending delivery failed (its job ended without delivering it). */
  async failDelivery(id: string, error: string, now: number): Promise<void> {
    await this.#sql.run(
      `UPDATE webhook_deliveries SET status = 'failed', last_error = ?, next_attempt_at = NULL, updated_at = ?
       WHERE id = ? AND status = 'pending'`,
      [error, now, id],
    );
  }

  async listDeliveries(f: {
    ownerId?: string;
    endpointId?: string;
    status?: DeliveryStatus;
    jobId?: string;
    cursor?: string;
    limit: number;
  }): Promise<WebhookDelivery[]> {
    const where: string[] = [];
    const params: SqlParam[] = [];
    const filter = (sql: string, v: string | undefined) => {
      if (v === undefined) return;
      where.push(sql);
      params.push(v);
    };
    filter("owner_id = ?", f.ownerId);
    filter("endpoint_id = ?", f.endpointId);
    filter("status = ?", f.status);
    filter("job_id = ?", f.jobId);
    filter("id < ?", f.cursor);
    const rows = await this.#sql.all(
      `SELECT ${DELIVERY_COLUMNS} FROM webhook_deliveries${where.length ? ` WHERE ${where.join(" AND ")}` : ""}
       ORDER BY id DESC LIMIT ?`,
      [...params, f.limit],
    );
    return rows.map(toDelivery);
  }

  /** Deletes up to `limit` finished deliveries created before `before` (one slice; the caller loops). */
  async prune(before: number, limit: number): Promise<number> {
    const { changes } = await this.#sql.run(
      `DELETE FROM webhook_deliveries WHERE id IN (SELECT id FROM webhook_deliveries
         WHERE created_at < ? AND status != 'pending' LIMIT ?)`,
      [before, limit],
    );
    return changes;
  }

  /** The owner's per-job webhook secret, created on first use. */
  async ownerSecret(ownerId: string, now: number): Promise<OwnerSecret> {
    await this.#sql.run(
      "INSERT INTO webhook_secrets (owner_id, secret, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
      [ownerId, generateSecret(), now],
    );
    const row = await this.#sql.get<{
      secret: string;
      previous_secret: string | null;
      rotated_at: number | null;
    }>("SELECT secret, previous_secret, rotated_at FROM webhook_secrets WHERE owner_id = ?", [ownerId]);
    return { secret: row!.secret, previousSecret: row!.previous_secret, rotatedAt: row!.rotated_at };
  }

  /** Secrets that sign the owner's per-job webhooks now: the current one, plus the previous during its grace. */
  async signingSecrets(ownerId: string, now: number): Promise<string[]> {
    const s = await this.ownerSecret(ownerId, now);
    const inGrace = s.previousSecret && s.rotatedAt !== null && now - s.rotatedAt < SECRET_ROTATION_GRACE_MS;
    return inGrace ? [s.secret, s.previousSecret!] : [s.secret];
  }

  rotateSecret(ownerId: string, now: number): Promise<string> {
    return this.#sql.transaction(async () => {
      const current = await this.ownerSecret(ownerId, now);
      const secret = generateSecret();
      await this.#sql.run(
        "UPDATE webhook_secrets SET secret = ?, previous_secret = ?, rotated_at = ? WHERE owner_id = ?",
        [secret, current.secret, now, ownerId],
      );
      return secret;
    });
  }
}
