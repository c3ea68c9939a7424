import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { classifyIp } from "../../src/net/ip";
import {
  assertPublicUrl,
  guardedFetch,
  type Lookup,
  OutboundFetchError,
  UrlGuardError,
} from "../../src/net/url-guard";

const PUBLIC_IP = "93.184.216.34";

/** A resolver that knows a fixed table and fails for anything else, so no test touches real DNS. */
function fakeLookup(table: Record<string, string[]>): Lookup {
  return async (host) => {
    const addresses = table[host];
    if (!addresses) throw new Error(`ENOTFOUND ${host}`);
    return addresses;
  };
}

const lookup = fakeLookup({
  "example.com": [PUBLIC_IP],
  "dual.example.com": ["2606:2800:220:1:248:1893:25c8:1946", PUBLIC_IP],
  "sneaky.example.com": ["127.0.0.1"],
  "half-sneaky.example.com": [PUBLIC_IP, "10.1.2.3"],
  "v6-sneaky.example.com": ["::ffff:192.168.0.1"],
  "metadata.example.com": ["169.254.169.254"],
});

async function refusal(url: string, opts = {}): Promise<UrlGuardError> {
  const err = await assertPublicUrl(url, { lookup, ...opts }).catch((e: unknown) => e);
  if (!(err instanceof UrlGuardError)) throw new Error(`expected ${url} to be refused, got ${String(err)}`);
  return err;
}

describe("assertPublicUrl", () => {
  const corpus: Array<[string, string]> = [
    ["http://127.0.0.1/", "loopback"],
    ["http://127.255.0.9:8080/x", "loopback"],
    ["http://0.0.0.0/", "unspecified"],
    ["http://10.0.0.1/", "private"],
    ["http://172.16.0.1/", "private"],
    ["http://172.31.255.255/", "private"],
    ["http://192.168.1.1/", "private"],
    ["http://169.254.169.254/latest/meta-data/", "metadata"],
    ["http://169.254.1.1/", "link_local"],
    ["http://100.64.0.1/", "cgnat"],
    ["http://224.0.0.1/", "multicast"],
    ["http://255.255.255.255/", "broadcast"],
    ["http://[::1]/", "loopback"],
    ["http://[::]/", "unspecified"],
    ["http://[::ffff:127.0.0.1]/", "loopback"],
    ["http://[::ffff:10.0.0.1]/", "private"],
    ["http://[0:0:0:0:0:ffff:7f00:0001]/", "loopback"],
    ["http://[64:ff9b::127.0.0.1]/", "loopback"],
    ["http://[2002:7f00:1::]/", "loopback"],
    ["http://[fe80::1]/", "link_local"],
    ["http://[fc00::1]/", "unique_local"],
    ["http://[fd00:ec2::254]/", "metadata"],
    ["http://[ff02::1]/", "multicast"],
    ["http://2130706433/", "loopback"],
    ["http://0x7f000001/", "loopback"],
    ["http://0177.0.0.1/", "loopback"],
    ["http://127.1/", "loopback"],
    ["http://0x7f.1/", "loopback"],
    ["http://%31%32%37.0.0.1/", "loopback"],
    ["http://0/", "unspecified"],
    ["http://localhost:3000/", "blocked_hostname"],
    ["http://LOCALHOST./", "blocked_hostname"],
    ["http://api.localhost/", "blocked_hostname"],
    ["http://metadata.google.internal/computeMetadata/v1/", "metadata"],
    ["http://sneaky.example.com/", "loopback"],
    ["http://half-sneaky.example.com/", "private"],
    ["http://v6-sneaky.example.com/", "private"],
    ["http://metadata.example.com/", "metadata"],
    ["ftp://example.com/", "unsupported_scheme"],
    ["file:///etc/passwd", "unsupported_scheme"],
    ["javascript:alert(1)", "unsupported_scheme"],
    ["not a url", "invalid_url"],
  ];

  for (const [url, reason] of corpus) {
    test(`refuses ${url} (${reason})`, async () => {
      const err = await refusal(url);
      expect(err.reason).toBe(reason as UrlGuardError["reason"]);
      expect(err.code).toBe("url_not_allowed");
      expect(err.status).toBe(422);
    });
  }

  test("allows public addresses and hostnames resolving only to public addresses", async () => {
    expect((await assertPublicUrl(`https://${PUBLIC_IP}/a`, { lookup })).hostname).toBe(PUBLIC_IP);
    expect((await assertPublicUrl("https://example.com/avatar.png", { lookup })).pathname).toBe(
      "/avatar.png",
    );
    expect((await assertPublicUrl("http://dual.example.com:8443/", { lookup })).port).toBe("8443");
    expect((await assertPublicUrl("https://[2606:4700::1111]/", { lookup })).hostname).toBe(
      "[2606:4700::1111]",
    );
  });

  test("allowPrivate admits private and loopback targets but never cloud metadata", async () => {
    const opts = { lookup, allowPrivate: true };
    expect((await assertPublicUrl("http://10.0.0.1/", opts)).hostname).toBe("10.0.0.1");
    expect((await assertPublicUrl("http://sneaky.example.com/", opts)).hostname).toBe("sneaky.example.com");
    expect((await refusal("http://169.254.169.254/", opts)).reason).toBe("metadata");
    expect((await refusal("http://metadata.google.internal/", opts)).reason).toBe("metadata");
    expect((await refusal("http://[fd00:ec2::254]/", opts)).reason).toBe("metadata");
  });

  test("allowedOrigins trusts exactly the listed origins", async () => {
    const opts = { lookup, allowedOrigins: ["http://10.0.0.5:8080"] };
    expect((await assertPublicUrl("http://10.0.0.5:8080/hook", opts)).port).toBe("8080");
    expect((await refusal("http://10.0.0.5:8081/hook", opts)).reason).toBe("private");
  });

  test("an unresolvable host is a dns_failed fetch error, not a refusal", async () => {
    const err = await assertPublicUrl("https://nowhere.invalid/", { lookup }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OutboundFetchError);
    expect((err as OutboundFetchError).code).toBe("dns_failed");
  });
});

