/**
 * docs/providers.md stays true to the code: each provider's capability table in the doc is the adapter's own
 * table rendered, every provider Easel knows has a section, and the adapters cite only documents that exist.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import * as automatic1111 from "../../src/providers/automatic1111";
import * as bfl from "../../src/providers/bfl";
import type { ProviderCapabilities } from "../../src/providers/capabilities";
import * as comfyui from "../../src/providers/comfyui";
import * as dashscope from "../../src/providers/dashscope";
import * as fal from "../../src/providers/fal";
import * as gemini from "../../src/providers/gemini";
import * as huggingface from "../../src/providers/huggingface";
import * as openai from "../../src/providers/openai";
import { PROVIDER_NAMES } from "../../src/providers/registry";
import * as replicate from "../../src/providers/replicate";
import { capabilityTable } from "./capability-table";

const root = join(import.meta.dir, "../..");
const doc = readFileSync(join(root, "docs/providers.md"), "utf8");

const tables: Record<string, ProviderCapabilities> = {
  openai: openai.CAPABILITIES,
  gemini: gemini.CAPABILITIES,
  huggingface: huggingface.CAPABILITIES,
  replicate: replicate.CAPABILITIES,
  fal: fal.CAPABILITIES,
  bfl: bfl.CAPABILITIES,
  dashscope: dashscope.CAPABILITIES,
  comfyui: comfyui.CAPABILITIES,
  automatic1111: automatic1111.CAPABILITIES,
};

describe("docs/providers.md", () => {
  test.each(Object.entries(tables))(
    "shows %s's capability table as the adapter declares it",
    (_name, table) => {
      expect(doc).toContain(capabilityTable(table));
    },
  );

  test("has a section for every provider, naming its settings", () => {
    const settings: Record<string, string> = {
      openai: "OPENAI_API_KEY",
      gemini: "GEMINI_API_KEY",
      huggingface: "HF_TOKEN",
      replicate: "REPLICATE_API_TOKEN",
      fal: "FAL_KEY",
      bfl: "BFL_API_KEY",
      dashscope: "DASHSCOPE_API_KEY",
      comfyui: "COMFYUI_URL",
      automatic1111: "A1111_URL",
      placeholder: "PLACEHOLDER_LATENCY_MS",
    };
    for (const name of PROVIDER_NAMES) expect(doc).toContain(settings[name]!);
    expect(Object.keys(settings).sort()).toEqual([...PROVIDER_NAMES].sort());
  });

  test("the adapters cite docs/providers.md, never a document outside the repository", () => {
    const dir = join(root, "src/providers");
    for (const file of readdirSync(dir)) {
      const text = readFileSync(join(dir, file), "utf8");
      expect({ file, cites: /(?<!docs\/)PROVIDERS\.md/.test(text) }).toEqual({ file, cites: false });
    }
  });
});
