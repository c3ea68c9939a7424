/**
 * The Storage contract, written once and run against every backend (local.test.ts, s3.test.ts).
 * Each test works under its own random prefix, so tests never see each other's objects.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { InvalidKeyError, listAll, type Storage, sweepOrphans } from "../../src/storage";

export type ContractBackend = {
  storage: Storage;
  /** The URL publicUrl("a/b.png") must return. */
  expectedPublicUrl: (key: string) => string;
  close(): Promise<void>;
};

const bytes = (text: string) => new TextEncoder().encode(text);
const text = (body: Uint8Array) => new TextDecoder().decode(body);
const PNG = { contentType: "image/png", cacheControl: "public, max-age=31536000, immutable" };

let counter = 0;
const freshPrefix = () => `t${++counter}-${crypto.randomUUID()}/`;

export const BAD_KEYS = [
  "",
  "/abs/path.png",
  "../escape.png",
  "a/../../escape.png",
  "a/./b.png",
  "a//b.png",
  "a/",
  "a\\b.png",
  "..\\escape.png",
  ".hidden",
  "a/.b.png.meta.json",
  "a/%2e%2e/b.png",
  "a%2fb.png",
  "nul\0byte.png",
  "space here.png",
  "ünïcode.png",
  `${"x".repeat(256)}.png`,
];

