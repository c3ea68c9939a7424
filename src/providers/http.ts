/**
 * Shared HTTP plumbing for provider adapters. Every adapter goes through these so that failures are
 * classified the same way everywhere (see DESIGN.md §4 and docs/providers.md).
 *
 * API (stable — other adapters import it):
 *
 * - `providerFetch(provider, url, init, {signal, timeoutMs?, fetch?}) → Promise<Response>`
 *   fetch with the job's signal combined with a per-request timeout (default `DEFAULT_TIMEOUT_MS`, which
 *   also covers reading the body). Network error → ProviderError `transient` (`provider_network`); timeout →
 *   `timeout` (`provider_timeout`); the caller's abort rethrows `signal.reason` untouched (the engine's
 *   CancelledError / TimeoutError). Non-2xx responses are returned as is: pass them to `ensureOk`.
 * - `ensureOk(provider, res, {signal?, classify?, maxDelayMs?}) → Promise<void>`: no-op on 2xx; otherwise
 *   reads the body and throws. `classify(status, headers, bodyText, body)` may return a ProviderError for a
 *   provider-specific shape first; `undefined` falls back to `classifyHttpError`.
 * - `readJson(provider, res, signal?)`, `readText(...)`, `readBytes(...)`: body readers that map a
 *   timeout/network failure mid-body like `providerFetch`; `readJson` throws `provider_bad_response`
 *   on invalid JSON.
 * - `httpError(provider, status, headers, bodyText, opts?) → ProviderError` (./errors), and `classifyHttpError(...)`
 *   which throws it. Rules: 429 → `rate_limited` (`provider_rate_limited`), with `retryAfterMs` when a delay is
 *   known (`retryDelayMs`, then `opts.hintMs`); 5xx → `transient` (`provider_unavailable`, with `retryAfterMs`
 *   from Retry-After / HF `estimated_time`); 408 → `timeout`; 400/413/422 → `invalid_request`
 *   (`provider_invalid_request`); 401/403 → `auth` (`provider_auth`);
 *   402 and quota codes (OpenAI `insufficient_quota`, DashScope `Throttling.AllocationQuota`/`Arrearage`) →
 *   `provider_quota`; 404/410 → `provider_model_not_found`; safety codes (`content_policy_violation`,
 *   `moderation_blocked`, `DataInspectionFailed`) → `content_policy` (refundable: false). Every other
 *   unrecoverable error is refundable. Delays are capped at `opts.maxDelayMs` (default 5 min) and
 *   floored at 1 s.
 * - `contentPolicyError(provider, message, details?)`: the safety rejection error, for 200-with-refusal shapes.
 * - `badResponse(provider, message, details?)`: `bad_response` (`provider_bad_response`).
 * - `parseErrorBody(bodyText) → ErrorBodyInfo`: message/codes/hints pulled out of known error shapes.
 * - `parseRetryAfter(headers, now?) → ms | undefined` (`retry-after-ms` first, then seconds or HTTP date).
 * - `retryDelayMs(status, headers, body) → ms | undefined`: the one parser of "wait before retrying" every
 *   adapter goes through (via `httpError`): `retry-after-ms`, `Retry-After` (seconds or HTTP date), on a 429
 *   `x-ratelimit-reset*`, Google's `RetryInfo.retryDelay`, Hugging Face's `estimated_time`, then a wait
 *   written in the message ("resets in ~30s", "available in 5 seconds", "try again in 6m0s").
 * - `parseDuration("12s" | "1.5s" | "250ms" | "6m0s" | "30 seconds") → ms | undefined`;
 *   `parseTextHint(message)`, `parseRateLimitReset(headers)`: the pieces of `retryDelayMs`.
 * - `downloadImage(url, {signal, maxBytes?, timeoutMs?, provider?, headers?, fetch?}) → {bytes, mime}`:
 *   streamed, aborts past `maxBytes` (`rejected`, `provider_output_too_large`), sniffs the type,
 *   accepts `data:` URLs.
 * - `sleep(ms, signal) → Promise<void>`: abortable wait for polling loops (rejects with `signal.reason`).
 * - `allOrAbort(count, signal, (i, signal) => …) → T[]`: parallel calls; the first failure aborts the rest.
 * - Re-exports ./media: `sniffMime`, `base64ToBytes`, `bytesToBase64`, `toDataUrl`, `toBlob`,
 *   `imageFromBase64`, `parseSize`, `sizeToAspectRatio`.
 */
import { ProviderError } from "./errors";
import { base64ToBytes, sniffMime } from "./media";

