/**
 * Card rendering benchmark. Measures, on this machine, for each engine (satori + resvg, takumi):
 * - p50_ms / p99_ms: single-render latency of the poll card through the RenderPool (sequential, warm workers);
 * - cards_per_s: throughput of a 500-card burst over all workers;
 * - max_event_loop_lag_ms: the worst drift of a 1 ms setInterval on the main thread during that burst;
 * - png_bytes: the size of the poll card's PNG;
 * - idle_event_loop_lag_ms: the same timer's worst drift over 3 s with nothing rendering: what the machine's
 *   other load alone costs the event loop (on a shared machine it can exceed the figure during renders);
 * - cpu_ms_per_card: process CPU time (all threads) over the burst per card, which a loaded machine inflates
 *   far less than the wall-clock figures;
 * - page_faults_per_card: minor page faults of the process over the burst per card: memory the renderers
 *   take fresh from the OS (a 1200x800 canvas is ~940 pages), which costs more the busier the machine;
 * - rss_mb: the process's resident memory as the burst ends (the workers' native canvases and pixels);
 * - cpu_ms_per_card_by_thread (Linux): that CPU split by thread: `main` (the pool and this script), `workers`
 *   (the render threads), `native_pool` (Bun's work pool: takumi's drawing), `jit` (JavaScriptCore's
 *   compiler threads), `gc` (its collector helpers) and `other`. The JIT compiles satori's code once per
 *   worker, over its first ~2 000 cards, so at the default warm-up it is part of the burst's figures;
 *   `--warm N` renders N cards per worker first, to see the steady state a long-lived server reaches.
 * The top-level figures are those of the engine CARD_RENDERER names (default satori); `engines` has both.
 * `encoders` times satori's PNG encode step alone (resvg's own encoder, sharp from raw pixels, png.ts over
 * zlib) on the same rasterised poll card, in this thread.
 *
 * With --stages it runs no pool: each engine renders the poll card in this thread (warm, then --rounds
 * renders, default 300) and reports the CPU time of each stage of a render (`process.cpuUsage()`: every
 * thread of the process, so takumi's rasterising on Bun's pool threads counts), which a loaded machine
 * inflates far less than wall-clock times. The stages are the engines' own (satori: tree, layout, parse,
 * draw, pixels, encode; takumi: tree, nodes, draw, encode), then `gc`: what a worker does after each reply
 * (collect.ts) and a turn of the event loop. --unique gives every render a different question (no text
 * repeats between renders, as for a new card); by default only the votes change, as on a live poll.
 * --root DIR measures the render code of another checkout (e.g. the base of a change) with this same
 * script; a checkout without stage marks reports only the total and `gc`.
 *
 * Usage: bun run bench render [--json] [--workers N] [--nice N] [--engine satori|takumi] [--warm N]
 *        bun run bench render --stages [--json] [--rounds N] [--unique] [--engine E] [--root DIR]
 * Prints one JSON object (--json: nothing else on stdout or stderr).
 */
import { readdirSync, readFileSync } from "node:fs";
import { availableParallelism, loadavg } from "node:os";
import { resolve } from "node:path";
import sharp from "sharp";
import type * as CollectModule from "../../src/render/collect";
import { ENGINES, type EngineName } from "../../src/render/engine";
import { createPngEncoder } from "../../src/render/png";
import { RenderPool } from "../../src/render/pool";
import type * as RenderModule from "../../src/render/render";
import { createCardRenderer, type PngEncoder } from "../../src/render/render";
import { Resvg } from "../../src/render/resvg";
import { templates } from "../../src/render/templates";
import { machine, percentile, round } from "./machine";

const SEQUENTIAL = 200;
const BURST = 500;
const ENCODE_ROUNDS = 30;

const args = process.argv.slice(2);
const jsonOnly = args.includes("--json");
const option = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const workers = Number(option("--workers") ?? availableParallelism());
const nice = option("--nice") === undefined ? undefined : Number(option("--nice"));
const chosen = (process.env.CARD_RENDERER ?? "satori") as EngineName;
const only = option("--engine") as EngineName | undefined;
const warm = Number(option("--warm") ?? 4);

function log(message: string): void {
  if (!jsonOnly) console.error(message);
}

/** Poll data that changes per render, as live cards do; `unique` also changes the question every time. */
function pollData(i: number, unique = false) {
  const example = templates.poll.example;
  return {
    ...example,
    ...(unique ? { question: `${example.question} (${i})` } : {}),
    options: example.options.map((o, j) => ({ ...o, votes: o.votes + ((i * (j + 3)) % 97) })),
  };
}

