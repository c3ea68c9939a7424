import type { Job, WebhookEndpoint } from "../../db/schema";
import type { Sql } from "../../db/sql";
import type { Logger } from "../../log";
import type { EventBus, Queue } from "../../queue";
import type { CardEvents } from "../cards/service";
import { callerMetadata } from "../generate/model";
import type { JobOutcome } from "../jobs/service";
import { TEST_EVENT } from "./model";
import type { WebhookRepository } from "./repository";

/** The job type of one delivery. Its own events never produce webhooks (no recursion). */
export const DELIVER_JOB = "webhook.deliver";

export type FanoutOptions = {
  /** A finished job's assets, failed items and metadata, for its terminal webhook (JobService.outcome). */
  describe: (job: Job) => Promise<JobOutcome>;
  /** Plain progress events become at most one `job.progress` webhook per job per window (batch items: each). */
  progressIntervalMs: number;
  now?: () => number;
  /** The card service's events: `card:rendered` becomes a `card.rendered` webhook to the card's owner. */
  cardEvents?: EventBus<CardEvents>;
};

type Target = { ownerId: string; endpointId: string | null; url: string };

const wants = (endpoint: WebhookEndpoint, type: string) =>
  endpoint.events.includes("*") || endpoint.events.includes(type);

/**
 * Turns queue events into pending deliveries, each a row plus a `webhook.deliver` job committed together.
 * Terminal events are enqueued from the queue's `onTerminal` hook, inside the transaction that records the
 * job's end — a crash cannot lose them. Started/progress/card events are enqueued from event listeners
 * after their commit (best effort: a crash in between loses that one notification).
 */
export class WebhookFanout {
  readonly #store: WebhookRepository;
  readonly #sql: Sql;
  readonly #queue: Queue;
  readonly #log: Logger;
  readonly #o: Required<Omit<FanoutOptions, "cardEvents">> & Pick<FanoutOptions, "cardEvents">;
  /** Active endpoints by owner, so a job with no receivers costs one map lookup. */
  #byOwner = new Map<string, WebhookEndpoint[]>();
  readonly #progressAt = new Map<string, number>();
  #off: (() => void)[] = [];

  constructor(store: WebhookRepository, sql: Sql, queue: Queue, log: Logger, opts: FanoutOptions) {
    this.#store = store;
    this.#sql = sql;
    this.#queue = queue;
    this.#log = log;
    this.#o = { now: Date.now, ...opts };
  }

  /** Re-reads the active endpoints (at start, and after any change to them). */
  async reload(): Promise<void> {
    const byOwner = new Map<string, WebhookEndpoint[]>();
    for (const e of await this.#store.activeEndpoints())
      byOwner.set(e.ownerId, [...(byOwner.get(e.ownerId) ?? []), e]);
    this.#byOwner = byOwner;
  }

  async start(): Promise<void> {
    if (this.#off.length > 0) return;
    await this.reload();
    const e = this.#queue.events;
    this.#off = [
      e.on("job:active", ({ job }) => {
        if (job.attempts !== 1) return;
        void this.#safely(() =>
          this.#emitJob(job, "job.started", { attempt: job.attempts, startedAt: job.startedAt }),
        );
      }),
      e.on("job:progress", ({ job, progress, message, completedItems, totalItems }) => {
        if (!this.#interested(job) || this.#throttled(job.id, completedItems !== undefined)) return;
        const data = {
          progress,
          message,
          completedItems: completedItems ?? null,
          totalItems: totalItems ?? null,
        };
        void this.#safely(() => this.#emitJob(job, "job.progress", data));
      }),
    ];
    const cards = this.#o.cardEvents;
    if (cards) {
      this.#off.push(
        cards.on(
          "card:rendered",
          ({ cardId, ownerId, version, imageUrl }) =>
            void this.#safely(() => this.#emitOwner(ownerId, "card.rendered", { cardId, version, imageUrl })),
        ),
      );
    }
  }

