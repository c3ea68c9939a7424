import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { ADMIN_KEY, tempDir, waitFor } from "../helpers";
import { Receiver } from "./receiver";

const SERVER = join(import.meta.dir, "../fixtures/server.ts");
const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

type Child = { proc: ReturnType<typeof Bun.spawn>; url: string };

async function spawnServer(dataDir: string): Promise<Child> {
  const proc = Bun.spawn(["bun", SERVER], {
    env: {
      ...process.env,
      NODE_ENV: "test",
      DATA_DIR: dataDir,
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "silent",
      ADMIN_KEY,
      JWT_SECRET: "test-secret-test-secret-test-secret-0123",
      POLL_INTERVAL_MS: "25",
      ALLOW_PRIVATE_URLS: "true",
      WEBHOOK_RETRY_SCHEDULE: "1s,1s,1s,1s,1s",
    },
    stdout: "pipe",
    stderr: "inherit",
  });
  cleanups.push(() => proc.kill(9));
  const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
  let out = "";
  while (!out.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`server exited before it was ready: ${out}`);
    out += new TextDecoder().decode(value);
  }
  reader.releaseLock();
  const m = /^ready (\S+)/.exec(out);
  if (!m) throw new Error(`unexpected server output: ${out}`);
  return { proc, url: m[1]! };
}

const api = (base: string, path: string, init: { method?: string; json?: unknown } = {}) =>
  fetch(`${base}${path}`, {
    method: init.method ?? "GET",
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: init.json === undefined ? undefined : JSON.stringify(init.json),
  });

type Delivery = { id: string; status: string; attempts: number };

test("kill -9 with deliveries pending and one in flight: after a restart every delivery arrives, each id accepted once", async () => {
  const tmp = tempDir();
  cleanups.push(tmp.cleanup);
  const receiver = new Receiver();
  cleanups.push(() => receiver.stop());
  receiver.fallback = () => new Response("not yet", { status: 503 });

  const first = await spawnServer(tmp.dir);
  const created = await api(first.url, "/api/webhooks", { method: "POST", json: { url: receiver.url } });
  const endpoint = (await created.json()) as { id: string; secret: string };
  receiver.secrets.push(endpoint.secret);
  for (let n = 0; n < 3; n++) {
    const res = await api(first.url, "/api/jobs", { method: "POST", json: { type: "echo", input: { n } } });
    expect(res.status).toBe(202);
  }
  // Three jobs × (job.started + job.completed): every first attempt is refused, so all six wait for a retry.
  await waitFor(() => new Set(receiver.received.map((r) => r.id)).size === 6, { what: "six first attempts" });

  // The next attempt to arrive is taken in, but the answer comes too late: the sender dies first.
  let inFlight = "";
  receiver.fallback = async (r) => {
    if (!inFlight) {
      inFlight = r.id;
      first.proc.kill(9);
      await Bun.sleep(300);
    }
    return new Response("ok");
  };
  await waitFor(() => inFlight !== "", { what: "an attempt in flight" });
  await first.proc.exited;
  await waitFor(() => receiver.acceptedIds.has(inFlight));

  const second = await spawnServer(tmp.dir);
  const deliveries = async () =>
    (
      (await (await api(second.url, `/api/webhooks/${endpoint.id}/deliveries`)).json()) as {
        deliveries: Delivery[];
      }
    ).deliveries;
  await waitFor(async () => (await deliveries()).every((d) => d.status === "delivered"), {
    timeoutMs: 15_000,
    what: "every delivery to be delivered after the restart",
  });

  const all = await deliveries();
  expect(all).toHaveLength(6);
  expect(receiver.received.every((r) => r.verified)).toBe(true);
  // At least once: the in-flight one was sent again (same webhook-id); the receiver accepted it once.
  expect(receiver.acceptedIds.get(inFlight)).toBe(2);
  expect(
    receiver
      .accepted()
      .map((r) => r.id)
      .sort(),
  ).toEqual(all.map((d) => d.id).sort());
  expect(
    receiver
      .accepted()
      .map((r) => r.type)
      .sort(),
  ).toEqual(["job.completed", "job.completed", "job.completed", "job.started", "job.started", "job.started"]);

  second.proc.kill("SIGTERM");
  expect(await second.proc.exited).toBe(0);
}, 40_000);
