/**
 * `bun run scripts/check-deploy.ts [--static]`: checks the Dockerfile and fly.toml against the code, then
 * replays the Dockerfile's steps without Docker (unless --static): copies what its COPY lines copy
 * (respecting .dockerignore) into a temp dir, runs its `bun install`, starts its CMD with its ENV on a free
 * port, waits for its HEALTHCHECK to pass, stops it with its STOPSIGNAL and expects a clean exit in time.
 * Prints the problems found; exits 1 when there are any. test/deploy.test.ts runs it.
 */
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, posix, relative, resolve } from "node:path";
import { parseArgs } from "node:util";
import { createApp } from "../src/app";
import { clusterRefusal, EnvSchema, loadConfig } from "../src/config";
import { silentLogger } from "../src/log";
import { createServices } from "../src/services";

const ROOT = resolve(import.meta.dir, "..");
/** Where the image keeps the data volume; DATA_DIR must point there. */
export const DATA_PATH = "/app/data";
/** Shutdown needs the grace period plus time to release leases and close the database. */
const SHUTDOWN_MARGIN_MS = 5000;
const SECRET_NAME = /KEY|SECRET|TOKEN|PASSWORD/;

export type Instruction = { op: string; args: string; flags: Record<string, string> };
export type Stage = { name: string; from: string; instructions: Instruction[] };

/** Splits a Dockerfile into stages of instructions (continuations joined, comments dropped). */
export function parseDockerfile(text: string): Stage[] {
  const lines = text.replace(/\\\r?\n/g, " ").split(/\r?\n/);
  const stages: Stage[] = [];
  for (const raw of lines) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = /^(\w+)\s+(.*)$/.exec(line);
    if (!m) continue;
    const op = m[1]!.toUpperCase();
    let args = m[2]!.trim();
    const flags: Record<string, string> = {};
    for (let f = /^--([\w-]+)(?:=(\S+))?\s+/.exec(args); f; f = /^--([\w-]+)(?:=(\S+))?\s+/.exec(args)) {
      flags[f[1]!] = f[2] ?? "true";
      args = args.slice(f[0].length);
    }
    if (op === "FROM") {
      const [image, , name] = args.split(/\s+/);
      stages.push({ name: name ?? String(stages.length), from: image ?? "", instructions: [] });
      continue;
    }
    const stage = stages.at(-1);
    if (stage) stage.instructions.push({ op, args, flags });
  }
  return stages;
}

/** `KEY=value KEY2="a b"` pairs of ENV (the legacy `ENV KEY value` form too). */
export function parseEnv(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  if (!args.includes("=")) {
    const [k, ...v] = args.split(/\s+/);
    if (k) out[k] = v.join(" ");
    return out;
  }
  for (const m of args.matchAll(/([A-Za-z_][\w]*)=("(?:[^"\\]|\\.)*"|\S*)/g)) {
    out[m[1]!] = m[2]!.startsWith('"') ? JSON.parse(m[2]!) : m[2]!;
  }
  return out;
}

/** The exec form (JSON array) of CMD/HEALTHCHECK; undefined for the shell form. */
function execForm(args: string): string[] | undefined {
  try {
    const parsed = JSON.parse(args);
    return Array.isArray(parsed) && parsed.every((a) => typeof a === "string") ? parsed : undefined;
  } catch {
    return undefined;
  }
}

export type Image = {
  stages: Stage[];
  final: Stage;
  env: Record<string, string>;
  workdir: string;
  expose: string[];
  volumes: string[];
  user?: string;
  stopSignal?: string;
  cmd?: string[];
  healthcheck?: string[];
};

export function describeImage(dockerfile: string): Image {
  const stages = parseDockerfile(dockerfile);
  const final = stages.at(-1);
  if (!final) throw new Error("the Dockerfile has no FROM");
  const image: Image = { stages, final, env: {}, workdir: "/", expose: [], volumes: [] };
  for (const { op, args } of final.instructions) {
    if (op === "ENV") Object.assign(image.env, parseEnv(args));
    if (op === "WORKDIR") image.workdir = posix.resolve(image.workdir, args);
    if (op === "EXPOSE") image.expose.push(...args.split(/\s+/).map((p) => p.replace(/\/tcp$/, "")));
    if (op === "VOLUME") image.volumes.push(...(execForm(args) ?? args.split(/\s+/)));
    if (op === "USER") image.user = args;
    if (op === "STOPSIGNAL") image.stopSignal = args;
    if (op === "CMD") image.cmd = execForm(args);
    if (op === "HEALTHCHECK") image.healthcheck = execForm(args.replace(/^CMD\s+/, ""));
  }
  return image;
}

