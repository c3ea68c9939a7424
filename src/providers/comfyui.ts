/**
 * ComfyUI (docs/providers.md "ComfyUI"): fill a workflow graph, queue it with `POST /prompt`, wait for its
 * history entry, fetch the saved images with `GET /view`. The WebSocket `/ws?clientId=` gives sampler progress
 * and an early "finished" nudge; when it cannot connect, polling `/history` alone still completes the job.
 * An edit first uploads the input with `POST /upload/image`, then runs the edit workflow (img2img by default),
 * whose LoadImage node takes the uploaded name.
 */

import type { ProviderCapabilities } from "./capabilities";
import {
  DEFAULT_EDIT_WORKFLOW,
  DEFAULT_WORKFLOW,
  fillWorkflow,
  parseWorkflow,
  type Workflow,
  type WorkflowValues,
} from "./comfyui-workflow";
import { ProviderError } from "./errors";
import { badResponse, downloadImage, type EnsureOkOptions, parseSize, sleep, toBlob } from "./http";
import { CANCEL_TIMEOUT_MS, fetchJson, isRecord, progressReporter, sendCancel, trimBase } from "./remote";
import type {
  GenerateContext,
  GeneratedImage,
  GenerateRequest,
  InputImage,
  Provider,
  ProviderInfo,
} from "./types";

const PROVIDER = "comfyui";
const DEFAULT_CHECKPOINT = "sd_xl_base_1.0.safetensors";

export type ComfyuiOptions = {
  /** Server base URL, e.g. `http://gpu-box:8188` (routes under `/api` work too: `http://gpu-box:8188/api`). */
  url: string;
  /** API-format graph (object or JSON text) with `{{prompt}}`-style placeholders. @defaultValue DEFAULT_WORKFLOW */
  workflow?: Workflow | string;
  /**
   * Graph for edits, with `{{image}}` on its LoadImage node and `{{denoise}}`. @defaultValue
   * DEFAULT_EDIT_WORKFLOW (img2img)
   */
  editWorkflow?: Workflow | string;
  /** Delay between `/history` polls. @defaultValue 500 */
  pollIntervalMs?: number;
  /** Checkpoint file used when the request names no model. @defaultValue "sd_xl_base_1.0.safetensors" */
  checkpoint?: string;
  /** How long to wait for the progress socket before relying on polling alone. @defaultValue 2000 */
  socketTimeoutMs?: number;
  /** Per-request timeout for API calls and downloads. @defaultValue http.DEFAULT_TIMEOUT_MS */
  timeoutMs?: number;
  /** Cap on each downloaded output. @defaultValue http.DEFAULT_MAX_DOWNLOAD_BYTES */
  maxDownloadBytes?: number;
};

export type OutputImage = { filename: string; subfolder?: string; type?: string };

export type HistoryEntry = {
  outputs?: Record<string, { images?: OutputImage[] }>;
  status?: { status_str?: string; completed?: boolean; messages?: Array<[string, Record<string, unknown>]> };
};

function invalid(message: string, details?: Record<string, unknown>): ProviderError {
  return new ProviderError("invalid_request", `${PROVIDER}: ${message}`, {
    details: { provider: PROVIDER, ...details },
  });
}

function param<T>(params: Record<string, unknown> | undefined, key: string, kind: string, fallback: T): T {
  const v = params?.[key];
  return typeof v === kind ? (v as T) : fallback;
}

/** Any checkpoint on the box; the built-in graphs draw from text or redraw one input image (no mask). */
export const CAPABILITIES: ProviderCapabilities = {
  models: {},
  anyModel: {
    input: "both",
    maxInputImages: 1,
    mask: false,
    sizes: { kind: "range", min: 64, max: 4096, step: 8 },
    imagesPerCall: 4,
    negativePrompt: "native",
    seed: true,
    outputFormats: ["png"],
  },
};

