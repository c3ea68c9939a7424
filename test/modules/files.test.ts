import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Elysia } from "elysia";
import { filesRoutes, keyFromUrl } from "../../src/modules/files";
import { LocalStorage } from "../../src/storage";

const SECRET = "TOP-SECRET-OUTSIDE-ROOT";
const IMAGE = new TextEncoder().encode("\x89PNG fake image bytes");
const CACHE = "public, max-age=31536000, immutable";

let base: string;
let storage: LocalStorage;
let app: ReturnType<typeof makeApp>;
let etag: string;

const makeApp = () => new Elysia().use(filesRoutes(storage));
// Elysia finds the path by skipping a minimum-length origin, so use a realistic host.
const get = (path: string, headers: Record<string, string> = {}, method = "GET") =>
  app.handle(new Request(`http://localhost${path}`, { method, headers }));

beforeAll(async () => {
  base = await mkdtemp(join(tmpdir(), "easel-files-"));
  storage = new LocalStorage({ root: join(base, "files"), publicBaseUrl: "http://localhost" });
  etag = (await storage.put("cards/c1-1-100.png", IMAGE, { contentType: "image/png", cacheControl: CACHE }))
    .etag;
  await storage.put("a/b.png", IMAGE, { contentType: "image/png" });
  await writeFile(join(base, "secret.txt"), SECRET);
  await mkdir(join(base, "outside"));
  await writeFile(join(base, "outside", "secret.txt"), SECRET);
  await symlink(join(base, "outside"), join(base, "files", "evil"));
  await symlink(join(base, "secret.txt"), join(base, "files", "link.txt"));
  app = makeApp();
});

afterAll(async () => {
  await rm(base, { recursive: true, force: true });
});

async function expectJson404(res: Response): Promise<void> {
  expect(res.status).toBe(404);
  expect(res.headers.get("content-type")).toContain("application/json");
  const body = (await res.json()) as { error: { code: string; message: string } };
  expect(body).toEqual({ error: { code: "not_found", message: expect.any(String) } });
}

describe("GET /files/* via app.handle", () => {
  test("serves the stored bytes with stored headers", async () => {
    const res = await get("/files/cards/c1-1-100.png");
    expect(res.status).toBe(200);
    expect(new Uint8Array(await res.arrayBuffer())).toEqual(IMAGE);
    expect(res.headers.get("content-type")).toBe("image/png");
    expect(res.headers.get("content-length")).toBe(String(IMAGE.byteLength));
    expect(res.headers.get("etag")).toBe(etag);
    expect(res.headers.get("cache-control")).toBe(CACHE);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    const meta = await storage.head("cards/c1-1-100.png");
    expect(res.headers.get("last-modified")).toBe(new Date(meta!.lastModified).toUTCString());
  });

  test("no Cache-Control header when none was stored", async () => {
    const res = await get("/files/a/b.png");
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBeNull();
  });

  test("HEAD gives the headers and no body", async () => {
    const res = await get("/files/cards/c1-1-100.png", {}, "HEAD");
    expect(res.status).toBe(200);
    expect(res.headers.get("etag")).toBe(etag);
    expect(res.headers.get("content-type")).toBe("image/png");
    expect((await res.arrayBuffer()).byteLength).toBe(0);
  });

  test("If-None-Match: 304 when any listed tag matches (weakly), 200 otherwise", async () => {
    for (const inm of [etag, `W/${etag}`, `"other", ${etag}`, "*"]) {
      const res = await get("/files/cards/c1-1-100.png", { "if-none-match": inm });
      expect(res.status).toBe(304);
      expect(res.headers.get("etag")).toBe(etag);
      expect(res.headers.get("cache-control")).toBe(CACHE);
      expect(await res.text()).toBe("");
    }
    const miss = await get("/files/cards/c1-1-100.png", { "if-none-match": '"stale"' });
    expect(miss.status).toBe(200);
  });

  test("If-Modified-Since: 304 when not modified since; ignored when If-None-Match is present", async () => {
    const meta = await storage.head("cards/c1-1-100.png");
    const at = new Date(meta!.lastModified).toUTCString();
    expect((await get("/files/cards/c1-1-100.png", { "if-modified-since": at })).status).toBe(304);
    const before = new Date(meta!.lastModified - 10_000).toUTCString();
    expect((await get("/files/cards/c1-1-100.png", { "if-modified-since": before })).status).toBe(200);
    expect((await get("/files/cards/c1-1-100.png", { "if-modified-since": "garbage" })).status).toBe(200);
    const both = await get("/files/cards/c1-1-100.png", {
      "if-modified-since": at,
      "if-none-match": '"stale"',
    });
    expect(both.status).toBe(200);
  });

  test("missing files, sidecars and directories are 404 with the error shape", async () => {
    for (const path of [
      "/files/cards/nope.png",
      "/files/cards/.c1-1-100.png.meta.json",
      "/files/cards",
      "/files/cards/",
      "/files/",
    ]) {
      await expectJson404(await get(path));
    }
  });

  test("percent-encoding is never decoded into a key", async () => {
    // a/b.png exists, but only under its literal name.
    await expectJson404(await get("/files/a%2Fb.png"));
    await expectJson404(await get("/files/a%2fb.png"));
    await expectJson404(await get("/files/%61/b.png"));
    await expectJson404(await get("/files/a/b%2Epng"));
    await expectJson404(await get("/files/..%2fsecret.txt"));
    await expectJson404(await get("/files/%2e%2e%2fsecret.txt"));
  });

  test("absolute paths and symlinks out of the root are 404", async () => {
    await expectJson404(await get(`/files/${join(base, "secret.txt")}`));
    await expectJson404(await get("/files/evil/secret.txt"));
    await expectJson404(await get("/files/link.txt"));
  });
});

