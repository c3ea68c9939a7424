import { describe, expect, test } from "bun:test";
import { toQueueFailure } from "../../src/modules/generate/job";
import { ProviderError } from "../../src/providers/errors";
import {
  CancelledError,
  RetryAfterError,
  RetryableError,
  toJobError,
  UnrecoverableError,
} from "../../src/queue";

describe("generate job: ProviderError kinds → queue outcomes", () => {
  test("a wait the provider asked for re-queues without spending an attempt, with the same code", () => {
    const err = toQueueFailure(new ProviderError("rate_limited", "slow down", { retryAfterMs: 3000 }));
    expect(err).toBeInstanceOf(RetryAfterError);
    expect(err).toMatchObject({ delayMs: 3000, code: "provider_rate_limited", message: "slow down" });
    const unavailable = toQueueFailure(new ProviderError("transient", "loading", { retryAfterMs: 20_500 }));
    expect(unavailable).toMatchObject({ delayMs: 20_500, code: "provider_unavailable" });
  });

  test.each([
    ["rate_limited", "provider_rate_limited"],
    ["transient", "provider_unavailable"],
    ["timeout", "provider_timeout"],
    ["bad_response", "provider_bad_response"],
  ] as const)("%s without a wait → RetryableError %s (refundable)", (kind, code) => {
    const err = toQueueFailure(new ProviderError(kind, "try again"));
    expect(err).toBeInstanceOf(RetryableError);
    expect(err).not.toBeInstanceOf(RetryAfterError);
    expect(toJobError(err)).toEqual({ code, message: "try again", retryable: true, refundable: true });
  });

  test.each([
    ["quota", "provider_quota", true],
    ["auth", "provider_auth", true],
    ["not_found", "provider_model_not_found", true],
    ["invalid_request", "provider_invalid_request", true],
    ["unsupported", "provider_unsupported", true],
    ["rejected", "provider_error", true],
    ["unknown_provider", "provider_not_found", true],
    ["content_policy", "content_policy", false],
  ] as const)("%s → UnrecoverableError %s (refundable: %p)", (kind, code, refundable) => {
    const err = toQueueFailure(new ProviderError(kind, "no", { details: { provider: "p" } }));
    expect(err).toBeInstanceOf(UnrecoverableError);
    expect(toJobError(err)).toEqual({
      code,
      message: "no",
      retryable: false,
      refundable,
      details: { provider: "p" },
    });
  });

  test("an adapter's own code survives; anything that is not a ProviderError passes through untouched", () => {
    const own = toQueueFailure(new ProviderError("transient", "CUDA OOM", { code: "provider_failed" }));
    expect(toJobError(own).code).toBe("provider_failed");
    const cancelled = new CancelledError();
    expect(toQueueFailure(cancelled)).toBe(cancelled);
    const bug = new TypeError("x is undefined");
    expect(toQueueFailure(bug)).toBe(bug);
  });
});
