/**
 * `easel/client`: a small typed client for apps, on Eden treaty over the server's exported `App` type.
 * Every server import here is `import type` (erased at build time), so an app bundles Eden and this file,
 * never the server. It adds what every app would otherwise write itself: waiting for a job (WebSocket, with
 * polling when sockets are unavailable or drop), a reconnecting subscription, instant claims that report
 * "fall back to generating" as a value, and webhook verification.
 */
import { type Treaty, treaty } from "@elysiajs/eden";
import type { z } from "zod";
import type { App } from "../app";
import type { CreateCardBody } from "../modules/cards/model";
import type { GenerateBody } from "../modules/generate/model";
import type { JobService } from "../modules/jobs/service";
import type { ServerFrame, TerminalFrame } from "../modules/realtime/model";

export {
  type JobEndedData,
  type VerifyOptions,
  verifyWebhook,
  type WebhookEvent,
  WebhookVerificationError,
} from "./webhooks";
export type { ServerFrame, TerminalFrame };

/** What `generate()` takes: `POST /api/jobs/generate-image`'s body, defaults optional. */
export type GenerateInput = z.input<typeof GenerateBody>;
/** One image request of a batch. */
export type BatchItem = NonNullable<GenerateInput["items"]>[number];
/** A job with its request, items, assets, metadata and history (`GET /api/jobs/:id`). */
export type JobDetail = Awaited<ReturnType<JobService["detail"]>>;
/** The compact progress view (`GET /api/jobs/:id/status`). */
export type JobStatus = Awaited<ReturnType<JobService["status"]>>;
/** A progress update while waiting: a WebSocket `job_progress` frame or a polled status. */
export type Progress = {
  progress: number;
  message: string | null;
  completedItems: number | null;
  totalItems: number | null;
};

export type EaselClientOptions = {
  /** The server's base URL, e.g. `https://easel.example.com`. */
  url: string;
  /** An API key (servers) or a client token from `POST /api/tokens` (browsers). */
  key?: string;
  /** @defaultValue globalThis.fetch */
  fetch?: typeof fetch;
  /** The WebSocket class to use, or `false` to only poll. @defaultValue globalThis.WebSocket */
  WebSocket?: typeof WebSocket | false;
  /** How often `waitForJob` polls when it cannot use a WebSocket. @defaultValue 1000 */
  pollIntervalMs?: number;
};

/** A refused request: the server's `{ error: { code, message, details } }` with the HTTP status. */
export class EaselError extends Error {
  override name = "EaselError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
    /** The whole error body (some carry more beside `error`, e.g. `fallbackToModal`). */
    readonly body?: unknown,
  ) {
    super(message);
  }
}

/** What `claimInstant` answers: the claim, or why there is none and whether to fall back to generating. */
export type InstantResult =
  | ({ ok: true } & InstantClaim)
  | { ok: false; fallbackToModal: boolean; error: { code: string; message: string; details?: unknown } };
type InstantClaim = import("../modules/instant/service").InstantClaim;

export type WaitOptions = {
  /** Stops waiting (the job keeps running) with the signal's reason. */
  signal?: AbortSignal;
  /** Gives up after this long with an `EaselError` of code `timeout`. @defaultValue no limit */
  timeoutMs?: number;
  onProgress?: (p: Progress) => void;
};

export type Subscription = {
  /** Resolves once the socket is open and confirmed (again after each reconnect). */
  readonly ready: Promise<void>;
  /** Also receive this job's frames (one's own jobs arrive without it). */
  add(jobId: string): void;
  remove(jobId: string): void;
  close(): void;
};

export type SubscribeOptions = {
  /** Jobs to follow beside the caller's own (an app key following its end users' jobs, admins). */
  jobIds?: string[];
  /** Socket errors and reconnects, for logging. */
  onError?: (err: Error) => void;
  /** First reconnect delay, doubled up to 30 s. @defaultValue 500 */
  reconnectMs?: number;
};

const TERMINAL = new Set(["job_completed", "job_partial", "job_failed", "job_cancelled"]);
const TERMINAL_STATUS = new Set(["completed", "partial", "failed", "cancelled"]);

type EdenResult = { data: unknown; error: { status: unknown; value: unknown } | null; status: number };

/** The data of a successful call; an `EaselError` for anything else. */
function unwrap<R extends EdenResult>(res: R): NonNullable<R["data"]> {
  if (res.error === null && res.data !== null && res.data !== undefined) {
    return res.data as NonNullable<R["data"]>;
  }
  throw toError(res.status, res.error?.value);
}

function toError(status: number, body: unknown): EaselError {
  const err = (body as { error?: { code?: string; message?: string; details?: unknown } } | null)?.error;
  return new EaselError(
    status,
    err?.code ?? "http_error",
    err?.message ?? `request failed with status ${status}`,
    err?.details,
    body,
  );
}

