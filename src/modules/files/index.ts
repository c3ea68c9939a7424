/**
 * `GET|HEAD /files/*`: serves local storage with ETag, Last-Modified, Cache-Control and the stored
 * Content-Type, answering 304 to matching conditional requests.
 *
 * The key is taken from the raw request URL, never from a decoded parameter: keys use only URL-safe
 * characters (src/storage/keys.ts), so anything percent-encoded, any `..`, backslash, empty segment or
 * absolute path simply fails key validation and gets the same 404 as a missing file. LocalStorage then
 * resolves symlinks and refuses anything outside its root.
 */
import { Elysia } from "elysia";
import { notFound } from "../../errors";
import { isValidKey } from "../../storage/keys";
import type { LocalFile, LocalStorage } from "../../storage/local";
import type { ObjectMeta } from "../../storage/types";
import { routeDoc } from "../docs/model";

const ROUTE_PREFIX = "/files/";

/** With S3 storage there is nothing to serve here (objects have their own public URLs): every path is a 404. */
export function filesRoutes(storage: LocalStorage | null) {
  return new Elysia({ name: "files", seed: storage?.root ?? "none" })
    .get("/files/*", ({ request }) => serve(storage, request, true), {
      detail: routeDoc({
        tags: ["files"],
        summary: "A stored file (local storage; S3 objects have their own URLs)",
        responseType: "application/octet-stream",
        responseDescription:
          "The stored file with its own Content-Type, ETag and Cache-Control; 304 when unchanged",
      }),
    })
    .head("/files/*", ({ request }) => serve(storage, request, false), {
      detail: routeDoc({
        tags: ["files"],
        summary: "A stored file's headers",
        responseType: "application/octet-stream",
        responseDescription: "The stored file's headers",
      }),
    });
}

async function serve(storage: LocalStorage | null, request: Request, withBody: boolean): Promise<Response> {
  const key = keyFromUrl(request.url);
  const file = key === undefined || !storage ? null : await storage.openFile(key);
  if (!file) return notFoundResponse();
  const headers = cacheHeaders(file.meta);
  if (isNotModified(request.headers, file.meta)) return new Response(null, { status: 304, headers });
  headers.set("content-type", file.meta.contentType);
  headers.set("content-length", String(file.meta.bytes));
  // Stored files are data, never documents: no sniffing into HTML, no scripts if one is opened directly.
  headers.set("x-content-type-options", "nosniff");
  headers.set("content-security-policy", "default-src 'none'; sandbox");
  return new Response(withBody ? body(file) : null, { status: 200, headers });
}

/** The key part of the URL's path exactly as sent (undefined when the path is not under /files/). */
export function keyFromUrl(url: string): string | undefined {
  const afterScheme = url.indexOf("//");
  const pathStart = url.indexOf("/", afterScheme >= 0 ? afterScheme + 2 : 0);
  if (pathStart < 0) return undefined;
  const path = url.slice(pathStart).split(/[?#]/, 1)[0] ?? "";
  if (!path.startsWith(ROUTE_PREFIX)) return undefined;
  const key = path.slice(ROUTE_PREFIX.length);
  return isValidKey(key) ? key : undefined;
}

function body(file: LocalFile): Blob {
  return Bun.file(file.path);
}

function cacheHeaders(meta: ObjectMeta): Headers {
  const headers = new Headers({
    etag: meta.etag,
    "last-modified": new Date(meta.lastModified).toUTCString(),
  });
  if (meta.cacheControl !== undefined) headers.set("cache-control", meta.cacheControl);
  return headers;
}

/** RFC 9110 §13.2.2: If-None-Match wins; If-Modified-Since is only consulted without it. */
function isNotModified(headers: Headers, meta: ObjectMeta): boolean {
  const ifNoneMatch = headers.get("if-none-match");
  if (ifNoneMatch !== null) return etagMatches(ifNoneMatch, meta.etag);
  const ifModifiedSince = headers.get("if-modified-since");
  if (ifModifiedSince === null) return false;
  const since = Date.parse(ifModifiedSince);
  // HTTP dates have one-second resolution, so compare whole seconds.
  return !Number.isNaN(since) && Math.floor(meta.lastModified / 1000) <= Math.floor(since / 1000);
}

/** Weak comparison, as If-None-Match requires. */
function etagMatches(header: string, etag: string): boolean {
  if (header.trim() === "*") return true;
  const strip = (t: string) => t.trim().replace(/^W\//, "");
  const ours = strip(etag);
  return header.split(",").some((t) => strip(t) === ours);
}

function notFoundResponse(): Response {
  return Response.json(notFound("file").toBody(), { status: 404 });
}
