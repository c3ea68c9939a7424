import { z } from "zod";
import type { Job, WebhookDelivery } from "../../db/schema";
import { countOf } from "../../errors";
import type { Logger } from "../../log";
import { guardedFetch, OutboundFetchError, UrlGuardError } from "../../net/url-guard";
import { parseRetryAfter } from "../../providers/http";
import { defineJob, RetryAfterError, UnrecoverableError } from "../../queue";
import { DELIVER_JOB } from "./fanout";
import type { WebhookRepository } from "./repository";
import { webhookHeaders } from "./signing";

export type DeliveryOptions = {
  timeoutMs: number;
  /** Delays before retry 1, 2, … (ms, before scaling); its length + 1 is the number of attempts. */
  retrySchedule: readonly number[];
  retryScale: number;
  concurrency: number;
  allowPrivateUrls: boolean;
  now?: () => number;
};

type Outcome =
  | { kind: "response"; status: number; headers: Headers | null; durationMs: number }
  | { kind: "error"; status: number | null; error: string; durationMs: number }
  | { kind: "refused"; error: string };

/** Longest wait a receiver's Retry-After may ask for. */
const MAX_RETRY_AFTER_MS = 24 * 3_600_000;
/** Response bodies are not used; a receiver may send some, but not unbounded. */
const MAX_RESPONSE_BYTES = 256 * 1024;

/** The jittered (±10%) delay before retry number `retry` (1-based), or null when the schedule is spent. */
export function retryDelay(
  retry: number,
  schedule: readonly number[],
  scale: number,
  random: () => number = Math.random,
): number | null {
  const base = schedule[retry - 1];
  if (base === undefined) return null;
  return Math.round(base * scale * (0.9 + 0.2 * random()));
}

/**
 * `webhook.deliver`: one attempt per run. 2xx delivers; 410 disables the endpoint; 3xx, other statuses and
 * network errors retry on the schedule (Retry-After honoured on 429/503) by re-queueing the same job with
 * RetryAfterError, so persistence across restarts and metrics come from the engine. Waits longer than the
 * engine's Retry-After cap are served in steps: a run before `next_attempt_at` just re-queues itself.
 */
