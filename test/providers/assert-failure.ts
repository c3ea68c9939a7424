import { expect } from "bun:test";
import { ProviderError, type ProviderErrorKind } from "../../src/providers/errors";

export type ExpectedFailure = {
  kind: ProviderErrorKind;
  code: string;
  retryable?: boolean;
  refundable?: boolean;
  /** The wait the provider asked for. */
  retryAfterMs?: number;
};

/** Awaits a rejection and checks it is a ProviderError of that kind and code; returns it for more checks. */
export async function expectFailure(run: Promise<unknown>, want: ExpectedFailure): Promise<ProviderError> {
  let caught: unknown;
  try {
    await run;
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ProviderError);
  const err = caught as ProviderError;
  expect({ kind: err.kind, code: err.code }).toEqual({ kind: want.kind, code: want.code });
  if (want.retryable !== undefined) expect(err.retryable).toBe(want.retryable);
  if (want.refundable !== undefined) expect(err.refundable).toBe(want.refundable);
  if (want.retryAfterMs !== undefined) expect(err.retryAfterMs).toBe(want.retryAfterMs);
  return err;
}