  stop(): void {
    for (const off of this.#off) off();
    this.#off = [];
  }

  /**
   * Whether a job that ended may have terminal webhooks to queue (the terminal hook's cheap look at the row).
   * Every ended job passes here, so its progress throttle is forgotten here too.
   */
  wantsTerminal(job: Job): boolean {
    this.#progressAt.delete(job.id);
    return this.#interested(job);
  }

  /** For `QueueOptions.onTerminal`: runs inside the job's terminal-state transaction. */
  async onTerminal(job: Job): Promise<void> {
    if (!this.#interested(job)) return;
    await this.#safely(async () => {
      const ended =
        job.status === "completed" || job.status === "partial"
          ? { result: job.result }
          : { error: job.error };
      // The receiver gets the images, failed items and its metadata here: it needs no follow-up GET.
      const data = { ...ended, ...(await this.#o.describe(job)), finishedAt: job.finishedAt };
      await this.#emitJob(job, `job.${job.status}`, data);
    });
  }

  /** Queues a `webhook.test` event for one endpoint, whatever its filter. Returns the delivery id. */
  async enqueueTest(endpoint: WebhookEndpoint): Promise<string> {
    const data = { endpointId: endpoint.id, message: "test event from Easel" };
    const target = { ownerId: endpoint.ownerId, endpointId: endpoint.id, url: endpoint.url };
    return (await this.#enqueue([target], TEST_EVENT, null, data))[0]!;
  }

  #interested(job: Job): boolean {
    if (job.type === DELIVER_JOB || !job.ownerId) return false;
    return job.webhookUrl !== null || this.#byOwner.size > 0;
  }

  #throttled(jobId: string, isItem: boolean): boolean {
    const now = this.#o.now();
    if (
      !isItem &&
      now - (this.#progressAt.get(jobId) ?? Number.NEGATIVE_INFINITY) < this.#o.progressIntervalMs
    )
      return true;
    this.#progressAt.set(jobId, now);
    if (this.#progressAt.size > 10_000) {
      for (const [id, at] of this.#progressAt) if (now - at > 60_000) this.#progressAt.delete(id);
    }
    return false;
  }

  async #emitJob(job: Job, type: string, extra: Record<string, unknown>): Promise<void> {
    if (!this.#interested(job)) return;
    const ownerId = job.ownerId!;
    const link = await this.#store.userLink(ownerId);
    const targets = this.#endpointsFor(ownerId, link?.parentId ?? null, type);
    // A job's own URL is signed with its account's secret: the app's for its end users' jobs.
    if (job.webhookUrl)
      targets.push({ ownerId: link?.parentId ?? ownerId, endpointId: null, url: job.webhookUrl });
    if (targets.length === 0) return;
    const data = {
      jobId: job.id,
      jobType: job.type,
      status: job.status,
      userId: ownerId,
      externalUserId: link?.externalId ?? null,
      // Every event names the caller's own metadata, so a receiver can file it without a lookup.
      metadata: callerMetadata(job.metadata),
      ...extra,
    };
    await this.#enqueue(targets, type, job.id, data);
  }

  async #emitOwner(ownerId: string, type: string, data: Record<string, unknown>): Promise<void> {
    if (this.#byOwner.size === 0) return;
    const link = await this.#store.userLink(ownerId);
    const targets = this.#endpointsFor(ownerId, link?.parentId ?? null, type);
    if (targets.length > 0) await this.#enqueue(targets, type, null, data);
  }

  /** Endpoints of the owner and of its parent (an app receives its end users' events). */
  #endpointsFor(ownerId: string, parentId: string | null, type: string): Target[] {
    const out: Target[] = [];
    for (const id of parentId ? [ownerId, parentId] : [ownerId]) {
      for (const e of this.#byOwner.get(id) ?? []) {
        if (wants(e, type)) out.push({ ownerId: e.ownerId, endpointId: e.id, url: e.url });
      }
    }
    return out;
  }

  /** One row and one `webhook.deliver` job per target, committed together (or with the caller's transaction). */
  async #enqueue(
    targets: Target[],
    type: string,
    jobId: string | null,
    data: Record<string, unknown>,
  ): Promise<string[]> {
    const now = this.#o.now();
    const payload = JSON.stringify({ type, timestamp: new Date(now).toISOString(), data });
    const ids = targets.map(() => `msg_${Bun.randomUUIDv7()}`);
    // Inside a terminal transaction this is a savepoint (a failed fan-out undoes only itself); on its own, a
    // transaction.
    await this.#sql.savepoint(async () => {
      for (const [i, t] of targets.entries()) {
        await this.#store.insertDelivery({ id: ids[i]!, ...t, jobId, eventType: type, payload, now });
      }
      await this.#queue.enqueueBulk(
        DELIVER_JOB,
        ids.map((deliveryId) => ({ deliveryId })),
        { ownerId: null },
      );
    });
    return ids;
  }

  /** A failing fan-out is logged, never thrown: it must not undo or block the job's own state change. */
  async #safely(fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (err) {
      this.#log.error({ err }, "could not queue webhook deliveries");
    }
  }
}
