import type { Job } from "../../db/schema";
import type { JobService } from "../jobs/service";
import { type RealtimeHub, sseEvent, terminalEventId } from "./hub";
import { isTerminal, progressFrame, terminalFrame } from "./model";

export type SseOptions = {
  /** A comment line is sent this often so proxies keep an idle stream open. */
  heartbeatMs: number;
  /** Events queued for a client that does not read before its stream is closed. @defaultValue 256 */
  maxQueued?: number;
};

const encoder = new TextEncoder();
const HEARTBEAT = encoder.encode(": heartbeat\n\n");
const RETRY = encoder.encode("retry: 2000\n\n");

const HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache, no-transform",
  "x-accel-buffering": "no",
};

/**
 * `GET /api/jobs/:id/events`: one job's frames as Server-Sent Events. The stream opens with the job's current
 * state, follows it live and ends after the terminal event. A client reconnecting with the terminal event's
 * id in `Last-Event-ID` gets 204 (EventSource stops reconnecting); any other reconnect replays the state.
 */
export class JobEventStreams {
  readonly #hub: RealtimeHub;
  readonly #jobs: Pick<JobService, "itemCounts" | "outcome">;
  readonly #getJob: (id: string) => Promise<Job | null>;
  readonly #o: Required<SseOptions>;
  readonly #open = new Set<() => void>();

  constructor(
    hub: RealtimeHub,
    jobs: Pick<JobService, "itemCounts" | "outcome">,
    getJob: (id: string) => Promise<Job | null>,
    opts: SseOptions,
  ) {
    this.#hub = hub;
    this.#jobs = jobs;
    this.#getJob = getJob;
    this.#o = { maxQueued: 256, ...opts };
  }

  get size(): number {
    return this.#open.size;
  }

  async response(job: Job, lastEventId: string | null): Promise<Response> {
    if (isTerminal(job)) {
      if (lastEventId === terminalEventId(job)) return new Response(null, { status: 204 });
      const frame = terminalFrame(job, await this.#jobs.outcome(job));
      const body = concat(RETRY, sseEvent(terminalEventId(job), frame.type, JSON.stringify(frame)));
      return new Response(body, { headers: HEADERS });
    }
    const counts = await this.#jobs.itemCounts(job.id);
    let cleanup = () => {};
    let closed = false;
    const stream = new ReadableStream<Uint8Array>({
      // start() runs synchronously, so no event can slip between reading `job` and listening.
      start: (controller) => {
        const close = () => {
          cleanup();
          try {
            controller.close();
          } catch {
            // already closed by the client going away
          }
        };
        const off = this.#hub.listen(job.id, (chunk, terminal) => {
          if ((controller.desiredSize ?? 0) < -this.#o.maxQueued) return close();
          controller.enqueue(chunk);
          if (terminal) close();
        });
        const heartbeat = setInterval(() => controller.enqueue(HEARTBEAT), this.#o.heartbeatMs);
        cleanup = () => {
          closed = true;
          off();
          clearInterval(heartbeat);
          this.#open.delete(close);
        };
        this.#open.add(close);
        const snapshot = progressFrame(job, counts);
        controller.enqueue(RETRY);
        controller.enqueue(sseEvent(`s-${job.updatedAt}`, snapshot.type, JSON.stringify(snapshot)));
        // `job` was read a few turns of the event loop ago: had it ended since, its terminal event came before
        // this listener. Read it again and end the stream with its outcome (the hub's event, when it comes
        // first, closes the stream and this finds it closed).
        void this.#endIfEnded(job.id, () => closed, controller, close);
      },
      cancel: () => cleanup(),
    });
    return new Response(stream, { headers: HEADERS });
  }

  async #endIfEnded(
    id: string,
    isClosed: () => boolean,
    controller: ReadableStreamDefaultController<Uint8Array>,
    close: () => void,
  ): Promise<void> {
    try {
      const now = await this.#getJob(id);
      if (!now || !isTerminal(now) || isClosed()) return;
      const frame = terminalFrame(now, await this.#jobs.outcome(now));
      if (isClosed()) return;
      controller.enqueue(sseEvent(terminalEventId(now), frame.type, JSON.stringify(frame)));
      close();
    } catch {
      // The stream stays open; the hub's terminal event or the client's reconnect ends it.
    }
  }

  /** Ends every open stream (shutdown: the server cannot stop while streams are open). */
  closeAll(): void {
    for (const close of [...this.#open]) close();
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.byteLength + b.byteLength);
  out.set(a);
  out.set(b, a.byteLength);
  return out;
}
