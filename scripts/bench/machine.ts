import { cpus, totalmem } from "node:os";
import { deflateSync } from "node:zlib";

/**
 * What a benchmark ran on, printed beside its numbers. `probe_ms` is how long a fixed piece of work took
 * (speedProbe) when the benchmark started (this module's loading) and as the report was made: the same
 * machine runs the same code at different speeds from one minute to the next, so a run's figures are read
 * beside it.
 */
export function machine() {
  const cpu = cpus();
  return {
    cpu: cpu[0]?.model ?? "unknown",
    cores: cpu.length,
    memory_gb: Math.round(totalmem() / 2 ** 30),
    bun: Bun.version,
    platform: `${process.platform}-${process.arch}`,
    probe_ms: { start: atStart, end: speedProbe() },
  };
}

let probeInput: Uint8Array | null = null;
/** The loop's result, kept so the compiler cannot drop the loop. */
let _probeSink = 0;

/**
 * The machine's speed now: the best wall time of three runs of a fixed workload (a JavaScript integer loop
 * and zlib level 2 over 4 MB, ~20 ms on these machines at their faster speed). Higher means slower; it
 * uses one thread, so other load on the machine shows in it too.
 */
export function speedProbe(): number {
  if (!probeInput) {
    probeInput = new Uint8Array(4_000_000);
    for (let i = 0; i < probeInput.length; i++) probeInput[i] = Math.imul(i, 2654435761) >>> 27;
  }
  let best = Number.POSITIVE_INFINITY;
  for (let run = 0; run < 3; run++) {
    const started = performance.now();
    let x = 0;
    for (let i = 0; i < 20_000_000; i++) x = (x + i * 31) ^ (x >>> 3);
    deflateSync(probeInput, { level: 2 });
    best = Math.min(best, performance.now() - started);
    _probeSink ^= x;
  }
  return round(best, 1);
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export const round = (n: number, digits = 2) => Number(n.toFixed(digits));

const atStart = speedProbe();

/** Prints JSON with --json, else an aligned key: value list. */
export function report(result: Record<string, unknown>, json: boolean): void {
  if (json) {
    process.stdout.write(`${JSON.stringify(result)}\n`);
    return;
  }
  for (const [k, v] of Object.entries(result)) {
    process.stdout.write(`${k.padEnd(24)} ${typeof v === "object" ? JSON.stringify(v) : v}\n`);
  }
}
