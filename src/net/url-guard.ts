import { lookup as dnsLookup } from "node:dns/promises";
import { type BlockedRange, classifyIp, parseIp } from "./ip";

/**
 * Outbound URL guard: every server-side fetch of a user-supplied URL (webhooks, avatars) goes through here so
 * that a user cannot make the server call loopback, private networks or cloud metadata endpoints (SSRF).
 */

export type UrlGuardReason =
  | "invalid_url"
  | "unsupported_scheme"
  | "blocked_hostname"
  | "metadata"
  | Exclude<BlockedRange, "metadata">;

/** The URL (or an address its host resolves to) is not allowed. Maps to HTTP 422. */
export class UrlGuardError extends Error {
  override name = "UrlGuardError";
  readonly code = "url_not_allowed";
  readonly status = 422;
  readonly reason: UrlGuardReason;
  readonly url: string;

  constructor(url: string, reason: UrlGuardReason, detail?: string) {
    super(`URL not allowed (${reason}${detail ? `: ${detail}` : ""})`);
    this.reason = reason;
    this.url = url;
  }
}

export type OutboundFetchCode =
  | "dns_failed"
  | "timeout"
  | "response_too_large"
  | "too_many_redirects"
  | "bad_redirect"
  | "network_error";

/** A guarded fetch that passed the guard but failed on the way (resolution, limits, network). */
export class OutboundFetchError extends Error {
  override name = "OutboundFetchError";
  readonly code: OutboundFetchCode;
  readonly status = 502;

  constructor(code: OutboundFetchCode, message: string, opts: { cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.code = code;
  }
}

/** Resolves a hostname to every address it has (A and AAAA). */
export type Lookup = (hostname: string) => Promise<string[]>;

export interface UrlGuardOptions {
  /** Skip the address checks (`ALLOW_PRIVATE_URLS=true`); cloud metadata stays refused. @defaultValue false */
  allowPrivate?: boolean;
  /** Origins (`http://10.0.0.5:8080`) trusted despite a private address, e.g. an internal receiver. */
  allowedOrigins?: readonly string[];
  /** DNS resolution; injected by tests. @defaultValue node:dns lookup with `all: true` */
  lookup?: Lookup;
}

const METADATA_HOSTNAMES = new Set(["metadata.google.internal", "metadata.goog"]);
const BLOCKED_HOSTNAMES = new Set(["localhost", "metadata", "instance-data"]);

export const systemLookup: Lookup = async (hostname) => {
  const records = await dnsLookup(hostname, { all: true, verbatim: true });
  return records.map((r) => r.address);
};

function parseUrl(url: string): URL {
  try {
    return new URL(url);
  } catch {
    throw new UrlGuardError(url, "invalid_url");
  }
}

/** URL hostnames keep IPv6 brackets and a trailing root dot; neither changes where a request goes. */
function normaliseHostname(hostname: string): string {
  return hostname.toLowerCase().replace(/\.$/, "");
}

function checkHostname(url: string, host: string, allowPrivate: boolean): void {
  if (METADATA_HOSTNAMES.has(host)) throw new UrlGuardError(url, "metadata", host);
  if (allowPrivate) return;
  if (BLOCKED_HOSTNAMES.has(host) || host.endsWith(".localhost")) {
    throw new UrlGuardError(url, "blocked_hostname", host);
  }
}

function checkAddress(url: string, address: string, allowPrivate: boolean): void {
  const blocked = classifyIp(address);
  if (blocked === null) return;
  if (blocked === "metadata") throw new UrlGuardError(url, "metadata", address);
  if (!allowPrivate) throw new UrlGuardError(url, blocked, address);
}

async function resolve(host: string, lookup: Lookup): Promise<string[]> {
  if (parseIp(host)) return [host];
  let addresses: string[];
  try {
    addresses = await lookup(host);
  } catch (err) {
    throw new OutboundFetchError("dns_failed", `could not resolve ${host}`, { cause: err });
  }
  if (addresses.length === 0) throw new OutboundFetchError("dns_failed", `${host} has no addresses`);
  return addresses;
}

/**
 * Resolves when `url` is an http(s) URL whose host is public: not a blocked name and not resolving (any of its
 * addresses) to loopback, private, link-local, CGNAT, multicast, reserved or metadata space.
 * Throws {@link UrlGuardError} when refused, {@link OutboundFetchError} `dns_failed` when the host does not resolve.
 */
export async function assertPublicUrl(url: string, opts: UrlGuardOptions = {}): Promise<URL> {
  const parsed = parseUrl(url);
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new UrlGuardError(url, "unsupported_scheme", parsed.protocol);
  }
  if (opts.allowedOrigins?.includes(parsed.origin)) return parsed;
  const host = normaliseHostname(parsed.hostname);
  const allowPrivate = opts.allowPrivate ?? false;
  checkHostname(url, host, allowPrivate);
  for (const address of await resolve(host, opts.lookup ?? systemLookup)) {
    checkAddress(url, address, allowPrivate);
  }
  return parsed;
}

