import { parentPort, workerData } from "node:worker_threads";
import { cardsBetweenCollections, createCollector } from "./collect";
import { createThreadNicer, lowerThreadPriority } from "./priority";
import type { ReadyMessage, RenderReply, RenderRequest, SerialisedError, WorkerOptions } from "./protocol";
import { createCardRenderer } from "./render";
import { templates } from "./templates";

/** A render worker: owns one renderer (fonts load once here) and renders one request at a time. */

function serialise(err: unknown): SerialisedError {
  if (!(err instanceof Error)) return { name: "Error", code: "render_failed", message: String(err) };
  const { code, details } = err as { code?: unknown; details?: unknown };
  return {
    name: err.name,
    code: typeof code === "string" ? code : "render_failed",
    message: err.message,
    ...(details === undefined ? {} : { details }),
  };
}

/** The PNG's own ArrayBuffer, so it can be transferred rather than copied (Buffers may share a pool slab). */
function detachable(png: Uint8Array): Uint8Array {
  return png.byteOffset === 0 && png.byteLength === png.buffer.byteLength ? png : png.slice();
}

const port = parentPort;
if (!port) throw new Error("render worker must run in a worker thread");
const options = (workerData ?? {}) as WorkerOptions;
const nice = options.nice ?? 10;
lowerThreadPriority(nice);
const renderer = createCardRenderer({ engine: options.engine, encoder: options.encoder });
const afterCard = createCollector({ every: cardsBetweenCollections(options.engine ?? "satori") });
// Takumi rasterises on Bun's work pool threads, which appear with the first renders.
const niceRenderThreads = options.engine === "takumi" ? createThreadNicer(/^Bun Pool/, nice) : () => {};

port.on("message", async ({ id, template, data }: RenderRequest) => {
  let reply: RenderReply;
  try {
    const card = await renderer.render(template, data);
    reply = { id, ok: true, png: detachable(card.png), width: card.width, height: card.height };
  } catch (err) {
    reply = { id, ok: false, error: serialise(err) };
  }
  port.postMessage(reply, reply.ok ? [reply.png.buffer as ArrayBuffer] : []);
  niceRenderThreads();
  // After the reply, so a collection never delays it (collect.ts says when, and why not after every card).
  afterCard();
});
// One card before taking work: the engine loads its fonts and layout code on its first render (~300 ms for
// satori), which would otherwise fall on the first real card, after start-up or after the pool replaced an
// idle worker. A failure here is the first real render's to report.
await renderer.render("poll", templates.poll.example).catch(() => {});
port.postMessage({ ready: true } satisfies ReadyMessage);