export function deliveryJob(
  store: WebhookRepository,
  log: Logger,
  opts: DeliveryOptions,
  onEndpointChange: () => Promise<void>,
) {
  const now = opts.now ?? Date.now;
  const maxAttempts = opts.retrySchedule.length + 1;
  // Our own fetch timeout fires first, so a slow receiver is a recorded, scheduled failure.
  const runTimeoutMs = opts.timeoutMs + 5000;

  async function attempt(d: WebhookDelivery, secrets: string[], signal: AbortSignal): Promise<Outcome> {
    const started = performance.now();
    const elapsed = () => Math.round(performance.now() - started);
    let seenStatus: number | null = null;
    try {
      const res = await guardedFetch(d.url, {
        method: "POST",
        body: d.payload,
        headers: webhookHeaders(secrets, d.id, Math.floor(now() / 1000), d.payload),
        timeoutMs: opts.timeoutMs,
        maxRedirects: 0,
        maxBytes: MAX_RESPONSE_BYTES,
        allowPrivate: opts.allowPrivateUrls,
        signal,
        // guardedFetch throws on a redirect it will not follow; keep the status for the delivery log.
        fetch: async (url, init) => {
          const r = await fetch(url, init);
          seenStatus = r.status;
          return r;
        },
      });
      return { kind: "response", status: res.status, headers: res.headers, durationMs: elapsed() };
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (err instanceof UrlGuardError) return { kind: "refused", error: err.message };
      if (err instanceof OutboundFetchError && err.code === "response_too_large" && seenStatus !== null)
        return { kind: "response", status: seenStatus, headers: null, durationMs: elapsed() };
      const error =
        err instanceof OutboundFetchError && err.code === "too_many_redirects"
          ? `redirect not followed (${seenStatus}); webhooks must answer 2xx`
          : err instanceof Error
            ? err.message
            : String(err);
      return { kind: "error", status: seenStatus, error, durationMs: elapsed() };
    }
  }

  async function secretsFor(d: WebhookDelivery): Promise<string[] | null> {
    if (!d.endpointId) return store.signingSecrets(d.ownerId, now());
    const endpoint = await store.endpoint(d.endpointId);
    if (!endpoint) return null;
    if (!endpoint.active) {
      throw new UnrecoverableError(`endpoint disabled (${endpoint.disabledReason ?? "by its owner"})`, {
        code: "endpoint_disabled",
      });
    }
    return [endpoint.secret];
  }

  /** Records the attempt, then returns (delivered) or throws what the engine should do next. */
  async function settle(d: WebhookDelivery, o: Outcome): Promise<{ status: number }> {
    const at = now();
    const attempts = d.attempts + 1;
    const status = o.kind === "refused" ? null : o.status;
    const durationMs = o.kind === "refused" ? 0 : o.durationMs;
    if (o.kind === "response" && o.status >= 200 && o.status < 300) {
      await store.recordAttempt(d, {
        at,
        statusCode: o.status,
        error: null,
        durationMs,
        delivered: true,
        nextAttemptAt: null,
      });
      return { status: o.status };
    }
    const error = o.kind === "response" ? `receiver answered ${o.status}` : o.error;
    const final = await finalFailure(d, o);
    const delay = final ? null : nextDelay(o, attempts);
    const nextAttemptAt = delay === null ? null : at + delay;
    await store.recordAttempt(d, {
      at,
      statusCode: status,
      error,
      durationMs,
      delivered: false,
      nextAttemptAt,
    });
    if (final) throw final;
    if (delay === null) {
      throw new UnrecoverableError(`gave up after ${countOf(attempts, "attempt")}: ${error}`, {
        code: "delivery_exhausted",
      });
    }
    throw new RetryAfterError(delay, `attempt ${attempts} failed (${error})`, { code: "webhook_retry" });
  }

  async function finalFailure(d: WebhookDelivery, o: Outcome): Promise<UnrecoverableError | null> {
    if (o.kind === "refused") return new UnrecoverableError(o.error, { code: "url_not_allowed" });
    if (o.kind === "response" && o.status === 410) {
      if (d.endpointId) {
        await store.disableEndpoint(d.endpointId, "receiver answered 410 Gone", now());
        await onEndpointChange();
        log.warn({ endpointId: d.endpointId }, "webhook endpoint answered 410: disabled");
      }
      return new UnrecoverableError("receiver answered 410 Gone", { code: "endpoint_gone" });
    }
    return null;
  }

  function nextDelay(o: Outcome, attempts: number): number | null {
    if (attempts >= maxAttempts) return null;
    if (o.kind === "response" && (o.status === 429 || o.status === 503) && o.headers) {
      const asked = parseRetryAfter(o.headers, now());
      if (asked !== undefined) return Math.min(asked, MAX_RETRY_AFTER_MS);
    }
    return retryDelay(attempts, opts.retrySchedule, opts.retryScale);
  }

  return defineJob({
    type: DELIVER_JOB,
    input: z.object({ deliveryId: z.string() }),
    timeoutMs: runTimeoutMs,
    maxAttempts: 5,
    concurrency: opts.concurrency,
    run: async ({ input, signal }) => {
      const d = await store.delivery(input.deliveryId);
      if (d?.status !== "pending") return { skipped: d?.status ?? "gone" };
      const wait = (d.nextAttemptAt ?? 0) - now();
      if (wait > 0)
        throw new RetryAfterError(wait, "waiting for the scheduled attempt", { code: "webhook_scheduled" });
      const secrets = await secretsFor(d);
      if (!secrets) return { skipped: "endpoint_deleted" };
      // Another run of this delivery (a re-run after a lost lease, on another instance) took this attempt.
      if (!(await store.claimAttempt(d.id, d.attempts, now(), now() + runTimeoutMs)))
        return { skipped: "attempt_taken" };
      return settle(d, await attempt(d, secrets, signal));
    },
    onTerminal: {
      applies: (job: Job) => job.status !== "completed",
      run: async (job: Job) => {
        const { deliveryId } = job.input as { deliveryId: string };
        await store.failDelivery(deliveryId, job.error?.message ?? job.status, now());
      },
    },
  });
}
