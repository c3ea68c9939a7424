/**
 * Fake ComfyUI server (docs/providers.md "ComfyUI"): HTTP routes plus the `/ws?clientId=` progress socket.
 *
 * base.ts's FakeServer has no WebSocket support, so a small front server owns the public port: it upgrades
 * `/ws` itself and forwards every other request to the FakeServer (which keeps the request log and scripts).
 *
 * `POST /prompt` validates the graph like ComfyUI (unknown checkpoint or an unfilled `{{placeholder}}` → 400
 * with `node_errors`), queues it, and runs one prompt at a time: `progressSteps` progress frames `tickMs`
 * apart, then the history entry (SaveImage outputs, one per batch item) and `execution_success`.
 * `behaviour.fail` ends in `execution_error`; `behaviour.stuck` keeps it running until `POST /interrupt`;
 * `occupy()` puts someone else's endless prompt in front so ours stays pending. `GET /queue`, `POST /queue
 * {delete}`, `GET /history/<id>`, `GET /view` behave as ComfyUI's do. `POST /upload/image` (multipart `image`)
 * keeps the file in `uploads` and answers `{name, subfolder, type}`; a LoadImage naming a file never uploaded
 * fails validation, as ComfyUI's "Invalid image file" does. `behaviour.socket = false` refuses
 * the WebSocket so the adapter must fall back to polling.
 */
import type { Server, ServerWebSocket } from "bun";
import { FakeServer, json, type RecordedRequest, testImage } from "./base";

export const CHECKPOINTS = ["sd_xl_base_1.0.safetensors", "flux1-schnell-fp8.safetensors"];

export type ComfyBehaviour = {
  progressSteps: number;
  tickMs: number;
  stuck: boolean;
  fail?: { type: string; message: string };
  socket: boolean;
};

type Graph = Record<string, { class_type: string; inputs: Record<string, unknown> }>;
type Prompt = {
  id: string;
  number: number;
  graph: Graph;
  clientId: string;
  timer?: ReturnType<typeof setInterval>;
};

const defaults = (): ComfyBehaviour => ({ progressSteps: 4, tickMs: 2, stuck: false, socket: true });

function nodeError(id: string, classType: string, type: string, message: string, details: string) {
  return {
    [id]: {
      errors: [{ type, message, details, extra_info: {} }],
      dependent_outputs: ["9"],
      class_type: classType,
    },
  };
}

/** ComfyUI's own validation, reduced to what a broken template, a wrong model or image name would trip. */
function validate(graph: Graph, uploads: Map<string, Uint8Array>): Record<string, unknown> | undefined {
  for (const [id, node] of Object.entries(graph)) {
    for (const [key, value] of Object.entries(node.inputs)) {
      if (typeof value === "string" && value.includes("{{")) {
        return nodeError(id, node.class_type, "invalid_input_type", "Failed to convert an input value", key);
      }
    }
    const ckpt = node.inputs.ckpt_name;
    if (node.class_type === "CheckpointLoaderSimple" && !CHECKPOINTS.includes(String(ckpt))) {
      const details = `ckpt_name: '${String(ckpt)}' not in ${JSON.stringify(CHECKPOINTS)}`;
      return nodeError(id, node.class_type, "value_not_in_list", "Value not in list", details);
    }
    if (node.class_type === "LoadImage" && !uploads.has(String(node.inputs.image))) {
      const details = `image - Invalid image file: ${String(node.inputs.image)}`;
      return nodeError(
        id,
        node.class_type,
        "custom_validation_failed",
        "Custom validation failed for node",
        details,
      );
    }
  }
  return undefined;
}

export class ComfyuiFake {
  readonly server: FakeServer;
  behaviour: ComfyBehaviour = defaults();
  readonly history = new Map<string, unknown>();
  /** Ids of the prompts accepted, in order. */
  readonly promptIds: string[] = [];
  /** Client ids of the WebSocket connections opened, in order. */
  readonly socketClients: string[] = [];
  /** Files received by `POST /upload/image`, by the name LoadImage takes. */
  readonly uploads = new Map<string, Uint8Array>();
  #front: Server<{ clientId: string }> | undefined;
  #sockets = new Map<string, ServerWebSocket<{ clientId: string }>>();
  #running: Prompt | undefined;
  #pending: Prompt[] = [];
  #number = 0;
  #image: Uint8Array = new Uint8Array();