export {
  base64ToBytes,
  bytesToBase64,
  type ImageMime,
  imageFromBase64,
  parseSize,
  sizeToAspectRatio,
  sniffMime,
  toBlob,
  toDataUrl,
} from "./media";

/** Per-request timeout when the adapter gives none; slow image models take a minute or two. */
/**
 * Failures that are the request's fault, not the provider's: it answered, correctly, with a safety verdict or
 * by refusing an invalid request. Retrying cannot fix them; they are never refunded (credits/refunds.ts) and
 * say nothing against the provider's health (health.ts).
 */
export const REQUEST_FAULT_CODES: ReadonlySet<string> = new Set([
  "content_policy",
  "provider_invalid_request",
]);

export const DEFAULT_TIMEOUT_MS = 180_000;
/** Longest "retry later" a provider can ask for before we clamp it. */
export const MAX_RETRY_DELAY_MS = 5 * 60_000;
/** A provider saying "retry in 0 s" must not turn into a hot loop that never spends an attempt. */
export const MIN_RETRY_DELAY_MS = 1_000;
/** Default cap on a downloaded output image. */
export const DEFAULT_MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024;

export type FetchFn = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export type ProviderFetchOptions = {
  /** The job's signal: its abort is a cancellation, never turned into a retryable error. */
  signal: AbortSignal;
  /** @defaultValue DEFAULT_TIMEOUT_MS */
  timeoutMs?: number;
  /** @defaultValue globalThis.fetch */
  fetch?: FetchFn;
};

/** Turns whatever fetch (or a body read) threw into our error classes, unless the caller aborted. */
export function mapFetchError(provider: string, err: unknown, signal?: AbortSignal): unknown {
  if (signal?.aborted) return signal.reason;
  if (err instanceof ProviderError) return err;
  const name = err instanceof Error ? err.name : "";
  if (name === "TimeoutError") {
    return new ProviderError("timeout", `${provider}: request timed out`, {
      details: { provider },
      cause: err,
    });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new ProviderError("transient", `${provider}: network error: ${message}`, {
    code: "provider_network",
    details: { provider },
    cause: err,
  });
}

export async function providerFetch(
  provider: string,
  url: string | URL,
  init: RequestInit,
  opts: ProviderFetchOptions,
): Promise<Response> {
  if (opts.signal.aborted) throw opts.signal.reason;
  const signal = AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs ?? DEFAULT_TIMEOUT_MS)]);
  const doFetch = opts.fetch ?? fetch;
  try {
    return await doFetch(url, { ...init, signal });
  } catch (err) {
    throw mapFetchError(provider, err, opts.signal);
  }
}

export async function readText(provider: string, res: Response, signal?: AbortSignal): Promise<string> {
  try {
    return await res.text();
  } catch (err) {
    throw mapFetchError(provider, err, signal);
  }
}

export async function readBytes(provider: string, res: Response, signal?: AbortSignal): Promise<Uint8Array> {
  try {
    return new Uint8Array(await res.arrayBuffer());
  } catch (err) {
    throw mapFetchError(provider, err, signal);
  }
}

export async function readJson(provider: string, res: Response, signal?: AbortSignal): Promise<unknown> {
  const text = await readText(provider, res, signal);
  try {
    return JSON.parse(text);
  } catch {
    throw badResponse(provider, `expected JSON, got: ${text.slice(0, 200)}`);
  }
}

export function badResponse(
  provider: string,
  message: string,
  details?: Record<string, unknown>,
): ProviderError {
  return new ProviderError("bad_response", `${provider}: ${message}`, {
    details: { provider, ...details },
  });
}

export function contentPolicyError(
  provider: string,
  message: string,
  details?: Record<string, unknown>,
): ProviderError {
  return new ProviderError(
    "content_policy",
    `${provider}: rejected by the provider's safety system: ${message}`,
    {
      details: { provider, ...details },
    },
  );
}

// ---------------------------------------------------------------------------------------------------------
// Retry hints: every documented form of "wait before trying again" (docs/providers.md, "Waiting")

export function parseRetryAfter(headers: Headers, now = Date.now()): number | undefined {
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "" && Number.isFinite(Number(ms))) return Math.max(0, Number(ms));
  const ra = headers.get("retry-after")?.trim();
  if (!ra) return undefined;
  if (/^\d+(\.\d+)?$/.test(ra)) return Number(ra) * 1000;
  const date = Date.parse(ra);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

