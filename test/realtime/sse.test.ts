import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { defineJob, UnrecoverableError } from "../../src/queue";
import { ADMIN_KEY, startTestServer, type TestServer, waitFor } from "../helpers";

const gates = new Map<string, PromiseWithResolvers<void>>();
const gate = (id: string) => {
  let g = gates.get(id);
  if (!g) {
    g = Promise.withResolvers<void>();
    gates.set(id, g);
  }
  return g;
};

const jobTypes = [
  defineJob({
    type: "steps",
    input: z.object({ steps: z.number() }),
    run: async ({ job, input, progress }) => {
      await gate(job.id).promise;
      for (let i = 1; i <= input.steps; i++) {
        progress((i * 100) / input.steps, `step ${i}`);
        await Bun.sleep(300);
      }
      return { steps: input.steps };
    },
  }),
  defineJob({
    type: "boom",
    input: z.object({}),
    maxAttempts: 1,
    run: async () => {
      throw new UnrecoverableError("it broke", { code: "boom" });
    },
  }),
];

type SseEvent = { id?: string; event?: string; data?: unknown; comment?: string };

/** Reads a text/event-stream incrementally; `until` stops early (the stream is then cancelled). */
async function readSse(
  res: Response,
  until: (events: SseEvent[]) => boolean = () => false,
  timeoutMs = 5000,
): Promise<{ events: SseEvent[]; ended: boolean }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const events: SseEvent[] = [];
  let buffer = "";
  const deadline = setTimeout(() => void reader.cancel(), timeoutMs);
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) return { events, ended: true };
      buffer += decoder.decode(value, { stream: true });
      let cut = buffer.indexOf("\n\n");
      while (cut >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const ev: SseEvent = {};
        for (const line of block.split("\n")) {
          if (line.startsWith(":")) ev.comment = line.slice(1).trim();
          else if (line.startsWith("id: ")) ev.id = line.slice(4);
          else if (line.startsWith("event: ")) ev.event = line.slice(7);
          else if (line.startsWith("data: ")) ev.data = JSON.parse(line.slice(6));
        }
        if (ev.event || ev.comment) events.push(ev);
        cut = buffer.indexOf("\n\n");
      }
      if (until(events)) {
        await reader.cancel();
        return { events, ended: false };
      }
    }
  } finally {
    clearTimeout(deadline);
  }
}

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ jobs: jobTypes, env: { SSE_HEARTBEAT_MS: "100" } });
});
afterAll(async () => {
  for (const g of gates.values()) g.resolve();
  await server.close();
});

async function createUser(): Promise<{ id: string; key: string; token: string }> {
  const res = await server.api("/api/users", {
    method: "POST",
    json: { name: `u-${Date.now()}`, role: "user" },
  });
  const body = (await res.json()) as { user: { id: string }; key: string };
  const t = await server.api("/api/tokens", { method: "POST", key: body.key, json: {} });
  return { id: body.user.id, key: body.key, token: ((await t.json()) as { token: string }).token };
}

const finished = (id: string) =>
  waitFor(async () => ["completed", "failed"].includes((await server.ctx.queue.get(id))!.status), {
    what: `job ${id}`,
  });

const eventsUrl = (id: string, token?: string) =>
  `${server.url}/api/jobs/${id}/events${token ? `?token=${encodeURIComponent(token)}` : ""}`;