export function workflowValues(
  req: GenerateRequest,
  checkpoint: string,
  seed: number,
  image = "",
): WorkflowValues {
  const { width, height } = parseSize(req.size);
  return {
    prompt: req.prompt,
    negative_prompt: req.negativePrompt ?? "",
    seed,
    width,
    height,
    batch_size: req.n,
    model: req.model ?? checkpoint,
    steps: param(req.params, "steps", "number", 20),
    cfg: param(req.params, "cfg", "number", 7),
    sampler_name: param(req.params, "sampler_name", "string", "euler"),
    scheduler: param(req.params, "scheduler", "string", "normal"),
    image,
    denoise: param(req.params, "denoise", "number", image ? 0.75 : 1),
  };
}

/** A rejected graph: the top-level error plus the first failing node, which is what a user needs to fix it. */
export const classify: EnsureOkOptions["classify"] = (status, _headers, _text, body) => {
  const json = body.json;
  if (status !== 400 || !isRecord(json) || !isRecord(json.node_errors)) return undefined;
  const parts = [body.message ?? "invalid prompt"];
  for (const node of Object.values(json.node_errors)) {
    const first: unknown = isRecord(node) && Array.isArray(node.errors) ? node.errors[0] : undefined;
    if (isRecord(node) && isRecord(first)) {
      parts.push(
        `${String(node.class_type ?? "node")}: ${String(first.message ?? "")} ${String(first.details ?? "")}`,
      );
      break;
    }
  }
  return invalid(parts.join("; ").trim(), { status, nodeErrors: json.node_errors });
};

/** The history entry's verdict: images to fetch, or the reason the run failed. */
export function historyImages(entry: HistoryEntry): OutputImage[] {
  if (entry.status?.status_str === "error") {
    const messages = entry.status.messages ?? [];
    const error = messages.find(([type]) => type === "execution_error")?.[1];
    if (!error && messages.some(([type]) => type === "execution_interrupted")) {
      // Someone else pressed Cancel on the box (our own aborts never read history); the prompt itself is fine.
      throw new ProviderError("transient", `${PROVIDER}: run was interrupted`, {
        code: "provider_interrupted",
        details: { provider: PROVIDER },
      });
    }
    const text = `${String(error?.exception_type ?? "error")}: ${String(error?.exception_message ?? "run failed")}`;
    throw new ProviderError("transient", `${PROVIDER}: ${text.trim()}`, {
      code: "provider_failed",
      details: { provider: PROVIDER, node: error?.node_type ?? error?.node_id },
    });
  }
  const all = Object.values(entry.outputs ?? {}).flatMap((o) => o.images ?? []);
  // PreviewImage writes `temp` files next to SaveImage's `output`; only fall back to them when nothing was saved.
  const saved = all.filter((img) => (img.type ?? "output") === "output");
  const images = saved.length > 0 ? saved : all;
  if (images.length === 0) {
    throw invalid("the workflow finished without an image output (add a SaveImage node)");
  }
  return images;
}

type Frame = { type: string; data: Record<string, unknown> };

function parseFrame(data: unknown): Frame | undefined {
  if (typeof data !== "string") return undefined; // binary frames are live previews
  try {
    const v: unknown = JSON.parse(data);
    return isRecord(v) && typeof v.type === "string" && isRecord(v.data) ? (v as Frame) : undefined;
  } catch {
    return undefined;
  }
}

const END_FRAMES = new Set(["execution_success", "execution_error", "execution_interrupted"]);

/**
 * Progress from a connected socket, and a count of "run ended" frames so the poll loop can re-read history at
 * once instead of sleeping out its interval. Counting (not one-shot events) means an end frame that arrives
 * while a history request is in flight is not lost.
 */
type ProgressSocket = { readonly ends: number; endedSince(count: number): Promise<void>; close(): void };

function connectSocket(url: string, timeoutMs: number, signal: AbortSignal): Promise<WebSocket | undefined> {
  return new Promise((resolve) => {
    let ws: WebSocket;
    try {
      ws = new WebSocket(url);
    } catch {
      resolve(undefined);
      return;
    }
    let settled = false;
    const finish = (ok: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      if (!ok) ws.close();
      resolve(ok ? ws : undefined);
    };
    const onAbort = () => finish(false);
    const timer = setTimeout(onAbort, timeoutMs);
    signal.addEventListener("abort", onAbort, { once: true });
    ws.onopen = () => finish(true);
    ws.onerror = () => finish(false);
    ws.onclose = () => finish(false);
  });
}