const UNIT = "milliseconds?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h";
/** One number and its unit; `(?![a-z])` rather than `\b` so Go's "6m0s" splits into "6m" and "0s". */
const PART = new RegExp(`(\\d+(?:\\.\\d+)?)\\s*(${UNIT})(?![a-z])`, "gi");
const WHOLE_DURATION = new RegExp(`^\\s*(?:\\d+(?:\\.\\d+)?\\s*(?:${UNIT})(?![a-z])\\s*)+$`, "i");

function unitMs(unit: string): number {
  const u = unit.toLowerCase();
  if (u === "ms" || u.startsWith("milli")) return 1;
  if (u === "m" || u.startsWith("min")) return 60_000;
  if (u === "h" || u.startsWith("h")) return 3_600_000;
  return 1000;
}

/**
 * A duration as providers write it: Google's protobuf "12s" / "1.5s", OpenAI's Go-style "6m0s" / "20ms",
 * or words ("30 seconds", "2 minutes"). Undefined for anything else.
 */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value !== "string" || !WHOLE_DURATION.test(value)) return undefined;
  let total = 0;
  for (const m of value.matchAll(PART)) total += Number(m[1]) * unitMs(m[2] ?? "s");
  return total;
}

/** The phrases providers put before a wait in an error message, each followed by a duration. */
const TEXT_HINT = new RegExp(
  "(?:resets? in|available in|try again in|retry in|retry after|retrying in|wait(?: for)?)\\s*(?:about|approximately|~)?\\s*" +
    `((?:\\d+(?:\\.\\d+)?\\s*(?:${UNIT})(?![a-z])\\s*)+)`,
  "i",
);

/**
 * A wait stated in words: Replicate's "Your rate limit resets in ~30s.", its older "Expected available in 5
 * seconds", OpenAI's "Please try again in 6m0s", Gemini's "Please retry in 12.5s".
 */
export function parseTextHint(text: string | undefined): number | undefined {
  const m = text ? TEXT_HINT.exec(text) : null;
  return m ? parseDuration(m[1]!.trim()) : undefined;
}

/**
 * `x-ratelimit-reset-requests` / `-tokens` (OpenAI: Go durations), or `x-ratelimit-reset` (seconds from now,
 * or a Unix time when it is that large). When several are present, the longest: a 429 means one of them ran
 * out, and a shorter reset would only earn another 429.
 */
export function parseRateLimitReset(headers: Headers, now = Date.now()): number | undefined {
  const waits: number[] = [];
  for (const name of ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "x-ratelimit-reset"]) {
    const raw = headers.get(name)?.trim();
    if (!raw) continue;
    if (/^\d+(\.\d+)?$/.test(raw)) {
      const n = Number(raw);
      waits.push(n > 1e9 ? Math.max(0, n * 1000 - now) : n * 1000);
      continue;
    }
    const d = parseDuration(raw);
    if (d !== undefined) waits.push(d);
  }
  return waits.length > 0 ? Math.max(...waits) : undefined;
}

/**
 * How long a failed call asks us to wait, from every documented source, most authoritative first:
 * `retry-after-ms`, `Retry-After` (seconds or HTTP date), on a 429 the `x-ratelimit-reset*` headers, Google's
 * `RetryInfo.retryDelay`, Hugging Face's 503 `estimated_time`, then a wait written in the message.
 * Undefined when the answer says nothing about when.
 */
export function retryDelayMs(
  status: number,
  headers: Headers,
  body: ErrorBodyInfo,
  now = Date.now(),
): number | undefined {
  return (
    parseRetryAfter(headers, now) ??
    (status === 429 ? parseRateLimitReset(headers, now) : undefined) ??
    body.retryDelayMs ??
    body.estimatedMs ??
    body.textHintMs
  );
}

// ---------------------------------------------------------------------------------------------------------
// Error bodies

export type ErrorBodyInfo = {
  /** Human-readable message, if any shape carried one. */
  message?: string;
  /** Machine codes found (OpenAI error.code/type, Gemini error.status, DashScope code…), in order. */
  codes: string[];
  /** Hugging Face model loading: `estimated_time` in seconds, as ms. */
  estimatedMs?: number;
  /** Google RetryInfo.retryDelay, as ms. */
  retryDelayMs?: number;
  /** A wait written in the message ("resets in ~30s", "try again in 20s"), as ms. */
  textHintMs?: number;
  /** The parsed JSON body, when it was JSON. */
  json?: unknown;
};

export const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function messageOf(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (Array.isArray(v)) {
    const parts = v.map((x) => (isRecord(x) && typeof x.msg === "string" ? x.msg : JSON.stringify(x)));
    return parts.join("; ");
  }
  if (isRecord(v) && typeof v.message === "string") return v.message;
  return undefined;
}

