import { describe, expect, test } from "bun:test";
import type { Job, User } from "../../src/db/schema";
import { RealtimeHub } from "../../src/modules/realtime/hub";
import { type Socket, WsSessions } from "../../src/modules/realtime/sessions";
import { EventBus } from "../../src/queue";

/**
 * A job that ends while an admin's subscription is being read: the terminal frame must reach the admin
 * exactly once, whichever side of the topic join it was published on. Bun's pub/sub is played by a map of
 * topics to sockets (the hub and the sessions only see `publish`/`subscribe`), and the job read is held
 * open by the test so the end can be placed inside it.
 */

class Topics {
  readonly subs = new Map<string, Set<FakeSocket>>();
  publish(topic: string, data: string): number {
    for (const ws of this.subs.get(topic) ?? []) ws.frames.push(JSON.parse(data));
    return data.length;
  }
}

class FakeSocket implements Socket {
  readonly frames: { type: string; jobId?: string }[] = [];
  constructor(readonly topics: Topics) {}
  send(data: string): number {
    this.frames.push(JSON.parse(data));
    return data.length;
  }
  subscribe(topic: string): void {
    const set = this.topics.subs.get(topic) ?? new Set();
    this.topics.subs.set(topic, set.add(this));
  }
  unsubscribe(topic: string): void {
    this.topics.subs.get(topic)?.delete(this);
  }
  close(): void {}
  terminate(): void {}
  ping(): number {
    return 0;
  }
  getBufferedAmount(): number {
    return 0;
  }
}

const admin = { id: "admin", role: "admin" } as User;
const active = { id: "job-1", ownerId: "someone", status: "active", progress: 40 } as Job;
const completed = { ...active, status: "completed", result: { ok: true }, finishedAt: 2 } as Job;
const noOutcome = async () => ({ assets: [], failedItems: [], metadata: null });

function setup(reads: { visible: () => Promise<Job>; get: () => Promise<Job> }) {
  const events = new EventBus();
  const topics = new Topics();
  const hub = new RealtimeHub(events, { progressIntervalMs: 10, describe: noOutcome });
  hub.attach(topics);
  hub.start();
  const sessions = new WsSessions(
    {
      jobs: { visible: reads.visible, outcome: noOutcome },
      getJob: reads.get,
      terminalMark: (id) => hub.terminalMark(id),
    },
    { pingIntervalMs: 60_000, pingTimeoutMs: 60_000, maxBufferedBytes: 1 << 20 },
  );
  const ws = new FakeSocket(topics);
  sessions.open(ws, { user: admin, via: "key" });
  return { events, ws, sessions, hub };
}

/** Emits the job's end and waits until the hub has published it (it reads the outcome first). */
async function end(events: EventBus, hub: RealtimeHub): Promise<void> {
  const before = hub.terminalMark(completed.id);
  events.emit("job:completed", { job: completed, result: completed.result });
  while (hub.terminalMark(completed.id) === before) await Bun.sleep(1);
}

const ends = (ws: FakeSocket) => ws.frames.filter((f) => f.type === "job_completed").length;

async function settled(ws: FakeSocket): Promise<void> {
  while (!ws.frames.some((f) => f.type === "subscribed")) await Bun.sleep(1);
  await Bun.sleep(20);
}

describe("subscribe_to_job while the job ends", () => {
  test("ended between the visibility read and joining the topic: the reply carries the end", async () => {
    let stored: Job = active;
    const visible = Promise.withResolvers<Job>();
    const { events, ws, sessions, hub } = setup({
      visible: () => visible.promise,
      get: async () => stored,
    });
    sessions.message(ws, { type: "subscribe_to_job", jobId: active.id });
    stored = completed;
    await end(events, hub);
    visible.resolve(active);
    await settled(ws);
    expect(ws.frames.map((f) => f.type)).toEqual(["connection_confirmed", "subscribed", "job_completed"]);
  });

  test("ended after joining the topic: the topic carries the end, the reply does not repeat it", async () => {
    let stored: Job = active;
    const { events, ws, sessions, hub } = setup({
      visible: async () => active,
      get: async () => {
        stored = completed;
        await end(events, hub);
        return stored;
      },
    });
    sessions.message(ws, { type: "subscribe_to_job", jobId: active.id });
    await settled(ws);
    expect(ends(ws)).toBe(1);
  });

  test("still running: subscribed, and the end arrives later through the topic once", async () => {
    const { events, ws, sessions, hub } = setup({ visible: async () => active, get: async () => active });
    sessions.message(ws, { type: "subscribe_to_job", jobId: active.id });
    await settled(ws);
    expect(ends(ws)).toBe(0);
    await end(events, hub);
    expect(ends(ws)).toBe(1);
  });
});
