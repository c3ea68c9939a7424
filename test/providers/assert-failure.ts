import { expect } from "bun:test";
import { type JobFailure, RetryAfterError } from "../../src/queue/errors";

export type ExpectedFailure = {
  type: abstract new (...args: never[]) => JobFailure;
  code: string;
  retryable?: boolean;
  refundable?: boolean;
  /** For RetryAfterError. */
  delayMs?: number;
};

/** Awaits a rejection and checks the error's class and classification; returns the error for more checks. */
export async function expectFailure(run: Promise<unknown>, want: ExpectedFailure): Promise<JobFailure> {
  let caught: unknown;
  try {
    await run;
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(want.type);
  const err = caught as JobFailure;
  expect({ code: err.code }).toEqual({ code: want.code });
  if (want.retryable !== undefined) expect(err.retryable).toBe(want.retryable);
  if (want.refundable !== undefined) expect(err.refundable).toBe(want.refundable);
  if (want.delayMs !== undefined) {
    expect(err).toBeInstanceOf(RetryAfterError);
    expect((err as RetryAfterError).delayMs).toBe(want.delayMs);
  }
  return err;
}
