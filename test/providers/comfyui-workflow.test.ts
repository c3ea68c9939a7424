import { describe, expect, test } from "bun:test";
import {
  DEFAULT_WORKFLOW,
  fillWorkflow,
  parseWorkflow,
  type WorkflowValues,
} from "../../src/providers/comfyui-workflow";

const values: WorkflowValues = {
  prompt: 'a "quoted" {{prompt}} fox',
  negative_prompt: "",
  seed: 5,
  width: 640,
  height: 480,
  batch_size: 3,
  model: "m.safetensors",
  steps: 12,
  cfg: 4.5,
  sampler_name: "dpmpp_2m",
  scheduler: "karras",
  image: "",
  denoise: 1,
};

describe("comfyui workflow filling", () => {
  test("whole placeholders keep their type, inner ones are spliced as text, the template is untouched", () => {
    const before = JSON.stringify(DEFAULT_WORKFLOW);
    const graph = fillWorkflow(DEFAULT_WORKFLOW, values);
    expect(graph["3"]!.inputs).toMatchObject({ seed: 5, steps: 12, cfg: 4.5, model: ["4", 0] });
    expect(graph["5"]!.inputs).toEqual({ width: 640, height: 480, batch_size: 3 });
    // A prompt that itself contains a placeholder is data, not a template: it is not expanded again.
    expect(graph["6"]!.inputs.text).toBe('a "quoted" {{prompt}} fox');
    expect(JSON.stringify(DEFAULT_WORKFLOW)).toBe(before);
  });

  test("unknown placeholders are left for ComfyUI's validation to report", () => {
    const graph = fillWorkflow(
      { "1": { class_type: "X", inputs: { a: "{{lora}}", b: "x {{ seed }} y" } } },
      values,
    );
    expect(graph["1"]!.inputs).toEqual({ a: "{{lora}}", b: "x 5 y" });
  });

  test.each([
    ["invalid JSON", "{nope"],
    ["an array", "[]"],
    ["the UI format", JSON.stringify({ nodes: [], links: [] })],
    ["a node without class_type", JSON.stringify({ "1": { inputs: {} } })],
  ])("refuses %s as provider_invalid_request", (_name, text) => {
    let err: unknown;
    try {
      parseWorkflow(text);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ kind: "invalid_request", code: "provider_invalid_request" });
  });
});
