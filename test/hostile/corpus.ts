/**
 * A hostile request corpus generated from the OpenAPI document: for every operation, requests with bad path
 * and query values, bodies with wrong types, missing fields, huge strings, deep nesting, NUL and lone
 * surrogates, bad content types and oversized bodies. Deterministic: the same document gives the same cases
 * (a seeded generator picks the sample when an operation has more cases than the cap).
 */

export type Schema = {
  type?: string | string[];
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  enum?: unknown[];
  const?: unknown;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  $ref?: string;
  default?: unknown;
  minimum?: number;
  minLength?: number;
  minItems?: number;
  format?: string;
  pattern?: string;
};

type Parameter = { name: string; in: "path" | "query" | "header" | "cookie"; schema?: Schema };
type Operation = {
  security?: Record<string, unknown>[];
  parameters?: Parameter[];
  requestBody?: { content?: Record<string, { schema?: Schema }> };
};
export type OpenApi = {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Schema> };
};

/** One request to send: path (with query), method, headers and body. */
export type HostileCase = {
  label: string;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Uint8Array | ReadableStream<Uint8Array> | FormData;
};

/** Routes a corpus cannot exercise with plain requests (WebSocket upgrades). */
const SKIP = new Set(["GET /ws", "GET /dashboard/ws"]);

const LONE_SURROGATE = "\ud800";
const HUGE = "x".repeat(100_000);

/** Values of every JSON type and a few hostile strings, put where a schema expects something else. */
const WRONG_VALUES: [string, unknown][] = [
  ["number", 12345],
  ["negative", -1e308],
  ["string", "not-what-you-wanted"],
  ["boolean", true],
  ["null", null],
  ["array", [1, "two", null]],
  ["object", { unexpected: { nested: true } }],
  ["NUL", "a\u0000b"],
  ["lone surrogate", `x${LONE_SURROGATE}y`],
  ["huge string", HUGE],
  ["deep (60)", nest(60)],
  ["too deep (200)", nest(200)],
];

/** Hostile path segments and query values (already percent-encoded where they must be). */
const HOSTILE_SEGMENTS = [
  "x",
  "0",
  "-1",
  "99999999999999999999999",
  "%00",
  "%ED%A0%80",
  "..%2F..%2Fetc%2Fpasswd",
  "%2e%2e",
  "a".repeat(5000),
  "%F0%9F%92%A9",
  "null",
  "%22%3E%3Cscript%3E",
];

function nest(depth: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}

/** A small deterministic PRNG (mulberry32), so a sample is the same on every run. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hash(text: string): number {
  let h = 2166136261;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 16777619);
  return h >>> 0;
}

/** A value the schema accepts, as far as a simple walk can tell (the base each mutation starts from). */
export function sample(schema: Schema | undefined, doc: OpenApi, depth = 0): unknown {
  if (!schema || depth > 8) return null;
  if (schema.$ref) return sample(resolveRef(schema.$ref, doc), doc, depth + 1);
  if (schema.const !== undefined) return schema.const;
  if (schema.default !== undefined) return schema.default;
  if (schema.enum?.length) return schema.enum[0];
  const union = schema.anyOf ?? schema.oneOf;
  if (union?.length) return sample(union[0], doc, depth + 1);
  if (schema.allOf?.length) {
    return Object.assign({}, ...schema.allOf.map((s) => sample(s, doc, depth + 1) as object));
  }
  const type = Array.isArray(schema.type) ? schema.type[0] : schema.type;
  switch (type) {
    case "object": {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(schema.properties ?? {})) out[k] = sample(v, doc, depth + 1);
      return out;
    }
    case "array":
      return Array.from({ length: Math.max(1, schema.minItems ?? 1) }, () =>
        sample(schema.items, doc, depth + 1),
      );
    case "integer":
    case "number":
      return Math.max(schema.minimum ?? 1, 1);
    case "boolean":
      return false;
    case "string":
      if (schema.format === "uri" || schema.format === "url") return "https://example.com/x";
      return "a".repeat(Math.max(1, schema.minLength ?? 1));
    default:
      return null;
  }
}

function resolveRef(ref: string, doc: OpenApi): Schema | undefined {
  const name = ref.split("/").at(-1) ?? "";
  return doc.components?.schemas?.[name];
}

