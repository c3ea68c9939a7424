/**
 * What a provider call can fail with, in the providers' own terms. Adapters never speak the queue's language:
 * whoever runs them (the generate job) decides what a kind means for a job (retry now, retry later, fail).
 */

/**
 * - `rate_limited`: 429; `retryAfterMs` when the provider said how long to wait.
 * - `transient`: 5xx, network failure, a run that failed or returned nothing on the provider's side: a new try
 *   may work (`retryAfterMs` when a 5xx said when).
 * - `timeout`: the request or the provider's own run took too long.
 * - `bad_response`: the provider answered something we cannot read (not JSON, not an image, no images).
 * - `quota`: out of credit or daily quota; waiting minutes will not help.
 * - `auth`: the key was refused.
 * - `not_found`: the model (or the resource) does not exist.
 * - `invalid_request`: the provider (or the adapter, before calling it) refused the request as malformed.
 * - `unsupported`: the adapter cannot do what was asked with this provider or model.
 * - `content_policy`: the provider's safety system refused the prompt or every output (never refunded).
 * - `rejected`: any other answer no retry can fix (an unexpected 4xx, an output larger than allowed).
 * - `unknown_provider`: the provider is unknown or not configured here.
 */
export type ProviderErrorKind =
  | "rate_limited"
  | "transient"
  | "timeout"
  | "bad_response"
  | "quota"
  | "auth"
  | "not_found"
  | "invalid_request"
  | "unsupported"
  | "content_policy"
  | "rejected"
  | "unknown_provider";

/** Kinds a later attempt can fix; the rest fail for good. */
export const RETRYABLE_KINDS: ReadonlySet<ProviderErrorKind> = new Set([
  "rate_limited",
  "transient",
  "timeout",
  "bad_response",
]);

/** The stable code (stored as `jobs.error.code`) a kind gets when the adapter names none more precise. */
const DEFAULT_CODES: Record<ProviderErrorKind, string> = {
  rate_limited: "provider_rate_limited",
  transient: "provider_unavailable",
  timeout: "provider_timeout",
  bad_response: "provider_bad_response",
  quota: "provider_quota",
  auth: "provider_auth",
  not_found: "provider_model_not_found",
  invalid_request: "provider_invalid_request",
  unsupported: "provider_unsupported",
  content_policy: "content_policy",
  rejected: "provider_error",
  unknown_provider: "provider_not_found",
};

export type ProviderErrorOptions = {
  /** @defaultValue the kind's default code (e.g. `provider_rate_limited`) */
  code?: string;
  /** How long the provider asked us to wait before trying again (retryable kinds only). */
  retryAfterMs?: number;
  /** Whether the user gets their credits back. @defaultValue false for `content_policy`, else true */
  refundable?: boolean;
  details?: Record<string, unknown>;
  cause?: unknown;
};

export class ProviderError extends Error {
  override name = "ProviderError";
  readonly kind: ProviderErrorKind;
  readonly code: string;
  readonly retryable: boolean;
  readonly refundable: boolean;
  readonly retryAfterMs?: number;
  readonly details?: Record<string, unknown>;

  constructor(kind: ProviderErrorKind, message: string, opts: ProviderErrorOptions = {}) {
    super(message, { cause: opts.cause });
    this.kind = kind;
    this.code = opts.code ?? DEFAULT_CODES[kind];
    this.retryable = RETRYABLE_KINDS.has(kind);
    this.refundable = opts.refundable ?? kind !== "content_policy";
    if (opts.retryAfterMs !== undefined && this.retryable) this.retryAfterMs = Math.max(0, opts.retryAfterMs);
    if (opts.details !== undefined) this.details = opts.details;
  }
}