async function timed(rounds: number, run: () => Promise<unknown> | unknown): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const started = performance.now();
    await run();
    times.push(performance.now() - started);
  }
  return percentile(
    times.sort((a, b) => a - b),
    50,
  );
}

/** Satori's PNG encode step alone, each encoder on the same rasterised poll card. */
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
    const bytes = (await encode()).byteLength;
    out[name] = { encode_p50_ms: round(await timed(ENCODE_ROUNDS, encode)), bytes };
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

type ThreadGroup = "main" | "workers" | "native_pool" | "jit" | "gc" | "other";

/** CPU ms of each thread of this process so far, with its name (Linux: /proc/self/task); null elsewhere. */
function threadCpu(): Map<string, { group: ThreadGroup; ms: number }> | null {
  let tids: string[];
  try {
    tids = readdirSync("/proc/self/task");
  } catch {
    return null;
  }
  const threads = new Map<string, { group: ThreadGroup; ms: number }>();
  for (const tid of tids) {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      // utime and stime, fields 14 and 15, in ticks of 10 ms, after the ") " that ends the name
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      threads.set(tid, { group: groupOf(tid, name), ms: (Number(fields[11]) + Number(fields[12])) * 10 });
    } catch {
      // the thread ended between the listing and the read
    }
  }
  return threads;
}

function groupOf(tid: string, name: string): ThreadGroup {
  if (tid === String(process.pid)) return "main";
  if (name === "Worker") return "workers";
  if (name.startsWith("Bun Pool")) return "native_pool";
  if (name.startsWith("JIT")) return "jit";
  if (name === "HeapHelper" || name.includes("Helper Thread")) return "gc";
  return "other";
}

/** CPU ms per thread group since `before` (threads born since count from their start). */
function threadCpuSince(before: ReturnType<typeof threadCpu>): Record<ThreadGroup, number> | null {
  const now = threadCpu();
  if (!before || !now) return null;
  const groups: Record<ThreadGroup, number> = {
    main: 0,
    workers: 0,
    native_pool: 0,
    jit: 0,
    gc: 0,
    other: 0,
  };
  for (const [tid, { group, ms }] of now) groups[group] += ms - (before.get(tid)?.ms ?? 0);
  return groups;
}

async function benchEngine(engine: EngineName) {
  const pool = new RenderPool({ size: workers, nice, engine });
  try {
    // Warm every worker: fonts, satori's wasm and glyph caches load on the first renders.
    await Promise.all(Array.from({ length: workers * warm }, (_, i) => pool.render("poll", pollData(i))));
    const pngBytes = (await pool.render("poll", pollData(0))).png.byteLength;
    const latency = await benchLatency(pool);
    let elapsed = 0;
    const threadsBefore = threadCpu();
    const cpuBefore = process.cpuUsage();
    const faultsBefore = process.resourceUsage().minorPageFault;
    const lag = await withLagMonitor(async () => {
      const started = performance.now();
      // Results are dropped as they arrive, as a server would after storing them.
      await Promise.all(
        Array.from({ length: BURST }, (_, i) => pool.render("poll", pollData(i)).then(() => {})),
      );
      elapsed = performance.now() - started;
    });
    const cpu = process.cpuUsage(cpuBefore);
    const byThread = threadCpuSince(threadsBefore);
    const faults = process.resourceUsage().minorPageFault - faultsBefore;
    const rss = process.memoryUsage().rss;
    const result = {
      p50_ms: round(latency.p50),
      p99_ms: round(latency.p99),
      cards_per_s: round((BURST / elapsed) * 1000),
      max_event_loop_lag_ms: round(lag),
      png_bytes: pngBytes,
      cpu_ms_per_card: round((cpu.user + cpu.system) / 1000 / BURST),
      page_faults_per_card: Math.round(faults / BURST),
      rss_mb: Math.round(rss / 2 ** 20),
      ...(byThread && {
        cpu_ms_per_card_by_thread: Object.fromEntries(
          Object.entries(byThread).map(([group, ms]) => [group, round(ms / BURST)]),
        ),
      }),
    };
    log(`${engine}: ${JSON.stringify(result)}`);
    return result;
  } finally {
    await pool.close();
  }
}

const STAGE_WARMUP = 300;

