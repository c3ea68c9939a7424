/**
 * Soak under mixed load: `easel serve` in its own process on a fresh data dir (local storage, the placeholder
 * provider, CARD_DEBOUNCE_MS=200); this process is every client at once:
 * - `--cards` live poll cards, PATCHed `--patch-per-s` times a second in all by `--patchers` loops: every card
 *   changes in every 200 ms debounce window, far more renders than the render pool can do (it stays saturated);
 * - generations at `--gen-per-s`, spread over `--users` users (429/503 back-pressure answers are counted, not errors);
 * - `--ws` WebSocket clients in those users' rooms, receiving their job events;
 * - status polls: `--pollers` loops on GET /api/jobs/:id/status, GET /api/queue/status every 2 s, and a
 *   /metrics scrape every second (which also gives the oldest waiting job's age and the queue depth).
 * After `--seconds` the load stops and the server sits idle for `--idle` seconds before RSS and storage are
 * read for the last time. RSS is the server process's (VmRSS), sampled every second with its JavaScript heap
 * in use (from /metrics); storage is the files under DATA_DIR/files, walked every second.
 *
 *   bun run bench soak [--json] [--seconds 300] [--idle 60] [--cards 50] [--patchers 8] [--patch-per-s 300] [--gen-per-s 2]
 *                      [--users 4] [--ws 200] [--pollers 4]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { machine, percentile, report, round } from "./machine";
import { freePort, waitLive } from "./server";

const { values } = parseArgs({
  options: {
    json: { type: "boolean", default: false },
    seconds: { type: "string", default: "300" },
    idle: { type: "string", default: "60" },
    cards: { type: "string", default: "50" },
    patchers: { type: "string", default: "8" },
    "patch-per-s": { type: "string", default: "300" },
    "gen-per-s": { type: "string", default: "2" },
    users: { type: "string", default: "4" },
    ws: { type: "string", default: "200" },
    pollers: { type: "string", default: "4" },
  },
});
const seconds = Number(values.seconds);
const idleSeconds = Number(values.idle);
const cardCount = Number(values.cards);
const genPerS = Number(values["gen-per-s"]);
const patchers = Number(values.patchers);
const patchPerS = Number(values["patch-per-s"]);

const ROOT = resolve(import.meta.dir, "../..");
const ADMIN_KEY = "esk_bench_admin_key_0123456789abcdef";
const MB = 1024 * 1024;

/** Every request's outcome, by kind: latency, status (0: the connection failed). */
type Samples = { ms: number[]; statuses: Map<number, number> };
const samples = new Map<string, Samples>();

async function request(kind: string, url: string, init: RequestInit & { key?: string; json?: unknown } = {}) {
  const { key = ADMIN_KEY, json, ...rest } = init;
  const headers: Record<string, string> = { authorization: `Bearer ${key}` };
  if (json !== undefined) headers["content-type"] = "application/json";
  const t = performance.now();
  let status = 0;
  let body = "";
  try {
    const res = await fetch(url, {
      ...rest,
      headers,
      body: json !== undefined ? JSON.stringify(json) : undefined,
    });
    status = res.status;
    body = await res.text();
  } catch {
    // A refused or reset connection: counted as status 0.
  }
  const s: Samples = samples.get(kind) ?? { ms: [], statuses: new Map() };
  samples.set(kind, s);
  s.ms.push(performance.now() - t);
  s.statuses.set(status, (s.statuses.get(status) ?? 0) + 1);
  return { status, body };
}

