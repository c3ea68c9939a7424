/**
 * Frames between instances (cluster mode): each instance publishes its jobs' frames to its own sockets and
 * streams, and through a relay to every other instance, which hands them to theirs. The relay rides
 * PostgreSQL's LISTEN/NOTIFY (db/pg/notify.ts), whose payloads stop short of 8,000 bytes: a frame that does
 * not fit travels as its job's id, and a terminal one is rebuilt from the database where it arrives.
 */
import { NOTIFY_PAYLOAD_LIMIT } from "../../db/pg/notify";

/** A frame as it crosses instances; `json` is null when it was too large to carry (the job's id stands in). */
export type RelayedFrame = {
  type: string;
  jobId: string | null;
  ownerId: string | null;
  /** Set on terminal frames: the SSE id clients remember (see hub.ts `terminalEventId`). */
  sseId: string | null;
  json: string | null;
};

/** Carries frames to the other instances, and theirs to `receive`'s handler. */
export interface FrameRelay {
  send(frame: RelayedFrame & { json: string }): void;
  /** Sets (or, with null, clears) the handler of frames from other instances. */
  receive(handler: ((frame: RelayedFrame) => void) | null): void;
}

/** The part of PgNotifier the relay uses. */
export type NotifyChannel = {
  listen(channel: string, handler: (payload: string) => void): Promise<{ unlisten(): Promise<void> }>;
  notify(channel: string, payload: string): Promise<void>;
};

type Wire = { i: string; t: string; j: string | null; o: string | null; s: string | null; d?: string };

export const FRAMES_CHANNEL = "easel_frames";

/**
 * A FrameRelay over NOTIFY. Sends go out one after another, so another instance receives a job's progress
 * before its end, as this one published them (PostgreSQL delivers notifications in commit order).
 */
export class NotifyFrameRelay implements FrameRelay {
  readonly #channel: NotifyChannel;
  readonly #instanceId: string;
  readonly #onError: (err: unknown) => void;
  #handler: ((frame: RelayedFrame) => void) | null = null;
  #sub: { unlisten(): Promise<void> } | null = null;
  #tail: Promise<void> = Promise.resolve();

  constructor(channel: NotifyChannel, opts: { instanceId: string; onError?: (err: unknown) => void }) {
    this.#channel = channel;
    this.#instanceId = opts.instanceId;
    this.#onError = opts.onError ?? (() => {});
  }

  /** Listens for the other instances' frames; resolves once the LISTEN is acknowledged. */
  async start(): Promise<void> {
    this.#sub ??= await this.#channel.listen(FRAMES_CHANNEL, (payload) => this.#arrived(payload));
  }

  /** Stops listening, once the frames already handed to `send` have gone out. */
  async stop(): Promise<void> {
    await this.#tail;
    const sub = this.#sub;
    this.#sub = null;
    await sub?.unlisten();
  }

  receive(handler: ((frame: RelayedFrame) => void) | null): void {
    this.#handler = handler;
  }

  send(frame: RelayedFrame & { json: string }): void {
    const wire: Wire = {
      i: this.#instanceId,
      t: frame.type,
      j: frame.jobId,
      o: frame.ownerId,
      s: frame.sseId,
    };
    let payload = JSON.stringify({ ...wire, d: frame.json });
    if (Buffer.byteLength(payload, "utf8") > NOTIFY_PAYLOAD_LIMIT) {
      // Only an end is worth reading back: a progress frame this large is superseded by the next.
      if (frame.sseId === null || frame.jobId === null) return;
      payload = JSON.stringify(wire);
    }
    this.#tail = this.#tail.then(() => this.#channel.notify(FRAMES_CHANNEL, payload).catch(this.#onError));
  }

  /** Resolves once every frame handed to `send` so far has been sent (or failed). */
  flushed(): Promise<void> {
    return this.#tail;
  }

  #arrived(payload: string): void {
    let wire: Wire;
    try {
      wire = JSON.parse(payload) as Wire;
    } catch (err) {
      this.#onError(err);
      return;
    }
    if (wire.i === this.#instanceId) return;
    this.#handler?.({ type: wire.t, jobId: wire.j, ownerId: wire.o, sseId: wire.s, json: wire.d ?? null });
  }
}
