/**
 * WebSocket fan-out: N clients (spread over a few client processes) connected to one `easel serve` runtime,
 * all in one user's room, while K jobs each report progress every 300 ms (above the 250 ms coalescing
 * window, so every update is published), staggered so events arrive one at a time. Each progress message carries its emission time; a frame's
 * fan-out latency is from that emission to its receipt by the last of the N clients. Clocks are
 * `performance.timeOrigin + performance.now()` in each process (same host, same wall clock).
 *
 *   bun run bench ws [--json] [--clients 1000] [--procs 2] [--jobs 10] [--seconds 10]
 *
 * rss_mb is the server process's RSS with every client connected at the end of the run; rss_growth_mb is
 * that minus its RSS before the clients connected.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { loadConfig } from "../../src/config";
import { silentLogger } from "../../src/log";
import { defineJob } from "../../src/queue";
import { startRuntime } from "../../src/runtime";
import { machine, percentile, report, round } from "./machine";

const { values } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    clients: { type: "string", default: "1000" },
    procs: { type: "string", default: "2" },
    jobs: { type: "string", default: "10" },
    seconds: { type: "string", default: "10" },
    client: { type: "boolean", default: false },
    url: { type: "string" },
    count: { type: "string" },
  },
});

const clock = () => performance.timeOrigin + performance.now();

const PROGRESS = /^\{"type":"job_progress".*"message":"([\d.]+)"/;

/** Per emitted frame (keyed by its emission time): how many clients of this process got it, and when the last did. */
type Tally = Record<string, { n: number; last: number }>;

/** Client process: opens `count` sockets, tallies progress frames until every socket saw every job finish. */
async function runClients(url: string, count: number, jobs: number): Promise<void> {
  const tally: Tally = {};
  let messages = 0;
  let finished = 0;
  let confirmed = 0;
  const sockets: WebSocket[] = [];
  const allDone = Promise.withResolvers<void>();
  const connected = Promise.withResolvers<void>();
  for (let i = 0; i < count; i++) {
    const ws = new WebSocket(url);
    let done = 0;
    ws.onmessage = (e) => {
      const at = clock();
      messages++;
      const text = String(e.data);
      // The clients share the machine with the server: read the frame type and message without JSON.parse.
      const emitted = PROGRESS.exec(text)?.[1];
      if (emitted) {
        const t = tally[emitted] ?? { n: 0, last: 0 };
        tally[emitted] = t;
        t.n++;
        if (at > t.last) t.last = at;
      } else if (text.includes('"type":"job_completed"') && ++done === jobs && ++finished === count) {
        allDone.resolve();
      } else if (text.includes('"type":"connection_confirmed"') && ++confirmed === count) {
        connected.resolve();
      }
    };
    sockets.push(ws);
    if (i % 100 === 99) await Bun.sleep(20);
  }
  await connected.promise;
  process.stdout.write("connected\n");
  await allDone.promise;
  process.stdout.write(`${JSON.stringify({ tally, messages })}\n`);
  for (const ws of sockets) ws.close();
  process.exit(0);
}

/** Reads a child's stdout line by line. */
async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buf = "";
  for await (const chunk of stream) {
    buf += decoder.decode(chunk, { stream: true });
    let nl = buf.indexOf("\n");
    while (nl >= 0) {
      yield buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      nl = buf.indexOf("\n");
    }
  }
}