  constructor() {
    this.server = new FakeServer((req) => this.#route(req));
  }

  async start(): Promise<this> {
    this.#image = await testImage({ format: "png", width: 16, height: 16, color: "#22aa55" });
    await this.server.start();
    this.#front = Bun.serve({
      port: 0,
      hostname: "127.0.0.1",
      idleTimeout: 0,
      fetch: (req, server) => this.#frontFetch(req, server),
      websocket: {
        data: {} as { clientId: string },
        open: (ws) => {
          this.#sockets.set(ws.data.clientId, ws);
          this.socketClients.push(ws.data.clientId);
          this.#send(ws.data.clientId, "status", {
            status: { exec_info: { queue_remaining: 0 } },
            sid: ws.data.clientId,
          });
        },
        close: (ws) => {
          this.#sockets.delete(ws.data.clientId);
        },
        message: () => {},
      },
    });
    return this;
  }

  get url(): string {
    if (!this.#front) throw new Error("fake not started");
    return `http://127.0.0.1:${this.#front.port}`;
  }

  get image(): Uint8Array {
    return this.#image;
  }

  /** Someone else's endless prompt takes the GPU, so the next one queues behind it. */
  occupy(): void {
    this.#running = { id: "someone-else", number: this.#number++, graph: {}, clientId: "other" };
  }

  /** Interrupt as another user would from the ComfyUI page. */
  interruptRunning(): void {
    if (this.#running) this.#finish(this.#running, "interrupted");
  }

  reset(): void {
    this.server.reset();
    for (const p of [this.#running, ...this.#pending]) clearInterval(p?.timer);
    this.#running = undefined;
    this.#pending = [];
    this.history.clear();
    this.promptIds.length = 0;
    this.socketClients.length = 0;
    this.uploads.clear();
    this.behaviour = defaults();
  }

  async stop(): Promise<void> {
    this.reset();
    for (const ws of this.#sockets.values()) ws.close();
    await this.#front?.stop(true);
    await this.server.stop();
  }

  async #frontFetch(req: Request, server: Server<{ clientId: string }>): Promise<Response | undefined> {
    const url = new URL(req.url);
    if (url.pathname === "/ws") {
      if (!this.behaviour.socket) return new Response("websocket disabled", { status: 404 });
      const clientId = url.searchParams.get("clientId") ?? crypto.randomUUID();
      return server.upgrade(req, { data: { clientId } })
        ? undefined
        : new Response("upgrade failed", { status: 400 });
    }
    const hasBody = req.method !== "GET" && req.method !== "HEAD";
    const headers = new Headers(req.headers);
    headers.delete("host");
    return fetch(`${this.server.url}${url.pathname}${url.search}`, {
      method: req.method,
      headers,
      body: hasBody ? await req.arrayBuffer() : null,
      signal: req.signal,
    });
  }

  #send(clientId: string, type: string, data: Record<string, unknown>): void {
    this.#sockets.get(clientId)?.send(JSON.stringify({ type, data }));
  }

  #queuePrompt(req: RecordedRequest): Response {
    const body = req.json as { prompt?: Graph; client_id?: string } | undefined;
    const graph = body?.prompt ?? {};
    const nodeErrors = validate(graph, this.uploads);
    if (nodeErrors) {
      const error = {
        type: "prompt_outputs_failed_validation",
        message: "Prompt outputs failed validation",
        details: "",
        extra_info: {},
      };
      return json({ error, node_errors: nodeErrors }, 400);
    }
    const p: Prompt = {
      id: crypto.randomUUID(),
      number: this.#number++,
      graph,
      clientId: body?.client_id ?? "",
    };
    this.promptIds.push(p.id);
    this.#pending.push(p);
    this.#startNext();
    return json({ prompt_id: p.id, number: p.number, node_errors: {} });
  }

  #startNext(): void {
    if (this.#running) return;
    const p = this.#pending.shift();
    if (!p) return;
    this.#running = p;
    this.#send(p.clientId, "execution_start", { prompt_id: p.id });
    this.#send(this.#running.clientId, "executing", { node: "3", prompt_id: p.id });
    const max = this.behaviour.progressSteps;
    let value = 0;
    p.timer = setInterval(() => {
      if (value < max) {
        value += 1;
        this.#send(p.clientId, "progress", { value, max, prompt_id: p.id, node: "3" });
        this.#sockets.get(p.clientId)?.send(new Uint8Array([0, 0, 0, 1, 0, 0, 0, 2])); // a preview frame
      } else if (!this.behaviour.stuck) {
        this.#finish(p, this.behaviour.fail ? "error" : "success");
      }
    }, this.behaviour.tickMs);
  }

  #outputs(p: Prompt) {
    const latent = Object.values(p.graph).find((n) => n.class_type === "EmptyLatentImage");
    const repeat = Object.values(p.graph).find((n) => n.class_type === "RepeatLatentBatch");
    const count = Number(latent?.inputs.batch_size ?? repeat?.inputs.amount ?? 1);
    const saveId = Object.entries(p.graph).find(([, n]) => n.class_type === "SaveImage")?.[0] ?? "9";
    const images = Array.from({ length: count }, (_, i) => ({
      filename: `easel_${String(p.number * 10 + i).padStart(5, "0")}_.png`,
      subfolder: "",
      type: "output",
    }));
    return { [saveId]: { images } };
  }

  #finish(p: Prompt, outcome: "success" | "error" | "interrupted"): void {
    clearInterval(p.timer);
    const messages: Array<[string, Record<string, unknown>]> = [["execution_start", { prompt_id: p.id }]];
    let outputs = {};
    if (outcome === "success") {
      outputs = this.#outputs(p);
      messages.push(["execution_success", { prompt_id: p.id }]);
    } else if (outcome === "error") {
      const fail = this.behaviour.fail ?? { type: "RuntimeError", message: "failed" };
      messages.push([
        "execution_error",
        {
          prompt_id: p.id,
          node_id: "3",
          node_type: "KSampler",
          exception_type: fail.type,
          exception_message: fail.message,
        },
      ]);
    } else {
      messages.push(["execution_interrupted", { prompt_id: p.id, node_id: "3", node_type: "KSampler" }]);
    }
    const statusStr = outcome === "success" ? "success" : "error";
    this.history.set(p.id, {
      prompt: [p.number, p.id, p.graph, { client_id: p.clientId }, ["9"]],
      outputs,
      status: { status_str: statusStr, completed: outcome === "success", messages },
      meta: {},
    });
    this.#send(p.clientId, "executing", { node: null, prompt_id: p.id });
    const last = messages[messages.length - 1]!;
    this.#send(p.clientId, last[0], last[1]);
    if (this.#running === p) this.#running = undefined;
    this.#startNext();
  }

  #upload(req: RecordedRequest): Response {
    const file = req.form?.find(([k]) => k === "image")?.[1];
    if (!file || typeof file === "string") return new Response(null, { status: 400 });
    const subfolder = String(req.form?.find(([k]) => k === "subfolder")?.[1] ?? "");
    const type = String(req.form?.find(([k]) => k === "type")?.[1] ?? "input");
    this.uploads.set(subfolder ? `${subfolder}/${file.name}` : file.name, file.bytes);
    return json({ name: file.name, subfolder, type });
  }

  #queueState(): Response {
    const entry = (p: Prompt) => [p.number, p.id, p.graph, { client_id: p.clientId }, ["9"]];
    return json({
      queue_running: this.#running ? [entry(this.#running)] : [],
      queue_pending: this.#pending.map(entry),
    });
  }

  #route(req: RecordedRequest): Response | undefined {
    const post = req.method === "POST";
    if (post && req.path === "/prompt") return this.#queuePrompt(req);
    if (req.method === "GET" && req.path === "/queue") return this.#queueState();
    if (post && req.path === "/upload/image") return this.#upload(req);
    if (post && req.path === "/queue") {
      const ids = (req.json as { delete?: string[] } | undefined)?.delete ?? [];
      this.#pending = this.#pending.filter((p) => !ids.includes(p.id));
      return json({});
    }
    if (post && req.path === "/interrupt") {
      const target = (req.json as { prompt_id?: string } | undefined)?.prompt_id;
      if (this.#running && (!target || target === this.#running.id))
        this.#finish(this.#running, "interrupted");
      return json({});
    }
    const h = /^\/history\/([^/]+)$/.exec(req.path);
    if (h && req.method === "GET") {
      const entry = this.history.get(h[1] ?? "");
      return json(entry ? { [h[1]!]: entry } : {});
    }
    if (req.method === "GET" && req.path === "/view") {
      const known = [...this.history.values()].some((e) =>
        JSON.stringify((e as { outputs: unknown }).outputs).includes(`"${req.query.get("filename")}"`),
      );
      if (!known || req.query.get("type") !== "output") return new Response("not found", { status: 404 });
      return new Response(this.#image, { headers: { "content-type": "image/png" } });
    }
    return undefined;
  }
}