describe("GET /api/jobs/:id/events", () => {
  test("streams the current state, live progress and the terminal event, then ends", async () => {
    const u = await createUser();
    const id = (await server.ctx.queue.enqueue("steps", { steps: 2 }, { ownerId: u.id })).id;
    const res = await fetch(eventsUrl(id, u.token));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toStartWith("text/event-stream");
    expect(res.headers.get("cache-control")).toContain("no-cache");
    const reading = readSse(res);
    await Bun.sleep(50);
    gate(id).resolve();
    const { events, ended } = await reading;
    expect(ended).toBe(true);
    const named = events.filter((e) => e.event);
    expect(named.map((e) => e.event)).toEqual([
      "job_progress",
      "job_progress",
      "job_progress",
      "job_completed",
    ]);
    expect(named[0]!.data).toMatchObject({ type: "job_progress", jobId: id, progress: 0 });
    expect(named.slice(1, 3).map((e) => (e.data as { progress: number }).progress)).toEqual([50, 100]);
    expect(named[3]!.data).toEqual({
      type: "job_completed",
      jobId: id,
      result: { steps: 2 },
      assets: [],
      failedItems: [],
      metadata: null,
    });
    expect(named.every((e) => typeof e.id === "string" && e.id.length > 0)).toBe(true);
    expect(new Set(named.map((e) => e.id)).size).toBe(named.length);
  });

  test("a finished job: its terminal event at once, then the end", async () => {
    const u = await createUser();
    const ok = (await server.ctx.queue.enqueue("steps", { steps: 1 }, { ownerId: u.id })).id;
    gate(ok).resolve();
    const bad = (await server.ctx.queue.enqueue("boom", {}, { ownerId: u.id })).id;
    await finished(ok);
    await finished(bad);

    const a = await readSse(await fetch(eventsUrl(ok, u.token)));
    expect(a.ended).toBe(true);
    expect(a.events.map((e) => e.event)).toEqual(["job_completed"]);
    const b = await readSse(await fetch(eventsUrl(bad), { headers: { authorization: `Bearer ${u.key}` } }));
    expect(b.events.map((e) => e.event)).toEqual(["job_failed"]);
    expect(b.events[0]!.data).toMatchObject({ jobId: bad, error: { code: "boom", message: "it broke" } });
  });

  test("a stream set up from a row read before the job ended still ends with its terminal event", async () => {
    const u = await createUser();
    const { id } = await server.ctx.queue.enqueue("boom", {}, { ownerId: u.id });
    const stale = (await server.ctx.queue.get(id))!;
    await finished(id);
    // The row says queued; the job's terminal event went out before this stream listened for it.
    expect(stale.status).toBe("queued");
    const { events, ended } = await readSse(await server.ctx.realtime.streams.response(stale, null));
    expect(events.filter((e) => e.event).map((e) => e.event)).toEqual(["job_progress", "job_failed"]);
    expect(ended).toBe(true);
  });

  test("Last-Event-ID: the terminal event's id gets 204 (stop reconnecting); any other replays the outcome", async () => {
    const u = await createUser();
    const id = (await server.ctx.queue.enqueue("steps", { steps: 1 }, { ownerId: u.id })).id;
    const first = fetch(eventsUrl(id, u.token));
    gate(id).resolve();
    const live = await readSse(await first);
    const progressId = live.events.find((e) => e.event === "job_progress")!.id!;
    const terminalId = live.events.find((e) => e.event === "job_completed")!.id!;

    const again = await fetch(eventsUrl(id, u.token), { headers: { "last-event-id": terminalId } });
    expect(again.status).toBe(204);
    const replay = await readSse(
      await fetch(eventsUrl(id, u.token), { headers: { "last-event-id": progressId } }),
    );
    expect(replay.events.map((e) => [e.event, e.id])).toEqual([["job_completed", terminalId]]);
  });

  test("heartbeat comments keep an idle stream open; a client going away is cleaned up", async () => {
    const u = await createUser();
    const id = (await server.ctx.queue.enqueue("steps", { steps: 1 }, { ownerId: u.id })).id;
    const res = await fetch(eventsUrl(id, u.token));
    const { events, ended } = await readSse(res, (evs) => evs.filter((e) => e.comment).length >= 2);
    expect(ended).toBe(false);
    expect(events[0]!.event).toBe("job_progress");
    expect(events.filter((e) => e.comment === "heartbeat").length).toBeGreaterThanOrEqual(2);
    await waitFor(() => server.ctx.realtime.stats().streams === 0, { what: "the stream to be released" });
    gate(id).resolve();
  });

  test("same auth and ownership rules as the jobs API: 401 without credentials, 404 for others' jobs", async () => {
    const a = await createUser();
    const b = await createUser();
    const id = (await server.ctx.queue.enqueue("steps", { steps: 1 }, { ownerId: a.id, delayMs: 60_000 })).id;
    expect((await fetch(eventsUrl(id))).status).toBe(401);
    const other = await fetch(eventsUrl(id, b.token));
    expect(other.status).toBe(404);
    expect(((await other.json()) as { error: { code: string } }).error.code).toBe("not_found");
    expect((await fetch(eventsUrl("no-such-job", b.token))).status).toBe(404);
    // An API key only in the header: never in the URL, where logs and proxies keep it.
    expect((await fetch(eventsUrl(id, ADMIN_KEY))).status).toBe(401);
    const admin = await readSse(
      await fetch(eventsUrl(id), { headers: { authorization: `Bearer ${ADMIN_KEY}` } }),
      (evs) => evs.length > 0,
    );
    expect(admin.events[0]!.data).toMatchObject({ jobId: id, progress: 0 });
    await server.ctx.queue.cancel(id);
  });

  test("shutdown ends open streams", async () => {
    const own = await startTestServer({ jobs: jobTypes });
    const res = await own.api("/api/users", { method: "POST", json: { name: "x", role: "user" } });
    const { user } = (await res.json()) as { user: { id: string } };
    const id = (await own.ctx.queue.enqueue("steps", { steps: 1 }, { ownerId: user.id, delayMs: 60_000 })).id;
    const stream = await own.api(`/api/jobs/${id}/events`);
    const reading = readSse(stream);
    await waitFor(() => own.ctx.realtime.stats().streams === 1);
    const t0 = performance.now();
    await own.close();
    expect(performance.now() - t0).toBeLessThan(3000);
    expect((await reading).ended).toBe(true);
  });
});
