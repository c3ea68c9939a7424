/**
 * Crash safety of generation: the server (a child process) is killed with SIGKILL in the middle of a
 * batch and started again on the same data dir. Finished items are checkpoints: the provider must never
 * be asked for them again, and the job must still complete.
 */
import { Database } from "bun:sqlite";
import { afterEach, expect, test } from "bun:test";
import { join } from "node:path";
import { json, type RecordedRequest, type ReplyFn, testImage } from "../fakes/base";
import { OpenAIFake } from "../fakes/openai";
import { ADMIN_KEY, spawnServer, tempDir, waitFor } from "../helpers";

const LATENCY_MS = 150;

const cleanups: (() => void | Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function startServer(dataDir: string, fake: OpenAIFake) {
  const child = await spawnServer(dataDir, {
    OPENAI_API_KEY: "sk-test",
    OPENAI_BASE_URL: fake.baseUrl,
    PROVIDER_LIMITS: JSON.stringify({ openai: { rpm: 0 } }),
    BATCH_CONCURRENCY: "2",
  });
  cleanups.push(() => {
    child.proc.kill(9);
  });
  return child;
}

const api = (base: string, path: string, body?: unknown) =>
  fetch(`${base}${path}`, {
    method: body === undefined ? "GET" : "POST",
    headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });

test("kill -9 mid-batch: after a restart the job completes and no finished item is generated twice", async () => {
  const tmp = tempDir();
  cleanups.push(tmp.cleanup);
  const fake = await OpenAIFake.create();
  cleanups.push(() => fake.stop());
  fake.image = await testImage({ format: "png", width: 64, height: 64 });
  const success = () =>
    json({ created: 1, data: [{ b64_json: Buffer.from(fake.image).toString("base64") }] });
  // Every request takes LATENCY_MS, so the kill lands with items both done and in flight.
  const slow: ReplyFn = async (_req, f) => {
    f.script(slow);
    await Bun.sleep(LATENCY_MS);
    return success();
  };
  fake.script(slow);
  const promptOf = (req: RecordedRequest) => String(fake.field(req, "prompt"));

  const items = Array.from({ length: 8 }, (_, i) => ({ id: `img-${i}`, prompt: `crash prompt ${i}` }));
  const first = await startServer(tmp.dir, fake);
  const res = await api(first.url, "/api/jobs/generate-image", {
    provider: "openai",
    size: "1024x1024",
    items,
  });
  expect(res.status).toBe(202);
  const { jobId } = (await res.json()) as { jobId: string };

  const db = new Database(join(tmp.dir, "easel.db"));
  cleanups.push(() => db.close());
  const completedKeys = () =>
    (
      db.query("SELECT key FROM job_items WHERE job_id = ? AND status = 'completed'").all(jobId) as {
        key: string;
      }[]
    ).map((r) => r.key);
  await waitFor(() => completedKeys().length >= 3, { timeoutMs: 15_000, what: "three finished items" });
  first.proc.kill(9);
  await first.proc.exited;
  const doneBefore = completedKeys();
  expect(doneBefore.length).toBeGreaterThanOrEqual(3);
  expect(doneBefore.length).toBeLessThan(items.length);
  const job = db.query("SELECT status FROM jobs WHERE id = ?").get(jobId) as { status: string };
  expect(job.status).toBe("active");

  const second = await startServer(tmp.dir, fake);
  const final = await waitFor(
    async () => {
      const j = (await (await api(second.url, `/api/jobs/${jobId}`)).json()) as {
        status: string;
        items: { id: string; status: string }[];
      };
      return j.status === "completed" || j.status === "failed" || j.status === "partial" ? j : null;
    },
    { timeoutMs: 20_000, what: "the job to finish after the restart" },
  );
  expect(final.status).toBe("completed");
  expect(final.items.map((i) => i.status)).toEqual(items.map(() => "completed"));

  const perPrompt = Map.groupBy(fake.requests, promptOf);
  for (const item of items) {
    const calls = perPrompt.get(item.prompt)?.length ?? 0;
    if (doneBefore.includes(item.id)) expect(`${item.id}: ${calls}`).toBe(`${item.id}: 1`);
    else expect(calls).toBeGreaterThanOrEqual(1);
  }
  // One asset per item: an item cut off mid-way and run again rewrote its row instead of adding one.
  const assets = db.query("SELECT item_idx FROM assets WHERE job_id = ? ORDER BY item_idx").all(jobId) as {
    item_idx: number;
  }[];
  expect(assets.map((a) => a.item_idx)).toEqual(items.map((_, i) => i));

  second.proc.kill("SIGTERM");
  expect(await second.proc.exited).toBe(0);
}, 45_000);