export function storageContract(name: string, open: () => Promise<ContractBackend>): void {
  describe(`${name} storage contract`, () => {
    let backend: ContractBackend;
    let storage: Storage;

    beforeAll(async () => {
      backend = await open();
      storage = backend.storage;
    });
    afterAll(() => backend.close());

    test("put then get returns the same bytes and metadata", async () => {
      const key = `${freshPrefix()}image.png`;
      const before = Date.now();
      const put = await storage.put(key, bytes("hello png"), PNG);
      expect(put).toEqual({ key, bytes: 9, etag: expect.stringMatching(/^".+"$/) });

      const got = await storage.get(key);
      expect(got).not.toBeNull();
      expect(text(got!.body)).toBe("hello png");
      expect(got).toMatchObject({ key, contentType: "image/png", cacheControl: PNG.cacheControl, bytes: 9 });
      expect(got!.etag).toBe(put.etag);
      // S3 stores second-resolution times.
      expect(got!.lastModified).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 - 1000);
      expect(got!.lastModified).toBeLessThanOrEqual(Date.now() + 1000);
    });

    test("head gives the metadata without the body; stream gives the body", async () => {
      const key = `${freshPrefix()}a.webp`;
      const put = await storage.put(key, bytes("webp bytes"), { contentType: "image/webp" });
      const head = await storage.head(key);
      expect(head).toEqual({
        contentType: "image/webp",
        bytes: 10,
        etag: put.etag,
        lastModified: expect.any(Number),
      });
      expect(head!.cacheControl).toBeUndefined();

      const streamed = await storage.stream(key);
      expect(streamed).toMatchObject({ key, contentType: "image/webp", bytes: 10, etag: put.etag });
      expect(await new Response(streamed!.stream).text()).toBe("webp bytes");
    });

    test("missing keys read as null", async () => {
      const key = `${freshPrefix()}missing.png`;
      expect(await storage.get(key)).toBeNull();
      expect(await storage.head(key)).toBeNull();
      expect(await storage.stream(key)).toBeNull();
    });

    test("a prefix of existing keys is not itself an object", async () => {
      const prefix = freshPrefix();
      await storage.put(`${prefix}dir/inner.png`, bytes("x"), PNG);
      expect(await storage.get(`${prefix}dir`)).toBeNull();
      expect(await storage.head(`${prefix}dir`)).toBeNull();
    });

    test("overwriting replaces content, metadata and etag", async () => {
      const key = `${freshPrefix()}card.png`;
      const first = await storage.put(key, bytes("version one"), PNG);
      const second = await storage.put(key, bytes("version 2"), {
        contentType: "image/jpeg",
        cacheControl: "no-cache",
      });
      expect(second.etag).not.toBe(first.etag);
      const got = await storage.get(key);
      expect(text(got!.body)).toBe("version 2");
      expect(got).toMatchObject({
        contentType: "image/jpeg",
        cacheControl: "no-cache",
        bytes: 9,
        etag: second.etag,
      });
    });

    test("a 1 MiB binary object round-trips through get and stream", async () => {
      const key = `${freshPrefix()}big.bin`;
      const big = new Uint8Array(1024 * 1024).map((_, i) => (i * 31) % 251);
      await storage.put(key, big, { contentType: "application/octet-stream" });
      expect((await storage.get(key))!.body).toEqual(big);
      const streamed = await storage.stream(key);
      expect(new Uint8Array(await new Response(streamed!.stream).arrayBuffer())).toEqual(big);
    });

    test("delete is idempotent", async () => {
      const key = `${freshPrefix()}gone.png`;
      await storage.put(key, bytes("x"), PNG);
      await storage.delete(key);
      expect(await storage.get(key)).toBeNull();
      await storage.delete(key);
      await storage.delete(`${freshPrefix()}never-existed.png`);
    });

    test("deleteMany removes every listed key, existing or not", async () => {
      const prefix = freshPrefix();
      const keys = [1, 2, 3, 4, 5].map((i) => `${prefix}${i}.png`);
      for (const key of keys) await storage.put(key, bytes(key), PNG);
      const result = await storage.deleteMany([...keys.slice(0, 4), `${prefix}missing.png`]);
      expect(result.deleted).toBe(5);
      expect((await listAll(storage, prefix)).map((o) => o.key)).toEqual([keys[4]!]);
    });

    test("list returns exactly the keys under a prefix, with sizes and times", async () => {
      const p = freshPrefix();
      const keys = [`${p}a/1.png`, `${p}a/2.png`, `${p}a/deep/3.png`, `${p}ab/4.png`, `${p}b/5.png`];
      for (const key of keys) await storage.put(key, bytes(`content of ${key}`), PNG);

      const sorted = async (prefix: string) => (await listAll(storage, prefix)).map((o) => o.key).sort();
      expect(await sorted(`${p}a/`)).toEqual([`${p}a/1.png`, `${p}a/2.png`, `${p}a/deep/3.png`]);
      expect(await sorted(`${p}a`)).toEqual([
        `${p}a/1.png`,
        `${p}a/2.png`,
        `${p}a/deep/3.png`,
        `${p}ab/4.png`,
      ]);
      expect(await sorted(`${p}a/deep/3`)).toEqual([`${p}a/deep/3.png`]);
      expect(await sorted(p)).toEqual([...keys].sort());
      expect(await sorted(`${p}nothing/`)).toEqual([]);

      const [one] = await listAll(storage, `${p}a/1`);
      expect(one).toEqual({
        key: `${p}a/1.png`,
        bytes: `content of ${p}a/1.png`.length,
        lastModified: expect.any(Number),
      });
      expect(Math.abs(one!.lastModified - Date.now())).toBeLessThan(60_000);
    });

    test("invalid keys are refused by every method before touching the store", async () => {
      for (const key of BAD_KEYS) {
        await expect(storage.put(key, bytes("x"), PNG)).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(storage.get(key)).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(storage.head(key)).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(storage.stream(key)).rejects.toBeInstanceOf(InvalidKeyError);
        await expect(storage.delete(key)).rejects.toBeInstanceOf(InvalidKeyError);
        expect(() => storage.publicUrl(key)).toThrow(InvalidKeyError);
      }
      await expect(storage.deleteMany(["ok.png", "../bad.png"])).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(listAll(storage, "../")).rejects.toBeInstanceOf(InvalidKeyError);
      await expect(listAll(storage, "/abs")).rejects.toBeInstanceOf(InvalidKeyError);
    });

    test("publicUrl points at the object", () => {
      expect(storage.publicUrl("cards/abc-1-2.png")).toBe(backend.expectedPublicUrl("cards/abc-1-2.png"));
    });

    test("check passes on a reachable, writable store", async () => {
      await storage.check();
    });

    test("sweepOrphans deletes only old, unreferenced objects under the given prefixes", async () => {
      const p = freshPrefix();
      const keys = ["gen/a.png", "gen/b.png", "gen/c.png", "cards/d.png", "other/e.png"].map(
        (k) => `${p}${k}`,
      );
      for (const key of keys) await storage.put(key, bytes(key), PNG);
      const referenced = new Set([`${p}gen/b.png`, `${p}cards/d.png`]);
      const asked: string[][] = [];
      const isReferenced = (batch: string[]) => {
        asked.push(batch);
        return new Set(batch.filter((k) => referenced.has(k)));
      };

      // Within the grace period nothing is touched and the database is never asked.
      const fresh = await sweepOrphans({
        storage,
        prefixes: [`${p}gen/`, `${p}cards/`],
        isReferenced,
        olderThanMs: 60 * 60_000,
      });
      expect(fresh).toEqual({ scanned: 4, recent: 4, referenced: 0, deleted: 0 });
      expect(asked).toEqual([]);

      const later = Date.now() + 2 * 60 * 60_000;
      const swept = await sweepOrphans({
        storage,
        prefixes: [`${p}gen/`, `${p}cards/`],
        isReferenced: async (batch) => isReferenced(batch),
        olderThanMs: 60 * 60_000,
        now: later,
        batchSize: 2,
      });
      expect(swept).toEqual({ scanned: 4, recent: 0, referenced: 2, deleted: 2 });
      expect(asked.every((batch) => batch.length <= 2)).toBe(true);
      const left = (await listAll(storage, p)).map((o) => o.key).sort();
      expect(left).toEqual([`${p}cards/d.png`, `${p}gen/b.png`, `${p}other/e.png`]);
    });
  });
}