function retryDelayOf(details: unknown): number | undefined {
  if (!Array.isArray(details)) return undefined;
  for (const d of details) {
    if (isRecord(d) && d.retryDelay !== undefined) return parseDuration(d.retryDelay);
  }
  return undefined;
}

/** Pulls message, codes and retry hints out of the error shapes of every provider in docs/providers.md. */
export function parseErrorBody(bodyText: string): ErrorBodyInfo {
  let json: unknown;
  try {
    json = JSON.parse(bodyText);
  } catch {
    const text = bodyText.trim().slice(0, 500);
    return text ? { message: text, codes: [], textHintMs: parseTextHint(text) } : { codes: [] };
  }
  const info: ErrorBodyInfo = { codes: [], json };
  if (!isRecord(json)) return info;
  const err = json.error;
  const codes: unknown[] = [];
  if (isRecord(err)) {
    codes.push(err.code, err.type, err.status);
    info.retryDelayMs = retryDelayOf(err.details);
  }
  codes.push(json.code, json.type);
  info.codes = codes.filter((c): c is string => typeof c === "string" && c !== "");
  info.message = messageOf(err) ?? messageOf(json.message) ?? messageOf(json.detail) ?? messageOf(json.title);
  if (typeof json.estimated_time === "number" && json.estimated_time >= 0) {
    info.estimatedMs = json.estimated_time * 1000;
  }
  info.textHintMs = parseTextHint(info.message);
  return info;
}

// ---------------------------------------------------------------------------------------------------------
// Classification

const CONTENT_POLICY_CODES = new Set([
  "content_policy_violation",
  "moderation_blocked",
  "DataInspectionFailed",
]);
const QUOTA_CODES = new Set([
  "insufficient_quota",
  "billing_hard_limit_reached",
  "Throttling.AllocationQuota",
  "Arrearage",
]);

export type ClassifyOptions = {
  /** Cap on any delay derived from the response. @defaultValue MAX_RETRY_DELAY_MS */
  maxDelayMs?: number;
  /** A provider-specific delay hint the adapter already parsed (used when no header gives one). */
  hintMs?: number;
  /** @defaultValue Date.now() */
  now?: number;
};

function clampDelay(ms: number, max: number): number {
  return Math.min(Math.max(ms, MIN_RETRY_DELAY_MS), max);
}

/** The error a non-2xx provider response stands for. Never throws; see `classifyHttpError`. */
export function httpError(
  provider: string,
  status: number,
  headers: Headers,
  bodyText: string,
  opts: ClassifyOptions = {},
): ProviderError {
  const info = parseErrorBody(bodyText);
  const message = `${provider}: HTTP ${status}${info.message ? `: ${info.message.slice(0, 500)}` : ""}`;
  const details: Record<string, unknown> = { provider, status };
  if (info.codes.length > 0) details.providerCode = info.codes[0];
  const maxDelay = opts.maxDelayMs ?? MAX_RETRY_DELAY_MS;
  const delay = retryDelayMs(status, headers, info, opts.now) ?? opts.hintMs;

  if (info.codes.some((c) => CONTENT_POLICY_CODES.has(c))) {
    return contentPolicyError(provider, info.message ?? `HTTP ${status}`, details);
  }
  if (status === 402 || info.codes.some((c) => QUOTA_CODES.has(c))) {
    return new ProviderError("quota", message, { details });
  }
  if (status === 429 || status >= 500) {
    const kind = status === 429 ? "rate_limited" : "transient";
    if (delay === undefined) return new ProviderError(kind, message, { details });
    return new ProviderError(kind, message, { retryAfterMs: clampDelay(delay, maxDelay), details });
  }
  if (status === 408) return new ProviderError("timeout", message, { details });
  if (status === 401 || status === 403) return new ProviderError("auth", message, { details });
  if (status === 404 || status === 410) return new ProviderError("not_found", message, { details });
  if (status === 400 || status === 413 || status === 422) {
    return new ProviderError("invalid_request", message, { details });
  }
  if (status >= 400) return new ProviderError("rejected", message, { details });
  // A 1xx/3xx reaching us means a proxy or redirect misbehaved; worth another try.
  return new ProviderError("transient", message, { code: "provider_unexpected_status", details });
}

export function classifyHttpError(
  provider: string,
  status: number,
  headers: Headers,
  bodyText: string,
  opts: ClassifyOptions = {},
): never {
  throw httpError(provider, status, headers, bodyText, opts);
}

export type EnsureOkOptions = ClassifyOptions & {
  signal?: AbortSignal;
  /** Provider-specific pre-classification; return undefined to fall back to `httpError`. */
  classify?: (
    status: number,
    headers: Headers,
    bodyText: string,
    body: ErrorBodyInfo,
  ) => ProviderError | undefined;
};