function watchSocket(ws: WebSocket, report: (pct: number, message?: string) => void): ProgressSocket {
  let ends = 0;
  let open = true;
  let waiters: Array<() => void> = [];
  const wakeAll = () => {
    for (const wake of waiters) wake();
    waiters = [];
  };
  const closed = () => {
    open = false;
    wakeAll();
  };
  ws.onmessage = (ev) => {
    const frame = parseFrame(ev.data);
    if (!frame) return;
    const { value, max } = frame.data;
    if (frame.type === "progress" && typeof value === "number" && typeof max === "number" && max > 0) {
      report((value / max) * 100, "sampling");
    }
    // The socket is ours alone (one client id per job), so any end frame is about our prompt.
    if (END_FRAMES.has(frame.type) || (frame.type === "executing" && frame.data.node === null)) {
      ends += 1;
      wakeAll();
    }
  };
  ws.onclose = closed;
  ws.onerror = closed;
  return {
    get ends() {
      return ends;
    },
    // A closed socket never wakes anyone again, so polling alone paces the loop (no busy spin).
    endedSince: (count) =>
      ends > count ? Promise.resolve() : new Promise<void>((resolve) => open && waiters.push(resolve)),
    close: () => {
      closed();
      ws.close();
    },
  };
}

/** Sleeps for the poll interval unless `wake` settles first; the losing timer is cleared either way. */
async function pause(ms: number, signal: AbortSignal, wake: Promise<void> | undefined): Promise<void> {
  if (!wake) return sleep(ms, signal);
  const done = new AbortController();
  try {
    await Promise.race([sleep(ms, AbortSignal.any([signal, done.signal])), wake]);
  } finally {
    done.abort();
  }
  signal.throwIfAborted();
}

function socketUrl(base: string, clientId: string): string {
  const url = new URL(`${base}/ws`);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  url.searchParams.set("clientId", clientId);
  return url.toString();
}

function randomSeed(): number {
  return crypto.getRandomValues(new Uint32Array(1))[0]!;
}

