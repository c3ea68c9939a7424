/**
 * The single executable: `bun run build` output, copied alone into an empty directory, serves the API,
 * renders cards (fonts, emoji, resvg, sharp all embedded), runs generate jobs and the CLI. Building takes a
 * few seconds; the whole file ~10-30 s.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import sharp from "sharp";
import { createCardRenderer } from "../src/render/render";
import { ADMIN_KEY, tempDir, waitFor } from "./helpers";

const ROOT = resolve(import.meta.dir, "..");

describe("dist/easel (bun build --compile)", () => {
  const tmp = tempDir("easel-build-");
  const runDir = join(tmp.dir, "run");
  const exe = join(runDir, "easel");
  const dataDir = join(runDir, "data");
  let server: Bun.Subprocess<"ignore", "pipe", "pipe"> | undefined;
  let output: Promise<[string, string]> | undefined;
  let url = "";

  const env = (extra: Record<string, string> = {}) => ({
    PATH: process.env.PATH ?? "",
    HOME: tmp.dir,
    TMPDIR: tmp.dir,
    DATA_DIR: dataDir,
    ADMIN_KEY,
    LOG_LEVEL: "info",
    NODE_ENV: "production",
    ...extra,
  });
  const run = async (args: string[], extra: Record<string, string> = {}) => {
    const proc = Bun.spawn([exe, ...args], { cwd: runDir, env: env(extra), stdout: "pipe", stderr: "pipe" });
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    return { code, stdout, stderr };
  };
  const api = (path: string, init: RequestInit & { json?: unknown } = {}) =>
    fetch(`${url}${path}`, {
      ...init,
      headers: { authorization: `Bearer ${ADMIN_KEY}`, "content-type": "application/json" },
      body: init.json === undefined ? undefined : JSON.stringify(init.json),
    });

  beforeAll(async () => {
    const build = Bun.spawn(["bun", "run", "build", "--outfile", join(tmp.dir, "dist", "easel")], {
      cwd: ROOT,
      stdout: "pipe",
      stderr: "pipe",
    });
    const [code, stderr] = await Promise.all([build.exited, new Response(build.stderr).text()]);
    if (code !== 0) throw new Error(`build failed:\n${stderr}`);
    Bun.spawnSync(["mkdir", "-p", runDir]);
    copyFileSync(join(tmp.dir, "dist", "easel"), exe);
    Bun.spawnSync(["chmod", "+x", exe]);
  }, 120_000);

  afterAll(async () => {
    if (server && server.exitCode === null) server.kill("SIGKILL");
    await server?.exited;
    tmp.cleanup();
  });

  test("runs CLI commands with nothing beside it", async () => {
    expect(readdirSync(runDir)).toEqual(["easel"]);
    const help = await run(["--help"]);
    expect(help.stdout).toContain("usage: easel");
    const migrate = await run(["migrate"]);
    expect(`${migrate.code} ${migrate.stderr}`).toBe("0 ");
    const status = await run(["queue", "status", "--json"]);
    expect(status.code).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ waiting: 0, completed: 0 });
    const card = join(tmp.dir, "card.png");
    const data = {
      question: "Offline? ✅",
      creator: { name: "Grace Hopper", handle: "grace" },
      options: [
        { label: "yes", votes: 2 },
        { label: "no", votes: 1 },
      ],
    };
    await Bun.write(join(tmp.dir, "card.json"), JSON.stringify(data));
    const rendered = await run(["cards", "render", "poll", join(tmp.dir, "card.json"), "-o", card]);
    expect(`${rendered.code} ${rendered.stderr}`).toBe("0 ");
    expect((await sharp(card).metadata()).width).toBe(1200);
  }, 60_000);

  test("carries the fallback fonts and takumi: Japanese renders as from source, with both engines", async () => {
    const card = {
      question: "好きな季節は？",
      creator: { name: "山田 太郎" },
      options: [
        { label: "春", votes: 2 },
        { label: "秋", votes: 1 },
      ],
    };
    const data = join(tmp.dir, "ja.json");
    await Bun.write(data, JSON.stringify(card));
    for (const engine of ["satori", "takumi"] as const) {
      const out = join(tmp.dir, `ja-${engine}.png`);
      const rendered = await run(["cards", "render", "poll", data, "-o", out], { CARD_RENDERER: engine });
      expect(`${engine} ${rendered.code} ${rendered.stderr}`).toBe(`${engine} 0 `);
      // The same fonts give the same bytes: a missing Noto slice would draw boxes instead.
      const expected = await createCardRenderer({ engine }).render("poll", card);
      expect(Buffer.from(await Bun.file(out).arrayBuffer()).equals(Buffer.from(expected.png))).toBe(true);
    }
  }, 60_000);

  test("serves: healthy, renders a card, completes a generate job, backs up, stops on SIGTERM", async () => {
    const probe = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: () => new Response() });
    const port = probe.port!;
    await probe.stop(true);
    url = `http://127.0.0.1:${port}`;
    server = Bun.spawn([exe, "serve"], {
      cwd: runDir,
      env: env({ PORT: String(port), HOST: "127.0.0.1", RENDER_WORKERS: "1", BACKUP_CRON: "* * * * * *" }),
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    const s = server;
    output = Promise.all([new Response(s.stdout).text(), new Response(s.stderr).text()]);
    const health = await waitFor(
      async () => {
        if (s.exitCode !== null) throw new Error(`server exited: ${(await output)?.join("\n")}`);
        return fetch(`${url}/api/health`).then(
          (r) => (r.ok ? r.json() : null),
          () => null,
        );
      },
      { timeoutMs: 15_000, what: "health" },
    );
    expect(health).toMatchObject({ ok: true });

    const card = await api("/api/cards", {
      method: "POST",
      json: {
        template: "poll",
        data: {
          question: "Which topping wins? 🍕",
          creator: { name: "Ada Lovelace", handle: "ada" },
          options: [
            { label: "Mushrooms", votes: 3 },
            { label: "Pineapple", votes: 1 },
          ],
        },
      },
    });
    expect(card.status).toBe(201);
    const { id: cardId } = (await card.json()) as { id: string };
    const image = await fetch(`${url}/api/cards/${cardId}/image`);
    expect(image.status).toBe(200);
    const png = sharp(new Uint8Array(await image.arrayBuffer()));
    expect(await png.metadata()).toMatchObject({ width: 1200, height: 800, format: "png" });
    const { data, info } = await png.raw().toBuffer({ resolveWithObject: true });
    const colours = new Set<string>();
    for (let i = 0; i < data.length; i += info.channels * 101)
      colours.add(`${data[i]},${data[i + 1]},${data[i + 2]}`);
    expect(colours.size).toBeGreaterThan(5);

    const queued = await api("/api/jobs/generate-image", {
      method: "POST",
      json: { prompt: "a red fox in the snow", provider: "placeholder" },
    });
    expect(queued.status).toBe(202);
    const { jobId } = (await queued.json()) as { jobId: string };
    const done = await waitFor(
      async () => {
        const job = (await (await api(`/api/jobs/${jobId}`)).json()) as {
          status: string;
          assets?: unknown[];
        };
        return job.status === "completed" ? job : null;
      },
      { timeoutMs: 15_000, what: "generate job" },
    );
    expect(done.status).toBe("completed");
    expect(readdirSync(join(dataDir, "files", "generations")).length).toBeGreaterThan(0);

    const docs = await fetch(`${url}/docs/assets/swagger-ui.css`);
    expect(docs.status).toBe(200);
    expect((await docs.text()).length).toBeGreaterThan(1000);

    const metrics = await (await api("/metrics")).text();
    expect(metrics).toContain('easel_provider_requests_total{provider="placeholder",class="ok"} 1');

    // Scheduled snapshots run VACUUM INTO on a worker thread: an entrypoint of its own in the executable.
    await waitFor(
      () => existsSync(join(dataDir, "backups")) && readdirSync(join(dataDir, "backups")).length > 0,
      {
        timeoutMs: 5000,
        what: "a scheduled snapshot",
      },
    );

    const backup = await run(["backup", join(tmp.dir, "snapshot.db")]);
    expect(`${backup.code} ${backup.stderr}`).toBe("0 ");
    expect(existsSync(join(tmp.dir, "snapshot.db"))).toBe(true);

    s.kill("SIGTERM");
    expect(await s.exited).toBe(0);
    const [stdout] = await output;
    expect(stdout).toContain('"msg":"stopped"');
    expect(existsSync(join(dataDir, "easel.pid"))).toBe(false);
    expect(readdirSync(runDir).sort()).toEqual(["data", "easel"]);
    expect(stdout).not.toContain("snapshot failed");
    // The extracted libvips copy is removed once loaded.
    expect(readdirSync(tmp.dir).filter((f) => f.startsWith("easel-libvips-"))).toEqual([]);
  }, 60_000);
});
