/**
 * Image generation throughput and engine overhead: `generate` jobs through the real engine
 * (GenerateService.submit → SQLite queue → provider limiter → sharp → local storage → asset rows →
 * group-committed completion) against the physical limit, plain sharp doing the same image work.
 *
 *   bun run bench generate [--json] [--images 96] [--rounds 4] [--latency-jobs 40]
 *
 * Every image is a 1024x1024 WebP (quality 80) plus its 256px WebP thumbnail, made from the same source:
 * the PNG the placeholder provider renders for one fixed (prompt, seed, 1024x1024).
 *
 * - encode_only_per_s: `processWithThumbnail(source, preset)` — decode, encode, thumbnail — in 2×cores
 *   parallel lanes, so every core is busy; nothing else runs.
 * - images_per_s: `--images` single-prompt jobs submitted at once through GenerateService.submit on
 *   services built by createServices (as `easel serve` builds them, storage local in a temp dir), queue
 *   started in-process; first submit to last `job:completed`. The placeholder provider runs at zero latency
 *   behind the registry's limiter, memoised per (prompt, seed, size, n): it is deterministic, so a memo hit
 *   returns exactly the bytes it would render again. That models a remote provider (its pixels cost this
 *   machine nothing) and keeps the engine's image work identical to encode-only's; the ratio of the two
 *   is then the engine's cost. Without the memo every image also pays the placeholder's own SVG render:
 *   that run is reported as images_per_s_rendering (distinct prompts, so every call renders).
 * - The two are measured alternately in `--rounds` rounds of images/rounds each (who goes first
 *   alternates), so a shared machine's drifting load falls on both alike. cpu_ms_per_image and
 *   encode_only_cpu_ms_per_image are CPU time (all threads) per image: what the engine adds in CPU,
 *   independent of how busy the machine is.
 * - overhead_p50_ms / overhead_p99_ms: `--latency-jobs` jobs run one at a time (submit, wait for
 *   `job:completed`, next), so no job waits behind another. Per job: end-to-end time (submit called →
 *   completion event) minus the wall time measured inside the provider call and inside the sharp step
 *   (the job's `process` dependency wrapped with a timer). What is left is the engine: validation, the
 *   enqueue transaction, wake-up and claim, item bookkeeping, limiter, storage writes (with fsync), the
 *   asset row, settlement and events.
 *
 * WORKER_CONCURRENCY is raised to 2×cores (at least the default 8) so the worker slots never limit the
 * engine on machines with many cores; sharp.concurrency and the thread pool stay as the server has them.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import sharp from "sharp";
import { loadConfig } from "../../src/config";
import { Checkpointer } from "../../src/db/checkpointer";
import { processWithThumbnail, startWithThumbnail } from "../../src/images/process";
import { silentLogger } from "../../src/log";
import { type GenerateJobDeps, generateJob } from "../../src/modules/generate/job";
import { GenerateBody } from "../../src/modules/generate/model";
import { createPlaceholderProvider } from "../../src/providers/placeholder";
import { createProviderRegistry } from "../../src/providers/registry";
import type { GeneratedImage, Provider } from "../../src/providers/types";
import { createServices } from "../../src/services";
import { machine, percentile, report, round } from "./machine";

const { values } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    images: { type: "string", default: "96" },
    rounds: { type: "string", default: "4" },
    "latency-jobs": { type: "string", default: "40" },
  },
});
const images = Number(values.images);
const rounds = Math.max(1, Number(values.rounds));
const latencyJobs = Number(values["latency-jobs"]);
const cores = availableParallelism();
const PROMPT = "a lighthouse on a cliff at dusk, oil painting";
const SEED = 1234;
const SIZE = "1024x1024";
const PRESET = { format: "webp", quality: 80 } as const;

/** Wall time spent in provider calls and in sharp, accumulated while one job runs alone. */
const phases = { providerMs: 0, processMs: 0 };

/** The placeholder with a memo per (prompt, seed, size, n); edits are never memoised. */
function memoisedPlaceholder(): Provider {
  const inner = createPlaceholderProvider();
  const memo = new Map<string, Promise<GeneratedImage[]>>();
  return {
    info: inner.info,
    generate: async (req, ctx) => {
      const t = performance.now();
      try {
        if (req.images?.length) return await inner.generate(req, ctx);
        const key = JSON.stringify([req.prompt, req.seed, req.size, req.n]);
        let hit = memo.get(key);
        if (!hit) {
          hit = inner.generate(req, ctx);
          memo.set(key, hit);
        }
        return await hit;
      } finally {
        phases.providerMs += performance.now() - t;
      }
    },
  };
}

/** The job's sharp step, timed from its start until both outputs are encoded. */
const timedProcess: typeof startWithThumbnail = (...args) => {
  const t = performance.now();
  const started = startWithThumbnail(...args);
  void Promise.allSettled([started.image, started.thumbnail]).then(() => {
    phases.processMs += performance.now() - t;
  });
  return started;
};

/** Wall and CPU time (every thread of the process: libvips and fs work included) of a run of images. */
type Run = { images: number; wallMs: number; cpuMs: number };

async function measure(images: number, work: () => Promise<unknown>): Promise<Run> {
  const cpu = process.cpuUsage();
  const t = performance.now();
  await work();
  const used = process.cpuUsage(cpu);
  return { images, wallMs: performance.now() - t, cpuMs: (used.user + used.system) / 1000 };
}

function sum(runs: Run[]): Run {
  return runs.reduce((a, r) => ({
    images: a.images + r.images,
    wallMs: a.wallMs + r.wallMs,
    cpuMs: a.cpuMs + r.cpuMs,
  }));
}