export interface GuardedFetchInit extends Omit<RequestInit, "redirect">, UrlGuardOptions {
  /** Largest body accepted, counted after decompression while streaming. @defaultValue 5 MiB */
  maxBytes?: number;
  /** Time limit for the whole exchange, redirects and body included. @defaultValue 10 000 ms */
  timeoutMs?: number;
  /** Redirects followed (each hop re-checked); 0 for webhooks. @defaultValue 3 */
  maxRedirects?: number;
  /** The fetch implementation; injected by tests. @defaultValue globalThis.fetch */
  fetch?: (url: string, init: RequestInit) => Promise<Response>;
}

/** A fully read response; `url` is the final URL after redirects. */
export interface GuardedResponse {
  status: number;
  headers: Headers;
  bytes: Uint8Array;
  url: string;
  redirects: number;
}

const REDIRECT_STATUSES = new Set([301, 302, 303, 307, 308]);
const CREDENTIAL_HEADERS = ["authorization", "cookie", "proxy-authorization"];
const BODY_HEADERS = ["content-type", "content-length", "content-encoding"];

interface Hop {
  url: string;
  method: string;
  headers: Headers;
  body: RequestInit["body"];
}

/** The request for the next hop, following fetch's rules for method changes and cross-origin credentials. */
function nextHop(hop: Hop, status: number, location: string): Hop {
  const target = new URL(location, hop.url);
  const headers = new Headers(hop.headers);
  if (target.origin !== new URL(hop.url).origin) {
    for (const name of CREDENTIAL_HEADERS) headers.delete(name);
  }
  const toGet =
    status === 303 ? hop.method !== "HEAD" : (status === 301 || status === 302) && hop.method === "POST";
  if (!toGet) return { url: target.href, method: hop.method, headers, body: hop.body };
  for (const name of BODY_HEADERS) headers.delete(name);
  return { url: target.href, method: "GET", headers, body: undefined };
}

async function readLimited(res: Response, maxBytes: number): Promise<Uint8Array> {
  const declared = Number(res.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await res.body?.cancel();
    throw new OutboundFetchError(
      "response_too_large",
      `response declares ${declared} bytes (max ${maxBytes})`,
    );
  }
  if (!res.body) return new Uint8Array(0);
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > maxBytes) {
      await reader.cancel();
      throw new OutboundFetchError("response_too_large", `response exceeds ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return concat(chunks, total);
}

function concat(chunks: Uint8Array[], total: number): Uint8Array {
  const out = new Uint8Array(total);
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return out;
}

function asFetchError(err: unknown, timeout: AbortSignal, timeoutMs: number): unknown {
  if (err instanceof UrlGuardError || err instanceof OutboundFetchError) return err;
  if (timeout.aborted)
    return new OutboundFetchError("timeout", `timed out after ${timeoutMs} ms`, { cause: err });
  if (err instanceof Error && err.name === "AbortError") return err;
  const message = err instanceof Error ? err.message : String(err);
  return new OutboundFetchError("network_error", message, { cause: err });
}

/**
 * Fetches a user-supplied URL safely: checks it (and the resolution of its host, at fetch time) with
 * {@link assertPublicUrl}, follows redirects itself so each hop is checked, and enforces a byte and time limit.
 * Returns the fully buffered response; non-2xx statuses are returned, not thrown.
 *
 * Not covered: the resolver may answer differently between our check and the connection (DNS rebinding);
 * the window is one lookup wide.
 */
export async function guardedFetch(url: string, init: GuardedFetchInit = {}): Promise<GuardedResponse> {
  const {
    allowPrivate,
    allowedOrigins,
    lookup,
    maxBytes = 5 * 1024 * 1024,
    timeoutMs = 10_000,
    maxRedirects = 3,
    fetch: doFetch = fetch,
    signal,
    ...requestInit
  } = init;
  const timeout = AbortSignal.timeout(timeoutMs);
  const combined = signal ? AbortSignal.any([signal, timeout]) : timeout;
  const guard: UrlGuardOptions = { allowPrivate, allowedOrigins, lookup };
  let hop: Hop = {
    url,
    method: (requestInit.method ?? "GET").toUpperCase(),
    headers: new Headers(requestInit.headers),
    body: requestInit.body,
  };
  try {
    for (let redirects = 0; ; redirects++) {
      await assertPublicUrl(hop.url, guard);
      const res = await doFetch(hop.url, {
        ...requestInit,
        method: hop.method,
        headers: hop.headers,
        body: hop.body,
        redirect: "manual",
        signal: combined,
      });
      const location = res.headers.get("location");
      if (!REDIRECT_STATUSES.has(res.status) || location === null) {
        const bytes = await readLimited(res, maxBytes);
        return { status: res.status, headers: res.headers, bytes, url: hop.url, redirects };
      }
      await res.body?.cancel();
      if (redirects >= maxRedirects) {
        throw new OutboundFetchError(
          "too_many_redirects",
          `${res.status} redirect to ${location} not followed (max ${maxRedirects})`,
        );
      }
      hop = nextHopOrThrow(hop, res.status, location);
    }
  } catch (err) {
    throw asFetchError(err, timeout, timeoutMs);
  }
}

function nextHopOrThrow(hop: Hop, status: number, location: string): Hop {
  try {
    return nextHop(hop, status, location);
  } catch (err) {
    throw new OutboundFetchError("bad_redirect", `invalid redirect location ${location}`, { cause: err });
  }
}
