/**
 * `POST /api/jobs/generate-image` over real HTTP with the placeholder provider: a single prompt through to
 * stored, servable assets; edits (multipart and data URL); requests refused before any job exists; and
 * app keys acting for their end users.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import sharp from "sharp";
import { startTestServer, type TestServer, waitFor } from "../helpers";
import { pngBomb, testImage } from "../images/fixtures";

type Accepted = {
  jobId: string;
  status: string;
  message: string;
  statusUrl: string;
  websocketSubscription: string;
  totalItems: number;
};
type Asset = {
  id: string;
  itemIdx: number;
  url: string;
  thumbnailUrl: string | null;
  contentType: string;
  bytes: number;
  width: number;
  height: number;
};
type JobDetail = {
  id: string;
  status: string;
  ownerId: string;
  result: Record<string, unknown> | null;
  error: { code: string } | null;
  items: { id: string; status: string; attempts: number; assets: Asset[] }[];
  assets: Asset[];
};

const TERMINAL = new Set(["completed", "partial", "failed", "cancelled"]);
/** Kept low so the bytes-limit test needs no big upload; every valid input here is far smaller. */
const MAX_INPUT_IMAGE_BYTES = 200_000;

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({
    // Credits have their own tests; here end users generate without a balance.
    env: { MAX_INPUT_IMAGE_BYTES: String(MAX_INPUT_IMAGE_BYTES), CREDITS_ENABLED: "false" },
  });
});
afterAll(() => server.close());

async function accepted(res: Response): Promise<Accepted> {
  const text = await res.text();
  expect(`${res.status} ${text}`).toStartWith("202 ");
  return JSON.parse(text) as Accepted;
}

function submit(body: unknown, key?: string): Promise<Response> {
  return server.api("/api/jobs/generate-image", { method: "POST", json: body, ...(key && { key }) });
}

async function finished(id: string, key?: string): Promise<JobDetail> {
  return waitFor(
    async () => {
      const job = (await (await server.api(`/api/jobs/${id}`, key ? { key } : {})).json()) as JobDetail;
      return TERMINAL.has(job.status) ? job : null;
    },
    { timeoutMs: 15_000, what: `job ${id} to finish` },
  );
}

async function fetchImage(url: string) {
  const res = await fetch(url);
  expect(res.status).toBe(200);
  const bytes = new Uint8Array(await res.arrayBuffer());
  return { contentType: res.headers.get("content-type"), bytes, meta: await sharp(bytes).metadata() };
}

async function inputKeys(): Promise<string[]> {
  const keys: string[] = [];
  for await (const o of server.ctx.storage.list("inputs/")) keys.push(o.key);
  return keys;
}

function jobCount(): number {
  return (server.ctx.db.$client.query("SELECT count(*) AS n FROM jobs").get() as { n: number }).n;
}

const dataUrl = (bytes: Uint8Array, mime = "image/png") =>
  `data:${mime};base64,${Buffer.from(bytes).toString("base64")}`;

