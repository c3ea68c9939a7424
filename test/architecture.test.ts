/**
 * The import rule of docs/ARCHITECTURE.md, checked against the real imports of src/ (type-only imports
 * included: they tie modules together as much as value imports do). A failure lists every offending import.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { Glob } from "bun";

const ROOT = resolve(import.meta.dir, "..");
const SRC = join(ROOT, "src");

/** The layers of docs/ARCHITECTURE.md. */
const LIBRARIES = ["queue", "providers", "render", "images", "storage", "net", "db"] as const;
/** Libraries that know nothing of jobs: they throw their own errors and whoever runs them maps those. */
const QUEUE_FREE = ["providers", "images", "storage", "render", "net"] as const;
/** Which library may use which: the drawing in docs/ARCHITECTURE.md. Anything else is a new dependency to discuss. */
const LIBRARY_DEPS: Record<string, readonly string[]> = {
  db: [],
  queue: ["db"],
  providers: ["net"],
  render: ["net"],
  images: [],
  storage: [],
  net: [],
};
const SHARED = [
  "config.ts",
  "errors.ts",
  "json-depth.ts",
  "log.ts",
  "rate-limit.ts",
  "units.ts",
  "validation.ts",
];
/**
 * What one module may import from another: its public faces. `index.ts` (routes) and `service.ts` (the
 * service and what it re-exports), `model.ts` (its request/response schemas) and `plugin.ts` (its request
 * guards). Everything else in a module (jobs, stores, views, helpers) is private to it.
 */
const PUBLIC_FACES = new Set(["index.ts", "service.ts", "model.ts", "plugin.ts"]);

type Layer =
  | { kind: "library"; name: string }
  | { kind: "module"; name: string; file: string }
  | { kind: "cli" }
  | { kind: "client" }
  | { kind: "shared" }
  | { kind: "context" }
  | { kind: "services" }
  | { kind: "app" }
  | { kind: "runtime" }
  | { kind: "main" }
  | { kind: "other" };

function layerOf(file: string): Layer {
  const rel = relative(SRC, file);
  const [top = "", second = "", ...rest] = rel.split("/");
  if ((LIBRARIES as readonly string[]).includes(top)) return { kind: "library", name: top };
  if (top === "modules") return { kind: "module", name: second, file: rest.join("/") };
  if (top === "cli") return { kind: "cli" };
  if (top === "client") return { kind: "client" };
  if (SHARED.includes(rel)) return { kind: "shared" };
  const single: Record<string, Layer> = {
    "context.ts": { kind: "context" },
    "services.ts": { kind: "services" },
    "app.ts": { kind: "app" },
    "runtime.ts": { kind: "runtime" },
    "main.ts": { kind: "main" },
  };
  return single[rel] ?? { kind: "other" };
}

const transpiler = new Bun.Transpiler({ loader: "tsx" });

/** Every import specifier of a file, type-only ones included (the transpiler alone would drop them). */
function specifiers(source: string): string[] {
  const visible = source
    .replace(/^#!.*/, "")
    .replace(/\bimport\s+type\s+(?=[{*]|[\w$]+\s+from\b)/g, "import ")
    .replace(/\bexport\s+type\s+(?=[{*])/g, "export ")
    .replace(/([{,]\s*)type\s+(?=[A-Za-z_$][\w$]*\s*[,}]|[A-Za-z_$][\w$]*\s+as\s)/g, "$1");
  return transpiler.scanImports(visible).map((i) => i.path);
}

function resolveImport(from: string, spec: string): string | null {
  if (!spec.startsWith(".")) return null;
  const base = resolve(dirname(from), spec);
  for (const candidate of [base, `${base}.ts`, `${base}.tsx`, join(base, "index.ts")]) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  return base;
}

type Edge = { from: string; to: string; spec: string };

function loadGraph(): { files: string[]; edges: Edge[]; bare: Array<{ from: string; spec: string }> } {
  const files = [...new Glob("**/*.{ts,tsx}").scanSync(SRC)].map((f) => join(SRC, f)).sort();
  const edges: Edge[] = [];
  const bare: Array<{ from: string; spec: string }> = [];
  for (const from of files) {
    for (const spec of specifiers(readFileSync(from, "utf8"))) {
      const to = resolveImport(from, spec);
      if (to) edges.push({ from, to, spec });
      else bare.push({ from, spec });
    }
  }
  return { files, edges, bare };
}

const graph = loadGraph();
const rel = (f: string) => relative(ROOT, f);
const show = (e: Edge) => `${rel(e.from)} → ${rel(e.to)}`;

/** Imports breaking `rule`, as "from → to" lines (empty when the rule holds). */
function violations(rule: (from: Layer, to: Layer, e: Edge) => boolean): string[] {
  return graph.edges.filter((e) => !rule(layerOf(e.from), layerOf(e.to), e)).map(show);
}

/** Files reachable from `start` through any import (static, dynamic or type-only). */
function reachable(start: string): Set<string> {
  const seen = new Set<string>([start]);
  const stack = [start];
  while (stack.length) {
    const file = stack.pop() as string;
    for (const e of graph.edges) {
      if (e.from === file && !seen.has(e.to)) {
        seen.add(e.to);
        stack.push(e.to);
      }
    }
  }
  return seen;
}

/** Groups of files that import each other in a circle (strongly connected components larger than one). */
function cycles(): string[][] {
  const next = new Map<string, string[]>();
  for (const e of graph.edges) next.set(e.from, [...(next.get(e.from) ?? []), e.to]);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v) as number);
    stack.push(v);
    onStack.add(v);
    for (const w of next.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) !== index.get(v)) return;
    const group: string[] = [];
    let w: string;
    do {
      w = stack.pop() as string;
      onStack.delete(w);
      group.push(w);
    } while (w !== v);
    if (group.length > 1) found.push(group.map(rel).sort());
  };
  for (const f of graph.files) if (!index.has(f)) visit(f);
  return found;
}

