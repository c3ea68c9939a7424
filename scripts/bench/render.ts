/**
 * Card rendering benchmark. Measures, on this machine:
 * - encoders: the PNG encode paths (resvg's own, sharp from raw pixels, png.ts over zlib) on one poll card,
 *   rasterise + encode only, in this thread;
 * - p50_ms / p99_ms: single-render latency through the RenderPool (sequential, warm workers);
 * - cards_per_s: throughput of a 500-card burst over all workers;
 * - max_event_loop_lag_ms: the worst drift of a 1 ms setInterval on the main thread during that burst.
 *
 * Usage: bun run scripts/bench/render.ts [--json] [--workers N]. Prints one JSON object (--json: nothing else).
 */
import { availableParallelism, cpus, platform, totalmem } from "node:os";
import { Resvg } from "@resvg/resvg-js";
import { createCardRenderer, type PngEncoder } from "../../src/render/render";
import { RenderPool } from "../../src/render/pool";
import { encodePng } from "../../src/render/png";
import { templates } from "../../src/render/templates";
import sharp from "sharp";

const SEQUENTIAL = 200;
const BURST = 500;
const ENCODE_ROUNDS = 30;

const args = process.argv.slice(2);
const jsonOnly = args.includes("--json");
const workersArg = args.indexOf("--workers");
const workers = workersArg >= 0 ? Number(args[workersArg + 1]) : availableParallelism();

function log(message: string): void {
  if (!jsonOnly) console.error(message);
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))]!;
}

const round = (n: number) => Math.round(n * 100) / 100;

/** Poll data that changes per render, as live cards do. */
function pollData(i: number) {
  const example = templates.poll.example;
  return { ...example, options: example.options.map((o, j) => ({ ...o, votes: o.votes + ((i * (j + 3)) % 97) })) };
}

async function encodeOnce(svg: string, encoder: PngEncoder): Promise<Uint8Array> {
  const image = new Resvg(svg, { font: { loadSystemFonts: false } }).render();
  if (encoder === "resvg") return image.asPng();
  if (encoder === "zlib") return encodePng(image.pixels, image.width, image.height);
  return sharp(image.pixels, { raw: { width: image.width, height: image.height, channels: 4 } })
    .png({ compressionLevel: 1, adaptiveFiltering: false })
    .toBuffer();
}

async function benchEncoders() {
  const { svg } = await createCardRenderer().svg("poll", pollData(0));
  const out: Record<string, { p50_ms: number; bytes: number }> = {};
  for (const encoder of ["resvg", "sharp", "zlib"] as const) {
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < ENCODE_ROUNDS; i++) {
      const started = performance.now();
      bytes = (await encodeOnce(svg, encoder)).byteLength;
      times.push(performance.now() - started);
    }
    out[encoder] = { p50_ms: round(percentile(times.sort((a, b) => a - b), 50)), bytes };
    log(`encoder ${encoder}: p50 ${out[encoder].p50_ms} ms (rasterise + encode), ${bytes} bytes`);
  }
  return out;
}

async function benchLatency(pool: RenderPool) {
  const times: number[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const started = performance.now();
    await pool.render("poll", pollData(i));
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p99: percentile(times, 99) };
}

/** Worst lateness of a 1 ms interval timer while `work` runs. */
async function withLagMonitor(work: () => Promise<unknown>): Promise<number> {
  let maxLag = 0;
  let last = performance.now();
  const timer = setInterval(() => {
    const now = performance.now();
    maxLag = Math.max(maxLag, now - last - 1);
    last = now;
  }, 1);
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  return maxLag;
}

async function main() {
  const encoders = await benchEncoders();
  const pool = new RenderPool({ size: workers });
  try {
    // Warm every worker: fonts, satori's wasm and glyph caches load on the first renders.
    await Promise.all(Array.from({ length: workers * 4 }, (_, i) => pool.render("poll", pollData(i))));
    const latency = await benchLatency(pool);
    log(`latency: p50 ${round(latency.p50)} ms, p99 ${round(latency.p99)} ms`);
    let elapsed = 0;
    const lag = await withLagMonitor(async () => {
      const started = performance.now();
      await Promise.all(Array.from({ length: BURST }, (_, i) => pool.render("poll", pollData(i))));
      elapsed = performance.now() - started;
    });
    const result = {
      p50_ms: round(latency.p50),
      p99_ms: round(latency.p99),
      cards_per_s: round((BURST / elapsed) * 1000),
      max_event_loop_lag_ms: round(lag),
      workers,
      encoders,
      machine: {
        cpu: cpus()[0]?.model ?? "unknown",
        cores: availableParallelism(),
        memory_gb: round(totalmem() / 2 ** 30),
        platform: `${platform()} ${process.arch}`,
        runtime: `bun ${Bun.version}`,
      },
    };
    console.log(JSON.stringify(result, null, jsonOnly ? undefined : 2));
  } finally {
    await pool.close();
  }
}

await main();