describe("a single prompt", () => {
  test("202 with the job's handles, then stored assets: the preset's image and a small WebP thumbnail", async () => {
    const body = await accepted(
      await submit({ prompt: "a lighthouse at dusk", size: "256x256", output: "square-1080" }),
    );
    expect(body).toEqual({
      jobId: expect.any(String),
      status: "queued",
      message: expect.stringContaining("placeholder"),
      statusUrl: `${server.ctx.config.publicUrl}/api/jobs/${body.jobId}/status`,
      websocketSubscription: `job:${body.jobId}`,
      totalItems: 1,
    });
    const status = await server.api(new URL(body.statusUrl).pathname);
    expect(status.status).toBe(200);

    const job = await finished(body.jobId);
    expect(job.status).toBe("completed");
    expect(job.items).toHaveLength(1);
    const [item] = job.items;
    expect(item?.status).toBe("completed");
    expect(item?.assets).toHaveLength(1);
    const asset = item!.assets[0]!;
    expect(asset).toMatchObject({ contentType: "image/jpeg", width: 1080, height: 1080 });

    const image = await fetchImage(asset.url);
    expect(image.contentType).toBe("image/jpeg");
    expect(image.meta).toMatchObject({ format: "jpeg", width: 1080, height: 1080 });
    expect(image.bytes.byteLength).toBe(asset.bytes);
    // Metadata is stripped: no EXIF, no ICC profile carried over.
    expect(image.meta.exif).toBeUndefined();

    const thumb = await fetchImage(asset.thumbnailUrl!);
    expect(thumb.contentType).toBe("image/webp");
    expect(thumb.meta.format).toBe("webp");
    expect(Math.max(thumb.meta.width, thumb.meta.height)).toBeLessThanOrEqual(256);

    const rows = server.ctx.db.$client
      .query("SELECT * FROM assets WHERE job_id = ?")
      .all(body.jobId) as Record<string, unknown>[];
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      id: asset.id,
      item_idx: 0,
      content_type: "image/jpeg",
      width: 1080,
      height: 1080,
      bytes: asset.bytes,
      owner_id: job.ownerId,
      deleted_at: null,
    });
    expect(String(rows[0]?.storage_key)).toStartWith(`generations/${body.jobId}/main-0.`);
    expect(String(rows[0]?.thumbnail_key)).toEndWith(".thumb.webp");
  });

  test("n images of one prompt become n assets with distinct seeds", async () => {
    const { jobId } = await accepted(await submit({ prompt: "three pears", size: "128x128", n: 3, seed: 7 }));
    const job = await finished(jobId);
    expect(job.status).toBe("completed");
    expect(job.assets.map((a) => a.contentType)).toEqual(["image/png", "image/png", "image/png"]);
    const item = job.items[0] as unknown as { result: { seeds: number[] } };
    expect(item.result.seeds).toEqual([7, 8, 9]);
  });
});

describe("edits", () => {
  test("multipart upload: the image file and a prompt", async () => {
    const form = new FormData();
    form.append("image", new File([await testImage(96, 64, "jpeg")], "in.jpg", { type: "image/jpeg" }));
    form.append("prompt", "make it pop");
    form.append("size", "128x128");
    form.append("output", "original");
    const res = await server.api("/api/jobs/generate-image/upload", { method: "POST", body: form });
    const { jobId } = await accepted(res);
    const job = await finished(jobId);
    expect(job.status).toBe("completed");
    const input = (await server.ctx.queue.get(jobId))?.input as { imageKey?: string };
    expect(input.imageKey).toMatch(/^inputs\/.+\/image\.jpg$/);
    const out = await fetchImage(job.assets[0]!.url);
    expect(out.meta).toMatchObject({ format: "png", width: 128, height: 128 });
  });

  test("JSON with a data URL image and a matching mask", async () => {
    const image = await testImage(64, 64, "png");
    const mask = await testImage(64, 64, "png");
    const { jobId } = await accepted(
      await submit({ prompt: "add a hat", image: dataUrl(image), mask: dataUrl(mask), size: "64x64" }),
    );
    const job = await finished(jobId);
    expect(job.status).toBe("completed");
    const input = (await server.ctx.queue.get(jobId))?.input as { imageKey?: string; maskKey?: string };
    expect(input.maskKey).toMatch(/^inputs\/.+\/mask\.png$/);
    expect(await server.ctx.storage.get(input.imageKey!)).not.toBeNull();
  });
});

