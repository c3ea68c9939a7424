import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createStorage, listAll, S3Storage, StorageError } from "../../src/storage";
import { storageContract } from "./contract";
import { type RunningS3rver, startS3rver } from "./s3rver";

const BUCKET = "easel-test";

storageContract("s3", async () => {
  const s3 = await startS3rver([BUCKET]);
  const storage = new S3Storage({
    endpoint: s3.endpoint,
    bucket: BUCKET,
    pathStyle: true,
    ...s3.credentials,
  });
  return {
    storage,
    expectedPublicUrl: (key) => `${s3.endpoint}/${BUCKET}/${key}`,
    close: () => s3.stop(),
  };
});

describe("S3Storage against s3rver", () => {
  let s3: RunningS3rver;
  beforeAll(async () => {
    s3 = await startS3rver([BUCKET]);
  });
  afterAll(() => s3.stop());

  const open = (opts: Partial<ConstructorParameters<typeof S3Storage>[0]> = {}) =>
    new S3Storage({ endpoint: s3.endpoint, bucket: BUCKET, ...s3.credentials, ...opts });

  test("list follows continuation tokens across pages", async () => {
    const storage = open({ listPageSize: 2 });
    const keys = ["p/1.png", "p/2.png", "p/3.png", "p/4.png", "p/5.png"];
    for (const key of keys) await storage.put(key, new Uint8Array([1]), { contentType: "image/png" });
    expect((await listAll(storage, "p/")).map((o) => o.key)).toEqual(keys);
  });

  test("an IP endpoint is addressed path-style even without pathStyle", async () => {
    const storage = open();
    await storage.put("ip/x.png", new Uint8Array([7]), { contentType: "image/png" });
    expect((await storage.get("ip/x.png"))?.body).toEqual(new Uint8Array([7]));
    expect(storage.publicUrl("ip/x.png")).toBe(`${s3.endpoint}/${BUCKET}/ip/x.png`);
  });

  test("check fails with storage_unavailable when the bucket does not exist", async () => {
    const storage = open({ bucket: "no-such-bucket" });
    const err = await storage.check().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).code).toBe("storage_unavailable");
  });

  test("an unknown access key surfaces as a StorageError, not a missing object", async () => {
    const storage = open({ accessKeyId: "NOT-A-KEY" });
    await expect(storage.get("anything.png")).rejects.toBeInstanceOf(StorageError);
  });

  test("check fails when nothing listens at the endpoint", async () => {
    const closed = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
    const endpoint = `http://127.0.0.1:${closed.port}`;
    await closed.stop(true);
    const err = await open({ endpoint, requestTimeoutMs: 2000 })
      .check()
      .catch((e: unknown) => e);
    expect((err as StorageError).code).toBe("storage_unavailable");
  });
});

describe("S3Storage URLs (no requests made)", () => {
  const base = { bucket: "media", accessKeyId: "k", secretAccessKey: "s", region: "us-east-1" };

  test("S3_PUBLIC_URL wins", () => {
    const storage = new S3Storage({
      ...base,
      endpoint: "https://s3.example.com",
      publicUrl: "https://cdn.example.com/",
    });
    expect(storage.publicUrl("cards/a-1-2.png")).toBe("https://cdn.example.com/cards/a-1-2.png");
  });

  test("virtual-hosted by default, path style on request", () => {
    const vhost = new S3Storage({ ...base, endpoint: "https://s3.example.com" });
    expect(vhost.publicUrl("a/b.png")).toBe("https://media.s3.example.com/a/b.png");
    const path = new S3Storage({ ...base, endpoint: "https://s3.example.com", pathStyle: true });
    expect(path.publicUrl("a/b.png")).toBe("https://s3.example.com/media/a/b.png");
  });

  test("createStorage builds an S3Storage from config", () => {
    const storage = createStorage({
      STORAGE: "s3",
      SQLITE_SYNCHRONOUS: "NORMAL",
      filesDir: "/unused",
      publicUrl: "http://localhost:3000",
      S3_ENDPOINT: "https://r2.example.com",
      S3_BUCKET: "media",
      S3_REGION: "auto",
      S3_ACCESS_KEY_ID: "k",
      S3_SECRET_ACCESS_KEY: "s",
      S3_PUBLIC_URL: "https://img.example.com",
      S3_PATH_STYLE: false,
    });
    expect(storage.kind).toBe("s3");
    expect(storage.publicUrl("x.png")).toBe("https://img.example.com/x.png");
  });
});