function encodeOnly(source: Uint8Array, n: number): Promise<Run> {
  let next = 0;
  const lane = async () => {
    while (next++ < n) await processWithThumbnail(source, PRESET);
  };
  return measure(n, () => Promise.all(Array.from({ length: cores * 2 }, lane)));
}

/** The engine as `easel serve` builds it, with the generate job wired to the memoised placeholder. */
async function startEngine(dir: string) {
  const config = loadConfig({
    NODE_ENV: "production",
    DATA_DIR: dir,
    PORT: "0",
    LOG_LEVEL: "silent",
    WORKER_CONCURRENCY: String(Math.max(8, cores * 2)),
    PLACEHOLDER_LATENCY_MS: "0",
  });
  // storage and assets exist once the services do; the job reads them only when it runs.
  const deps = {
    providers: createProviderRegistry({ providers: [memoisedPlaceholder()] }),
    itemTimeoutMs: config.ITEM_TIMEOUT_MS,
    itemConcurrency: config.BATCH_CONCURRENCY,
    itemMaxAttempts: config.ITEM_MAX_ATTEMPTS,
    process: timedProcess,
  } as GenerateJobDeps;
  const ctx = createServices(config, { log: silentLogger, jobs: [generateJob(deps)] });
  deps.storage = ctx.storage;
  deps.assets = ctx.assets;
  const checkpointer = new Checkpointer(ctx.db.$client, config.databasePath);
  await checkpointer.start();
  const principal = { user: (await ctx.auth.bootstrapAdmin()).admin, via: "key" as const };

  const outcomes = new Map<string, PromiseWithResolvers<void>>();
  const outcome = (id: string) => {
    let o = outcomes.get(id);
    if (!o) {
      o = Promise.withResolvers<void>();
      outcomes.set(id, o);
    }
    return o;
  };
  ctx.queue.events.on("job:completed", ({ job }) => outcome(job.id).resolve());
  ctx.queue.events.on("job:failed", ({ job, error }) =>
    outcome(job.id).reject(new Error(`job ${job.id} failed: ${error.code} ${error.message}`)),
  );
  const run = async (prompt: string) => {
    const body = GenerateBody.parse({
      provider: "placeholder",
      prompt,
      seed: SEED,
      size: SIZE,
      output: PRESET,
    });
    const { jobId } = await ctx.generate.submit(principal, body);
    await outcome(jobId).promise;
    outcomes.delete(jobId);
  };
  ctx.queue.start();

  return {
    /** `n` jobs submitted at once, until the last completes. */
    throughput(n: number, prompt: (i: number) => string): Promise<Run> {
      return measure(n, () => Promise.all(Array.from({ length: n }, (_, i) => run(prompt(i)))));
    },
    /** Per-job overhead (ms, sorted) of jobs run one at a time. */
    async overheads(jobs: number): Promise<number[]> {
      const out: number[] = [];
      for (let i = 0; i < jobs; i++) {
        phases.providerMs = 0;
        phases.processMs = 0;
        const t = performance.now();
        await run(PROMPT);
        out.push(performance.now() - t - phases.providerMs - phases.processMs);
      }
      return out.sort((a, b) => a - b);
    },
    async stop(): Promise<void> {
      await ctx.queue.stop(5000);
      await checkpointer.stop();
      ctx.db.$client.close();
    },
  };
}

const perSecond = (r: Run) => r.images / (r.wallMs / 1000);

const dir = mkdtempSync(join(tmpdir(), "easel-bench-generate-"));
try {
  const [source] = await createPlaceholderProvider().generate(
    { prompt: PROMPT, seed: SEED, size: SIZE, n: 1 },
    { signal: new AbortController().signal },
  );
  if (!source) throw new Error("placeholder returned no image");
  const engine = await startEngine(dir);
  // Warm-up (JIT, sharp, the memo). Then engine and encode-only alternate in rounds, each going first
  // in turn, so drifting load on a shared machine falls on both alike.
  await encodeOnly(source.bytes, cores * 2);
  await engine.throughput(cores * 2, () => PROMPT);
  const perRound = Math.ceil(images / rounds);
  const engineRuns: Run[] = [];
  const encodeRuns: Run[] = [];
  for (let r = 0; r < rounds; r++) {
    const pair = [
      async () => engineRuns.push(await engine.throughput(perRound, () => PROMPT)),
      async () => encodeRuns.push(await encodeOnly(source.bytes, perRound)),
    ];
    if (r % 2) pair.reverse();
    for (const step of pair) await step();
  }
  const eng = sum(engineRuns);
  const enc = sum(encodeRuns);
  const overheads = await engine.overheads(latencyJobs);
  const rendering = await engine.throughput(perRound * rounds, (i) => `${PROMPT} #${i}`);
  await engine.stop();
  report(
    {
      images_per_s: round(perSecond(eng)),
      encode_only_per_s: round(perSecond(enc)),
      ratio: round(perSecond(eng) / perSecond(enc), 3),
      overhead_p50_ms: round(percentile(overheads, 50)),
      overhead_p99_ms: round(percentile(overheads, 99)),
      cpu_ms_per_image: round(eng.cpuMs / eng.images, 1),
      encode_only_cpu_ms_per_image: round(enc.cpuMs / enc.images, 1),
      images_per_s_rendering: round(perSecond(rendering)),
      images: eng.images,
      sharp_concurrency: sharp.concurrency(),
      machine: machine(),
    },
    values.json ?? false,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
