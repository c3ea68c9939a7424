import { describe, expect, test } from "bun:test";
import {
  clusterComposeProblems,
  describeImage,
  dockerignoreMatcher,
  parseEnv,
  readStaticInputs,
  replayProblems,
  staticProblems,
} from "../scripts/check-deploy";

describe("Dockerfile and fly.toml", () => {
  const inputs = readStaticInputs();

  test("agree with the code: port, data path, health route, stop signal, shutdown time", () => {
    expect(staticProblems(inputs)).toEqual([]);
    const image = describeImage(inputs.dockerfile);
    expect(image.expose).toEqual(["3000"]);
    expect(image.volumes).toEqual(["/app/data"]);
    expect(image.env).toMatchObject({ PORT: "3000", DATA_DIR: "/app/data", NODE_ENV: "production" });
  });

  test("each disagreement is reported by name", () => {
    const dockerfile = inputs.dockerfile
      .replace("EXPOSE 3000", "EXPOSE 8080")
      .replace("STOPSIGNAL SIGTERM", "STOPSIGNAL SIGINT")
      .replace("VOLUME /app/data", "VOLUME /data")
      .replace("USER bun", "USER root")
      .replace("/api/health`", "/healthz`")
      .replace("DATA_DIR=/app/data", "DATA_DIR=/app/data \\\n    OPENAI_API_KEY=sk-baked-in")
      .replace("    BUN_JSC_useFTLJIT=0", "    BUN_JSC_useFTLJIT=1");
    const flyToml = inputs.flyToml
      .replace("kill_timeout = 30", "kill_timeout = 5")
      .replace('auto_stop_machines = "off"', "auto_stop_machines = true")
      .replace('path = "/api/health"', 'path = "/status"')
      .replace('destination = "/app/data"', 'destination = "/data"');
    const packageJson = inputs.packageJson.replace(
      "BUN_JSC_useFTLJIT=0 bun run src/main.ts",
      "bun run src/main.ts",
    );
    const problems = staticProblems({
      ...inputs,
      dockerfile,
      flyToml,
      packageJson,
      dockerignore: "node_modules\n",
    }).join("\n");
    for (const expected of [
      "EXPOSE 8080 does not include the default PORT 3000",
      "STOPSIGNAL should be SIGTERM",
      "no VOLUME /app/data",
      "non-root USER",
      "HEALTHCHECK path /healthz is not a GET route",
      "ENV OPENAI_API_KEY looks like a secret",
      "ENV BUN_JSC_useFTLJIT should be 0",
      "start script should set BUN_JSC_useFTLJIT=0",
      "fly kill_timeout 5 must cover SHUTDOWN_GRACE_MS 20000",
      'auto_stop_machines should be "off"',
      "fly check path /status is not a GET route",
      "fly [mounts] destination should be /app/data",
      ".dockerignore should exclude .env",
    ]) {
      expect(problems).toContain(expected);
    }
  });

  test("docker-compose.cluster.yml: PostgreSQL, MinIO and two instances, as the code expects them", () => {
    expect(clusterComposeProblems(inputs.clusterCompose, inputs.routes)).toEqual([]);
    const services = (Bun.YAML.parse(inputs.clusterCompose) as { services: Record<string, unknown> })
      .services;
    expect(Object.keys(services).sort()).toEqual(["easel-a", "easel-b", "minio", "minio-setup", "postgres"]);
  });

  test("each disagreement in docker-compose.cluster.yml is reported by name", () => {
    const broken = inputs.clusterCompose
      .replace("image: postgres:16", "image: postgres:13")
      .replace('test: ["CMD", "pg_isready", "-U", "easel", "-d", "easel"]', 'test: ["CMD", "true"]')
      .replace("    S3_BUCKET: easel\n", "    S3_BUCKET: other\n")
      .replace(
        "    postgres:\n      condition: service_healthy",
        "    postgres:\n      condition: service_started",
      )
      .replace("/api/health/ready`", "/healthz`")
      .replace(/ADMIN_KEY: \$\{ADMIN_KEY:\?[^}]*\}/, "ADMIN_KEY: esk_baked_in_admin_key_0123456789")
      .replace("stop_grace_period: 30s", "stop_grace_period: 5s")
      .replace('      - "3002:3000"', '      - "3001:3000"');
    const problems = clusterComposeProblems(broken, inputs.routes).join("\n");
    for (const expected of [
      "PostgreSQL postgres:13 is older than 14",
      "the PostgreSQL service needs a pg_isready health check",
      "easel-a: S3_BUCKET other is not the bucket minio-setup creates (easel)",
      "easel-a should wait for postgres to be healthy",
      "easel-a: health check path /healthz is not a GET route",
      "easel-a: ADMIN_KEY should come from the environment",
      "easel-a: stop_grace_period 5s must cover SHUTDOWN_GRACE_MS",
      "Easel instances publish the same host port (3001, 3001)",
    ]) {
      expect(problems).toContain(expected);
    }
    const local = clusterComposeProblems(
      inputs.clusterCompose.replace("STORAGE: s3", "STORAGE: local"),
      inputs.routes,
    );
    expect(local.join("\n")).toContain("easel-a: STORAGE=local with DATABASE_URL");
    const single = inputs.clusterCompose.replace(/\n {2}easel-b:[\s\S]*?(?=\n {2}postgres:)/, "\n");
    expect(clusterComposeProblems(single, inputs.routes)).toContain(
      "cluster compose: a cluster needs at least two Easel instances (found 1)",
    );
    expect(clusterComposeProblems("", inputs.routes)).toEqual(["docker-compose.cluster.yml is missing"]);
  });

  test("ENV and .dockerignore parsing", () => {
    expect(parseEnv('A=1 B="two words" C=')).toEqual({ A: "1", B: "two words", C: "" });
    expect(parseEnv("LEGACY some value")).toEqual({ LEGACY: "some value" });
    const ignored = dockerignoreMatcher("node_modules\n*.log\ntest\n!test/keep.ts\n");
    expect(ignored("node_modules/x/index.js")).toBe(true);
    expect(ignored("debug.log")).toBe(true);
    expect(ignored("test/a.test.ts")).toBe(true);
    expect(ignored("test/keep.ts")).toBe(false);
    expect(ignored("src/main.ts")).toBe(false);
  });

  // Runs the Dockerfile's install and start steps for real: a frozen production install (10-30 s on a cold
  // cache), then the CMD until its HEALTHCHECK passes, then SIGTERM.
  test("its steps, replayed without Docker, give a server that is healthy and stops cleanly on SIGTERM", async () => {
    expect(await replayProblems()).toEqual([]);
  }, 120_000);
});