function rssBytes(proc: Bun.Subprocess): number {
  if (proc.exitCode !== null || proc.signalCode !== null) {
    throw new Error(`the server exited (${proc.exitCode ?? proc.signalCode}); its log: ${serverLog}{,.err}`);
  }
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${proc.pid}/status`, "utf8"));
  return m ? Number(m[1]) * 1024 : 0;
}

/** Files and bytes under `dir` (recursively), and how many of them are card images. */
function storage(dir: string): { files: number; bytes: number; cardFiles: number } {
  let files = 0;
  let bytes = 0;
  let cardFiles = 0;
  const walk = (d: string, inCards: boolean) => {
    let entries: import("node:fs").Dirent[];
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return; // removed while walking
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p, inCards || e.name === "cards");
      else {
        try {
          bytes += statSync(p).size;
          files++;
          if (inCards) cardFiles++;
        } catch {
          // deleted between readdir and stat
        }
      }
    }
  };
  walk(dir, false);
  return { files, bytes, cardFiles };
}

const metric = (text: string, name: string) =>
  Number(new RegExp(`^${name} (\\S+)$`, "m").exec(text)?.[1] ?? 0);

const poll = (i: number) => ({
  question: `Poll ${i}: which topping wins?`,
  creator: { name: "Soak", handle: "soak" },
  options: ["Mushrooms", "Pineapple", "Olives", "Basil"].map((label) => ({
    label,
    votes: Math.floor(Math.random() * 1000),
  })),
});

const dir = mkdtempSync(join(tmpdir(), "easel-bench-soak-"));
// Outside the data dir (removed at the end), so a server that dies mid-run leaves its last words.
const serverLog = join(tmpdir(), `${basename(dir)}-server.log`);
const port = await freePort();
const url = `http://127.0.0.1:${port}`;
const server = Bun.spawn(["bun", "src/main.ts", "serve"], {
  cwd: ROOT,
  env: {
    ...process.env,
    DATA_DIR: dir,
    PORT: String(port),
    HOST: "127.0.0.1",
    ADMIN_KEY,
    LOG_LEVEL: "warn",
    NODE_ENV: "production",
    CARD_DEBOUNCE_MS: "200",
    BACKLOG_CRON: "0 0 1 1 *",
  },
  stdout: Bun.file(serverLog),
  stderr: Bun.file(`${serverLog}.err`),
});

try {
  await waitLive(url);
  const users = await Promise.all(
    Array.from({ length: Number(values.users) }, async (_, i) => {
      const { body } = await request("setup", `${url}/api/users`, {
        method: "POST",
        json: { name: `soak-${i}`, role: "user", unlimited: true },
      });
      const { user, key } = JSON.parse(body) as { user: { id: string }; key: string };
      const minted = await request("setup", `${url}/api/tokens`, { method: "POST", key, json: {} });
      return { id: user.id, key, token: (JSON.parse(minted.body) as { token: string }).token };
    }),
  );
  const cards: { id: string; key: string }[] = [];
  for (let i = 0; i < cardCount; i++) {
    const owner = users[i % users.length]!;
    const { status, body } = await request("setup", `${url}/api/cards`, {
      method: "POST",
      key: owner.key,
      json: { template: "poll", data: poll(i) },
    });
    if (status !== 201) throw new Error(`card create failed: ${status} ${body}`);
    cards.push({ id: (JSON.parse(body) as { id: string }).id, key: owner.key });
  }
  samples.delete("setup");

  const filesDir = join(dir, "files");
  const rss = { start: rssBytes(server), peak: 0, end: 0 };
  const store0 = storage(filesDir);
  const store = { start: store0, peak: { ...store0 }, end: store0 };
  const heap = { start: 0, peak: 0, end: 0 };
  let oldestMax = 0;
  const oldestByType: Record<string, number> = {};
  let oldestEnd = 0;
  let depthMax = 0;
  const sample = async () => {
    const r = rssBytes(server);
    rss.peak = Math.max(rss.peak, r);
    rss.end = r;
    const s = storage(filesDir);
    store.peak = {
      files: Math.max(store.peak.files, s.files),
      bytes: Math.max(store.peak.bytes, s.bytes),
      cardFiles: Math.max(store.peak.cardFiles, s.cardFiles),
    };
    store.end = s;
    const { body } = await request("metrics", `${url}/metrics`);
    oldestEnd = 0;
    for (const [, type, value] of body.matchAll(
      /^easel_queue_oldest_waiting_seconds\{type="([^"]+)"\} (\S+)$/gm,
    )) {
      const s = Number(value);
      oldestEnd = Math.max(oldestEnd, s);
      oldestByType[type!] = Math.max(oldestByType[type!] ?? 0, s);
    }
    oldestMax = Math.max(oldestMax, oldestEnd);
    depthMax = Math.max(depthMax, metric(body, "easel_queue_depth"));
    heap.end = metric(body, "process_heap_bytes");
    heap.start ||= heap.end;
    heap.peak = Math.max(heap.peak, heap.end);
  };

  // WebSocket clients in the users' rooms: they receive every generation's events.
  let running = true;
  let wsMessages = 0;
  let wsDropped = 0;
  let confirmed = 0;
  const sockets: WebSocket[] = [];
  const allConfirmed = Promise.withResolvers<void>();
  const wsCount = Number(values.ws);
  for (let i = 0; i < wsCount; i++) {
    const ws = new WebSocket(`${url.replace(/^http/, "ws")}/ws?token=${users[i % users.length]!.token}`);
    ws.onmessage = (e) => {
      wsMessages++;
      if (String(e.data).includes('"type":"connection_confirmed"') && ++confirmed === wsCount)
        allConfirmed.resolve();
    };
    ws.onclose = () => {
      if (running) wsDropped++;
    };
    sockets.push(ws);
    if (i % 50 === 49) await Bun.sleep(20);
  }
  await allConfirmed.promise;

  const recent: { id: string; key: string }[] = [];
  const loops: Promise<void>[] = [];
  // Each patcher keeps its share of --patch-per-s (a fixed offered load, comparable between runs) unless
  // the server is slower than that, when it goes back to back.
  for (let p = 0; p < patchers; p++) {
    loops.push(
      (async () => {
        const every = (1000 * patchers) / patchPerS;
        for (let i = p; running; i += patchers) {
          const t = performance.now();
          const card = cards[(i * 7919) % cards.length]!;
          await request("card_patch", `${url}/api/cards/${card.id}`, {
            method: "PATCH",
            key: card.key,
            json: { data: { options: poll(i).options } },
          });
          await Bun.sleep(Math.max(0, every - (performance.now() - t)));
        }
      })(),
    );
  }
  loops.push(
    (async () => {
      const every = 1000 / genPerS;
      for (let i = 0; running; i++) {
        const user = users[i % users.length]!;
        const t = performance.now();
        void request("generate", `${url}/api/jobs/generate-image`, {
          method: "POST",
          key: user.key,
          json: { prompt: `soak ${i}`, provider: "placeholder", size: "512x512" },
        }).then(({ status, body }) => {
          if (status !== 202) return;
          recent.push({ id: (JSON.parse(body) as { jobId: string }).jobId, key: user.key });
          if (recent.length > 200) recent.shift();
        });
        await Bun.sleep(Math.max(0, every - (performance.now() - t)));
      }
    })(),
  );
  for (let p = 0; p < Number(values.pollers); p++) {
    loops.push(
      (async () => {
        while (running) {
          const job = recent[Math.floor(Math.random() * recent.length)];
          if (job) await request("job_status", `${url}/api/jobs/${job.id}/status`, { key: job.key });
          await Bun.sleep(100);
        }
      })(),
    );
  }
  loops.push(
    (async () => {
      while (running) {
        await request("queue_status", `${url}/api/queue/status`);
        await Bun.sleep(2000);
      }
    })(),
  );
  const loadStart = performance.now();
  while (performance.now() - loadStart < seconds * 1000) {
    await sample();
    await Bun.sleep(1000);
  }
  running = false;
  await Promise.all(loops);
  const loadSeconds = (performance.now() - loadStart) / 1000;
  const jobsAtEnd = JSON.parse((await request("queue_status", `${url}/api/queue/status`)).body).counts as {
    byType: Record<string, Record<string, number>>;
  };
  for (const ws of sockets) ws.close();

  // Idle: no clients; the server finishes its queue and settles.
  const idleStart = performance.now();
  while (performance.now() - idleStart < idleSeconds * 1000) {
    await Bun.sleep(1000);
    await sample();
  }

  const all = [...samples.entries()].filter(([kind]) => kind !== "metrics");
  const latencies = all.flatMap(([, s]) => s.ms).sort((a, b) => a - b);
  const count = (pred: (status: number) => boolean) =>
    all.reduce((n, [, s]) => n + [...s.statuses].reduce((m, [st, c]) => m + (pred(st) ? c : 0), 0), 0);
  const generate503 = samples.get("generate")?.statuses.get(503) ?? 0;
  const byKind = Object.fromEntries(
    [...samples.entries()].map(([kind, s]) => {
      const ms = [...s.ms].sort((a, b) => a - b);
      return [
        kind,
        {
          n: ms.length,
          p50_ms: round(percentile(ms, 50)),
          p99_ms: round(percentile(ms, 99)),
          statuses: Object.fromEntries(s.statuses),
        },
      ];
    }),
  );
  const mb = (b: number) => round(b / MB, 1);
  report(
    {
      seconds: round(loadSeconds, 1),
      idle_s: idleSeconds,
      requests: latencies.length,
      requests_per_s: Math.round(latencies.length / loadSeconds),
      // 503 from a generation is back-pressure (queue_full), an answer; any other 5xx is an error.
      errors_5xx: count((st) => st >= 500) - generate503,
      refused_503: generate503,
      refused_429: count((st) => st === 429),
      failed_connections: count((st) => st === 0),
      p50_ms: round(percentile(latencies, 50)),
      p99_ms: round(percentile(latencies, 99)),
      by_kind: byKind,
      ws: { clients: wsCount, messages: wsMessages, dropped_during_load: wsDropped },
      rss_mb: { start: mb(rss.start), peak: mb(rss.peak), end: mb(rss.end) },
      // The main thread's JavaScript heap in use (process_heap_bytes), against RSS: which part moved.
      heap_mb: { start: mb(heap.start), peak: mb(heap.peak), end: mb(heap.end) },
      storage_mb: { start: mb(store.start.bytes), peak: mb(store.peak.bytes), end: mb(store.end.bytes) },
      storage_files: { start: store.start.files, peak: store.peak.files, end: store.end.files },
      card_files_per_card: {
        start: round(store.start.cardFiles / cardCount, 2),
        peak: round(store.peak.cardFiles / cardCount, 2),
        end: round(store.end.cardFiles / cardCount, 2),
      },
      oldest_waiting_s: {
        max: round(oldestMax, 1),
        end: round(oldestEnd, 1),
        max_by_type: Object.fromEntries(Object.entries(oldestByType).map(([t, v]) => [t, round(v, 1)])),
      },
      queue_depth_max: depthMax,
      jobs_at_load_end: jobsAtEnd.byType,
      config: {
        cards: cardCount,
        patchers,
        patch_per_s: patchPerS,
        gen_per_s: genPerS,
        users: users.length,
        ws: wsCount,
        pollers: Number(values.pollers),
      },
      machine: machine(),
    },
    values.json,
  );
} finally {
  server.kill("SIGTERM");
  const code = await server.exited;
  rmSync(dir, { recursive: true, force: true });
  if (code === 0) {
    rmSync(serverLog, { force: true });
    rmSync(`${serverLog}.err`, { force: true });
  }
}
