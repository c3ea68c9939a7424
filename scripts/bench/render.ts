/**
 * Card rendering benchmark. Measures, on this machine:
 * - encoders: the PNG encode step alone (resvg's own encoder, sharp from raw pixels, png.ts over zlib) on the
 *   same rasterised poll card, in this thread;
 * - p50_ms / p99_ms: single-render latency through the RenderPool (sequential, warm workers);
 * - cards_per_s: throughput of a 500-card burst over all workers;
 * - max_event_loop_lag_ms: the worst drift of a 1 ms setInterval on the main thread during that burst.
 *
 * Usage: bun run scripts/bench/render.ts [--json] [--workers N] [--nice N]. Prints one JSON object
 * (--json: nothing else on stdout or stderr).
 */
import { availableParallelism, cpus, platform, totalmem } from "node:os";
import { Resvg } from "@resvg/resvg-js";
import sharp from "sharp";
import { createPngEncoder } from "../../src/render/png";
import { RenderPool } from "../../src/render/pool";
import { createCardRenderer, type PngEncoder } from "../../src/render/render";
import { templates } from "../../src/render/templates";

const SEQUENTIAL = 200;
const BURST = 500;
const ENCODE_ROUNDS = 30;

const args = process.argv.slice(2);
const jsonOnly = args.includes("--json");
const workersArg = args.indexOf("--workers");
const workers = workersArg >= 0 ? Number(args[workersArg + 1]) : availableParallelism();
const niceArg = args.indexOf("--nice");
const nice = niceArg >= 0 ? Number(args[niceArg + 1]) : undefined;

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
  return {
    ...example,
    options: example.options.map((o, j) => ({ ...o, votes: o.votes + ((i * (j + 3)) % 97) })),
  };
}

/** The PNG encode step alone, each encoder on the same rasterised poll card. */
async function benchEncoders() {
  const { svg } = await createCardRenderer().svg("poll", pollData(0));
  const image = new Resvg(svg, { font: { loadSystemFonts: false } }).render();
  const { width, height } = image;
  const pixels = image.pixels;
  const encodePng = createPngEncoder();
  const encoders: Record<PngEncoder, () => Promise<Uint8Array> | Uint8Array> = {
    resvg: () => image.asPng(),
    sharp: () =>
      sharp(pixels, { raw: { width, height, channels: 4 } })
        .png({ compressionLevel: 1, adaptiveFiltering: false })
        .toBuffer(),
    zlib: () => encodePng(pixels, width, height),
  };
  const out: Record<string, { encode_p50_ms: number; bytes: number }> = {};
  for (const [name, encode] of Object.entries(encoders)) {
    const times: number[] = [];
    let bytes = 0;
    for (let i = 0; i < ENCODE_ROUNDS; i++) {
      const started = performance.now();
      bytes = (await encode()).byteLength;
      times.push(performance.now() - started);
    }
    out[name] = {
      encode_p50_ms: round(
        percentile(
          times.sort((a, b) => a - b),
          50,
        ),
      ),
      bytes,
    };
    log(`encoder ${name}: p50 ${out[name].encode_p50_ms} ms, ${bytes} bytes`);
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
  const pool = new RenderPool({ size: workers, nice });
  try {
    // Warm every worker: fonts, satori's wasm and glyph caches load on the first renders.
    await Promise.all(Array.from({ length: workers * 4 }, (_, i) => pool.render("poll", pollData(i))));
    const latency = await benchLatency(pool);
    log(`latency: p50 ${round(latency.p50)} ms, p99 ${round(latency.p99)} ms`);
    let elapsed = 0;
    const lag = await withLagMonitor(async () => {
      const started = performance.now();
      // Results are dropped as they arrive, as a server would after storing them.
      await Promise.all(
        Array.from({ length: BURST }, (_, i) => pool.render("poll", pollData(i)).then(() => {})),
      );
      elapsed = performance.now() - started;
    });
    const result = {
      p50_ms: round(latency.p50),
      p99_ms: round(latency.p99),
      cards_per_s: round((BURST / elapsed) * 1000),
      max_event_loop_lag_ms: round(lag),
      workers,
      worker_nice: nice ?? 10,
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
