import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { ConfigError, EnvSchema, loadConfig } from "../src/config";

/** The message loadConfig throws for `env`, or a failure when it does not throw a ConfigError. */
function errorFor(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as Error).message;
  }
  throw new Error(`expected ${JSON.stringify(env)} to be refused`);
}

describe("loadConfig", () => {
  test("an empty environment gives the documented zero-config defaults", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({
      NODE_ENV: "development",
      PORT: 3000,
      HOST: "0.0.0.0",
      CLIENT_TOKEN_TTL_S: 3600,
      WORKER_CONCURRENCY: 8,
      POLL_INTERVAL_MS: 250,
      JOB_TIMEOUT_MS: 300_000,
      JOB_MAX_ATTEMPTS: 3,
      STALLED_AFTER_MS: 480_000,
      STALLED_MAX: 2,
      SHUTDOWN_GRACE_MS: 20_000,
      RETAIN_COMPLETED_HOURS: 24,
      RETAIN_FAILED_HOURS: 168,
      RETENTION_CRON: "*/10 * * * *",
      SQLITE_SYNCHRONOUS: "NORMAL",
      LOG_LEVEL: "info",
      CORS_ORIGINS: [],
      MAX_BODY_BYTES: 25 * 1024 * 1024,
      ALLOW_PRIVATE_URLS: false,
      STORAGE: "local",
      S3_REGION: "auto",
      S3_PATH_STYLE: false,
      dataDir: resolve("data"),
      databasePath: join(resolve("data"), "easel.db"),
      filesDir: join(resolve("data"), "files"),
      publicUrl: "http://localhost:3000",
    });
    expect(c.ADMIN_KEY).toBeUndefined();
    expect(c.JWT_SECRET).toBeUndefined();
    expect(c.DATABASE_PATH).toBeUndefined();
    expect(c.renderWorkers).toBeGreaterThanOrEqual(1);
  });

  test("values are parsed into their types", () => {
    const c = loadConfig({
      PORT: "8080",
      DATA_DIR: "/srv/easel",
      DATABASE_PATH: "/var/db/easel.sqlite",
      PUBLIC_URL: "https://img.example.com/",
      ADMIN_KEY: "esk_0123456789abcdef",
      WORKER_CONCURRENCY: "2",
      RETAIN_COMPLETED_HOURS: "0.5",
      SQLITE_SYNCHRONOUS: "FULL",
      CORS_ORIGINS: " https://a.example , https://b.example ,",
      ALLOW_PRIVATE_URLS: "yes",
      S3_PATH_STYLE: "1",
      RENDER_WORKERS: "3",
      RETENTION_CRON: "0 * * * *",
    });
    expect(c).toMatchObject({
      PORT: 8080,
      dataDir: "/srv/easel",
      databasePath: "/var/db/easel.sqlite",
      filesDir: "/srv/easel/files",
      publicUrl: "https://img.example.com",
      ADMIN_KEY: "esk_0123456789abcdef",
      WORKER_CONCURRENCY: 2,
      RETAIN_COMPLETED_HOURS: 0.5,
      SQLITE_SYNCHRONOUS: "FULL",
      CORS_ORIGINS: ["https://a.example", "https://b.example"],
      ALLOW_PRIVATE_URLS: true,
      S3_PATH_STYLE: true,
      renderWorkers: 3,
      RETENTION_CRON: "0 * * * *",
    });
    expect(loadConfig({ PORT: "4000" }).publicUrl).toBe("http://localhost:4000");
    expect(loadConfig({ ALLOW_PRIVATE_URLS: "false" }).ALLOW_PRIVATE_URLS).toBe(false);
    expect(loadConfig({ ALLOW_PRIVATE_URLS: "0" }).ALLOW_PRIVATE_URLS).toBe(false);
  });

  test("empty and blank values mean unset, not zero", () => {
    const c = loadConfig({ PORT: "", WORKER_CONCURRENCY: "  ", ADMIN_KEY: "", DATABASE_PATH: "" });
    expect(c.PORT).toBe(3000);
    expect(c.WORKER_CONCURRENCY).toBe(8);
    expect(c.ADMIN_KEY).toBeUndefined();
    expect(c.databasePath).toBe(join(resolve("data"), "easel.db"));
  });

  const bad: [string, string][] = [
    ["PORT", "abc"],
    ["PORT", "70000"],
    ["PORT", "-1"],
    ["PORT", "80.5"],
    ["NODE_ENV", "staging"],
    ["PUBLIC_URL", "not a url"],
    ["ADMIN_KEY", "short"],
    ["JWT_SECRET", "not-32-characters"],
    ["CLIENT_TOKEN_TTL_S", "5"],
    ["WORKER_CONCURRENCY", "0"],
    ["POLL_INTERVAL_MS", "1"],
    ["JOB_TIMEOUT_MS", "soon"],
    ["JOB_MAX_ATTEMPTS", "0"],
    ["STALLED_AFTER_MS", "10"],
    ["RETAIN_FAILED_HOURS", "-1"],
    ["RETENTION_CRON", "every ten minutes"],
    ["SQLITE_SYNCHRONOUS", "OFF"],
    ["LOG_LEVEL", "loud"],
    ["MAX_BODY_BYTES", "100"],
    ["ALLOW_PRIVATE_URLS", "maybe"],
    ["STORAGE", "gcs"],
    ["S3_PATH_STYLE", "sometimes"],
    ["RENDER_WORKERS", "-2"],
    ["CARD_DEBOUNCE_MS", "fast"],
    ["PROVIDER_LIMITS", "{not json"],
  ];
  test.each(bad)("%s=%p is refused, naming the variable", (name, value) => {
    const message = errorFor({ [name]: value });
    expect(message).toContain(`${name}=`);
    expect(message.split("\n").filter((l) => l.trim().startsWith(`${name}=`))).toHaveLength(1);
  });

  test("every bad variable is named at once, S3_BUCKET included", () => {
    const message = errorFor({ PORT: "abc", SQLITE_SYNCHRONOUS: "OFF", LOG_LEVEL: "loud", STORAGE: "s3" });
    for (const name of ["PORT", "SQLITE_SYNCHRONOUS", "LOG_LEVEL", "S3_BUCKET"])
      expect(message).toContain(name);
    expect(message.split("\n").filter((l) => l.startsWith("  "))).toHaveLength(4);
  });

  test("STORAGE=s3 needs S3_BUCKET", () => {
    expect(errorFor({ STORAGE: "s3" })).toContain("S3_BUCKET");
    expect(loadConfig({ STORAGE: "s3", S3_BUCKET: "images" }).S3_BUCKET).toBe("images");
  });

  test("a refused secret is named but its value is not echoed", () => {
    const values = { ADMIN_KEY: "tiny-admin-key", JWT_SECRET: "tiny-jwt-secret" };
    const message = errorFor(values);
    expect(message).toContain("ADMIN_KEY");
    expect(message).toContain("JWT_SECRET");
    for (const v of Object.values(values)) expect(message).not.toContain(v);
    expect(errorFor({ PORT: "abc" })).toContain('"abc"');
  });

  const readmeVariables = () => {
    const readme = readFileSync(join(import.meta.dir, "..", "README.md"), "utf8");
    const start = readme.indexOf("## Configuration");
    const section = readme.slice(start, readme.indexOf("\n## ", start + 1));
    return [...section.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]!);
  };

  test("README documents only variables the schema reads", () => {
    const read = Object.keys(EnvSchema.shape);
    expect(readmeVariables().filter((name) => !read.includes(name))).toEqual([]);
  });

  test("README documents every variable the schema reads", () => {
    const documented = readmeVariables();
    expect(Object.keys(EnvSchema.shape).filter((name) => !documented.includes(name))).toEqual([]);
  });
});
