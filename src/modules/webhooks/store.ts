import type { Statement } from "bun:sqlite";
import { and, desc, eq, lt, sql } from "drizzle-orm";
import type { Db } from "../../db/client";
import {
  type DeliveryStatus,
  type WebhookDelivery,
  type WebhookEndpoint,
  webhookDeliveries,
  webhookEndpoints,
  webhookSecrets,
} from "../../db/schema";
import { generateSecret } from "./signing";

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

/** All webhook SQL. The fan-out insert runs inside job terminal transactions, so it is a prepared statement. */
export class WebhookStore {
  readonly db: Db;
  readonly #insertDelivery: Statement;
  readonly #userLink: Statement;

  constructor(db: Db) {
    this.db = db;
    this.#insertDelivery = db.$client.prepare(
      `INSERT INTO webhook_deliveries (id, owner_id, endpoint_id, job_id, url, event_type, payload, status, attempts,
         created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?)`,
    );
    this.#userLink = db.$client.prepare(
      "SELECT parent_id AS parentId, external_id AS externalId FROM users WHERE id = ?",
    );
  }

  /** Inserts a pending delivery (caller's transaction). */
  insertDelivery(d: NewDelivery): void {
    this.#insertDelivery.run(
      d.id,
      d.ownerId,
      d.endpointId,
      d.jobId,
      d.url,
      d.eventType,
      d.payload,
      d.now,
      d.now,
    );
  }

  /** A user's parent (the app that created it) and external id; null for an unknown user. */
  userLink(userId: string): { parentId: string | null; externalId: string | null } | null {
    return this.#userLink.get(userId) as { parentId: string | null; externalId: string | null } | null;
  }

  activeEndpoints(): WebhookEndpoint[] {
    return this.db.select().from(webhookEndpoints).where(eq(webhookEndpoints.active, true)).all();
  }

  endpoint(id: string): WebhookEndpoint | null {
    return this.db.select().from(webhookEndpoints).where(eq(webhookEndpoints.id, id)).get() ?? null;
  }

  createEndpoint(e: { ownerId: string; url: string; events: string[]; now: number }): WebhookEndpoint {
    return this.db
      .insert(webhookEndpoints)
      .values({
        id: Bun.randomUUIDv7(),
        ownerId: e.ownerId,
        url: e.url,
        secret: generateSecret(),
        events: e.events,
        createdAt: e.now,
        updatedAt: e.now,
      })
      .returning()
      .get();
  }

  /** Endpoints of one owner (all owners when null), newest first. */
  listEndpoints(ownerId: string | null): WebhookEndpoint[] {
    const q = this.db.select().from(webhookEndpoints);
    return (ownerId ? q.where(eq(webhookEndpoints.ownerId, ownerId)) : q)
      .orderBy(desc(webhookEndpoints.id))
      .all();
  }

  countEndpoints(ownerId: string): number {
    const row = this.db
      .select({ n: sql<number>`count(*)` })
      .from(webhookEndpoints)
      .where(eq(webhookEndpoints.ownerId, ownerId))
      .get();
    return row?.n ?? 0;
  }

  /** Deletes an endpoint and (cascade) its deliveries; their pending jobs then find nothing to send. */
  deleteEndpoint(id: string): boolean {
    return this.db.$client.query("DELETE FROM webhook_endpoints WHERE id = ?").run(id).changes > 0;
  }

  disableEndpoint(id: string, reason: string, now: number): void {
    this.db
      .update(webhookEndpoints)
      .set({ active: false, disabledReason: reason, updatedAt: now })
      .where(eq(webhookEndpoints.id, id))
      .run();
  }

  delivery(id: string): WebhookDelivery | null {
    return this.db.select().from(webhookDeliveries).where(eq(webhookDeliveries.id, id)).get() ?? null;
  }

  /**
   * Records one attempt and its effect on the endpoint's health in one transaction: a success clears the
   * failure streak; a failure counts it and starts `failing_since` if not already failing.
   */
  recordAttempt(d: WebhookDelivery, a: AttemptRecord): void {
    this.db.transaction((tx) => {
      tx.update(webhookDeliveries)
        .set({
          attempts: sql`${webhookDeliveries.attempts} + 1`,
          status: a.delivered ? "delivered" : "pending",
          lastAttemptAt: a.at,
          lastStatusCode: a.statusCode,
          lastError: a.error,
          lastDurationMs: a.durationMs,
          nextAttemptAt: a.nextAttemptAt,
          deliveredAt: a.delivered ? a.at : null,
          updatedAt: a.at,
        })
        .where(eq(webhookDeliveries.id, d.id))
        .run();
      if (!d.endpointId) return;
      tx.update(webhookEndpoints)
        .set(
          a.delivered
            ? { failureCount: 0, failingSince: null, updatedAt: a.at }
            : {
                failureCount: sql`${webhookEndpoints.failureCount} + 1`,
                failingSince: sql`coalesce(${webhookEndpoints.failingSince}, ${a.at})`,
                updatedAt: a.at,
              },
        )
        .where(eq(webhookEndpoints.id, d.endpointId))
        .run();
    });
  }

  /** Marks a still-pending delivery failed (its job ended without delivering it). */
  failDelivery(id: string, error: string, now: number): void {
    this.db
      .update(webhookDeliveries)
      .set({ status: "failed", lastError: error, nextAttemptAt: null, updatedAt: now })
      .where(and(eq(webhookDeliveries.id, id), eq(webhookDeliveries.status, "pending")))
      .run();
  }

  listDeliveries(f: {
    ownerId?: string;
    endpointId?: string;
    status?: DeliveryStatus;
    jobId?: string;
    cursor?: string;
    limit: number;
  }): WebhookDelivery[] {
    const where = [
      f.ownerId ? eq(webhookDeliveries.ownerId, f.ownerId) : undefined,
      f.endpointId ? eq(webhookDeliveries.endpointId, f.endpointId) : undefined,
      f.status ? eq(webhookDeliveries.status, f.status) : undefined,
      f.jobId ? eq(webhookDeliveries.jobId, f.jobId) : undefined,
      f.cursor ? lt(webhookDeliveries.id, f.cursor) : undefined,
    ];
    return this.db
      .select()
      .from(webhookDeliveries)
      .where(and(...where))
      .orderBy(desc(webhookDeliveries.id))
      .limit(f.limit)
      .all();
  }

  /** Deletes up to `limit` finished deliveries created before `before` (one slice; the caller loops). */
  prune(before: number, limit: number): number {
    return this.db.$client
      .query(
        `DELETE FROM webhook_deliveries WHERE rowid IN (SELECT rowid FROM webhook_deliveries
           INDEXED BY webhook_deliveries_created_idx WHERE created_at < ? AND status != 'pending' LIMIT ?)`,
      )
      .run(before, limit).changes;
  }

  /** The owner's per-job webhook secret, created on first use. */
  ownerSecret(
    ownerId: string,
    now: number,
  ): { secret: string; previousSecret: string | null; rotatedAt: number | null } {
    this.db
      .insert(webhookSecrets)
      .values({ ownerId, secret: generateSecret(), createdAt: now })
      .onConflictDoNothing()
      .run();
    return this.db
      .select({
        secret: webhookSecrets.secret,
        previousSecret: webhookSecrets.previousSecret,
        rotatedAt: webhookSecrets.rotatedAt,
      })
      .from(webhookSecrets)
      .where(eq(webhookSecrets.ownerId, ownerId))
      .get()!;
  }

  /** Secrets that sign the owner's per-job webhooks now: the current one, plus the previous during its grace. */
  signingSecrets(ownerId: string, now: number): string[] {
    const s = this.ownerSecret(ownerId, now);
    const inGrace = s.previousSecret && s.rotatedAt !== null && now - s.rotatedAt < SECRET_ROTATION_GRACE_MS;
    return inGrace ? [s.secret, s.previousSecret!] : [s.secret];
  }

  rotateSecret(ownerId: string, now: number): string {
    const current = this.ownerSecret(ownerId, now);
    const secret = generateSecret();
    this.db
      .update(webhookSecrets)
      .set({ secret, previousSecret: current.secret, rotatedAt: now })
      .where(eq(webhookSecrets.ownerId, ownerId))
      .run();
    return secret;
  }
}