describe("refused before a job exists", () => {
  let image: string;
  beforeAll(async () => {
    image = dataUrl(await testImage(64, 64, "png"));
  });

  const cases: [string, () => unknown, string][] = [
    ["an unknown provider", () => ({ prompt: "x", provider: "dalle-nine" }), "provider_not_found"],
    ["a provider without its key", () => ({ prompt: "x", provider: "gemini" }), "provider_not_configured"],
    [
      "an image over MAX_INPUT_IMAGE_BYTES",
      () => ({ prompt: "x", image: dataUrl(new Uint8Array(MAX_INPUT_IMAGE_BYTES + 1).fill(7)) }),
      "image_too_large",
    ],
    [
      "a decompression bomb",
      () => ({ prompt: "x", image: dataUrl(pngBomb(20_000, 20_000)) }),
      "image_too_many_pixels",
    ],
    [
      "bytes that are not an image",
      () => ({ prompt: "x", image: dataUrl(new TextEncoder().encode("%PDF-1.7 definitely not a png")) }),
      "unsupported_image_format",
    ],
    ["a size that is not WxH", () => ({ prompt: "x", size: "huge" }), "validation_failed"],
    ["a size past the limits", () => ({ prompt: "x", size: "10x99999" }), "validation_failed"],
    ["an empty prompt", () => ({ prompt: "   " }), "validation_failed"],
    ["neither prompt nor items", () => ({ size: "256x256" }), "validation_failed"],
    [
      "duplicate item ids",
      () => ({
        items: [
          { id: "a", prompt: "one" },
          { id: "a", prompt: "two" },
        ],
      }),
      "validation_failed",
    ],
    ["an unknown output preset", () => ({ prompt: "x", output: "poster-9000" }), "validation_failed"],
    [
      "a webhook to a private address",
      () => ({ prompt: "x", webhookUrl: "http://127.0.0.1:9/hook" }),
      "url_not_allowed",
    ],
    [
      "a webhook to a private network",
      () => ({ prompt: "x", webhookUrl: "http://10.1.2.3/hook" }),
      "url_not_allowed",
    ],
  ];

  for (const [what, body, code] of cases) {
    test(`${what} → 422 ${code}`, async () => {
      const before = jobCount();
      const inputsBefore = await inputKeys();
      const res = await submit(body());
      const text = await res.text();
      expect(`${res.status} ${text}`).toStartWith("422 ");
      const err = (JSON.parse(text) as { error: { code: string; message: string } }).error;
      expect(err.code).toBe(code);
      expect(err.message.length).toBeGreaterThan(0);
      expect(jobCount()).toBe(before);
      expect(await inputKeys()).toEqual(inputsBefore);
    });
  }

  test("a mask of another size → 422 mask_size_mismatch, and no input is left in storage", async () => {
    const before = jobCount();
    const inputsBefore = await inputKeys();
    const mask = dataUrl(await testImage(32, 64, "png"));
    const res = await submit({ prompt: "x", image, mask });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("mask_size_mismatch");
    expect(jobCount()).toBe(before);
    expect(await inputKeys()).toEqual(inputsBefore);
  });

  test("a multipart upload that is not an image → 422 unsupported_image_format", async () => {
    const before = jobCount();
    const form = new FormData();
    form.append("image", new File(["GIF89a not really"], "x.gif", { type: "image/png" }));
    form.append("prompt", "x");
    const res = await server.api("/api/jobs/generate-image/upload", { method: "POST", body: form });
    expect(res.status).toBe(422);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("unsupported_image_format");
    expect(jobCount()).toBe(before);
  });
});

describe("apps acting for end users", () => {
  async function createApp(name: string): Promise<string> {
    const res = await server.api("/api/users", { method: "POST", json: { name, role: "app" } });
    expect(res.status).toBe(201);
    return ((await res.json()) as { key: string }).key;
  }

  test("the job belongs to the end user; the app and the user's token see it, another app gets 404", async () => {
    const appA = await createApp("app-a");
    const appB = await createApp("app-b");
    const { jobId } = await accepted(
      await submit({ prompt: "for alice", size: "64x64", userId: "alice" }, appA),
    );
    const job = await finished(jobId, appA);
    expect(job.status).toBe("completed");

    const alice = server.ctx.db.$client
      .query("SELECT id, parent_id, external_id FROM users WHERE id = ?")
      .get(job.ownerId) as { id: string; parent_id: string; external_id: string };
    expect(alice.external_id).toBe("alice");
    const appAUser = (await (await server.api("/api/profile", { key: appA })).json()) as { id: string };
    expect(alice.parent_id).toBe(appAUser.id);

    const minted = await server.api("/api/tokens", { method: "POST", key: appA, json: { userId: "alice" } });
    const { token } = (await minted.json()) as { token: string };
    expect((await server.api(`/api/jobs/${jobId}`, { key: token })).status).toBe(200);

    for (const path of [`/api/jobs/${jobId}`, `/api/jobs/${jobId}/status`]) {
      const res = await server.api(path, { key: appB });
      expect(res.status).toBe(404);
      expect(((await res.json()) as { error: { code: string } }).error.code).toBe("not_found");
    }
    // App B acting for its own "alice" is a different user: still not this job.
    const bobsAlice = await server.api("/api/tokens", {
      method: "POST",
      key: appB,
      json: { userId: "alice" },
    });
    const other = ((await bobsAlice.json()) as { token: string }).token;
    expect((await server.api(`/api/jobs/${jobId}`, { key: other })).status).toBe(404);
  });
});