describe("GET /files/* over raw HTTP (un-normalised request lines)", () => {
  let server: ReturnType<typeof makeApp>;
  let port: number;

  beforeAll(() => {
    server = makeApp().listen({ port: 0, hostname: "127.0.0.1" });
    port = server.server!.port!;
  });
  afterAll(async () => {
    await server.stop(true);
  });

  /** Sends the request line exactly as written; fetch would normalise `..` away before sending. */
  function raw(target: string, method = "GET"): Promise<{ status: number; head: string; body: string }> {
    return new Promise((resolve, reject) => {
      const socket = connect(port, "127.0.0.1", () => {
        socket.write(`${method} ${target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
      });
      const chunks: Buffer[] = [];
      socket.on("data", (c: Buffer) => chunks.push(c));
      socket.on("error", reject);
      socket.on("end", () => {
        const text = Buffer.concat(chunks).toString("latin1");
        const split = text.indexOf("\r\n\r\n");
        const head = text.slice(0, split);
        resolve({ status: Number(head.split(" ")[1]), head, body: text.slice(split + 4) });
      });
    });
  }

  test("a valid key is served (so the 404s below mean refusal, not a broken server)", async () => {
    const res = await raw("/files/a/b.png");
    expect(res.status).toBe(200);
    expect(res.body).toBe(Buffer.from(IMAGE).toString("latin1"));
  });

  // Bun resolves dot segments (also %2e%2e, and `\` as `/`) before routing, so these land outside /files/
  // and get the app's 404; what matters is that nothing outside the root is ever read.
  const NORMALISED_AWAY = [
    "/files/../secret.txt",
    "/files/../../secret.txt",
    "/files/a/../../secret.txt",
    "/files/%2e%2e/secret.txt",
    "/files/%2E%2E/secret.txt",
    "/files/.%2e/secret.txt",
    "/files/..\\secret.txt",
    "/files/a\\..\\..\\secret.txt",
    "/files/evil/../../secret.txt",
  ];
  // These reach the route, which refuses them itself.
  const REACH_THE_ROUTE = [
    "/files/..%2fsecret.txt",
    "/files/%2e%2e%2fsecret.txt",
    "/files/..%5csecret.txt",
    "/files/evil/secret.txt",
    "/files/link.txt",
    "/files/%00secret.txt",
    "/files//etc/passwd",
  ];

  for (const target of NORMALISED_AWAY) {
    test(`refuses ${target}`, async () => {
      const res = await raw(target);
      expect(res.status).toBe(404);
      expect(res.body).not.toContain(SECRET);
    });
  }

  for (const target of REACH_THE_ROUTE) {
    test(`refuses ${target} with the error shape`, async () => {
      const res = await raw(target);
      expect(res.status).toBe(404);
      expect(JSON.parse(res.body)).toEqual({ error: { code: "not_found", message: expect.any(String) } });
    });
  }

  test("refuses an absolute path after /files/", async () => {
    const res = await raw(`/files/${join(base, "secret.txt")}`);
    expect(res.status).toBe(404);
    expect(res.body).not.toContain(SECRET);
    expect(JSON.parse(res.body)).toEqual({ error: { code: "not_found", message: expect.any(String) } });
  });

  test("HEAD over the wire carries the real length and no body", async () => {
    const res = await raw("/files/cards/c1-1-100.png", "HEAD");
    expect(res.status).toBe(200);
    expect(res.head.toLowerCase()).toContain(`content-length: ${IMAGE.byteLength}`);
    expect(res.body).toBe("");
  });
});

describe("keyFromUrl", () => {
  test("takes the path exactly as sent and validates it as a key", () => {
    expect(keyFromUrl("http://h.example/files/a/b.png?v=1#x")).toBe("a/b.png");
    expect(keyFromUrl("http://h.example/files/a%2Fb.png")).toBeUndefined();
    expect(keyFromUrl("http://h.example/files/../x")).toBeUndefined();
    expect(keyFromUrl("http://h.example/other/a.png")).toBeUndefined();
    expect(keyFromUrl("http://h.example/files//etc/passwd")).toBeUndefined();
  });
});