/** CPU ms of the whole process so far (user + system, every thread). */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/** The collections a render worker of `root` starts after each card; before collect.ts, one per card. */
async function workerCollector(root: string, engine: EngineName): Promise<() => void> {
  try {
    const collect: typeof CollectModule = await import(resolve(root, "src/render/collect.ts"));
    return collect.createCollector({ every: collect.cardsBetweenCollections(engine) });
  } catch {
    return () => Bun.gc(false);
  }
}

/** Per-stage CPU (mean ms) and wall (p50 ms) of `rounds` renders in this thread, after a warm-up. */
async function benchStages(engine: EngineName, root: string, rounds: number, unique: boolean) {
  const render: typeof RenderModule = await import(resolve(root, "src/render/render.ts"));
  const renderer = render.createCardRenderer({ engine });
  const afterCard = await workerCollector(root, engine);
  for (let i = 0; i < STAGE_WARMUP; i++) {
    await renderer.render("poll", pollData(i, unique));
    afterCard();
    await new Promise((next) => setImmediate(next));
  }
  const cpu = new Map<string, number>();
  const wall = new Map<string, number[]>();
  let lastCpu = 0;
  let lastWall = 0;
  const mark = (stage: string) => {
    const nowCpu = cpuMs();
    const nowWall = performance.now();
    cpu.set(stage, (cpu.get(stage) ?? 0) + nowCpu - lastCpu);
    const times = wall.get(stage) ?? [];
    times.push(nowWall - lastWall);
    wall.set(stage, times);
    lastCpu = nowCpu;
    lastWall = nowWall;
  };
  const total = { cpu: 0, wall: [] as number[] };
  for (let i = 0; i < rounds; i++) {
    const data = pollData(STAGE_WARMUP + i, unique);
    const startCpu = cpuMs();
    const startWall = performance.now();
    lastCpu = startCpu;
    lastWall = startWall;
    await renderer.render("poll", data, mark);
    // What a worker does after each reply (worker.ts), so its cost is in the card's; a worker then waits for
    // its next message in a later turn of its event loop.
    afterCard();
    await new Promise((next) => setImmediate(next));
    mark("gc");
    total.cpu += lastCpu - startCpu;
    total.wall.push(lastWall - startWall);
  }
  const stages = Object.fromEntries(
    [...cpu].map(([stage, ms]) => [
      stage,
      {
        cpu_ms: round(ms / rounds),
        wall_p50_ms: round(
          percentile(
            wall.get(stage)!.sort((a, b) => a - b),
            50,
          ),
        ),
      },
    ]),
  );
  const result = {
    cpu_ms_per_card: round(total.cpu / rounds),
    wall_p50_ms: round(
      percentile(
        total.wall.sort((a, b) => a - b),
        50,
      ),
    ),
    stages,
  };
  log(`${engine}: ${JSON.stringify(result)}`);
  return result;
}

async function stagesMain() {
  const root = option("--root") ?? resolve(import.meta.dir, "../..");
  const rounds = Number(option("--rounds") ?? 300);
  const unique = args.includes("--unique");
  const loadBefore = loadavg()[0]!;
  const engines: Partial<Record<EngineName, Awaited<ReturnType<typeof benchStages>>>> = {};
  for (const engine of only ? [only] : ENGINES)
    engines[engine] = await benchStages(engine, root, rounds, unique);
  const result = {
    root,
    rounds,
    unique,
    engines,
    load_average: [round(loadBefore), round(loadavg()[0]!)],
    machine: machine(),
  };
  console.log(JSON.stringify(result, null, jsonOnly ? undefined : 2));
}

async function main() {
  const encoders = await benchEncoders();
  const idleLag = await withLagMonitor(() => Bun.sleep(3000));
  const engines: Partial<Record<EngineName, Awaited<ReturnType<typeof benchEngine>>>> = {};
  for (const engine of only ? [only] : ENGINES) engines[engine] = await benchEngine(engine);
  const headline = engines[only ?? chosen] ?? {};
  const result = {
    engine: only ?? chosen,
    ...headline,
    engines,
    workers,
    warm_cards_per_worker: warm,
    worker_nice: nice ?? 10,
    idle_event_loop_lag_ms: round(idleLag),
    encoders,
    machine: machine(),
  };
  console.log(JSON.stringify(result, null, jsonOnly ? undefined : 2));
}

await (args.includes("--stages") ? stagesMain() : main());