type Fly = {
  kill_signal?: string;
  kill_timeout?: number | string;
  env?: Record<string, string>;
  deploy?: { strategy?: string };
  mounts?: { destination?: string } | { destination?: string }[];
  http_service?: {
    internal_port?: number;
    force_https?: boolean;
    auto_stop_machines?: string | boolean;
    min_machines_running?: number;
    checks?: { path?: string; method?: string }[];
  };
};

/** Fly's durations: integer seconds or strings like "30s" / "1m". */
function seconds(value: number | string | undefined): number {
  if (typeof value === "number") return value;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(value ?? "");
  if (!m) return Number.NaN;
  return Number(m[1]) * ({ ms: 0.001, s: 1, m: 60 }[m[2] ?? "s"] ?? 1);
}

/** The URL path in a health check command (the first `/api/…` or `/…` after the host). */
function pathIn(command: string[] | undefined): string | undefined {
  return /https?:\/\/[^/\s`"']+(\/[\w/.-]*)/.exec(command?.join(" ") ?? "")?.[1];
}

/** GET route patterns the app serves (built on a throwaway data dir, nothing started). */
export function appRoutes(): Set<string> {
  const dir = mkdtempSync(join(tmpdir(), "easel-routes-"));
  try {
    const ctx = createServices(loadConfig({ DATA_DIR: dir, LOG_LEVEL: "silent" }), { log: silentLogger });
    try {
      return new Set(
        createApp(ctx)
          .routes.filter((r) => r.method === "GET")
          .map((r) => r.path),
      );
    } finally {
      ctx.db.$client.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export type StaticInputs = {
  dockerfile: string;
  flyToml: string;
  dockerignore: string;
  /** docker-compose.cluster.yml */
  clusterCompose: string;
  /** package.json */
  packageJson: string;
  routes: Set<string>;
};

/** Everything that can be checked by reading the files; returns the problems found. */
export function staticProblems({
  dockerfile,
  flyToml,
  dockerignore,
  clusterCompose,
  packageJson,
  routes,
}: StaticInputs): string[] {
  const problems: string[] = [];
  const defaults = loadConfig({});
  const port = String(defaults.PORT);
  const graceMs = EnvSchema.shape.SHUTDOWN_GRACE_MS.parse(undefined);
  const image = describeImage(dockerfile);
  const fly = Bun.TOML.parse(flyToml) as Fly;
  const expect = (ok: unknown, problem: string) => {
    if (!ok) problems.push(problem);
  };

  expect(
    image.final.from.startsWith("oven/bun:"),
    `final stage should build FROM oven/bun (is ${image.final.from})`,
  );
  const installs = image.stages.flatMap((s) => s.instructions).filter((i) => i.op === "RUN");
  expect(
    installs.some((i) => /bun install\b.*--frozen-lockfile/.test(i.args) && /--production\b/.test(i.args)),
    "no RUN bun install --frozen-lockfile --production",
  );
  expect(
    image.expose.includes(port),
    `EXPOSE ${image.expose.join(" ")} does not include the default PORT ${port}`,
  );
  expect(
    !image.env.PORT || image.env.PORT === port,
    `ENV PORT=${image.env.PORT} differs from EXPOSE ${port}`,
  );
  expect(image.volumes.includes(DATA_PATH), `no VOLUME ${DATA_PATH}`);
  expect(image.env.DATA_DIR === DATA_PATH, `ENV DATA_DIR should be ${DATA_PATH} (is ${image.env.DATA_DIR})`);
  expect(image.env.NODE_ENV === "production", "ENV NODE_ENV should be production");
  // The server runs without JavaScriptCore's FTL tier, however it is started (docs/BENCHMARKS.md, "FTL").
  expect(image.env.BUN_JSC_useFTLJIT === "0", "ENV BUN_JSC_useFTLJIT should be 0, as `bun start` runs");
  const start =
    (JSON.parse(packageJson || "{}") as { scripts?: Record<string, string> }).scripts?.start ?? "";
  expect(/^BUN_JSC_useFTLJIT=0 /.test(start), "package.json's start script should set BUN_JSC_useFTLJIT=0");
  expect(
    image.user && image.user !== "root" && image.user !== "0",
    "the image should run as a non-root USER",
  );
  expect(image.stopSignal === "SIGTERM", `STOPSIGNAL should be SIGTERM (is ${image.stopSignal})`);
  expect(image.cmd, "CMD should use the exec form");
  expect(image.cmd?.includes("serve"), "CMD should run `serve` (which applies migrations)");
  const healthPath = pathIn(image.healthcheck);
  expect(
    healthPath && routes.has(healthPath),
    `HEALTHCHECK path ${healthPath} is not a GET route of the app`,
  );
  for (const name of Object.keys(image.env)) {
    expect(!SECRET_NAME.test(name), `ENV ${name} looks like a secret baked into the image`);
  }
  const ignores = dockerignoreMatcher(dockerignore);
  for (const needed of [".env", "data", "node_modules"]) {
    expect(ignores(needed), `.dockerignore should exclude ${needed}`);
  }

  const service = fly.http_service ?? {};
  const mounts = [fly.mounts ?? []].flat();
  expect(fly.kill_signal === "SIGTERM", `fly kill_signal should be SIGTERM (is ${fly.kill_signal})`);
  const killMs = seconds(fly.kill_timeout) * 1000;
  expect(
    killMs >= graceMs + SHUTDOWN_MARGIN_MS,
    `fly kill_timeout ${fly.kill_timeout} must cover SHUTDOWN_GRACE_MS ${graceMs} + ${SHUTDOWN_MARGIN_MS} ms`,
  );
  expect(
    String(service.internal_port) === port,
    `fly internal_port ${service.internal_port} should be ${port}`,
  );
  expect(service.force_https === true, "fly http_service.force_https should be true");
  expect(
    service.auto_stop_machines === "off",
    'fly auto_stop_machines should be "off" (workers run in the server)',
  );
  expect((service.min_machines_running ?? 0) >= 1, "fly min_machines_running should be at least 1");
  expect(
    mounts.some((m) => m.destination === DATA_PATH),
    `fly [mounts] destination should be ${DATA_PATH}`,
  );
  expect(fly.deploy?.strategy === "immediate", "fly [deploy] strategy should be immediate (one volume)");
  for (const [name, value] of Object.entries(fly.env ?? {})) {
    if (name === "PORT") expect(value === port, `fly [env] PORT=${value} should be ${port}`);
    if (name === "DATA_DIR")
      expect(value === DATA_PATH, `fly [env] DATA_DIR=${value} should be ${DATA_PATH}`);
    expect(!SECRET_NAME.test(name), `fly [env] ${name} looks like a secret: use fly secrets set`);
  }
  const checks = service.checks ?? [];
  expect(checks.length > 0, "fly http_service has no checks");
  for (const check of checks) {
    expect(
      check.path && routes.has(check.path),
      `fly check path ${check.path} is not a GET route of the app`,
    );
  }
  problems.push(...clusterComposeProblems(clusterCompose, routes));
  return problems;
}

type ComposeService = {
  image?: string;
  build?: unknown;
  environment?: Record<string, string | number | boolean | null> | string[];
  healthcheck?: { test?: string[] | string; disable?: boolean };
  depends_on?: Record<string, { condition?: string }> | string[];
  entrypoint?: string | string[];
  command?: string | string[];
  ports?: (string | number)[];
  stop_grace_period?: string;
};

/** A service's environment as a map (compose also takes a `NAME=value` list). */
function envOf(service: ComposeService): Record<string, string> {
  const env = service.environment ?? {};
  if (Array.isArray(env))
    return Object.fromEntries(env.map((e) => [e.split("=")[0]!, e.split("=").slice(1).join("=")]));
  return Object.fromEntries(Object.entries(env).map(([k, v]) => [k, v == null ? "" : String(v)]));
}

/**
 * Compose's interpolation with nothing set in the shell: `${X:-default}` takes its default, and a required
 * `${X:?message}` (which the operator's .env supplies) a 48-character stand-in, long enough for any key.
 */
function interpolate(value: string): string {
  return value
    .replace(/\$\{[A-Z0-9_]+:-([^}]*)\}/g, "$1")
    .replace(/\$\{[A-Z0-9_]+:\?[^}]*\}/g, "x".repeat(48))
    .replace(/\$\$/g, "$");
}

function commandText(v: string | string[] | undefined): string {
  return Array.isArray(v) ? v.join(" ") : (v ?? "");
}

/**
 * docker-compose.cluster.yml against the code: PostgreSQL (14+) and an S3 store with health checks, the bucket
 * created before Easel starts, and at least two Easel instances whose environment the real config schema
 * accepts in cluster mode, pointing at those services, sharing their secrets, each health-checked on a GET
 * route, waiting for the database to be healthy and the bucket to exist.
 */
export function clusterComposeProblems(text: string, routes: Set<string>): string[] {
  if (!text) return ["docker-compose.cluster.yml is missing"];
  let parsed: { services?: Record<string, ComposeService> };
  try {
    parsed = Bun.YAML.parse(text) as typeof parsed;
  } catch (err) {
    return [`docker-compose.cluster.yml is not YAML: ${(err as Error).message}`];
  }
  const services = parsed.services ?? {};
  const problems: string[] = [];
  const expect = (ok: unknown, problem: string) => {
    if (!ok) problems.push(`cluster compose: ${problem}`);
  };
  const entries = Object.entries(services);
  const dependsOn = (s: ComposeService): Record<string, string | undefined> =>
    Array.isArray(s.depends_on)
      ? Object.fromEntries(s.depends_on.map((n) => [n, undefined]))
      : Object.fromEntries(Object.entries(s.depends_on ?? {}).map(([n, d]) => [n, d?.condition]));

  const [pgName, pg] = entries.find(([, s]) => /^postgres:/.test(s.image ?? "")) ?? [];
  expect(pg, "no PostgreSQL service (image postgres:<version>)");
  const pgMajor = Number(/^postgres:(\d+)/.exec(pg?.image ?? "")?.[1]);
  expect(!pg || pgMajor >= 14, `PostgreSQL ${pg?.image} is older than 14 (or has no version tag)`);
  const pgEnv = pg ? envOf(pg) : {};
  expect(
    !pg || commandText(pg.healthcheck?.test).includes("pg_isready"),
    "the PostgreSQL service needs a pg_isready health check",
  );

  const [s3Name, s3] = entries.find(([, s]) => /^minio\/minio\b/.test(s.image ?? "")) ?? [];
  expect(s3, "no S3-compatible store (image minio/minio)");
  const s3Env = s3 ? envOf(s3) : {};
  const [setupName, setup] =
    entries.find(([, s]) => /\bmc mb\b/.test(commandText(s.entrypoint) + commandText(s.command))) ?? [];
  expect(setup, "no service creates the bucket (mc mb)");
  const created = /\bmc mb\b[^&;]*?\/([a-z0-9][a-z0-9.-]+)/.exec(
    commandText(setup?.entrypoint) + commandText(setup?.command),
  )?.[1];
  expect(
    !setup || !s3Name || dependsOn(setup)[s3Name] === "service_healthy",
    `${setupName} should wait for ${s3Name} to be healthy`,
  );

  const oneShot = new Set(
    entries.flatMap(([, s]) =>
      Object.entries(dependsOn(s))
        .filter(([, c]) => c === "service_completed_successfully")
        .map(([n]) => n),
    ),
  );
  for (const [name, s] of entries) {
    if (!oneShot.has(name))
      expect(s.healthcheck?.test && !s.healthcheck.disable, `${name} has no health check`);
    for (const [dep, condition] of Object.entries(dependsOn(s))) {
      expect(services[dep], `${name} depends on ${dep}, which is not a service`);
      if (condition === "service_healthy")
        expect(
          services[dep]?.healthcheck?.test,
          `${name} waits for ${dep} to be healthy, but it has no health check`,
        );
    }
  }

  const easels = entries.filter(([, s]) => s.build !== undefined || /\beasel\b/.test(s.image ?? ""));
  expect(easels.length >= 2, `a cluster needs at least two Easel instances (found ${easels.length})`);
  const graceMs = EnvSchema.shape.SHUTDOWN_GRACE_MS.parse(undefined);
  const shared = ["ADMIN_KEY", "JWT_SECRET", "DATABASE_URL", "S3_BUCKET", "S3_ENDPOINT"];
  const first = easels[0] ? envOf(easels[0][1]) : {};
  const hostPorts: string[] = [];
  for (const [name, s] of easels) {
    const raw = envOf(s);
    let config: ReturnType<typeof loadConfig> | null = null;
    try {
      config = loadConfig(Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, interpolate(v)])));
    } catch (err) {
      expect(false, `${name}'s environment is refused: ${(err as Error).message.replace(/\n\s*/g, " ")}`);
    }
    for (const [k, v] of Object.entries(raw)) {
      if (SECRET_NAME.test(k) && k !== "S3_ACCESS_KEY_ID")
        expect(
          v.includes("${"),
          `${name}: ${k} should come from the environment (\${…}), not be written here`,
        );
    }
    for (const k of shared)
      expect(raw[k] === first[k], `${name}: ${k} differs between instances (every instance must share it)`);
    if (config) {
      expect(config.DATABASE_URL, `${name} has no DATABASE_URL`);
      const refusal = clusterRefusal(config);
      expect(!refusal, `${name}: ${refusal}`);
      if (config.DATABASE_URL && pg) {
        const u = new URL(config.DATABASE_URL);
        expect(
          u.hostname === pgName,
          `${name}: DATABASE_URL host ${u.hostname} should be the service ${pgName}`,
        );
        expect(
          u.username === (pgEnv.POSTGRES_USER ?? "postgres") &&
            decodeURIComponent(u.password) === interpolate(pgEnv.POSTGRES_PASSWORD ?? "") &&
            u.pathname === `/${pgEnv.POSTGRES_DB ?? pgEnv.POSTGRES_USER ?? "postgres"}`,
          `${name}: DATABASE_URL's user, password and database should be ${pgName}'s POSTGRES_USER, POSTGRES_PASSWORD and POSTGRES_DB`,
        );
      }
      expect(config.STORAGE === "s3", `${name}: STORAGE should be s3 (the instances share the bucket)`);
      if (config.STORAGE === "s3" && s3) {
        expect(
          config.S3_ENDPOINT && new URL(config.S3_ENDPOINT).hostname === s3Name,
          `${name}: S3_ENDPOINT ${config.S3_ENDPOINT} should name the service ${s3Name}`,
        );
        expect(
          config.S3_BUCKET === created,
          `${name}: S3_BUCKET ${config.S3_BUCKET} is not the bucket ${setupName} creates (${created})`,
        );
        expect(
          config.S3_ACCESS_KEY_ID === s3Env.MINIO_ROOT_USER &&
            config.S3_SECRET_ACCESS_KEY === interpolate(s3Env.MINIO_ROOT_PASSWORD ?? ""),
          `${name}: S3 credentials should be ${s3Name}'s MINIO_ROOT_USER and MINIO_ROOT_PASSWORD`,
        );
        expect(config.S3_PATH_STYLE, `${name}: S3_PATH_STYLE should be true for MinIO`);
      }
    }
    const path = pathIn(
      Array.isArray(s.healthcheck?.test) ? s.healthcheck.test : [s.healthcheck?.test ?? ""],
    );
    expect(path && routes.has(path), `${name}: health check path ${path} is not a GET route of the app`);
    const deps = dependsOn(s);
    if (pgName) expect(deps[pgName] === "service_healthy", `${name} should wait for ${pgName} to be healthy`);
    if (setupName)
      expect(
        deps[setupName] === "service_completed_successfully",
        `${name} should wait for ${setupName} to complete (the bucket must exist)`,
      );
    const grace = seconds(s.stop_grace_period) * 1000;
    expect(
      grace >= graceMs + SHUTDOWN_MARGIN_MS,
      `${name}: stop_grace_period ${s.stop_grace_period} must cover SHUTDOWN_GRACE_MS ${graceMs} + ${SHUTDOWN_MARGIN_MS} ms`,
    );
    hostPorts.push(...(s.ports ?? []).map((p) => String(p).split(":").at(-2) ?? ""));
  }
  expect(
    new Set(hostPorts).size === hostPorts.length,
    `Easel instances publish the same host port (${hostPorts.join(", ")})`,
  );
  return problems;
}

