/**
 * Hostile bodies against a listening server: how fast a 200 KB body of nested brackets (depth 100,000) is
 * refused, anonymously, and how fast `/api/health/live` answers while eight of them are in flight at once.
 * Each round sends eight deep bodies and, as soon as they are on the wire, one health request; a round's
 * health latency is that request's, its deep latency is each of the eight.
 *
 *   bun run bench deep [--json] [--rounds 30]
 *
 * Also times the depth scan alone over 1 MB of ordinary JSON (`scan_ms_per_mb`): the cost every JSON body
 * now pays before it is parsed (a deep body costs less: the scan stops at the first level too many).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { loadConfig } from "../../src/config";
import { jsonTooDeep } from "../../src/json-depth";
import { silentLogger } from "../../src/log";
import { startRuntime } from "../../src/runtime";
import { machine, percentile, report, round } from "./machine";

const { values } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    rounds: { type: "string", default: "30" },
  },
});
const rounds = Number(values.rounds);
const DEPTH = 100_000;
const DEEP = "[".repeat(DEPTH) + "]".repeat(DEPTH);
const IN_FLIGHT = 8;

const dir = mkdtempSync(join(tmpdir(), "easel-bench-deep-"));
const rt = await startRuntime(
  loadConfig({
    NODE_ENV: "production",
    DATA_DIR: dir,
    PORT: "0",
    HOST: "127.0.0.1",
    LOG_LEVEL: "silent",
    ADMIN_KEY: "esk_bench_admin_key_0123456789abcdef",
  }),
  { log: silentLogger },
);

async function timed(url: string, init?: RequestInit): Promise<{ ms: number; status: number }> {
  const t0 = performance.now();
  const res = await fetch(url, init);
  await res.arrayBuffer();
  return { ms: performance.now() - t0, status: res.status };
}

const deepMs: number[] = [];
const healthMs: number[] = [];
const statuses = new Map<number, number>();
try {
  for (let r = 0; r < rounds; r++) {
    const deep = Array.from({ length: IN_FLIGHT }, () =>
      timed(`${rt.url}/api/jobs/generate-image`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: DEEP,
      }),
    );
    const health = await timed(`${rt.url}/api/health/live`);
    healthMs.push(health.ms);
    for (const d of await Promise.all(deep)) {
      deepMs.push(d.ms);
      statuses.set(d.status, (statuses.get(d.status) ?? 0) + 1);
    }
  }
} finally {
  await rt.stop();
  rmSync(dir, { recursive: true, force: true });
}

const ordinary = JSON.stringify(
  Array.from({ length: 12_000 }, (_, i) => ({ id: `item-${i}`, prompt: "a fox [in] {the} snow", n: 1 })),
);
const scans: number[] = [];
for (let i = 0; i < 50; i++) {
  const t0 = performance.now();
  jsonTooDeep(ordinary, 64);
  scans.push(((performance.now() - t0) * 1_048_576) / ordinary.length);
}

deepMs.sort((a, b) => a - b);
healthMs.sort((a, b) => a - b);
scans.sort((a, b) => a - b);
report(
  {
    rounds,
    in_flight: IN_FLIGHT,
    deep_p50_ms: round(percentile(deepMs, 50)),
    deep_p99_ms: round(percentile(deepMs, 99)),
    deep_max_ms: round(deepMs.at(-1) ?? 0),
    health_p50_ms: round(percentile(healthMs, 50)),
    health_max_ms: round(healthMs.at(-1) ?? 0),
    scan_ms_per_mb: round(percentile(scans, 50), 3),
    statuses: Object.fromEntries(statuses),
    machine: machine(),
  },
  values.json,
);