export async function ensureOk(provider: string, res: Response, opts: EnsureOkOptions = {}): Promise<void> {
  if (res.ok) return;
  const text = await readText(provider, res, opts.signal).catch((err: unknown) => {
    if (opts.signal?.aborted) throw err;
    return "";
  });
  const special = opts.classify?.(res.status, res.headers, text, parseErrorBody(text));
  throw special ?? httpError(provider, res.status, res.headers, text, opts);
}

// ---------------------------------------------------------------------------------------------------------
// Downloads

export type DownloadOptions = {
  signal: AbortSignal;
  /** @defaultValue DEFAULT_MAX_DOWNLOAD_BYTES */
  maxBytes?: number;
  /** @defaultValue DEFAULT_TIMEOUT_MS */
  timeoutMs?: number;
  /** Name used in error messages and codes. @defaultValue "download" */
  provider?: string;
  headers?: Record<string, string>;
  fetch?: FetchFn;
};

function tooLarge(provider: string, maxBytes: number): ProviderError {
  return new ProviderError("rejected", `${provider}: output image is larger than ${maxBytes} bytes`, {
    code: "provider_output_too_large",
    details: { provider, maxBytes },
  });
}

function finishImage(provider: string, bytes: Uint8Array, contentType: string | null) {
  const declared = contentType?.split(";")[0]?.trim().toLowerCase();
  const mime = sniffMime(bytes) ?? (declared?.startsWith("image/") ? declared : undefined);
  if (!mime || bytes.length === 0) {
    throw badResponse(provider, `output is not an image (content-type ${declared ?? "none"})`);
  }
  return { bytes, mime };
}

async function readCapped(provider: string, res: Response, maxBytes: number, signal: AbortSignal) {
  const declared = Number(res.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel().catch(() => {});
    throw tooLarge(provider, maxBytes);
  }
  if (!res.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = res.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        await reader.cancel().catch(() => {});
        throw tooLarge(provider, maxBytes);
      }
      chunks.push(value);
    }
  } catch (err) {
    throw mapFetchError(provider, err, signal);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** An output URL that is gone (expired, deleted) will not come back on retry. */
const expiredOutput = (provider: string) => (status: number) =>
  status === 404 || status === 410
    ? new ProviderError("not_found", `${provider}: output image is gone (HTTP ${status})`, {
        code: "provider_output_missing",
        details: { provider, status },
      })
    : undefined;

/** Fetches an output image (URLs from Replicate, fal, DashScope, OpenAI dall-e…) with a size cap. */
export async function downloadImage(
  url: string,
  opts: DownloadOptions,
): Promise<{ bytes: Uint8Array; mime: string }> {
  const provider = opts.provider ?? "download";
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_DOWNLOAD_BYTES;
  if (url.startsWith("data:")) {
    const bytes = base64ToBytes(url);
    if (bytes.byteLength > maxBytes) throw tooLarge(provider, maxBytes);
    return finishImage(provider, bytes, /^data:([^;,]+)/.exec(url)?.[1] ?? null);
  }
  const fetchOpts: ProviderFetchOptions = { signal: opts.signal };
  if (opts.timeoutMs !== undefined) fetchOpts.timeoutMs = opts.timeoutMs;
  if (opts.fetch) fetchOpts.fetch = opts.fetch;
  const res = await providerFetch(provider, url, { headers: opts.headers ?? {} }, fetchOpts);
  await ensureOk(provider, res, { signal: opts.signal, classify: expiredOutput(provider) });
  const bytes = await readCapped(provider, res, maxBytes, opts.signal);
  return finishImage(provider, bytes, res.headers.get("content-type"));
}

// ---------------------------------------------------------------------------------------------------------
// Waiting

/** Resolves after `ms`, or rejects with `signal.reason` as soon as the signal aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/**
 * Runs `count` calls in parallel (`fn(i, signal)`); the first failure aborts the others so no quota is spent
 * on a lost cause, and its error is the one thrown.
 */
export async function allOrAbort<T>(
  count: number,
  signal: AbortSignal,
  fn: (i: number, signal: AbortSignal) => Promise<T>,
): Promise<T[]> {
  const group = new AbortController();
  const linked = AbortSignal.any([signal, group.signal]);
  try {
    return await Promise.all(
      Array.from({ length: count }, (_, i) =>
        fn(i, linked).catch((err: unknown) => {
          group.abort(err);
          throw err;
        }),
      ),
    );
  } finally {
    group.abort();
  }
}
