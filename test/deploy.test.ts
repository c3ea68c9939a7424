import { describe, expect, test } from "bun:test";
import {
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
      .replace("DATA_DIR=/app/data", "DATA_DIR=/app/data \\\n    OPENAI_API_KEY=sk-baked-in");
    const flyToml = inputs.flyToml
      .replace("kill_timeout = 30", "kill_timeout = 5")
      .replace('auto_stop_machines = "off"', "auto_stop_machines = true")
      .replace('path = "/api/health"', 'path = "/status"')
      .replace('destination = "/app/data"', 'destination = "/data"');
    const problems = staticProblems({ ...inputs, dockerfile, flyToml, dockerignore: "node_modules\n" }).join(
      "\n",
    );
    for (const expected of [
      "EXPOSE 8080 does not include the default PORT 3000",
      "STOPSIGNAL should be SIGTERM",
      "no VOLUME /app/data",
      "non-root USER",
      "HEALTHCHECK path /healthz is not a GET route",
      "ENV OPENAI_API_KEY looks like a secret",
      "fly kill_timeout 5 must cover SHUTDOWN_GRACE_MS 20000",
      'auto_stop_machines should be "off"',
      "fly check path /status is not a GET route",
      "fly [mounts] destination should be /app/data",
      ".dockerignore should exclude .env",
    ]) {
      expect(problems).toContain(expected);
    }
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