/** A .dockerignore matcher (patterns relative to the context root; `!` re-includes). */
export function dockerignoreMatcher(text: string): (relPath: string) => boolean {
  const rules = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith("#"))
    .map((l) => ({
      negate: l.startsWith("!"),
      glob: new Bun.Glob(l.replace(/^!/, "").replace(/^\/+|\/+$/g, "")),
    }));
  return (relPath) => {
    const parts = relPath.split("/");
    let ignored = false;
    for (const rule of rules) {
      // A pattern matching a directory excludes everything under it.
      const hit = parts.some((_, i) => rule.glob.match(parts.slice(0, i + 1).join("/")));
      if (hit) ignored = !rule.negate;
    }
    return ignored;
  };
}

/** Copies `rel` from the build context to `dest`, skipping ignored paths (a directory: its contents). */
function copyFiltered(context: string, rel: string, dest: string, ignored: (p: string) => boolean): void {
  if (ignored(rel)) return;
  const from = join(context, rel);
  if (statSync(from).isDirectory()) {
    for (const name of readdirSync(from))
      copyFiltered(context, posix.join(rel, name), join(dest, name), ignored);
    return;
  }
  mkdirSync(dirname(dest), { recursive: true });
  cpSync(from, dest);
}

/** A stage's filesystem: paths under its WORKDIR live under `<tmp>/<stage>`. */
function stagePath(tmp: string, stage: string, workdir: string, path: string): string {
  const rel = posix.relative(workdir, posix.resolve(workdir, path));
  if (rel.startsWith("..")) throw new Error(`${path} is outside WORKDIR ${workdir}: not replayable`);
  return join(tmp, stage, rel);
}

