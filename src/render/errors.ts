/** Errors of the render library. Each has a stable `code`; `status` is the HTTP status the API maps it to. */
import { oneOf } from "../validation";

/** A template name that is not registered. */
export class UnknownTemplateError extends Error {
  override name = "UnknownTemplateError";
  readonly code = "unknown_template";
  readonly status = 422;
  constructor(template: string, known: readonly string[]) {
    super(`unknown card template "${template}": ${oneOf(known)}`);
  }
}

/** The card data does not match the template's schema; `details` holds the zod issues. */
export class CardDataError extends Error {
  override name = "CardDataError";
  readonly code = "invalid_card_data";
  readonly status = 422;
  readonly details: unknown;
  constructor(template: string, details: unknown) {
    super(`invalid data for card template "${template}"`);
    this.details = details;
  }
}

export type RenderErrorCode = "render_failed" | "worker_crashed" | "render_timeout" | "pool_closed";

/** Rendering failed for a reason other than bad input; `worker_crashed` and `render_timeout` are worth a retry. */
export class RenderError extends Error {
  override name = "RenderError";
  readonly code: RenderErrorCode;
  readonly status = 500;
  constructor(code: RenderErrorCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.code = code;
  }
}