async function runBench(): Promise<void> {
  const clients = Number(values.clients);
  const procs = Math.max(1, Math.min(Number(values.procs), clients));
  const jobs = Number(values.jobs);
  const ticks = Math.max(1, Math.round((Number(values.seconds) * 1000) / 300));
  const ticker = defineJob({
    type: "bench.ticker",
    input: z.object({ ticks: z.number() }),
    run: async ({ input, progress }) => {
      for (let i = 1; i <= input.ticks; i++) {
        await Bun.sleep(300);
        progress((i * 100) / input.ticks, String(clock()));
      }
      return { ticks: input.ticks };
    },
  });
  const dir = mkdtempSync(join(tmpdir(), "easel-bench-ws-"));
  const rt = await startRuntime(
    loadConfig({
      DATA_DIR: dir,
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "silent",
      ADMIN_KEY: "esk_bench_admin_key_0123456789abcdef",
      WORKER_CONCURRENCY: String(Math.max(8, jobs)),
    }),
    { log: silentLogger, jobs: [ticker] },
  );
  try {
    const user = await rt.ctx.users.create({ name: "bench", role: "user" });
    const { token } = await rt.ctx.auth.issueToken(user.id, 3600);
    const wsUrl = `${rt.url.replace(/^http/, "ws")}/ws?token=${token}`;
    Bun.gc(true);
    const rssBefore = process.memoryUsage().rss;

    const children = Array.from({ length: procs }, (_, i) => {
      const count = Math.floor(clients / procs) + (i < clients % procs ? 1 : 0);
      const proc = Bun.spawn(
        [
          "bun",
          import.meta.path,
          "--client",
          "--url",
          wsUrl,
          "--count",
          String(count),
          "--jobs",
          String(jobs),
        ],
        { stdout: "pipe", stderr: "inherit" },
      );
      return { proc, out: lines(proc.stdout) };
    });
    for (const c of children) {
      const { value } = await c.out.next();
      if (value !== "connected") throw new Error(`client process failed: ${value}`);
    }
    const connectedAt = rt.ctx.realtime.stats().connections;
    // Time spent inside Bun's publish (serialisation is outside it, once per event): the server's share.
    const server = rt.app.server!;
    const publishUs: number[] = [];
    rt.ctx.realtime.attach({
      publish: (topic, data) => {
        const start = performance.now();
        const n = server.publish(topic, data);
        if (n > 0) publishUs.push((performance.now() - start) * 1000);
        return n;
      },
    });

    const t0 = performance.now();
    // Staggered over the tick period: a steady stream of single events, not bursts of `jobs` at once.
    for (let i = 0; i < jobs; i++) {
      const delayMs = Math.round((i * 300) / jobs);
      await rt.ctx.queue.enqueue("bench.ticker", { ticks }, { ownerId: user.id, delayMs });
    }
    const results = await Promise.all(
      children.map(
        async (c) => JSON.parse((await c.out.next()).value as string) as { tally: Tally; messages: number },
      ),
    );
    const seconds = (performance.now() - t0) / 1000;
    const rssAfter = process.memoryUsage().rss;
    for (const c of children) await c.proc.exited;

    const merged = new Map<string, { n: number; last: number }>();
    let messages = 0;
    for (const r of results) {
      messages += r.messages;
      for (const [k, v] of Object.entries(r.tally)) {
        const m = merged.get(k) ?? { n: 0, last: 0 };
        m.n += v.n;
        m.last = Math.max(m.last, v.last);
        merged.set(k, m);
      }
    }
    const complete = [...merged].filter(([, v]) => v.n === clients);
    const fanout = complete.map(([emitted, v]) => v.last - Number(emitted)).sort((a, b) => a - b);
    report(
      {
        clients,
        connected: connectedAt,
        client_processes: procs,
        jobs,
        events: merged.size,
        events_fully_delivered: complete.length,
        events_per_s: round(merged.size / seconds, 1),
        messages_per_s: Math.round(messages / seconds),
        fanout_p50_ms: round(percentile(fanout, 50)),
        fanout_p99_ms: round(percentile(fanout, 99)),
        fanout_max_ms: round(fanout.at(-1) ?? 0),
        publish_p50_us: round(
          percentile(
            publishUs.sort((a, b) => a - b),
            50,
          ),
          1,
        ),
        publish_p99_us: round(percentile(publishUs, 99), 1),
        rss_mb: round(rssAfter / 2 ** 20, 1),
        rss_growth_mb: round((rssAfter - rssBefore) / 2 ** 20, 1),
        machine: machine(),
      },
      values.json,
    );
  } finally {
    await rt.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (values.client) await runClients(values.url!, Number(values.count), Number(values.jobs));
else await runBench();