/**
 * Replays each stage's COPY lines (Docker's rules: a directory's contents are copied; files go into `dest/`
 * when it ends in / or there are several sources) and its `bun install` RUN lines into `tmp`. Other RUN
 * lines (mkdir, chown) only matter inside a real image. Returns the final stage's directory.
 */
async function replayBuild(image: Image, context: string, ignore: (p: string) => boolean, tmp: string) {
  const workdirs = new Map<string, string>();
  for (const stage of image.stages) {
    let workdir = "/";
    const here = (path: string) => stagePath(tmp, stage.name, workdir, path);
    for (const { op, args, flags } of stage.instructions) {
      if (op === "WORKDIR") {
        workdir = posix.resolve(workdir, args);
        workdirs.set(stage.name, workdir);
      }
      if (op === "COPY") {
        const sources = args.split(/\s+/);
        const dest = sources.pop()!;
        const intoDir = sources.length > 1 || dest.endsWith("/");
        for (const src of sources) {
          const target = (isDir: boolean) =>
            here(!isDir && intoDir ? posix.join(dest, posix.basename(src)) : dest);
          if (flags.from) {
            const from = stagePath(tmp, flags.from, workdirs.get(flags.from) ?? "/", src);
            cpSync(from, target(statSync(from).isDirectory()), { recursive: true });
          } else {
            copyFiltered(context, src, target(statSync(join(context, src)).isDirectory()), ignore);
          }
        }
      }
      if (op === "RUN" && /^bun install\b/.test(args)) {
        const cwd = join(tmp, stage.name);
        mkdirSync(cwd, { recursive: true });
        const proc = Bun.spawn(["sh", "-c", args], { cwd, stdout: "pipe", stderr: "pipe" });
        const [code, err] = await Promise.all([proc.exited, new Response(proc.stderr).text()]);
        if (code !== 0) throw new Error(`RUN ${args} failed (${code}):\n${err.slice(-2000)}`);
      }
    }
  }
  return join(tmp, image.final.name);
}