/** The library or module a file belongs to; a cycle may stay inside one, never span two. */
function unitOf(file: string): string {
  const layer = layerOf(join(ROOT, file));
  if (layer.kind === "library" || layer.kind === "module") return `${layer.kind} ${layer.name}`;
  return file;
}

describe("architecture: who may import whom (docs/ARCHITECTURE.md)", () => {
  test("the scan sees the code (type-only imports included)", () => {
    expect(graph.files.length).toBeGreaterThan(100);
    const contextImports = graph.edges.filter((e) => rel(e.from) === "src/context.ts").map((e) => rel(e.to));
    expect(contextImports).toContain("src/queue/index.ts");
    expect(contextImports).toContain("src/modules/generate/service.ts");
  });

  test("every file in src/ belongs to a layer (a new top-level file must be placed in one)", () => {
    expect(graph.files.filter((f) => layerOf(f).kind === "other").map(rel)).toEqual([]);
  });

  test("shared files import nothing of ours but the shared error type (src/errors.ts)", () => {
    expect(violations((from, _to, e) => from.kind !== "shared" || rel(e.to) === "src/errors.ts")).toEqual([]);
  });

  test("libraries never import modules, the CLI, the context or the app", () => {
    expect(
      violations((from, to) => from.kind !== "library" || to.kind === "library" || to.kind === "shared"),
    ).toEqual([]);
  });

  test("libraries use each other only as drawn (queue → db; providers, render → net)", () => {
    expect(
      violations(
        (from, to) =>
          from.kind !== "library" ||
          to.kind !== "library" ||
          from.name === to.name ||
          (LIBRARY_DEPS[from.name] ?? []).includes(to.name),
      ),
    ).toEqual([]);
  });

  test("providers, images, storage, render and net never import the queue", () => {
    expect(
      violations(
        (from, to) =>
          !(from.kind === "library" && (QUEUE_FREE as readonly string[]).includes(from.name)) ||
          !(to.kind === "library" && to.name === "queue"),
      ),
    ).toEqual([]);
  });

  test("libraries never throw the HTTP ApiError (src/errors.ts): the edge maps their own errors", () => {
    expect(violations((from, _to, e) => from.kind !== "library" || rel(e.to) !== "src/errors.ts")).toEqual(
      [],
    );
  });

  test("modules import other modules only through their public faces (index, service, model, plugin)", () => {
    expect(
      violations(
        (from, to) =>
          from.kind !== "module" ||
          to.kind !== "module" ||
          from.name === to.name ||
          PUBLIC_FACES.has(to.file),
      ),
    ).toEqual([]);
  });

  test("modules never import the CLI, services.ts, app.ts, runtime.ts or main.ts", () => {
    expect(
      violations(
        (from, to) =>
          from.kind !== "module" || !["cli", "services", "app", "runtime", "main"].includes(to.kind),
      ),
    ).toEqual([]);
  });

  test("modules and CLI commands take the services they use, not AppContext", () => {
    expect(
      violations((from, to) => to.kind !== "context" || !(from.kind === "module" || from.kind === "cli")),
    ).toEqual([]);
  });

  test("no CLI command reaches runtime.ts or app.ts, even through other files", () => {
    const offenders: string[] = [];
    for (const file of graph.files.filter((f) => layerOf(f).kind === "cli")) {
      for (const target of reachable(file)) {
        const kind = layerOf(target).kind;
        if (kind === "runtime" || kind === "app") offenders.push(`${rel(file)} reaches ${rel(target)}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  test("app.ts is imported by runtime.ts alone (and by easel/client, for its type), runtime.ts by main.ts alone", () => {
    expect(
      violations(
        (from, to) =>
          (to.kind !== "app" || from.kind === "runtime" || from.kind === "client") &&
          (to.kind !== "runtime" || from.kind === "main"),
      ),
    ).toEqual([]);
  });

  test("easel/client (src/client) takes nothing of the server but types, so apps bundle no server code", () => {
    const valueImports = graph.files
      .filter((f) => layerOf(f).kind === "client")
      .flatMap((f) =>
        [...readFileSync(f, "utf8").matchAll(/^import\s+(?!type\b)[^;]*?from\s+"(\.\.?\/[^"]+)"/gm)]
          .map((m) => resolve(dirname(f), m[1]!))
          .filter((to) => layerOf(`${to}.ts`).kind !== "client")
          .map((to) => `${rel(f)} → ${relative(ROOT, to)}`),
      );
    expect(valueImports).toEqual([]);
  });

  test("nothing in src/ imports test/ or bun:test", () => {
    const offenders = [
      ...graph.edges
        .filter((e) => !e.to.startsWith(`${SRC}/`))
        .filter((e) => !e.to.endsWith(".json"))
        .map(show),
      ...graph.bare.filter((b) => b.spec === "bun:test").map((b) => `${rel(b.from)} → bun:test`),
    ];
    expect(offenders).toEqual([]);
  });

  test("no import cycle runs through runtime.ts, services.ts or context.ts", () => {
    const offenders: string[] = [];
    for (const name of ["runtime.ts", "services.ts", "context.ts"]) {
      const file = join(SRC, name);
      for (const e of graph.edges.filter((x) => x.from === file)) {
        if (reachable(e.to).has(file)) offenders.push(`src/${name} → ${rel(e.to)} → … → src/${name}`);
      }
    }
    expect(offenders).toEqual([]);
  });
  test("no import cycle spans two libraries or modules (a cycle inside one is its own business)", () => {
    const spanning = cycles().filter((group) => new Set(group.map(unitOf)).size > 1);
    expect(spanning).toEqual([]);
  });

  /** The queue's tables belong to the queue (issue #12): everything else asks its public API. */
  const outsideQueue = () =>
    graph.files.filter(
      (f) => layerOf(f).kind !== "library" || (layerOf(f) as { name: string }).name !== "queue",
    );
  const QUEUE_TABLES = "(jobs|job_items|job_attempts|job_input_keys)";

  test("no file outside src/queue writes or reads SQL on the queue's tables", () => {
    const writes: string[] = [];
    const reads: string[] = [];
    for (const f of outsideQueue()) {
      const text = readFileSync(f, "utf8");
      if (new RegExp(`\\b(UPDATE|INSERT INTO|DELETE FROM)\\s+${QUEUE_TABLES}\\b`, "i").test(text))
        writes.push(rel(f));
      if (new RegExp(`\\b(FROM|JOIN)\\s+${QUEUE_TABLES}\\b`, "i").test(text)) reads.push(rel(f));
    }
    expect({ writes, reads }).toEqual({ writes: [], reads: [] });
  });

  /**
   * Issue #12, "the feature code never sees bun:sqlite": modules and CLI commands talk to their repositories
   * (src/db/sql.ts), never to the driver or drizzle's query builder. These files are SQLite's own upkeep
   * (docs/ARCHITECTURE.md, "Known exceptions"): a second backend brings its own.
   */
  const DRIVER_USERS: Record<string, string> = {
    "src/modules/ops/backup.ts":
      "online backup and restore of the SQLite file (VACUUM INTO, its own connections)",
    "src/cli/db.ts": "`easel db`: SQLite's integrity check, vacuum and WAL checkpoint on the file",
  };

  test("no module or CLI command imports bun:sqlite or drizzle-orm (the listed SQLite upkeep aside)", () => {
    const offenders: string[] = [];
    for (const f of graph.files) {
      const kind = layerOf(f).kind;
      if (kind !== "module" && kind !== "cli") continue;
      const driver = specifiers(readFileSync(f, "utf8")).filter(
        (s) => s === "bun:sqlite" || s === "drizzle-orm" || s.startsWith("drizzle-orm/"),
      );
      if (driver.length > 0 && !(rel(f) in DRIVER_USERS)) offenders.push(`${rel(f)}: ${driver.join(", ")}`);
    }
    expect(offenders).toEqual([]);
  });

  test("no server code reads AppContext.db, which throws on PostgreSQL (it reads `sqlite`, null there)", () => {
    const offenders = graph.files.filter((f) => /\bctx\.db\b/.test(readFileSync(f, "utf8"))).map(rel);
    expect(offenders).toEqual([]);
  });

  test("no module or CLI command reaches into queue.store or queue.pool, or imports the queue's internals", () => {
    const offenders = outsideQueue()
      .filter((f) => layerOf(f).kind === "module" || layerOf(f).kind === "cli")
      .filter((f) => /\bqueue\.(store|pool)\b/.test(readFileSync(f, "utf8")))
      .map(rel);
    const internals = violations(
      (from, to, e) =>
        !(from.kind === "module" || from.kind === "cli") ||
        to.kind !== "library" ||
        to.name !== "queue" ||
        rel(e.to) === "src/queue/index.ts",
    );
    expect([...offenders, ...internals]).toEqual([]);
  });
});
