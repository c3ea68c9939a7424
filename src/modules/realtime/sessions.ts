import type { Job } from "../../db/schema";
import { ApiError } from "../../errors";
import type { Principal } from "../auth/service";
import type { JobService } from "../jobs/service";
import { jobTopic, userTopic } from "./hub";
import {
  CLIENT_MESSAGE_TYPES,
  ClientMessage,
  errorFrame,
  isTerminal,
  type ServerFrame,
  terminalFrame,
} from "./model";

/** The part of Bun's ServerWebSocket a session uses. */
export type Socket = {
  send(data: string): number;
  subscribe(topic: string): void;
  unsubscribe(topic: string): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  ping(): number;
  getBufferedAmount(): number;
};

type Session = {
  id: string;
  ws: Socket;
  principal: Principal;
  /** Jobs subscribed to explicitly (own jobs arrive through the user's room anyway). */
  jobs: Set<string>;
  pingSentAt: number | null;
  /** Replies in the order their messages came, though reading a job takes a turn of the event loop. */
  replies: Promise<void>;
};

export type SessionOptions = {
  pingIntervalMs: number;
  pingTimeoutMs: number;
  /** A client whose unsent backlog passes this is disconnected (close 1013). */
  maxBufferedBytes: number;
  /** @defaultValue 1000 */
  maxSubscriptions?: number;
  now?: () => number;
};

export const CLOSE_UNAUTHORIZED = 4401;
export const CLOSE_TOO_SLOW = 1013;
export const CLOSE_GOING_AWAY = 1001;

/**
 * The `/ws` protocol, independent of Elysia: authenticated connections join their user's room
 * (`user:<id>`), subscribe to other visible jobs (`job:<id>`), and are pinged; a connection that misses a
 * pong for `pingTimeoutMs` is terminated.
 */
export class WsSessions {
  readonly #sessions = new Map<Socket, Session>();
  readonly #jobs: Pick<JobService, "visible" | "outcome">;
  readonly #getJob: (id: string) => Promise<Job | null>;
  readonly #terminalMark: (jobId: string) => number;
  readonly #o: Required<SessionOptions>;
  #pingTimer: ReturnType<typeof setInterval> | null = null;
  #reapTimer: ReturnType<typeof setTimeout> | null = null;

  /** `terminalMark`: the hub's mark of a job's published end (RealtimeHub.terminalMark). */
  constructor(
    deps: {
      jobs: Pick<JobService, "visible" | "outcome">;
      getJob: (id: string) => Promise<Job | null>;
      terminalMark: (jobId: string) => number;
    },
    opts: SessionOptions,
  ) {
    this.#jobs = deps.jobs;
    this.#getJob = deps.getJob;
    this.#terminalMark = deps.terminalMark;
    this.#o = { maxSubscriptions: 1000, now: Date.now, ...opts };
  }

  get size(): number {
    return this.#sessions.size;
  }

  open(ws: Socket, principal: Principal | null): void {
    if (!principal) {
      ws.close(CLOSE_UNAUTHORIZED, "unauthorized: missing, invalid or expired token");
      return;
    }
    const session: Session = {
      id: crypto.randomUUID(),
      ws,
      principal,
      jobs: new Set(),
      pingSentAt: null,
      replies: Promise.resolve(),
    };
    this.#sessions.set(ws, session);
    ws.subscribe(userTopic(principal.user.id));
    this.#send(session, { type: "connection_confirmed", clientId: session.id, userId: principal.user.id });
  }

  close(ws: Socket): void {
    this.#sessions.delete(ws);
  }

  pong(ws: Socket): void {
    const s = this.#sessions.get(ws);
    if (s) s.pingSentAt = null;
  }