/** The operation's cases, at most `cap` of them (a deterministic sample when there are more). */
export function casesFor(
  method: string,
  path: string,
  op: Operation,
  doc: OpenApi,
  opts: { cap: number; maxBodyBytes: number },
): HostileCase[] {
  const upper = method.toUpperCase();
  if (SKIP.has(`${upper} ${path}`)) return [];
  const params = op.parameters ?? [];
  const pathParams = params.filter((p) => p.in === "path");
  const query = params.filter((p) => p.in === "query");
  const fill = (segment: string) => path.replace(/\{[^}]+\}/g, segment);
  const plain = fill("hostile-id");
  const out: HostileCase[] = [];
  const add = (label: string, c: Omit<HostileCase, "label" | "method">) =>
    out.push({ label, method: upper, ...c });

  add("no body, no params", { path: plain, headers: {} });
  if (pathParams.length) {
    for (const seg of HOSTILE_SEGMENTS) add(`path = ${seg.slice(0, 24)}`, { path: fill(seg), headers: {} });
  }
  for (const q of query) {
    for (const v of [...HOSTILE_SEGMENTS, "1e309", "NaN", "-0", "true"]) {
      add(`?${q.name}=${v.slice(0, 24)}`, { path: `${plain}?${q.name}=${v}`, headers: {} });
    }
    add(`?${q.name} twice`, { path: `${plain}?${q.name}=1&${q.name}=2`, headers: {} });
  }
  add("?token=garbage", { path: `${plain}?token=${"%00".repeat(10)}`, headers: {} });

  const content = op.requestBody?.content ?? {};
  const json = content["application/json"]?.schema;
  const bodyRoute = Object.keys(content).length > 0 || ["POST", "PATCH", "PUT"].includes(upper);
  if (bodyRoute) {
    const type = Object.keys(content)[0] ?? "application/json";
    const base = json ? sample(json, doc) : {};
    const jsonCase = (label: string, value: unknown) =>
      add(label, {
        path: plain,
        headers: { "content-type": "application/json" },
        body: JSON.stringify(value),
      });
    jsonCase("{}", {});
    for (const [name, v] of [
      ["[]", []],
      ["string", "str"],
      ["number", 42],
      ["null", null],
      ["true", true],
    ] as const) {
      jsonCase(`body is ${name}`, v);
    }
    const props = json ? Object.keys(resolved(json, doc)?.properties ?? {}) : [];
    for (const prop of props) {
      for (const [what, value] of WRONG_VALUES) {
        jsonCase(`${prop} = ${what}`, { ...(base as object), [prop]: value });
      }
      const rest = { ...(base as Record<string, unknown>) };
      delete rest[prop];
      jsonCase(`without ${prop}`, rest);
    }
    const raw = (label: string, body: string | Uint8Array, contentType?: string) =>
      add(label, { path: plain, headers: contentType ? { "content-type": contentType } : {}, body });
    raw("invalid JSON", '{"a":', "application/json");
    raw(
      "__proto__ keys",
      '{"__proto__":{"admin":true},"constructor":{"prototype":{"x":1}}}',
      "application/json",
    );
    raw("raw NUL bytes", new Uint8Array([0x7b, 0, 0, 0x7d]), "application/json");
    raw("BOM then JSON", `\ufeff${JSON.stringify(base)}`, "application/json");
    raw("raw lone surrogate escape", '{"prompt":"\\ud800","name":"\\udfff"}', "application/json");
    raw("200 KB of brackets", `${"[".repeat(100_000)}${"]".repeat(100_000)}`, "application/json");
    raw("empty JSON body", "", "application/json");
    raw("JSON as text/plain", JSON.stringify(base), "text/plain");
    raw("JSON as XML", JSON.stringify(base), "application/xml");
    raw("multipart without boundary", "--x\r\n\r\n", "multipart/form-data");
    raw(
      "multipart, wrong boundary",
      "--nope\r\ncontent-disposition: form-data; name=a\r\n\r\nb\r\n--nope--",
      "multipart/form-data; boundary=x",
    );
    raw("urlencoded garbage", "a=%ZZ&&=&b[c][d]=1&__proto__[x]=1", "application/x-www-form-urlencoded");
    raw("utf-16 JSON", new Uint8Array([0xff, 0xfe, 0x7b, 0, 0x7d, 0]), "application/json; charset=utf-16");
    raw("no content type", JSON.stringify(base));
    raw(`declared ${type}, body binary`, crypto.getRandomValues(new Uint8Array(512)), type);
    const over = new Uint8Array(opts.maxBodyBytes + 1024).fill(0x20);
    raw("oversized (Content-Length)", over, "application/json");
    add("oversized (chunked)", {
      path: plain,
      headers: { "content-type": "application/json" },
      body: new ReadableStream({
        start(controller) {
          for (let sent = 0; sent <= opts.maxBodyBytes; sent += 16_384)
            controller.enqueue(new Uint8Array(16_384).fill(0x20));
          controller.close();
        },
      }),
    });
  }
  const form = content["multipart/form-data"]?.schema;
  if (form) {
    const fields = Object.keys(resolved(form, doc)?.properties ?? {});
    const deepJson = `{"a":${"[".repeat(5000)}${"]".repeat(5000)}}`;
    for (const [what, value] of [
      ["deep JSON", deepJson],
      ["JSON array", "[1,2,3]"],
      ["NUL", "a\u0000b"],
      ["lone surrogate", `x${LONE_SURROGATE}`],
      ["huge (20 KB)", HUGE.slice(0, 20_000)],
    ] as const) {
      const body = new FormData();
      for (const field of fields) body.set(field, value);
      add(`form: every field ${what}`, { path: plain, headers: {}, body });
    }
    // 200 KB of brackets in one field at a time (all at once would pass the body size cap).
    for (const field of fields) {
      const body = new FormData();
      body.set(field, `{"a":${"[".repeat(100_000)}${"]".repeat(100_000)}}`);
      add(`form: ${field} = 200 KB of brackets`, { path: plain, headers: {}, body });
    }
    const repeated = new FormData();
    for (const field of fields) {
      repeated.append(field, "1");
      repeated.append(field, "2");
    }
    add("form: every field twice", { path: plain, headers: {}, body: repeated });
  }
  if (out.length <= opts.cap) return out;
  const random = rng(hash(`${upper} ${path}`));
  // Always keep the first case (the plain request); sample the rest without replacement.
  const rest = out.slice(1);
  for (let i = rest.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [rest[i], rest[j]] = [rest[j]!, rest[i]!];
  }
  return [out[0]!, ...rest.slice(0, opts.cap - 1)];
}

function resolved(schema: Schema, doc: OpenApi): Schema | undefined {
  return schema.$ref ? resolveRef(schema.$ref, doc) : schema;
}

/** Every operation of the document, as `[method, path, operation]`. */
export function operations(doc: OpenApi): [string, string, Operation][] {
  const out: [string, string, Operation][] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(ops)) out.push([method, path, op]);
  }
  return out;
}
