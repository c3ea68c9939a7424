/**
 * Verifying Easel's webhooks (Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature:
 * v1,<base64 HMAC-SHA256 of "id.timestamp.body">`) with WebCrypto only, so it runs in Bun, Node, Deno,
 * edge workers and browsers alike.
 */

import type { JobOutcome } from "../modules/jobs/service";
import type { WebhookEvent as WebhookEventType } from "../modules/webhooks/model";

/** A webhook's body. `data` of the terminal job events also carries the job's outcome (`JobOutcome`). */
export type WebhookEvent = {
  type: WebhookEventType | "webhook.test";
  timestamp: string;
  data: Record<string, unknown>;
};

/** `data` of `job.completed`, `job.partial`, `job.failed` and `job.cancelled`. */
export type JobEndedData = JobOutcome & {
  jobId: string;
  jobType: string;
  status: "completed" | "partial" | "failed" | "cancelled";
  userId: string;
  externalUserId: string | null;
  result?: unknown;
  error?: { code: string; message: string; retryable: boolean; refundable: boolean } | null;
  finishedAt: number | null;
};

export class WebhookVerificationError extends Error {
  override name = "WebhookVerificationError";
}

export type VerifyOptions = {
  /** Largest clock difference accepted, in seconds (replays older than this are refused). @defaultValue 300 */
  toleranceSeconds?: number;
  /** The current time in ms (tests). @defaultValue Date.now() */
  now?: number;
};

type HeaderBag = Headers | Record<string, string | string[] | undefined>;

function header(headers: HeaderBag, name: string): string | null {
  if (headers instanceof Headers) return headers.get(name);
  const value = headers[name] ?? headers[name.toLowerCase()];
  return Array.isArray(value) ? (value[0] ?? null) : (value ?? null);
}

const encoder = new TextEncoder();

function base64ToBytes(b64: string): Uint8Array<ArrayBuffer> {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function bytesToBase64(bytes: Uint8Array): string {
  let bin = "";
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/** Compares every byte whatever the first difference, so timing does not reveal how much matched. */
function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

async function sign(secret: string, content: string): Promise<string> {
  const key = await crypto.subtle.importKey(
    "raw",
    base64ToBytes(secret.startsWith("whsec_") ? secret.slice(6) : secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  return bytesToBase64(new Uint8Array(await crypto.subtle.sign("HMAC", key, encoder.encode(content))));
}

/**
 * Checks a webhook request's signature and age against the account's secret (or several, while a rotated one
 * is still valid) and returns its parsed body. `body` must be the raw text as received, before any JSON
 * parsing. Throws `WebhookVerificationError` saying what was wrong.
 */
export async function verifyWebhook(
  secret: string | string[],
  body: string,
  headers: HeaderBag,
  opts: VerifyOptions = {},
): Promise<WebhookEvent> {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (!id || !timestamp || !signatures) {
    throw new WebhookVerificationError("missing webhook-id, webhook-timestamp or webhook-signature header");
  }
  const sentAt = Number(timestamp);
  const now = Math.floor((opts.now ?? Date.now()) / 1000);
  if (!Number.isInteger(sentAt) || Math.abs(now - sentAt) > (opts.toleranceSeconds ?? 300)) {
    throw new WebhookVerificationError("webhook-timestamp is missing, malformed or too far from now");
  }
  const given = signatures
    .split(" ")
    .filter((s) => s.startsWith("v1,"))
    .map((s) => s.slice(3));
  for (const s of Array.isArray(secret) ? secret : [secret]) {
    const expected = await sign(s, `${id}.${timestamp}.${body}`);
    if (given.some((g) => constantTimeEqual(g, expected))) return JSON.parse(body) as WebhookEvent;
  }
  throw new WebhookVerificationError("no webhook-signature matches the secret");
}
