import { isTerminalStatus, type Job } from "../../db/schema";
import type { EventBus } from "../../queue";
import type { CardEvents } from "../cards/service";
import { Coalescer } from "./coalescer";
import {
  type DescribeOutcome,
  type JobFrame,
  type ProgressFrame,
  type ServerFrame,
  terminalFrame,
} from "./model";
import type { FrameRelay, RelayedFrame } from "./relay";

/** The part of Bun's server the hub needs: native topic fan-out. */
export type Publisher = { publish(topic: string, data: string, compress?: boolean): number };

/** An SSE stream of one job: gets each frame already encoded as an SSE event. */
export type FrameListener = (chunk: Uint8Array, terminal: boolean) => void;

export const jobTopic = (jobId: string) => `job:${jobId}`;
export const userTopic = (userId: string) => `user:${userId}`;

/** The SSE id of a job's terminal event: stable for one run, so a client that saw it can say so. */
export const terminalEventId = (job: Job) => `done-${job.finishedAt ?? 0}`;

const encoder = new TextEncoder();

/** One SSE event; `data` is the frame's JSON, identical to the WebSocket frame. */
export function sseEvent(id: string, event: string, json: string): Uint8Array {
  return encoder.encode(`id: ${id}\nevent: ${event}\ndata: ${json}\n\n`);
}

/** Marks kept for `terminalMark`: far more jobs than can end while one subscription reads its job. */
const MAX_ENDED_MARKS = 10_000;

type Pending = { frame: ProgressFrame; ownerId: string | null };

/**
 * Turns queue events into frames and fans each out once: serialised to JSON a single time, then handed to
 * Bun's native pub/sub (`job:<id>` and the owner's `user:<id>` topic) and to the job's SSE streams.
 * Progress is coalesced per job (latest wins); a terminal event first flushes the job's pending progress,
 * so it is never dropped and always comes last.
 */
export class RealtimeHub {
  readonly #events: EventBus;
  readonly #cardEvents: EventBus<CardEvents> | undefined;
  readonly #progress: Coalescer<Pending>;
  readonly #listeners = new Map<string, Set<FrameListener>>();
  #server: Publisher | null = null;
  #off: (() => void)[] = [];
  #sweep: ReturnType<typeof setInterval> | null = null;
  #seq = 0;
  /** The publish sequence of each recent job's terminal frame (bounded; oldest forgotten first). */
  readonly #ended = new Map<string, number>();
  readonly #describe: DescribeOutcome;

  readonly #relay: FrameRelay | undefined;
  readonly #getJob: ((id: string) => Promise<Job | null>) | undefined;

  /**
   * `relay` (cluster mode): every frame published here goes to the other instances too, and theirs come
   * here, so a client connected to any instance sees a job running on any other. A terminal frame too large
   * for the relay travels as the job's id, and is rebuilt from the database (`getJob`) where it arrives.
   */
  constructor(
    events: EventBus,
    opts: {
      progressIntervalMs: number;
      describe: DescribeOutcome;
      cardEvents?: EventBus<CardEvents>;
      relay?: FrameRelay;
      getJob?: (id: string) => Promise<Job | null>;
    },
  ) {
    this.#events = events;
    this.#cardEvents = opts.cardEvents;
    this.#describe = opts.describe;
    this.#relay = opts.relay;
    this.#getJob = opts.getJob;
    this.#progress = new Coalescer(opts.progressIntervalMs, (_, p) => this.#publish(p.frame, p.ownerId));
  }

  /** The listening server; frames before this reach SSE streams only. */
  attach(server: Publisher | null): void {
    this.#server = server;
  }