export function createComfyuiProvider(opts: ComfyuiOptions): Provider {
  const base = trimBase(opts.url);
  const template = opts.workflow === undefined ? DEFAULT_WORKFLOW : parseWorkflow(opts.workflow);
  const editTemplate =
    opts.editWorkflow === undefined ? DEFAULT_EDIT_WORKFLOW : parseWorkflow(opts.editWorkflow);
  const pollMs = opts.pollIntervalMs ?? 500;
  const checkpoint = opts.checkpoint ?? DEFAULT_CHECKPOINT;
  // A user workflow may keep its own fixed or randomized seed; only report ours when the graph took it.
  const takesSeed = /\{\{\s*seed\s*\}\}/.test(JSON.stringify(template));
  const json = { "content-type": "application/json" };
  const info: ProviderInfo = {
    name: PROVIDER,
    defaultModel: checkpoint,
    models: [checkpoint],
    supportsEdits: true,
    capabilities: CAPABILITIES,
    limits: { concurrency: 1, rpm: 0 },
  };

  const call = (path: string, init: RequestInit, signal: AbortSignal) =>
    fetchJson(PROVIDER, `${base}${path}`, init, { signal, classify, timeoutMs: opts.timeoutMs });

  async function submit(graph: Workflow, clientId: string, signal: AbortSignal): Promise<string> {
    const body = JSON.stringify({ prompt: graph, client_id: clientId });
    const res = await call("/prompt", { method: "POST", headers: json, body }, signal);
    if (!isRecord(res) || typeof res.prompt_id !== "string") {
      throw badResponse(PROVIDER, "no prompt_id in answer");
    }
    return res.prompt_id;
  }

  /** History holds an entry only once the run is over, so its presence is the completion signal. */
  async function waitForHistory(
    promptId: string,
    signal: AbortSignal,
    socket: ProgressSocket | undefined,
  ): Promise<HistoryEntry> {
    for (;;) {
      const seen = socket?.ends ?? 0;
      const history = await call(`/history/${encodeURIComponent(promptId)}`, {}, signal);
      const entry = isRecord(history) ? history[promptId] : undefined;
      if (isRecord(entry)) return entry as HistoryEntry;
      await pause(pollMs, signal, socket?.endedSince(seen));
    }
  }

  /** Interrupt only when our prompt is the one running (it would stop anyone's); dequeue it if still pending. */
  async function cancelPrompt(promptId: string): Promise<void> {
    const signal = AbortSignal.timeout(CANCEL_TIMEOUT_MS);
    const queue = await call("/queue", {}, signal).catch(() => undefined);
    if (!isRecord(queue)) return;
    const ids = (list: unknown) =>
      Array.isArray(list) ? list.map((e) => (Array.isArray(e) ? e[1] : undefined)) : [];
    if (ids(queue.queue_running).includes(promptId)) {
      const body = JSON.stringify({ prompt_id: promptId });
      await sendCancel(PROVIDER, `${base}/interrupt`, { method: "POST", headers: json, body });
    } else if (ids(queue.queue_pending).includes(promptId)) {
      const body = JSON.stringify({ delete: [promptId] });
      await sendCancel(PROVIDER, `${base}/queue`, { method: "POST", headers: json, body });
    }
  }

  async function fetchImages(
    images: OutputImage[],
    seed: number | undefined,
    signal: AbortSignal,
  ): Promise<GeneratedImage[]> {
    const dl = { signal, provider: PROVIDER, timeoutMs: opts.timeoutMs, maxBytes: opts.maxDownloadBytes };
    return Promise.all(
      images.map(async (img) => {
        const q = new URLSearchParams({
          filename: img.filename,
          subfolder: img.subfolder ?? "",
          type: img.type ?? "output",
        });
        const image = await downloadImage(`${base}/view?${q}`, dl);
        return seed === undefined ? image : { ...image, seed };
      }),
    );
  }

  async function run(
    req: GenerateRequest,
    ctx: GenerateContext,
    socket: ProgressSocket | undefined,
    clientId: string,
  ) {
    const seed = req.seed ?? randomSeed();
    const input = req.images?.[0];
    const image = input ? await upload(input, ctx.signal) : "";
    const graph = fillWorkflow(input ? editTemplate : template, workflowValues(req, checkpoint, seed, image));
    const promptId = await submit(graph, clientId, ctx.signal);
    let entry: HistoryEntry;
    try {
      entry = await waitForHistory(promptId, ctx.signal, socket);
    } catch (err) {
      if (ctx.signal.aborted) await cancelPrompt(promptId);
      throw err;
    }
    return fetchImages(historyImages(entry), takesSeed ? seed : undefined, ctx.signal);
  }

  /** Puts the input in ComfyUI's input folder (under a unique name) and returns the name LoadImage takes. */
  async function upload(image: InputImage, signal: AbortSignal): Promise<string> {
    const form = new FormData();
    const ext = image.mime.split("/")[1] ?? "png";
    form.append("image", toBlob(image), `easel-${crypto.randomUUID()}.${ext}`);
    form.append("type", "input");
    form.append("overwrite", "true");
    const res = await call("/upload/image", { method: "POST", body: form }, signal);
    if (!isRecord(res) || typeof res.name !== "string")
      throw badResponse(PROVIDER, "upload answer without a name");
    const subfolder = typeof res.subfolder === "string" && res.subfolder ? `${res.subfolder}/` : "";
    return `${subfolder}${res.name}`;
  }

  async function generate(req: GenerateRequest, ctx: GenerateContext): Promise<GeneratedImage[]> {
    if (req.mask) throw invalid("a mask needs an inpainting workflow; the built-in edit graph takes none");
    const clientId = crypto.randomUUID();
    const ws = await connectSocket(socketUrl(base, clientId), opts.socketTimeoutMs ?? 2000, ctx.signal);
    const socket = ws ? watchSocket(ws, progressReporter(ctx)) : undefined;
    try {
      ctx.signal.throwIfAborted();
      return await run(req, ctx, socket, clientId);
    } finally {
      socket?.close();
    }
  }

  return { info, generate };
}
