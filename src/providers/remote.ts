/**
 * Helpers for adapters whose work runs remotely and is polled (Replicate, fal, ComfyUI, AUTOMATIC1111):
 * JSON calls through the shared classification, best-effort cancellation after an abort, and progress.
 */
import { type EnsureOkOptions, ensureOk, providerFetch, readJson } from "./http";
import type { GenerateContext } from "./types";

export const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** How long a cancel request may take: the job is already over, so this only bounds the clean-up. */
export const CANCEL_TIMEOUT_MS = 5_000;

export type JsonCallOptions = {
  signal: AbortSignal;
  timeoutMs?: number;
  classify?: EnsureOkOptions["classify"];
};

/** One request whose success body is JSON; non-2xx answers are classified (provider hook first). */
export async function fetchJson(
  provider: string,
  url: string | URL,
  init: RequestInit,
  opts: JsonCallOptions,
): Promise<unknown> {
  const res = await providerFetch(provider, url, init, { signal: opts.signal, timeoutMs: opts.timeoutMs });
  await ensureOk(provider, res, { signal: opts.signal, classify: opts.classify });
  return readJson(provider, res, opts.signal);
}

/**
 * Asks the provider to stop work we no longer want. Runs on its own short timeout because the job's signal has
 * already fired; failures are swallowed since the job is ending either way. Resolves to whether it got a 2xx.
 */
export async function sendCancel(provider: string, url: string | URL, init: RequestInit): Promise<boolean> {
  try {
    const res = await providerFetch(provider, url, init, { signal: AbortSignal.timeout(CANCEL_TIMEOUT_MS) });
    await res.body?.cancel().catch(() => {});
    return res.ok;
  } catch {
    return false;
  }
}

/**
 * Last percentage in tqdm-style logs ("45%|████", "Step 12/28", "12/28 [00:03<00:05]").
 * Models print their sampler progress this way on Replicate and fal.
 */
export function percentFromLogs(text: string): number | undefined {
  let best: { at: number; pct: number } | undefined;
  for (const m of text.matchAll(/(\d{1,3})%/g)) {
    const pct = Number(m[1]);
    if (pct <= 100) best = { at: m.index, pct };
  }
  for (const m of text.matchAll(/(\d+)\s*\/\s*(\d+)/g)) {
    const done = Number(m[1]);
    const total = Number(m[2]);
    if (total > 0 && done <= total && (!best || m.index > best.at)) {
      best = { at: m.index, pct: Math.round((done / total) * 100) };
    }
  }
  return best?.pct;
}

/** Wraps `ctx.onProgress` so polling loops can report every tick without flooding listeners with repeats. */
export function progressReporter(ctx: GenerateContext): (pct: number, message?: string) => void {
  let last: string | undefined;
  return (pct, message) => {
    const clamped = Math.max(0, Math.min(100, Math.round(pct)));
    const key = `${clamped}|${message ?? ""}`;
    if (key === last || !ctx.onProgress) return;
    last = key;
    ctx.onProgress(clamped, message);
  };
}

/** Base URL without trailing slashes, so `${base}/path` never doubles them. */
export function trimBase(url: string): string {
  return url.replace(/\/+$/, "");
}
