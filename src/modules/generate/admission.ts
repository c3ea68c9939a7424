import type { Config } from "../../config";
import type { User } from "../../db/schema";
import { ApiError } from "../../errors";
import type { Queue } from "../../queue";
import { GENERATE_JOB } from "./job";

/**
 * How long a refused caller should wait. The queue gives no honest per-request estimate (how fast it drains
 * depends on providers), so these are fixed: an owner over its limit waits for a few of its own jobs to
 * start; a full queue needs longer to drain below its limit.
 */
export const OWNER_RETRY_AFTER_S = 5;
export const FULL_RETRY_AFTER_S = 15;

export type AdmissionLimits = Pick<Config, "MAX_QUEUED_PER_OWNER" | "MAX_QUEUE_DEPTH">;

export type QueueUsage = {
  limits: { maxQueuedPerOwner: number | null; maxQueueDepth: number | null };
  /** Queued jobs of every kind (what MAX_QUEUE_DEPTH bounds). */
  queued: number;
  /** Owners with the most queued generations (what MAX_QUEUED_PER_OWNER bounds), most first. */
  busiestOwners: { ownerId: string; queued: number }[];
  /** How long the longest-waiting due job has waited, in ms (0 when none waits). */
  oldestWaitingMs: number;
  /** The same per job type, for the types with a due job waiting. */
  oldestWaitingMsByType: Record<string, number>;
};

export type Refusal = "owner_limit" | "queue_full";

/**
 * Back-pressure for user generations: refuses a new one with 429 when its owner already has
 * MAX_QUEUED_PER_OWNER queued, and with 503 when the queue holds MAX_QUEUE_DEPTH jobs, before anything is
 * stored or charged. System work (backlog top-ups, card renders, webhooks) never passes through here.
 */
export class Admission {
  readonly #queue: Queue;
  readonly #limits: AdmissionLimits;
  readonly #onRefuse: ((reason: Refusal) => void)[] = [];

  constructor(queue: Queue, limits: AdmissionLimits) {
    this.#queue = queue;
    this.#limits = limits;
  }

  /** Called for every refusal (metrics count them). */
  onRefuse(fn: (reason: Refusal) => void): void {
    this.#onRefuse.push(fn);
  }

  /**
   * Throws the 429/503 when `owner` may not queue another generation now. Not atomic with the insert that
   * follows: requests racing past the check together can overshoot a limit by their number, which a
   * limit meant for back-pressure tolerates (an exact one would hold the write lock across the request).
   */
  async admit(owner: User): Promise<void> {
    const { MAX_QUEUED_PER_OWNER: perOwner, MAX_QUEUE_DEPTH: depth } = this.#limits;
    if (perOwner > 0 && owner.role !== "system") {
      const queued = await this.#queue.depth.ownerQueued(owner.id, GENERATE_JOB, perOwner);
      if (queued >= perOwner) {
        this.#refused("owner_limit");
        throw new ApiError(
          429,
          "too_many_queued",
          `this user already has ${queued} generations queued (the limit is ${perOwner}); retry when some have started`,
          {
            details: { queued, limit: perOwner, retryAfterMs: OWNER_RETRY_AFTER_S * 1000 },
            headers: { "retry-after": String(OWNER_RETRY_AFTER_S) },
          },
        );
      }
    }
    if (depth > 0) {
      const queued = await this.#queue.depth.queued(depth);
      if (queued >= depth) {
        this.#refused("queue_full");
        throw new ApiError(503, "queue_full", `the server's queue is full (${depth} jobs); retry later`, {
          details: { limit: depth, retryAfterMs: FULL_RETRY_AFTER_S * 1000 },
          headers: { "retry-after": String(FULL_RETRY_AFTER_S) },
        });
      }
    }
  }

  /** The limits and how much of them is in use (reads every queued job: for status views, not per request). */
  async usage(busiest = 10): Promise<QueueUsage> {
    const depth = this.#queue.depth;
    const now = this.#queue.now();
    const byType: Record<string, number> = {};
    for (const [type, dueAt] of await depth.oldestDueByType(now)) byType[type] = Math.max(0, now - dueAt);
    return {
      limits: {
        maxQueuedPerOwner: this.#limits.MAX_QUEUED_PER_OWNER || null,
        maxQueueDepth: this.#limits.MAX_QUEUE_DEPTH || null,
      },
      queued: await depth.queued(),
      busiestOwners: await depth.busiestOwners(GENERATE_JOB, busiest),
      oldestWaitingMs: Math.max(0, ...Object.values(byType)),
      oldestWaitingMsByType: byType,
    };
  }

  #refused(reason: Refusal): void {
    for (const fn of this.#onRefuse) fn(reason);
  }
}