/** Resolves after `ms`, or rejects with the signal's reason as soon as it aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

export class EaselClient {
  /** The typed Eden treaty for every other route: `client.api.api.recipes.get()`. */
  readonly api: Treaty.Create<App>;
  readonly #url: string;
  readonly #key: string | undefined;
  readonly #WebSocket: typeof WebSocket | undefined;
  readonly #pollIntervalMs: number;

  constructor(opts: EaselClientOptions) {
    this.#url = opts.url.replace(/\/+$/, "");
    this.#key = opts.key;
    this.#WebSocket = opts.WebSocket === false ? undefined : (opts.WebSocket ?? globalThis.WebSocket);
    this.#pollIntervalMs = opts.pollIntervalMs ?? 1000;
    this.api = treaty<App>(this.#url, {
      headers: opts.key ? { authorization: `Bearer ${opts.key}` } : undefined,
      fetcher: opts.fetch,
      // Our times are epoch numbers; a prompt that looks like a date must stay a string.
      parseDate: false,
    });
  }

  /** Queues a generation (a prompt, `items[]`, or a recipe); answers once the job is durably queued. */
  async generate(body: GenerateInput, opts: { idempotencyKey?: string } = {}) {
    const res = await this.api.api.jobs["generate-image"].post(
      body as z.output<typeof GenerateBody>,
      opts.idempotencyKey ? { headers: { "idempotency-key": opts.idempotencyKey } } : undefined,
    );
    return unwrap(res);
  }

  /** Queues a batch: one image per item, each with its own id (a page, a slot) to find it by later. */
  generateBatch(
    items: BatchItem[],
    options: Omit<GenerateInput, "items" | "prompt" | "recipeId" | "variables"> = {},
    opts: { idempotencyKey?: string } = {},
  ) {
    return this.generate({ ...options, items }, opts);
  }

  async getJob(jobId: string): Promise<JobDetail> {
    return unwrap(await this.api.api.jobs({ id: jobId }).get()) as JobDetail;
  }

  async getStatus(jobId: string): Promise<JobStatus> {
    return unwrap(await this.api.api.jobs({ id: jobId }).status.get()) as JobStatus;
  }

  /**
   * Waits until the job has ended (completed, partial, failed or cancelled) and returns it in full. Listens
   * on a WebSocket; without one, or when the socket fails, polls the status instead. Resolving says the job
   * ended, not that it succeeded: look at `status`.
   */
  async waitForJob(jobId: string, opts: WaitOptions = {}): Promise<JobDetail> {
    const timeout = opts.timeoutMs === undefined ? undefined : AbortSignal.timeout(opts.timeoutMs);
    const signals = [opts.signal, timeout].filter((s): s is AbortSignal => s !== undefined);
    const signal = signals.length > 0 ? AbortSignal.any(signals) : new AbortController().signal;
    try {
      let ended = false;
      if (this.#WebSocket) {
        try {
          await this.#waitOnSocket(jobId, signal, opts.onProgress);
          ended = true;
        } catch (err) {
          // A refusal (unknown job, bad credentials) is final; a dropped or unavailable socket is not.
          if (signal.aborted || err instanceof EaselError) throw err;
        }
      }
      if (!ended) await this.#poll(jobId, signal, opts.onProgress);
      return await this.getJob(jobId);
    } catch (err) {
      if (timeout?.aborted && !opts.signal?.aborted) {
        throw new EaselError(0, "timeout", `job ${jobId} did not end within ${opts.timeoutMs} ms`);
      }
      throw signal.aborted ? signal.reason : err;
    }
  }

  /**
   * Opens `/ws`. A client token (a JWT, what browsers hold) travels as `?token=`; an API key never does (the
   * server refuses keys in URLs, where they end up in logs): it goes as a header, which Bun's and Node's
   * WebSocket accept as a second argument and browsers never need.
   */
  #openSocket(): WebSocket {
    const WS = this.#WebSocket!;
    const url = new URL("/ws", this.#url.replace(/^http/, "ws"));
    if (this.#key && isClientToken(this.#key)) {
      url.searchParams.set("token", this.#key);
      return new WS(url.toString());
    }
    if (!this.#key) return new WS(url.toString());
    const init = { headers: { authorization: `Bearer ${this.#key}` } };
    return new (WS as unknown as new (url: string, init: unknown) => WebSocket)(url.toString(), init);
  }

  #waitOnSocket(jobId: string, signal: AbortSignal, onProgress?: (p: Progress) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = this.#openSocket();
      const finish = (err?: unknown) => {
        signal.removeEventListener("abort", onAbort);
        ws.onclose = null;
        ws.close();
        if (err === undefined) resolve();
        else reject(err);
      };
      const onAbort = () => finish(signal.reason);
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      ws.onerror = () => finish(new Error("WebSocket error"));
      ws.onclose = (e) => finish(new Error(`WebSocket closed (${e.code} ${e.reason})`));
      ws.onmessage = (e) => {
        const frame = JSON.parse(String(e.data)) as ServerFrame;
        if (frame.type === "connection_confirmed")
          ws.send(JSON.stringify({ type: "subscribe_to_job", jobId }));
        else if (frame.type === "error" && frame.code === "not_found") {
          finish(new EaselError(404, "not_found", frame.message));
        } else if (frame.type === "error") finish(new Error(`${frame.code}: ${frame.message}`));
        else if (!("jobId" in frame) || frame.jobId !== jobId) return;
        else if (frame.type === "job_progress") onProgress?.(frame);
        else if (TERMINAL.has(frame.type)) finish();
      };
    });
  }

  async #poll(jobId: string, signal: AbortSignal, onProgress?: (p: Progress) => void): Promise<void> {
    for (;;) {
      const s = await this.getStatus(jobId);
      if (TERMINAL_STATUS.has(s.status)) return;
      onProgress?.(s);
      await sleep(this.#pollIntervalMs, signal);
    }
  }

  /**
   * Streams realtime frames to `onFrame`: the caller's own jobs (and cards), plus any jobs added. Reconnects
   * with backoff when the socket drops, subscribing again to the jobs it followed.
   */
  subscribe(onFrame: (frame: ServerFrame) => void, opts: SubscribeOptions = {}): Subscription {
    const WS = this.#WebSocket;
    if (!WS) throw new Error("subscribe() needs a WebSocket implementation");
    const jobs = new Set(opts.jobIds ?? []);
    let ws: WebSocket | null = null;
    let closed = false;
    let delay = opts.reconnectMs ?? 500;
    let markReady: () => void = () => {};
    let ready = new Promise<void>((r) => {
      markReady = r;
    });
    const send = (msg: object) => {
      if (ws?.readyState === WS.OPEN) ws.send(JSON.stringify(msg));
    };
    const connect = () => {
      ws = this.#openSocket();
      ws.onmessage = (e) => {
        const frame = JSON.parse(String(e.data)) as ServerFrame;
        if (frame.type === "connection_confirmed") {
          delay = opts.reconnectMs ?? 500;
          for (const jobId of jobs) send({ type: "subscribe_to_job", jobId });
          markReady();
        }
        onFrame(frame);
      };
      ws.onerror = () => opts.onError?.(new Error("WebSocket error"));
      ws.onclose = (e) => {
        if (closed) return;
        opts.onError?.(new Error(`WebSocket closed (${e.code} ${e.reason}); reconnecting in ${delay} ms`));
        ready = new Promise<void>((r) => {
          markReady = r;
        });
        setTimeout(connect, delay);
        delay = Math.min(delay * 2, 30_000);
      };
    };
    connect();
    return {
      get ready() {
        return ready;
      },
      add(jobId) {
        jobs.add(jobId);
        send({ type: "subscribe_to_job", jobId });
      },
      remove(jobId) {
        jobs.delete(jobId);
        send({ type: "unsubscribe_from_job", jobId });
      },
      close() {
        closed = true;
        ws?.close();
      },
    };
  }

  /** Creates a live share card; it is rendered before this resolves. */
  async createCard(template: string, data: CreateCardBody["data"], opts: { userId?: string } = {}) {
    return unwrap(await this.api.api.cards.post({ template, data, ...opts }));
  }

  /** Replaces a card's data; the image follows within the debounce window (`card_rendered` frames say when). */
  async updateCard(cardId: string, data: CreateCardBody["data"]) {
    return unwrap(await this.api.api.cards({ id: cardId }).patch({ data }));
  }

  /**
   * Claims a ready backlog image of a recipe. An empty backlog (404), a lost race (409) or too few credits
   * (402) are answers, not exceptions: `{ ok: false, fallbackToModal }` says whether to offer a normal
   * generation instead. Anything else (bad key, unknown recipe, rate limit) throws an `EaselError`.
   */
  async claimInstant(recipeId: string, opts: { userId?: string } = {}): Promise<InstantResult> {
    const res = await this.api.api.generate.instant.post({ recipeId, ...opts });
    if (res.error === null && res.data) return { ok: true, ...(res.data as InstantClaim) };
    const body = res.error?.value as
      | { error?: { code: string; message: string; details?: unknown }; fallbackToModal?: boolean }
      | undefined;
    if ([402, 404, 409].includes(res.status) && body?.error && body.error.code !== "recipe_not_found") {
      return { ok: false, fallbackToModal: body.fallbackToModal === true, error: body.error };
    }
    throw toError(res.status, body);
  }
}

/** A client for one Easel server and one credential. */
export function createClient(opts: EaselClientOptions): EaselClient {
  return new EaselClient(opts);
}

/** A client token from `POST /api/tokens` is a JWT (three base64url parts); API keys are not. */
function isClientToken(credential: string): boolean {
  return /^[\w-]+\.[\w-]+\.[\w-]+$/.test(credential);
}
