import type { Job, WebhookEndpoint } from "../../db/schema";
import type { Logger } from "../../log";
import type { Queue } from "../../queue";
import { callerMetadata } from "../generate/model";
import type { JobOutcome } from "../jobs/service";
import { TEST_EVENT } from "./model";
import type { WebhookStore } from "./store";

/** The job type of one delivery. Its own events never produce webhooks (no recursion). */
export const DELIVER_JOB = "webhook.deliver";

export type FanoutOptions = {
  /** A finished job's assets, failed items and metadata, for its terminal webhook (JobService.outcome). */
  describe: (job: Job) => JobOutcome;
  /** Plain progress events become at most one `job.progress` webhook per job per window (batch items: each). */
  progressIntervalMs: number;
  now?: () => number;
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
  readonly #store: WebhookStore;
  readonly #queue: Queue;
  readonly #log: Logger;
  readonly #o: Required<FanoutOptions>;
  /** Active endpoints by owner, so a job with no receivers costs one map lookup. */
  #byOwner = new Map<string, WebhookEndpoint[]>();
  readonly #progressAt = new Map<string, number>();
  #off: (() => void)[] = [];

  constructor(store: WebhookStore, queue: Queue, log: Logger, opts: FanoutOptions) {
    this.#store = store;
    this.#queue = queue;
    this.#log = log;
    this.#o = { now: Date.now, ...opts };
    this.reload();
  }

  /** Re-reads the active endpoints (after any change to them). */
  reload(): void {
    const byOwner = new Map<string, WebhookEndpoint[]>();
    for (const e of this.#store.activeEndpoints())
      byOwner.set(e.ownerId, [...(byOwner.get(e.ownerId) ?? []), e]);
    this.#byOwner = byOwner;
  }

  start(): void {
    if (this.#off.length > 0) return;
    const e = this.#queue.events;
    this.#off = [
      e.on("job:active", ({ job }) => {
        if (job.attempts !== 1) return;
        this.#safely(() =>
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
        this.#safely(() => this.#emitJob(job, "job.progress", data));
      }),
      e.on("card:rendered", ({ cardId, ownerId, version, imageUrl }) =>
        this.#safely(() => this.#emitOwner(ownerId, "card.rendered", { cardId, version, imageUrl })),
      ),
    ];
  }

  stop(): void {
    for (const off of this.#off) off();
    this.#off = [];
  }

  /** For `QueueOptions.onTerminal`: runs inside the job's terminal-state transaction. */
  onTerminal(job: Job): void {
    this.#progressAt.delete(job.id);
    if (!this.#interested(job)) return;
    this.#safely(() => {
      const ended =
        job.status === "completed" || job.status === "partial"
          ? { result: job.result }
          : { error: job.error };
      // The receiver gets the images, failed items and its metadata here: it needs no follow-up GET.
      const data = { ...ended, ...this.#o.describe(job), finishedAt: job.finishedAt };
      this.#emitJob(job, `job.${job.status}`, data);
    });
  }

  /** Queues a `webhook.test` event for one endpoint, whatever its filter. Returns the delivery id. */
  enqueueTest(endpoint: WebhookEndpoint): string {
    const data = { endpointId: endpoint.id, message: "test event from Easel" };
    const target = { ownerId: endpoint.ownerId, endpointId: endpoint.id, url: endpoint.url };
    return this.#enqueue([target], TEST_EVENT, null, data)[0]!;
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

  #emitJob(job: Job, type: string, extra: Record<string, unknown>): void {
    if (!this.#interested(job)) return;
    const ownerId = job.ownerId!;
    const link = this.#store.userLink(ownerId);
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
    this.#enqueue(targets, type, job.id, data);
  }

  #emitOwner(ownerId: string, type: string, data: Record<string, unknown>): void {
    if (this.#byOwner.size === 0) return;
    const targets = this.#endpointsFor(ownerId, this.#store.userLink(ownerId)?.parentId ?? null, type);
    if (targets.length > 0) this.#enqueue(targets, type, null, data);
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
  #enqueue(targets: Target[], type: string, jobId: string | null, data: Record<string, unknown>): string[] {
    const now = this.#o.now();
    const payload = JSON.stringify({ type, timestamp: new Date(now).toISOString(), data });
    const ids = targets.map(() => `msg_${Bun.randomUUIDv7()}`);
    const sqlite = this.#store.db.$client;
    const write = sqlite.transaction(() => {
      targets.forEach((t, i) => {
        this.#store.insertDelivery({ id: ids[i]!, ...t, jobId, eventType: type, payload, now });
      });
      this.#queue.enqueueBulk(
        DELIVER_JOB,
        ids.map((deliveryId) => ({ deliveryId })),
        { ownerId: null },
      );
    });
    // Nested in a terminal transaction this is a savepoint; on its own it takes the write lock up front.
    if (sqlite.inTransaction) write();
    else write.immediate();
    return ids;
  }

  /** A failing fan-out is logged, never thrown: it must not undo or block the job's own state change. */
  #safely(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.#log.error({ err }, "could not queue webhook deliveries");
    }
  }
}
