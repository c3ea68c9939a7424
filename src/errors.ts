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

  constructor(
    status: number,
    code: string,
    message: string,
    opts: { details?: unknown; extra?: Record<string, unknown> } = {},
  ) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = opts.details;
    this.extra = opts.extra;
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
