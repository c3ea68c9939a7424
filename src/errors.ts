/**
 * An error the HTTP layer turns into `{ "error": { code, message, details? } }` with its status.
 * Services throw these; they never build responses themselves.
 */
export class ApiError extends Error {
  override name = "ApiError";
  readonly status: number;
  readonly code: string;
  readonly details?: unknown;
  /** Extra top-level fields beside `error` (e.g. `fallbackToModal`). */
  readonly extra?: Record<string, unknown>;
  /** Response headers sent with the error (e.g. `retry-after`). */
  readonly headers?: Record<string, string>;

  constructor(
    status: number,
    code: string,
    message: string,
    opts: { details?: unknown; extra?: Record<string, unknown>; headers?: Record<string, string> } = {},
  ) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = opts.details;
    this.extra = opts.extra;
    this.headers = opts.headers;
  }

  toBody(): Record<string, unknown> {
    const error: Record<string, unknown> = { code: this.code, message: this.message };
    if (this.details !== undefined) error.details = this.details;
    return { error, ...this.extra };
  }
}

export const notFound = (what = "resource") => new ApiError(404, "not_found", `${what} not found`);
export const badRequest = (code: string, message: string, details?: unknown) =>
  new ApiError(400, code, message, { details });
export const unprocessable = (code: string, message: string, details?: unknown) =>
  new ApiError(422, code, message, { details });
export const forbidden = (message = "this key may not do that") => new ApiError(403, "forbidden", message);
export const unauthorized = (message = "missing or invalid credentials") =>
  new ApiError(401, "unauthorized", message);
export const conflict = (code: string, message: string) => new ApiError(409, code, message);

/** 429 with `Retry-After` in whole seconds (at least 1) and the exact wait in `details.retryAfterMs`. */
export function rateLimited(what: string, waitMs: number): ApiError {
  const seconds = Math.max(1, Math.ceil(waitMs / 1000));
  return new ApiError(429, "rate_limited", `${what}; retry in ${seconds} s`, {
    details: { retryAfterMs: waitMs },
    headers: { "retry-after": String(seconds) },
  });
}

/** `1 credit`, `2 credits`: a count with its noun agreeing (regular plurals only). */
export const countOf = (n: number, noun: string): string => `${n} ${noun}${n === 1 ? "" : "s"}`;

/**
 * 422 `url_not_allowed` for a URL the outbound guard refused; says how to allow private addresses for
 * development, except for cloud metadata endpoints, which stay refused either way.
 */
export function urlNotAllowed(message: string, reason: string): ApiError {
  const hint =
    reason === "metadata"
      ? ""
      : "; to call private or loopback addresses in development, set ALLOW_PRIVATE_URLS=true";
  return unprocessable("url_not_allowed", `${message}${hint}`, { reason });
}
