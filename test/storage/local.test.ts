import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createStorage,
  InvalidKeyError,
  LocalStorage,
  listAll,
  StorageError,
  sweepOrphans,
} from "../../src/storage";
import { contentEtag } from "../../src/storage/local";
import { storageContract } from "./contract";

const BASE = "http://localhost:3000";
const tempDirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "easel-local-"));
  tempDirs.push(dir);
  return dir;
}

afterAll(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

storageContract("local", async () => {
  const root = join(await tempDir(), "files");
  return {
    storage: new LocalStorage({ root, publicBaseUrl: `${BASE}/` }),
    expectedPublicUrl: (key) => `${BASE}/files/${key}`,
    close: async () => undefined,
  };
});

/** Every entry under `dir`, recursively, as relative paths (dot-files included). */
async function tree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile())
    .map((e) => join(e.parentPath, e.name).slice(dir.length + 1))
    .sort();
}

describe("LocalStorage on disk", () => {
  let base: string;
  let root: string;
  let storage: LocalStorage;
  const png = { contentType: "image/png" };

  beforeEach(async () => {
    base = await tempDir();
    root = join(base, "files");
    storage = new LocalStorage({ root, publicBaseUrl: BASE });
  });

  test("objects are plain files with a hidden sidecar, and no temp files remain", async () => {
    await storage.put("cards/a-1-2.png", new TextEncoder().encode("png!"), {
      contentType: "image/png",
      cacheControl: "public, max-age=60",
    });
    expect(await readFile(join(root, "cards/a-1-2.png"), "utf8")).toBe("png!");
    expect(await tree(root)).toEqual(["cards/.a-1-2.png.meta.json", "cards/a-1-2.png"]);
    const sidecar = JSON.parse(await readFile(join(root, "cards/.a-1-2.png.meta.json"), "utf8"));
    expect(sidecar).toMatchObject({ contentType: "image/png", cacheControl: "public, max-age=60", bytes: 4 });
    expect((await listAll(storage, "")).map((o) => o.key)).toEqual(["cards/a-1-2.png"]);
  });

  test("concurrent writes to one key leave one whole file whose etag matches its content", async () => {
    const key = "race/same.bin";
    const versions = Array.from({ length: 12 }, (_, i) => new Uint8Array(256 * 1024 + i).fill(i + 1));
    await Promise.all(versions.map((v) => storage.put(key, v, png)));
    const got = await storage.get(key);
    const winner = versions.find((v) => v.byteLength === got!.body.byteLength);
    expect(got!.body).toEqual(winner!);
    expect(got!.etag).toBe(contentEtag(winner!));
    expect((await storage.head(key))!.etag).toBe(contentEtag(winner!));
    expect(await tree(join(root, "race"))).toEqual([".same.bin.meta.json", "same.bin"]);
  });

  test("readers never see a partial file while it is being replaced", async () => {
    const key = "atomic/big.bin";
    const size = 1024 * 1024;
    const a = new Uint8Array(size).fill(0xaa);
    const b = new Uint8Array(size).fill(0xbb);
    await storage.put(key, a, png);
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 20; i++) await storage.put(key, i % 2 ? a : b, png);
      writing = false;
    })();
    let reads = 0;
    while (writing) {
      const got = await storage.get(key);
      expect(got!.body.byteLength).toBe(size);
      const first = got!.body[0];
      expect(first === 0xaa || first === 0xbb).toBe(true);
      expect(got!.body.indexOf(first === 0xaa ? 0xbb : 0xaa)).toBe(-1);
      expect(got!.etag).toBe(contentEtag(got!.body));
      // Listing mid-write shows only the key itself: no temp file or sidecar ever appears.
      expect((await listAll(storage, "atomic/")).map((o) => o.key)).toEqual([key]);
      reads++;
    }
    await writer;
    expect(reads).toBeGreaterThan(0);
  });

  test("a key being replaced over and over is never missing to get, head, stream or openFile", async () => {
    // Before the fix, realpath of the file itself raced the rename: one read in a few thousand found nothing.
    const fast = new LocalStorage({ root, publicBaseUrl: BASE, durable: false });
    const key = "swap/small.bin";
    const a = new Uint8Array(4096).fill(0xaa);
    const b = new Uint8Array(4096).fill(0xbb);
    await fast.put(key, a, png);
    let writing = true;
    const writer = (async () => {
      for (let i = 0; i < 800; i++) await fast.put(key, i % 2 ? a : b, png);
      writing = false;
    })();
    const misses: string[] = [];
    let reads = 0;
    const reader = async () => {
      while (writing) {
        const got = await fast.get(key);
        if (got?.body.byteLength !== 4096) misses.push(`get: ${got?.body.byteLength}`);
        if (!(await fast.head(key))) misses.push("head");
        if (!(await fast.openFile(key))) misses.push("openFile");
        const streamed = await fast.stream(key);
        if (!streamed) misses.push("stream");
        else await streamed.stream.cancel();
        reads++;
      }
    };
    await Promise.all([writer, reader(), reader(), reader()]);
    expect(misses).toEqual([]);
    expect(reads).toBeGreaterThan(100);
  }, 120_000);

  test("sweepTempFiles deletes stale temp files a killed write left, and nothing else", async () => {
    await storage.put("generations/u/a.png", new TextEncoder().encode("a"), png);
    const dir = join(root, "generations/u");
    const hourAgo = new Date(Date.now() - 3_600_000);
    const stale = [
      join(dir, ".a.png.0b7f1c1e-6f0a-4a57-9a8e-2f4f3c2d1e0a.tmp"),
      join(dir, ".b.png.meta.json.3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f.tmp"),
      join(root, ".probe-5d6e7f80-1a2b-4c3d-9e8f-7a6b5c4d3e2f"),
    ];
    const fresh = join(dir, ".c.png.9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a.tmp");
    const lookalike = join(dir, ".notes.tmp");
    for (const path of [...stale, fresh, lookalike]) await writeFile(path, "partial");
    for (const path of [...stale, lookalike]) await utimes(path, hourAgo, hourAgo);
    expect(await storage.sweepTempFiles(15 * 60_000)).toBe(stale.length);
    expect(await tree(root)).toEqual([
      "generations/u/.a.png.meta.json",
      "generations/u/.c.png.9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a.tmp",
      "generations/u/.notes.tmp",
      "generations/u/a.png",
    ]);
    expect(new TextDecoder().decode((await storage.get("generations/u/a.png"))!.body)).toBe("a");
  });

  test("a directory is not an object", async () => {
    await storage.put("dir/inner.png", new Uint8Array([1]), png);
    expect(await storage.get("dir")).toBeNull();
    expect(await storage.head("dir")).toBeNull();
    expect(await storage.stream("dir")).toBeNull();
  });

  test("a file placed by hand (no sidecar) is served with a guessed type and a content etag", async () => {
    await mkdir(join(root, "manual"), { recursive: true });
    await writeFile(join(root, "manual/photo.jpg"), "jpeg-ish");
    const got = await storage.get("manual/photo.jpg");
    expect(got).toMatchObject({ contentType: "image/jpeg", bytes: 8 });
    expect(got!.etag).toBe(contentEtag(got!.body));
    expect(got!.cacheControl).toBeUndefined();
  });

  test("the sidecar's etag is trusted while it still describes the file (no re-hashing per read)", async () => {
    await storage.put("x/trusted.png", new TextEncoder().encode("content"), png);
    const sidecarFile = join(root, "x/.trusted.png.meta.json");
    const sidecar = JSON.parse(await readFile(sidecarFile, "utf8"));
    await writeFile(sidecarFile, JSON.stringify({ ...sidecar, etag: '"from-sidecar"' }));
    expect((await storage.head("x/trusted.png"))!.etag).toBe('"from-sidecar"');
    expect((await storage.get("x/trusted.png"))!.etag).toBe('"from-sidecar"');
  });

  test("a file changed behind the sidecar's back gets a fresh etag", async () => {
    const put = await storage.put("x/edited.png", new TextEncoder().encode("original"), png);
    await writeFile(join(root, "x/edited.png"), "changed!");
    const head = await storage.head("x/edited.png");
    expect(head!.etag).not.toBe(put.etag);
    expect(head!.etag).toBe(contentEtag(new TextEncoder().encode("changed!")));
    expect(head!.contentType).toBe("image/png");
  });

  test("delete removes the sidecar and prunes emptied directories, but never the root", async () => {
    await storage.put("generations/job1/a-0.png", new Uint8Array([1]), png);
    await storage.put("generations/job2/a-0.png", new Uint8Array([2]), png);
    await storage.delete("generations/job1/a-0.png");
    expect(await tree(root)).toEqual(["generations/job2/.a-0.png.meta.json", "generations/job2/a-0.png"]);
    expect(await readdir(join(root, "generations"))).toEqual(["job2"]);
    await storage.delete("generations/job2/a-0.png");
    expect(await readdir(root)).toEqual([]);
    await storage.put("generations/job1/b-0.png", new Uint8Array([3]), png);
    expect((await storage.get("generations/job1/b-0.png"))!.body).toEqual(new Uint8Array([3]));
  });

  describe("symlinks out of the root", () => {
    let outside: string;

    beforeEach(async () => {
      outside = join(base, "outside");
      await mkdir(outside);
      await writeFile(join(outside, "secret.txt"), "top secret");
      await mkdir(root, { recursive: true });
      await symlink(outside, join(root, "evil"));
      await symlink(join(outside, "secret.txt"), join(root, "link.txt"));
    });

    afterEach(async () => {
      expect(await readFile(join(outside, "secret.txt"), "utf8")).toBe("top secret");
    });

    test("reads through them find nothing", async () => {
      expect(await storage.get("evil/secret.txt")).toBeNull();
      expect(await storage.head("evil/secret.txt")).toBeNull();
      expect(await storage.stream("evil/secret.txt")).toBeNull();
      expect(await storage.openFile("evil/secret.txt")).toBeNull();
      expect(await storage.get("link.txt")).toBeNull();
      expect(await listAll(storage, "")).toEqual([]);
      expect(await listAll(storage, "evil/")).toEqual([]);
    });

    test("writes through them are refused and create nothing outside", async () => {
      await expect(storage.put("evil/new.png", new Uint8Array([1]), png)).rejects.toBeInstanceOf(
        InvalidKeyError,
      );
      await expect(storage.put("evil/deeper/new.png", new Uint8Array([1]), png)).rejects.toBeInstanceOf(
        InvalidKeyError,
      );
      expect((await readdir(outside)).sort()).toEqual(["secret.txt"]);
    });

    test("deletes through them leave the target alone", async () => {
      await storage.delete("evil/secret.txt");
      await storage.deleteMany(["evil/secret.txt"]);
    });

    test("a symlink that stays inside the root is followed", async () => {
      await storage.put("real/a.png", new TextEncoder().encode("inside"), png);
      await symlink(join(root, "real"), join(root, "alias"));
      expect(new TextDecoder().decode((await storage.get("alias/a.png"))!.body)).toBe("inside");
    });
  });

  test("check creates the root and fails with storage_unavailable when it cannot write", async () => {
    await storage.check();
    expect(await readdir(root)).toEqual([]);
    const blocker = join(base, "not-a-dir");
    await writeFile(blocker, "file in the way");
    const broken = new LocalStorage({ root: join(blocker, "files"), publicBaseUrl: BASE });
    const err = await broken.check().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(StorageError);
    expect((err as StorageError).code).toBe("storage_unavailable");
  });

  test("the sweep respects real file ages and the database's answer", async () => {
    const hour = 60 * 60_000;
    for (const key of [
      "generations/j/old-orphan.png",
      "generations/j/old-kept.png",
      "generations/j/new-orphan.png",
    ]) {
      await storage.put(key, new Uint8Array([1]), png);
    }
    const twoHoursAgo = new Date(Date.now() - 2 * hour);
    for (const name of ["old-orphan.png", "old-kept.png"]) {
      await utimes(join(root, "generations/j", name), twoHoursAgo, twoHoursAgo);
    }
    const result = await sweepOrphans({
      storage,
      prefixes: ["generations/"],
      isReferenced: (keys) => new Set(keys.filter((k) => k.endsWith("kept.png"))),
      olderThanMs: hour,
    });
    expect(result).toEqual({ scanned: 3, recent: 1, referenced: 1, deleted: 1 });
    expect((await listAll(storage, "generations/")).map((o) => o.key).sort()).toEqual([
      "generations/j/new-orphan.png",
      "generations/j/old-kept.png",
    ]);
  });

  test("the sweep stops when aborted", async () => {
    await storage.put("generations/j/a.png", new Uint8Array([1]), png);
    const controller = new AbortController();
    controller.abort();
    const result = await sweepOrphans({
      storage,
      prefixes: ["generations/"],
      isReferenced: () => new Set(),
      olderThanMs: 0,
      now: Date.now() + 1000,
      signal: controller.signal,
    });
    expect(result.deleted).toBe(0);
    expect(await storage.head("generations/j/a.png")).not.toBeNull();
  });

  test("createStorage builds a LocalStorage under filesDir", () => {
    const built = createStorage({
      STORAGE: "local",
      SQLITE_SYNCHRONOUS: "NORMAL",
      filesDir: root,
      publicUrl: BASE,
      S3_REGION: "auto",
      S3_PATH_STYLE: false,
      S3_ENDPOINT: undefined,
      S3_BUCKET: undefined,
      S3_ACCESS_KEY_ID: undefined,
      S3_SECRET_ACCESS_KEY: undefined,
      S3_PUBLIC_URL: undefined,
    });
    expect(built).toBeInstanceOf(LocalStorage);
    expect((built as LocalStorage).root).toBe(root);
    expect(built.publicUrl("a/b.png")).toBe(`${BASE}/files/a/b.png`);
  });
});