  message(ws: Socket, raw: unknown): void {
    const s = this.#sessions.get(ws);
    if (!s) return;
    s.pingSentAt = null;
    const parsed = parseClientMessage(raw);
    s.replies = s.replies
      .then(() => this.#reply(s, parsed))
      .then(
        (frames) => {
          for (const frame of frames) this.#send(s, frame);
        },
        () => this.#send(s, errorFrame("internal_error", "could not answer that message; try again")),
      );
  }

  /** Starts pinging every `pingIntervalMs`. */
  start(): void {
    if (this.#pingTimer) return;
    this.#pingTimer = setInterval(() => this.#pingAll(), this.#o.pingIntervalMs);
  }

  /** Closes every connection (1001) and stops pinging. */
  stop(): void {
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    if (this.#reapTimer) clearTimeout(this.#reapTimer);
    this.#pingTimer = this.#reapTimer = null;
    for (const s of this.#sessions.values()) s.ws.close(CLOSE_GOING_AWAY, "server shutting down");
    this.#sessions.clear();
  }

  async #reply(s: Session, parsed: Parsed): Promise<ServerFrame[]> {
    if ("error" in parsed) return [parsed.error];
    const msg = parsed.message;
    switch (msg.type) {
      case "ping":
        return [{ type: "pong" }];
      case "subscribe_to_job":
        return this.#subscribe(s, msg.jobId);
      case "unsubscribe_from_job":
        if (s.jobs.delete(msg.jobId)) s.ws.unsubscribe(jobTopic(msg.jobId));
        return [{ type: "unsubscribed", jobId: msg.jobId }];
    }
  }

  async #subscribe(s: Session, jobId: string): Promise<ServerFrame[]> {
    let job: Job;
    try {
      job = await this.#jobs.visible(s.principal, jobId);
    } catch (err) {
      if (err instanceof ApiError && err.status === 404)
        return [errorFrame("not_found", `job ${jobId} not found`)];
      throw err;
    }
    if (!s.jobs.has(jobId) && s.jobs.size >= this.#o.maxSubscriptions && !(await this.#pruneFinished(s))) {
      return [
        errorFrame("too_many_subscriptions", `at most ${this.#o.maxSubscriptions} jobs per connection`),
      ];
    }
    const { status, progress, progressMessage: message } = job;
    const subscribed: ServerFrame = { type: "subscribed", jobId, status, progress, message };
    // A finished job gets its outcome at once; there is nothing left to subscribe to.
    if (isTerminal(job)) return [subscribed, terminalFrame(job, await this.#jobs.outcome(job))];
    s.jobs.add(jobId);
    // The owner's room has carried the job's frames since the connection opened; nothing can be missed.
    if (job.ownerId === s.principal.user.id) return [subscribed];
    s.ws.subscribe(jobTopic(jobId));
    // `job` was read a turn of the event loop ago: had it ended since, its terminal frame went out before
    // this topic was joined. Read it again; if it has ended and the topic has not carried the end since,
    // leave the topic (so a late publish cannot repeat it) and answer with the end ourselves.
    const mark = this.#terminalMark(jobId);
    const now = await this.#getJob(jobId);
    if (!now || !isTerminal(now) || this.#terminalMark(jobId) !== mark || !s.jobs.has(jobId)) {
      return [subscribed];
    }
    s.jobs.delete(jobId);
    s.ws.unsubscribe(jobTopic(jobId));
    return [subscribed, terminalFrame(now, await this.#jobs.outcome(now))];
  }

  /** Drops subscriptions to jobs that have finished since; true when room was made. */
  async #pruneFinished(s: Session): Promise<boolean> {
    for (const id of s.jobs) {
      const job = await this.#getJob(id);
      if (job && !isTerminal(job)) continue;
      s.jobs.delete(id);
      s.ws.unsubscribe(jobTopic(id));
    }
    return s.jobs.size < this.#o.maxSubscriptions;
  }

  #send(s: Session, frame: ServerFrame): void {
    if (this.#sessions.get(s.ws) !== s) return;
    const status = s.ws.send(JSON.stringify(frame));
    if (status === 0 || s.ws.getBufferedAmount() > this.#o.maxBufferedBytes) {
      this.#sessions.delete(s.ws);
      s.ws.close(CLOSE_TOO_SLOW, "client too slow: send buffer full");
    }
  }

  #pingAll(): void {
    this.#reap();
    const now = this.#o.now();
    for (const s of this.#sessions.values()) {
      if (s.pingSentAt !== null) continue;
      s.pingSentAt = now;
      s.ws.ping();
    }
    if (this.#reapTimer) clearTimeout(this.#reapTimer);
    this.#reapTimer = setTimeout(() => this.#reap(), this.#o.pingTimeoutMs);
  }

  /** Terminates connections that have not answered a ping within the timeout (dead peers, half-open TCP). */
  #reap(): void {
    this.#reapTimer = null;
    const cutoff = this.#o.now() - this.#o.pingTimeoutMs;
    for (const s of [...this.#sessions.values()]) {
      if (s.pingSentAt === null || s.pingSentAt > cutoff) continue;
      this.#sessions.delete(s.ws);
      s.ws.terminate();
    }
  }
}

type Parsed = { message: ClientMessage } | { error: ServerFrame };

/** Validates a client message (Elysia has already JSON-parsed what it could; a string is what it could not). */
export function parseClientMessage(raw: unknown): Parsed {
  if (typeof raw === "string" || raw instanceof Uint8Array) {
    return { error: errorFrame("invalid_json", 'messages must be JSON objects, e.g. {"type":"ping"}') };
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    return { error: errorFrame("invalid_message", "a message must be a JSON object with a type") };
  }
  const type = (raw as { type?: unknown }).type;
  if (!CLIENT_MESSAGE_TYPES.includes(type as (typeof CLIENT_MESSAGE_TYPES)[number])) {
    return {
      error: errorFrame(
        "unknown_type",
        `unknown message type ${JSON.stringify(type ?? null)}; expected one of ${CLIENT_MESSAGE_TYPES.join(", ")}`,
      ),
    };
  }
  const parsed = ClientMessage.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue?.path.length ? `${issue.path.join(".")}: ` : "";
    return { error: errorFrame("invalid_message", `${where}${issue?.message ?? "invalid message"}`) };
  }
  return { message: parsed.data };
}
