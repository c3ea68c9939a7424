/** Small helpers shared by the remote-provider adapter tests (replicate, fal, comfyui, automatic1111, dashscope). */
import type { GenerateContext, GenerateRequest } from "../../src/providers/types";

export function request(overrides: Partial<GenerateRequest> = {}): GenerateRequest {
  return { prompt: "a red fox in the snow", size: "1024x1024", n: 1, ...overrides };
}

export type ProgressLog = Array<{ pct: number; message?: string }>;

/** A context on `signal` whose progress reports are collected in `progress`. */
export function context(signal: AbortSignal = new AbortController().signal): GenerateContext & {
  progress: ProgressLog;
} {
  const progress: ProgressLog = [];
  return {
    signal,
    progress,
    onProgress: (pct, message) => {
      progress.push(message === undefined ? { pct } : { pct, message });
    },
  };
}

/** The rejection of `promise`; fails the test if it resolves. */
export async function failureOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** Resolves once `check` holds (polled every 5 ms), so tests wait for an event rather than a fixed delay. */
export async function until(check: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await Bun.sleep(5);
  }
}
