import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { RESVG_PURGE_DELAY_MS } from "../../src/render/resvg";

const RENDER = join(import.meta.dir, "../../src/render/index.ts");

/**
 * What resvg-js's own mimalloc settled on, in a fresh process that loads the render library as the server
 * does. With MIMALLOC_VERBOSE each mimalloc in the process prints its options: Bun's plainly, resvg-js's
 * prefixed with "mimalloc:".
 */
async function resvgOption(name: string, env: Record<string, string> = {}): Promise<number> {
  const proc = Bun.spawn(["bun", "-e", `await import(${JSON.stringify(RENDER)})`], {
    env: { ...process.env, MIMALLOC_VERBOSE: "1", ...env },
    stdout: "ignore",
    stderr: "pipe",
  });
  const [stderr, code] = await Promise.all([new Response(proc.stderr).text(), proc.exited]);
  expect(code).toBe(0);
  const setting = new RegExp(`^mimalloc: option '${name}': (-?\\d+)`, "m").exec(stderr);
  if (!setting) throw new Error(`resvg-js's allocator printed no ${name}:\n${stderr.slice(0, 2000)}`);
  return Number(setting[1]);
}

const resvgPurgeDelay = (env?: Record<string, string>) => resvgOption("purge_delay", env);

describe.if(process.platform === "linux")("resvg-js's allocator", () => {
  test("keeps freed canvases a while, so consecutive renders reuse their pages", async () => {
    expect(await resvgPurgeDelay()).toBe(RESVG_PURGE_DELAY_MS);
  });

  test("hands an ended thread's free pages back, so a replaced render worker's memory goes", async () => {
    expect(await resvgOption("abandoned_page_purge")).toBe(1);
    expect(await resvgOption("abandoned_page_purge", { MIMALLOC_ABANDONED_PAGE_PURGE: "0" })).toBe(0);
  });

  test("an operator's own MIMALLOC_PURGE_DELAY wins; an empty one counts as unset", async () => {
    expect(await resvgPurgeDelay({ MIMALLOC_PURGE_DELAY: "37" })).toBe(37);
    expect(await resvgPurgeDelay({ MIMALLOC_PURGE_DELAY: "" })).toBe(RESVG_PURGE_DELAY_MS);
  });
});
