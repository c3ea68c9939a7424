import type { Config } from "../../config";
import type { Job, WebhookDelivery, WebhookEndpoint } from "../../db/schema";
import type { Sql } from "../../db/sql";
import { notFound, unprocessable, urlNotAllowed } from "../../errors";
import type { Logger } from "../../log";
import { assertPublicUrl, OutboundFetchError, UrlGuardError } from "../../net/url-guard";
import { type Queue, yieldToEventLoop } from "../../queue";
import { type AuthService, isAdminKey, type Principal } from "../auth/service";
import type { CardService } from "../cards/service";
import type { JobService } from "../jobs/service";
import { deliveryJob } from "./deliver";
import { WebhookFanout } from "./fanout";

export { DELIVER_JOB } from "./fanout";

import type { CreateEndpointBody, DeliveriesQuery, DeliveryView, EndpointView } from "./model";
import { WebhookRepository } from "./repository";

export type WebhookOptions = {
  allowPrivateUrls: boolean;
  timeoutMs: number;
  retrySchedule: readonly number[];
  retryScale: number;
  concurrency: number;
  /** An endpoint failing without a success for this long shows as `failing`. */
  failingAfterMs: number;
  progressIntervalMs: number;
  /** Finished deliveries are deleted after this. */
  retainHours: number;
  /** Endpoints one owner may register. @defaultValue 20 */
  maxEndpoints?: number;
  now?: () => number;
};

export function webhookOptions(config: Config): WebhookOptions {
  return {
    allowPrivateUrls: config.ALLOW_PRIVATE_URLS,
    timeoutMs: config.WEBHOOK_TIMEOUT_MS,
    retrySchedule: config.WEBHOOK_RETRY_SCHEDULE,
    retryScale: config.WEBHOOK_RETRY_SCALE,
    concurrency: config.WEBHOOK_CONCURRENCY,
    failingAfterMs: config.WEBHOOK_FAILING_AFTER_MS,
    progressIntervalMs: config.WEBHOOK_PROGRESS_INTERVAL_MS,
    retainHours: config.RETAIN_FAILED_HOURS,
  };
}

export function deliveryView(d: WebhookDelivery): DeliveryView {
  return {
    id: d.id,
    endpointId: d.endpointId,
    jobId: d.jobId,
    url: d.url,
    eventType: d.eventType,
    status: d.status,
    attempts: d.attempts,
    nextAttemptAt: d.nextAttemptAt,
    lastAttemptAt: d.lastAttemptAt,
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    lastDurationMs: d.lastDurationMs,
    createdAt: d.createdAt,
    deliveredAt: d.deliveredAt,
  };
}

/** Deliveries deleted per transaction by `prune`: a few milliseconds of work between event-loop turns. */
const PRUNE_SLICE = 2000;

/**
 * Registered endpoints, per-account signing secrets, and the delivery pipeline (fan-out + `webhook.deliver`).
 * Construct before the queue starts: it registers the delivery job type.
 */
export class WebhookService {
  readonly store: WebhookRepository;
  readonly fanout: WebhookFanout;
  readonly #auth: AuthService;
  readonly #o: Required<WebhookOptions>;
  #pruneTimer: ReturnType<typeof setInterval> | null = null;