describe("classifyIp", () => {
  test("covers range edges", () => {
    expect(classifyIp("172.15.255.255")).toBeNull();
    expect(classifyIp("172.32.0.0")).toBeNull();
    expect(classifyIp("100.63.255.255")).toBeNull();
    expect(classifyIp("100.128.0.0")).toBeNull();
    expect(classifyIp("100.127.255.255")).toBe("cgnat");
    expect(classifyIp("fe80::")).toBe("link_local");
    expect(classifyIp("febf:ffff::")).toBe("link_local");
    expect(classifyIp("fdff::1")).toBe("unique_local");
    expect(classifyIp("fe80::1%eth0")).toBe("link_local");
    expect(classifyIp("8.8.8.8")).toBeNull();
    expect(classifyIp("2001:4860:4860::8888")).toBeNull();
    expect(classifyIp("not-an-ip")).toBe("reserved");
  });
});

describe("guardedFetch", () => {
  let hits: string[] = [];
  let server: ReturnType<typeof Bun.serve>;
  let secret: ReturnType<typeof Bun.serve>;
  let origin = "";

  beforeAll(() => {
    secret = Bun.serve({
      port: 0,
      fetch: () => {
        hits.push("secret");
        return new Response("internal secret");
      },
    });
    server = Bun.serve({
      port: 0,
      fetch: async (req) => {
        const url = new URL(req.url);
        hits.push(`${req.method} ${url.pathname}`);
        switch (url.pathname) {
          case "/ok":
            return new Response("hello");
          case "/to-ok":
            return Response.redirect(`${origin}/ok`, 302);
          case "/to-secret":
            return Response.redirect(`http://127.0.0.1:${secret.port}/`, 302);
          case "/to-localhost":
            return Response.redirect(`http://localhost:${server.port}/ok`, 301);
          case "/loop":
            return Response.redirect(`${origin}/loop`, 302);
          case "/post-303":
            return Response.redirect(`${origin}/echo`, 303);
          case "/post-307":
            return Response.redirect(`${origin}/echo`, 307);
          case "/echo":
            return Response.json({ method: req.method, body: await req.text() });
          case "/big":
            return new Response("x".repeat(5000));
          case "/big-stream":
            return new Response(
              new ReadableStream({
                pull(controller) {
                  controller.enqueue(new TextEncoder().encode("y".repeat(1000)));
                },
              }),
            );
          case "/slow":
            await Bun.sleep(2000);
            return new Response("late");
          default:
            return new Response("missing", { status: 404 });
        }
      },
    });
    origin = `http://127.0.0.1:${server.port}`;
  });

  afterAll(() => {
    server.stop(true);
    secret.stop(true);
  });

  const trusted = () => ({ allowedOrigins: [origin], lookup });

  test("refuses a loopback URL before connecting", async () => {
    hits = [];
    const err = await guardedFetch(`${origin}/ok`, { lookup }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UrlGuardError);
    expect(hits).toEqual([]);
  });

  test("fetches an allowed URL and returns the buffered body", async () => {
    const res = await guardedFetch(`${origin}/ok`, trusted());
    expect(res.status).toBe(200);
    expect(new TextDecoder().decode(res.bytes)).toBe("hello");
    expect(res.redirects).toBe(0);
  });

  test("follows allowed redirects, re-checking each hop", async () => {
    const res = await guardedFetch(`${origin}/to-ok`, trusted());
    expect(res.status).toBe(200);
    expect(res.url).toBe(`${origin}/ok`);
    expect(res.redirects).toBe(1);
  });

  test("refuses a redirect from an allowed server to another loopback port", async () => {
    hits = [];
    const err = await guardedFetch(`${origin}/to-secret`, trusted()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UrlGuardError);
    expect((err as UrlGuardError).reason).toBe("loopback");
    expect(hits).toEqual(["GET /to-secret"]);
  });

  test("refuses a redirect to localhost even on the trusted server's port", async () => {
    hits = [];
    const err = await guardedFetch(`${origin}/to-localhost`, trusted()).catch((e: unknown) => e);
    expect((err as UrlGuardError).reason).toBe("blocked_hostname");
    expect(hits).toEqual(["GET /to-localhost"]);
  });

  test("refuses a redirect from a public host to loopback (injected fetch)", async () => {
    const requested: string[] = [];
    const fakeFetch = async (url: string) => {
      requested.push(url);
      return new Response(null, { status: 302, headers: { location: "http://2130706433/admin" } });
    };
    const err = await guardedFetch("https://example.com/a", { lookup, fetch: fakeFetch }).catch(
      (e: unknown) => e,
    );
    expect((err as UrlGuardError).reason).toBe("loopback");
    expect(requested).toEqual(["https://example.com/a"]);
  });

  test("stops after maxRedirects, and does not follow any with 0", async () => {
    const err = await guardedFetch(`${origin}/loop`, trusted()).catch((e: unknown) => e);
    expect((err as OutboundFetchError).code).toBe("too_many_redirects");
    hits = [];
    const none = await guardedFetch(`${origin}/to-ok`, { ...trusted(), maxRedirects: 0 }).catch(
      (e: unknown) => e,
    );
    expect((none as OutboundFetchError).code).toBe("too_many_redirects");
    expect(hits).toEqual(["GET /to-ok"]);
  });

  test("303 turns a POST into a GET; 307 keeps method and body", async () => {
    const init = { ...trusted(), method: "POST", body: "payload", headers: { "content-type": "text/plain" } };
    const seeOther = JSON.parse(
      new TextDecoder().decode((await guardedFetch(`${origin}/post-303`, init)).bytes),
    );
    expect(seeOther).toEqual({ method: "GET", body: "" });
    const temporary = JSON.parse(
      new TextDecoder().decode((await guardedFetch(`${origin}/post-307`, init)).bytes),
    );
    expect(temporary).toEqual({ method: "POST", body: "payload" });
  });

  test("enforces the byte limit from Content-Length and while streaming", async () => {
    const declared = await guardedFetch(`${origin}/big`, { ...trusted(), maxBytes: 1000 }).catch(
      (e: unknown) => e,
    );
    expect((declared as OutboundFetchError).code).toBe("response_too_large");
    const streamed = await guardedFetch(`${origin}/big-stream`, { ...trusted(), maxBytes: 10_000 }).catch(
      (e: unknown) => e,
    );
    expect((streamed as OutboundFetchError).code).toBe("response_too_large");
    const fits = await guardedFetch(`${origin}/big`, { ...trusted(), maxBytes: 5000 });
    expect(fits.bytes.byteLength).toBe(5000);
  });

  test("enforces the time limit", async () => {
    const started = performance.now();
    const err = await guardedFetch(`${origin}/slow`, { ...trusted(), timeoutMs: 150 }).catch(
      (e: unknown) => e,
    );
    expect((err as OutboundFetchError).code).toBe("timeout");
    expect(performance.now() - started).toBeLessThan(1500);
  });

  test("returns non-2xx statuses instead of throwing", async () => {
    const res = await guardedFetch(`${origin}/nope`, trusted());
    expect(res.status).toBe(404);
  });

  test("allowPrivate reaches a loopback server directly", async () => {
    const res = await guardedFetch(`${origin}/ok`, { allowPrivate: true });
    expect(res.status).toBe(200);
  });
});