async function freePort(): Promise<number> {
  const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
  const port = probe.port ?? 0;
  await probe.stop(true);
  return port;
}

async function waitForExit(proc: Bun.Subprocess, ms: number): Promise<number | null> {
  const timer = Bun.sleep(ms).then(() => null);
  return Promise.race([proc.exited, timer]);
}

/**
 * Builds the image's filesystem in a temp dir, starts its CMD with its ENV (DATA_DIR mapped into the temp
 * dir, PORT free), waits for the HEALTHCHECK command to pass, sends STOPSIGNAL and expects exit 0 within
 * fly's kill_timeout. Returns the problems found.
 */
export async function replayProblems(
  opts: { root?: string; startTimeoutMs?: number } = {},
): Promise<string[]> {
  const root = opts.root ?? ROOT;
  const image = describeImage(readFileSync(join(root, "Dockerfile"), "utf8"));
  const fly = Bun.TOML.parse(readFileSync(join(root, "fly.toml"), "utf8")) as Fly;
  const ignore = dockerignoreMatcher(
    existsSync(join(root, ".dockerignore")) ? readFileSync(join(root, ".dockerignore"), "utf8") : "",
  );
  const tmp = mkdtempSync(join(tmpdir(), "easel-deploy-"));
  const problems: string[] = [];
  let proc: Bun.Subprocess<"ignore", "pipe", "pipe"> | undefined;
  try {
    const app = await replayBuild(image, root, ignore, tmp);
    for (const forbidden of [".env", "data/easel.db", "test", ".git"]) {
      if (existsSync(join(app, forbidden))) problems.push(`the image would contain ${forbidden}`);
    }
    const port = String(await freePort());
    const toLocal = (v: string) =>
      v.startsWith(`${image.workdir}/`) || v === image.workdir ? join(app, relative(image.workdir, v)) : v;
    const env: Record<string, string> = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? tmp };
    for (const [k, v] of Object.entries(image.env)) env[k] = toLocal(v);
    env.PORT = port;
    env.HOST = "127.0.0.1";
    if (!image.cmd) return [...problems, "no exec-form CMD to start"];
    const server = Bun.spawn(image.cmd, { cwd: app, env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    proc = server;
    const output = Promise.all([new Response(server.stdout).text(), new Response(server.stderr).text()]);
    const deadline = Date.now() + (opts.startTimeoutMs ?? 20_000);
    let healthy = false;
    while (!healthy && Date.now() < deadline && proc.exitCode === null) {
      const check = Bun.spawn(image.healthcheck ?? ["false"], {
        cwd: app,
        env,
        stdout: "ignore",
        stderr: "ignore",
      });
      healthy = (await check.exited) === 0;
      if (!healthy) await Bun.sleep(200);
    }
    if (!healthy) problems.push("the HEALTHCHECK never passed after starting CMD");
    const res = healthy ? await fetch(`http://127.0.0.1:${port}/api/health`) : null;
    if (res && res.status !== 200) problems.push(`/api/health answered ${res.status}`);
    const lockFile = join(env.DATA_DIR ?? app, "easel.pid");
    if (healthy && !existsSync(lockFile)) problems.push("the server wrote no easel.pid into DATA_DIR");
    proc.kill((image.stopSignal ?? "SIGTERM") as NodeJS.Signals);
    const code = await waitForExit(proc, seconds(fly.kill_timeout) * 1000);
    if (code === null)
      problems.push(`the server did not exit within fly kill_timeout after ${image.stopSignal}`);
    else if (code !== 0) problems.push(`the server exited with ${code} after ${image.stopSignal}`);
    const [stdout, stderr] = await output;
    if (code !== 0) problems.push(`server output:\n${stdout.slice(-2000)}\n${stderr.slice(-2000)}`);
    else if (!stdout.includes('"msg":"stopped"'))
      problems.push('no "stopped" log line: shutdown was not graceful');
    if (existsSync(lockFile)) problems.push("easel.pid was left behind after a clean stop");
    if (!existsSync(join(env.DATA_DIR ?? app, "easel.db")))
      problems.push("no database in DATA_DIR after start");
  } finally {
    if (proc && proc.exitCode === null) proc.kill("SIGKILL");
    rmSync(tmp, { recursive: true, force: true });
  }
  return problems;
}

export function readStaticInputs(root = ROOT): StaticInputs {
  const read = (f: string) => (existsSync(join(root, f)) ? readFileSync(join(root, f), "utf8") : "");
  return {
    dockerfile: read("Dockerfile"),
    flyToml: read("fly.toml"),
    dockerignore: read(".dockerignore"),
    clusterCompose: read("docker-compose.cluster.yml"),
    packageJson: read("package.json"),
    routes: appRoutes(),
  };
}

if (import.meta.main) {
  const { values } = parseArgs({ options: { static: { type: "boolean" } } });
  const problems = staticProblems(readStaticInputs());
  if (!values.static) problems.push(...(await replayProblems()));
  for (const p of problems) process.stderr.write(`✗ ${p}\n`);
  process.stdout.write(
    problems.length
      ? `${problems.length} problem(s)\n`
      : "Dockerfile, fly.toml and docker-compose.cluster.yml agree with the code\n",
  );
  process.exit(problems.length ? 1 : 0);
}