  start(): void {
    if (this.#off.length > 0) return;
    const e = this.#events;
    this.#off = [
      e.on("job:progress", ({ job, progress, message, completedItems, totalItems }) => {
        const counts =
          totalItems === undefined ? null : { completed: completedItems ?? 0, total: totalItems };
        const frame: ProgressFrame = {
          type: "job_progress",
          jobId: job.id,
          progress,
          message,
          completedItems: counts?.completed ?? null,
          totalItems: counts?.total ?? null,
        };
        this.#progress.push(job.id, { frame, ownerId: job.ownerId });
      }),
      e.on("job:completed", ({ job }) => this.#terminal(job)),
      e.on("job:partial", ({ job }) => this.#terminal(job)),
      e.on("job:failed", ({ job }) => this.#terminal(job)),
      e.on("job:cancelled", ({ job }) => this.#terminal(job)),
    ];
    const cards = this.#cardEvents;
    if (cards) {
      this.#off.push(
        cards.on("card:rendered", ({ cardId, ownerId, version, imageUrl }) => {
          const frame: ServerFrame = { type: "card_rendered", cardId, imageUrl, version };
          const json = JSON.stringify(frame);
          this.#server?.publish(userTopic(ownerId), json);
          this.#relay?.send({ type: frame.type, jobId: null, ownerId, sseId: null, json });
        }),
      );
    }
    this.#sweep = setInterval(() => this.#progress.sweep(), 60_000);
    this.#sweep.unref?.();
    this.#relay?.receive((frame) => this.#remote(frame));
  }

  stop(): void {
    this.#relay?.receive(null);
    for (const off of this.#off) off();
    this.#off = [];
    if (this.#sweep) clearInterval(this.#sweep);
    this.#progress.clear();
    this.#server = null;
  }

  /** Registers an SSE stream for a job's frames; returns its unsubscribe. */
  listen(jobId: string, listener: FrameListener): () => void {
    let set = this.#listeners.get(jobId);
    if (!set) {
      set = new Set();
      this.#listeners.set(jobId, set);
    }
    set.add(listener);
    return () => {
      set.delete(listener);
      if (set.size === 0 && this.#listeners.get(jobId) === set) this.#listeners.delete(jobId);
    };
  }

  /**
   * A mark that changes once the job's terminal frame has been published: a subscriber that compares the
   * mark taken when it joined the job's topic with the mark now knows whether the topic delivered the end.
   */
  terminalMark(jobId: string): number {
    return this.#ended.get(jobId) ?? 0;
  }

  get streams(): number {
    let n = 0;
    for (const set of this.#listeners.values()) n += set.size;
    return n;
  }

  #terminal(job: Job): void {
    this.#progress.flush(job.id);
    // The outcome (assets, failed items) is read back first; should that fail, the frame still goes out
    // without it, so no subscriber waits for an end that never comes.
    void this.#describe(job)
      .catch(() => ({ assets: [], failedItems: [], metadata: null }))
      .then((outcome) => this.#publish(terminalFrame(job, outcome), job.ownerId, terminalEventId(job)));
  }

  #publish(frame: JobFrame, ownerId: string | null, sseId?: string): void {
    const json = JSON.stringify(frame);
    this.#deliver(frame.type, frame.jobId, ownerId, sseId ?? null, json);
    this.#relay?.send({ type: frame.type, jobId: frame.jobId, ownerId, sseId: sseId ?? null, json });
  }

  /** Hands a frame to this instance's sockets (job and owner topics) and the job's SSE streams. */
  #deliver(
    type: string,
    jobId: string | null,
    ownerId: string | null,
    sseId: string | null,
    json: string,
  ): void {
    const server = this.#server;
    if (server) {
      if (jobId) server.publish(jobTopic(jobId), json);
      if (ownerId) server.publish(userTopic(ownerId), json);
    }
    if (!jobId) return;
    const terminal = sseId !== null;
    if (terminal) this.#markEnded(jobId);
    const listeners = this.#listeners.get(jobId);
    if (!listeners || listeners.size === 0) return;
    const chunk = sseEvent(sseId ?? `p-${++this.#seq}`, type, json);
    for (const listener of [...listeners]) listener(chunk, terminal);
  }

  /** A frame another instance published. One sent as an id only (too large to relay) is read back here. */
  #remote(f: RelayedFrame): void {
    if (f.json !== null) {
      this.#deliver(f.type, f.jobId, f.ownerId, f.sseId, f.json);
      return;
    }
    const getJob = this.#getJob;
    if (!f.jobId || !getJob) return;
    void getJob(f.jobId)
      .then(async (job) => {
        if (!job || !isTerminalStatus(job.status)) return;
        const outcome = await this.#describe(job).catch(() => ({
          assets: [],
          failedItems: [],
          metadata: null,
        }));
        this.#deliver(
          f.type,
          job.id,
          job.ownerId,
          terminalEventId(job),
          JSON.stringify(terminalFrame(job, outcome)),
        );
      })
      .catch(() => {});
  }

  #markEnded(jobId: string): void {
    this.#ended.delete(jobId);
    this.#ended.set(jobId, ++this.#seq);
    if (this.#ended.size > MAX_ENDED_MARKS) {
      const oldest = this.#ended.keys().next().value;
      if (oldest !== undefined) this.#ended.delete(oldest);
    }
  }
}