  constructor(
    deps: {
      sql: Sql;
      queue: Queue;
      auth: AuthService;
      log: Logger;
      jobs: Pick<JobService, "outcome">;
      cards?: Pick<CardService, "events">;
    },
    opts: WebhookOptions,
  ) {
    this.#o = { maxEndpoints: 20, now: Date.now, ...opts };
    this.#auth = deps.auth;
    this.store = new WebhookRepository(deps.sql);
    this.fanout = new WebhookFanout(this.store, deps.sql, deps.queue, deps.log, {
      progressIntervalMs: opts.progressIntervalMs,
      now: this.#o.now,
      describe: (job) => deps.jobs.outcome(job),
      cardEvents: deps.cards?.events,
    });
    deps.queue.define(deliveryJob(this.store, deps.log, { ...this.#o }, () => this.fanout.reload()));
  }

  /** Whether a job that ended may have terminal webhooks (the terminal hook's cheap look at the row). */
  wantsTerminal(job: Job): boolean {
    return this.fanout.wantsTerminal(job);
  }

  /** For `QueueOptions.onTerminal`: queues the job's terminal webhooks inside its terminal transaction. */
  onJobTerminal(job: Job): Promise<void> {
    return this.fanout.onTerminal(job);
  }

  /** Loads the endpoints, then follows the queue's events. */
  async start(): Promise<void> {
    await this.fanout.start();
    this.#pruneTimer ??= setInterval(() => void this.prune().catch(() => undefined), 3_600_000);
    this.#pruneTimer.unref?.();
  }

  stop(): void {
    this.fanout.stop();
    if (this.#pruneTimer) clearInterval(this.#pruneTimer);
    this.#pruneTimer = null;
  }

  /** Deletes finished deliveries past retention in slices, yielding between them. Returns how many. */
  async prune(signal?: AbortSignal): Promise<number> {
    const before = this.#o.now() - this.#o.retainHours * 3_600_000;
    let removed = 0;
    for (;;) {
      const n = await this.store.prune(before, PRUNE_SLICE);
      removed += n;
      if (n < PRUNE_SLICE || signal?.aborted) return removed;
      await yieldToEventLoop();
    }
  }

  /**
   * Refuses a URL the server must not call (loopback, private, link-local, metadata…, unless
   * ALLOW_PRIVATE_URLS): 422 `url_not_allowed`. Job creation calls this for a job's `webhookUrl`.
   */
  async checkUrl(url: string): Promise<void> {
    try {
      await assertPublicUrl(url, { allowPrivate: this.#o.allowPrivateUrls });
    } catch (err) {
      if (err instanceof UrlGuardError) throw urlNotAllowed(err.message, err.reason);
      if (err instanceof OutboundFetchError)
        throw unprocessable("url_not_allowed", `URL not allowed: ${err.message}`, { reason: err.code });
      throw err;
    }
  }

  /** Registers an endpoint; its secret is in this response only. */
  async createEndpoint(p: Principal, body: CreateEndpointBody) {
    await this.checkUrl(body.url);
    if ((await this.store.countEndpoints(p.user.id)) >= this.#o.maxEndpoints) {
      throw unprocessable("too_many_endpoints", `at most ${this.#o.maxEndpoints} webhook endpoints per user`);
    }
    const events = body.events?.includes("*") || !body.events ? ["*"] : [...new Set(body.events)];
    const endpoint = await this.store.createEndpoint({
      ownerId: p.user.id,
      url: body.url,
      events,
      now: this.#o.now(),
    });
    await this.fanout.reload();
    return { ...this.#view(endpoint), secret: endpoint.secret };
  }

  /** The caller's endpoints (admins: everyone's). */
  async listEndpoints(p: Principal) {
    const all = isAdminKey(p);
    return { endpoints: (await this.store.listEndpoints(all ? null : p.user.id)).map((e) => this.#view(e)) };
  }

  async getEndpoint(p: Principal, id: string) {
    return this.#view(await this.#visible(p, id));
  }

  async deleteEndpoint(p: Principal, id: string): Promise<void> {
    await this.store.deleteEndpoint((await this.#visible(p, id)).id);
    await this.fanout.reload();
  }

  /** Queues a `webhook.test` event to the endpoint; follow it in its deliveries. */
  async test(p: Principal, id: string) {
    const endpoint = await this.#visible(p, id);
    if (!endpoint.active)
      throw unprocessable("endpoint_disabled", `endpoint is disabled (${endpoint.disabledReason})`);
    return { deliveryId: await this.fanout.enqueueTest(endpoint) };
  }

  async endpointDeliveries(p: Principal, id: string, q: DeliveriesQuery) {
    const endpoint = await this.#visible(p, id);
    return this.#page(
      await this.store.listDeliveries({ ...q, endpointId: endpoint.id, limit: q.limit + 1 }),
      q.limit,
    );
  }

  /** Every delivery of the caller's account: its endpoints' and its jobs' own `webhookUrl`s. */
  /** Recent deliveries: the caller's (an admin key: everyone's, as with endpoints). */
  async deliveries(p: Principal, q: DeliveriesQuery) {
    const all = isAdminKey(p);
    const ownerId = all ? undefined : p.user.id;
    return this.#page(await this.store.listDeliveries({ ...q, ownerId, limit: q.limit + 1 }), q.limit);
  }

  /** The secret that signs the caller's per-job webhooks (created on first use). */
  async ownerSecret(p: Principal) {
    const s = await this.store.ownerSecret(p.user.id, this.#o.now());
    return { secret: s.secret, rotatedAt: s.rotatedAt };
  }

  /** Replaces the per-job secret; the old one keeps signing alongside for a day. */
  async rotateOwnerSecret(p: Principal) {
    const now = this.#o.now();
    return { secret: await this.store.rotateSecret(p.user.id, now), rotatedAt: now };
  }

  async #visible(p: Principal, id: string): Promise<WebhookEndpoint> {
    const endpoint = await this.store.endpoint(id);
    if (!endpoint || !(await this.#auth.canAccess(p, endpoint.ownerId))) throw notFound("webhook endpoint");
    return endpoint;
  }

  #page(rows: WebhookDelivery[], limit: number) {
    const deliveries = rows.slice(0, limit).map(deliveryView);
    return { deliveries, nextCursor: rows.length > limit ? (deliveries.at(-1)?.id ?? null) : null };
  }

  #view(e: WebhookEndpoint): EndpointView {
    const failing = e.failingSince !== null && this.#o.now() - e.failingSince >= this.#o.failingAfterMs;
    return {
      id: e.id,
      url: e.url,
      events: e.events,
      status: !e.active ? "disabled" : failing ? "failing" : "active",
      failureCount: e.failureCount,
      failingSince: e.failingSince,
      disabledReason: e.disabledReason,
      createdAt: e.createdAt,
      updatedAt: e.updatedAt,
    };
  }
}
