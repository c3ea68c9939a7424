/**
 * ComfyUI workflows in API format (`{ "<node id>": { class_type, inputs } }`, what "Save (API format)" exports).
 *
 * A user workflow marks the values to fill with placeholder strings: `{{prompt}}`, `{{negative_prompt}}`,
 * `{{seed}}`, `{{width}}`, `{{height}}`, `{{batch_size}}`, `{{model}}`, `{{steps}}`, `{{cfg}}`, and in edit
 * workflows `{{image}}` (the uploaded input's name, for a LoadImage node) and `{{denoise}}`. A string that is
 * exactly one placeholder takes the value with its type (so `"{{seed}}"` becomes a number); a placeholder inside a
 * longer string is spliced in as text.
 */
import { ProviderError } from "./errors";

export type WorkflowNode = { class_type: string; inputs: Record<string, unknown>; _meta?: unknown };
export type Workflow = Record<string, WorkflowNode>;

export type WorkflowValues = {
  prompt: string;
  negative_prompt: string;
  seed: number;
  width: number;
  height: number;
  batch_size: number;
  model: string;
  steps: number;
  cfg: number;
  sampler_name: string;
  scheduler: string;
  /** The uploaded input image as LoadImage names it (`subfolder/name`); empty for text to image. */
  image: string;
  /** How much of the input is redrawn (1 = all of it). */
  denoise: number;
};

/** The plain txt2img graph ComfyUI ships as its default, with every tunable value as a placeholder. */
export const DEFAULT_WORKFLOW: Workflow = {
  "4": { class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: "{{model}}" } },
  "5": {
    class_type: "EmptyLatentImage",
    inputs: { width: "{{width}}", height: "{{height}}", batch_size: "{{batch_size}}" },
  },
  "6": { class_type: "CLIPTextEncode", inputs: { text: "{{prompt}}", clip: ["4", 1] } },
  "7": { class_type: "CLIPTextEncode", inputs: { text: "{{negative_prompt}}", clip: ["4", 1] } },
  "3": {
    class_type: "KSampler",
    inputs: {
      seed: "{{seed}}",
      steps: "{{steps}}",
      cfg: "{{cfg}}",
      sampler_name: "{{sampler_name}}",
      scheduler: "{{scheduler}}",
      denoise: 1,
      model: ["4", 0],
      positive: ["6", 0],
      negative: ["7", 0],
      latent_image: ["5", 0],
    },
  },
  "8": { class_type: "VAEDecode", inputs: { samples: ["3", 0], vae: ["4", 2] } },
  "9": { class_type: "SaveImage", inputs: { filename_prefix: "easel", images: ["8", 0] } },
};

/**
 * img2img: the uploaded input is encoded to a latent (repeated for a batch) and redrawn by `{{denoise}}`. The
 * output keeps the input's size, so `{{width}}`/`{{height}}` are not used here.
 */
export const DEFAULT_EDIT_WORKFLOW: Workflow = {
  "4": { class_type: "CheckpointLoaderSimple", inputs: { ckpt_name: "{{model}}" } },
  "10": { class_type: "LoadImage", inputs: { image: "{{image}}" } },
  "11": { class_type: "VAEEncode", inputs: { pixels: ["10", 0], vae: ["4", 2] } },
  "12": { class_type: "RepeatLatentBatch", inputs: { samples: ["11", 0], amount: "{{batch_size}}" } },
  "6": { class_type: "CLIPTextEncode", inputs: { text: "{{prompt}}", clip: ["4", 1] } },
  "7": { class_type: "CLIPTextEncode", inputs: { text: "{{negative_prompt}}", clip: ["4", 1] } },
  "3": {
    class_type: "KSampler",
    inputs: {
      seed: "{{seed}}",
      steps: "{{steps}}",
      cfg: "{{cfg}}",
      sampler_name: "{{sampler_name}}",
      scheduler: "{{scheduler}}",
      denoise: "{{denoise}}",
      model: ["4", 0],
      positive: ["6", 0],
      negative: ["7", 0],
      latent_image: ["12", 0],
    },
  },
  "8": { class_type: "VAEDecode", inputs: { samples: ["3", 0], vae: ["4", 2] } },
  "9": { class_type: "SaveImage", inputs: { filename_prefix: "easel", images: ["8", 0] } },
};

const WHOLE = /^\{\{\s*(\w+)\s*\}\}$/;
const INNER = /\{\{\s*(\w+)\s*\}\}/g;

function lookup(values: WorkflowValues, key: string): unknown {
  return Object.hasOwn(values, key) ? values[key as keyof WorkflowValues] : undefined;
}

function fillValue(value: unknown, values: WorkflowValues): unknown {
  if (typeof value === "string") {
    const whole = WHOLE.exec(value);
    if (whole) {
      const v = lookup(values, whole[1]!);
      return v === undefined ? value : v;
    }
    return value.replace(INNER, (m, key: string) => {
      const v = lookup(values, key);
      return v === undefined ? m : String(v);
    });
  }
  if (Array.isArray(value)) return value.map((v) => fillValue(v, values));
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, fillValue(v, values)]));
  }
  return value;
}

/** Returns a filled copy; the template is never mutated (it is shared by every job). */
export function fillWorkflow(template: Workflow, values: WorkflowValues): Workflow {
  return fillValue(template, values) as Workflow;
}

/** Accepts a workflow as an object or JSON text and checks it looks like API format, not the UI format. */
export function parseWorkflow(input: unknown): Workflow {
  let value = input;
  if (typeof input === "string") {
    try {
      value = JSON.parse(input);
    } catch (cause) {
      throw invalidWorkflow("workflow is not valid JSON", cause);
    }
  }
  if (!value || typeof value !== "object" || Array.isArray(value)) {
    throw invalidWorkflow("workflow must be an object");
  }
  if ("nodes" in value && "links" in value) {
    throw invalidWorkflow('workflow is in UI format; export it with "Save (API format)"');
  }
  for (const [id, node] of Object.entries(value)) {
    const n = node as Partial<WorkflowNode> | null;
    if (!n || typeof n.class_type !== "string" || !n.inputs || typeof n.inputs !== "object") {
      throw invalidWorkflow(`workflow node "${id}" needs class_type and inputs`);
    }
  }
  return value as Workflow;
}

function invalidWorkflow(message: string, cause?: unknown): ProviderError {
  return new ProviderError("invalid_request", `comfyui: ${message}`, { cause });
}
