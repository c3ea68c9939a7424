import { afterEach, expect, test } from "bun:test";
import { ADMIN_KEY, spawnServer, tempDir, waitFor } from "../helpers";
import { Receiver } from "./receiver";

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

async function startServer(dataDir: string) {
  const child = await spawnServer(dataDir, {
    ALLOW_PRIVATE_URLS: "true",
    WEBHOOK_RETRY_SCHEDULE: "1s,1s,1s,1s,1s",
  });
  cleanups.push(() => child.proc.kill(9));
  return child;
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

  const first = await startServer(tmp.dir);
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

  const second = await startServer(tmp.dir);
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
