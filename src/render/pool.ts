import { availableParallelism } from "node:os";
import { Worker } from "node:worker_threads";
import { CardDataError, RenderError, UnknownTemplateError } from "./errors";
import type { ReadyMessage, RenderReply, RenderRequest, SerialisedError, WorkerOptions } from "./protocol";
import type { RenderedCard } from "./render";
import { templateNames } from "./templates";

export interface RenderPoolOptions {
  /** Worker threads. @defaultValue the CPU count */
  size?: number;
  /** A render slower than this is abandoned: its worker is replaced and the render rejects. @defaultValue 30 000 ms */
  renderTimeoutMs?: number;
  /** The engine the workers render with. @defaultValue "satori" */
  engine?: WorkerOptions["engine"];
  /** PNG encoder of the satori engine. @defaultValue "zlib" (see PngEncoder) */
  encoder?: WorkerOptions["encoder"];
  /** Niceness of render threads on Linux (0 = same as the event loop). @defaultValue 10 */
  nice?: number;
  /** The worker module; tests substitute a wrapper. @defaultValue ./worker.ts */
  workerUrl?: URL;
  /**
   * A worker that has rendered and then sat idle this long is replaced by a fresh one (0: never), one worker
   * at a time and only while another can render, so a pool of one is never recycled. What a burst of
   * renders leaves behind (its JavaScript heap, resvg's and Bun's allocator pages) stays resident while its
   * thread is idle, because the allocators give memory back only as the thread allocates again; a thread
   * that ends gives it all back. @defaultValue 20 000 ms
   */
  recycleIdleMs?: number;
}

export interface RenderPoolStats {
  size: number;
  busy: number;
  queued: number;
  rendered: number;
  failed: number;
  /** Workers replaced after a crash or a timeout. */
  respawns: number;
  /** Workers replaced after sitting idle (`recycleIdleMs`), which frees what their renders left behind. */
  recycled: number;
  /** Workers that have loaded their fonts and are alive. */
  live: number;
}

/** How long a new worker may take to load its fonts before it counts against the pool's health. */
const STARTUP_GRACE_MS = 10_000;

interface Job {
  request: RenderRequest;
  resolve: (card: RenderedCard) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  startedAt: number;
  /** Fonts loaded; gets jobs only from then on. */
  ready: boolean;
  /** Exited and waiting to be replaced; gets no jobs. */
  dead?: boolean;
  job?: Job;
  timer?: ReturnType<typeof setTimeout>;
  /** Why the pool itself ended this worker (timeout), so the exit handler reports that instead of a crash. */
  endedBecause?: RenderError;
  /** Has rendered (or failed) a card: only such a worker is recycled, a fresh one has nothing to give back. */
  used: boolean;
  /** Fires when the worker has been idle for `recycleIdleMs`. */
  idleTimer?: ReturnType<typeof setTimeout>;
  /** Replaced after sitting idle; its exit is expected and not a crash. */
  retired?: boolean;
}

const QUICK_DEATH_MS = 1000;
const RESPAWN_DELAY_MS = 1000;

function rebuildError(template: string, error: SerialisedError): Error {
  if (error.code === "invalid_card_data") return new CardDataError(template, error.details);
  if (error.code === "unknown_template") return new UnknownTemplateError(template, templateNames);
  return new RenderError("render_failed", `${error.name}: ${error.message}`);
}

/**
 * Renders cards on worker threads so the HTTP event loop never rasterises. Jobs queue in FIFO order and go
 * to whichever worker is idle (one job per worker: rendering is CPU-bound, so more would only add latency).
 * A failing render rejects only its own promise; a worker that crashes or times out is replaced.
 */
export class RenderPool {
  readonly size: number;
  readonly #slots: Slot[] = [];
  readonly #queue: Job[] = [];
  readonly #opts: RenderPoolOptions;
  #nextId = 1;
  #closed = false;
  #rendered = 0;
  #failed = 0;
  #respawns = 0;
  #recycled = 0;
  /** Workers that died young since one last came up: a pool in this state is not healthy. */
  #quickDeaths = 0;

  constructor(opts: RenderPoolOptions = {}) {
    this.#opts = opts;
    this.size = Math.max(1, opts.size ?? availableParallelism());
    for (let i = 0; i < this.size; i++) this.#slots.push(this.#spawn());
  }

  /** Renders `data` (already prepared: validated, images as data URLs) with `template`. */
  render(template: string, data: unknown): Promise<RenderedCard> {
    if (this.#closed) return Promise.reject(new RenderError("pool_closed", "render pool is closed"));
    return new Promise((resolve, reject) => {
      this.#queue.push({ request: { id: this.#nextId++, template, data }, resolve, reject });
      this.#dispatch();
    });
  }

  get stats(): RenderPoolStats {
    return {
      size: this.size,
      busy: this.#slots.filter((s) => s.job).length,
      queued: this.#queue.length,
      rendered: this.#rendered,
      failed: this.#failed,
      respawns: this.#respawns,
      recycled: this.#recycled,
      live: this.#slots.filter((s) => s.ready && !s.dead).length,
    };
  }

  /**
   * Readiness: throws unless some worker can render now or is still within its start-up grace. A pool whose
   * workers keep dying at start (a broken install) fails it until one comes up.
   */
  check(): void {
    if (this.#closed) throw new Error("render pool is closed");
    const now = performance.now();
    const starting = this.#quickDeaths === 0;
    const usable = this.#slots.some(
      (s) => !s.dead && (s.ready || (starting && now - s.startedAt < STARTUP_GRACE_MS)),
    );
    if (!usable) throw new Error(`render pool has no live workers (${this.#respawns} respawns)`);
  }

  /** Rejects queued and running renders with `pool_closed` and stops every worker. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closed = new RenderError("pool_closed", "render pool is closed");
    for (const job of this.#queue.splice(0)) job.reject(closed);
    await Promise.all(
      this.#slots.map(async (slot) => {
        clearTimeout(slot.idleTimer);
        this.#finish(slot)?.reject(closed);
        await slot.worker.terminate();
      }),
    );
  }

  #spawn(): Slot {
    const url = this.#opts.workerUrl ?? new URL("./worker.ts", import.meta.url);
    const workerData: WorkerOptions = {
      engine: this.#opts.engine,
      encoder: this.#opts.encoder,
      nice: this.#opts.nice,
    };
    const worker = new Worker(url, { workerData });
    const slot: Slot = { worker, startedAt: performance.now(), ready: false, used: false };
    let lastError: unknown;
    worker.on("message", (message: RenderReply | ReadyMessage) => {
      if ("ready" in message) {
        slot.ready = true;
        this.#quickDeaths = 0;
        this.#dispatch();
      } else {
        this.#onReply(slot, message);
      }
    });
    worker.on("error", (err) => {
      lastError = err;
    });
    worker.on("exit", (code) => this.#onExit(slot, code, lastError));
    return slot;
  }

  #dispatch(): void {
    for (const slot of this.#slots) {
      if (slot.job || slot.dead || !slot.ready) continue;
      const job = this.#queue.shift();
      if (!job) break;
      clearTimeout(slot.idleTimer);
      slot.idleTimer = undefined;
      slot.job = job;
      const timeoutMs = this.#opts.renderTimeoutMs ?? 30_000;
      slot.timer = setTimeout(() => this.#timeOut(slot, timeoutMs), timeoutMs);
      slot.worker.postMessage(job.request);
    }
    for (const slot of this.#slots) this.#watchIdle(slot);
  }

  /** Arms the idle timer of a worker that has rendered and now waits for work (see `recycleIdleMs`). */
  #watchIdle(slot: Slot): void {
    const idleMs = this.#opts.recycleIdleMs ?? 20_000;
    if (idleMs <= 0 || this.size < 2 || slot.idleTimer || slot.job || slot.dead || !slot.used) return;
    slot.idleTimer = setTimeout(() => {
      slot.idleTimer = undefined;
      this.#recycle(slot);
    }, idleMs);
    slot.idleTimer.unref?.();
  }

  /**
   * Replaces an idle worker with a fresh one, unless no other worker could render meanwhile (the others
   * still starting): then it waits another idle period, so workers are replaced one at a time.
   */
  #recycle(slot: Slot): void {
    if (this.#closed || slot.job || slot.dead) return;
    const others = this.#slots.filter((s) => s !== slot && s.ready && !s.dead);
    if (others.length === 0) {
      this.#watchIdle(slot);
      return;
    }
    slot.dead = true;
    slot.retired = true;
    this.#recycled++;
    this.#slots[this.#slots.indexOf(slot)] = this.#spawn();
    void slot.worker.terminate();
  }

  /** Clears the slot's job and timer and hands back the job, if there was one. */
  #finish(slot: Slot): Job | undefined {
    const job = slot.job;
    clearTimeout(slot.timer);
    slot.job = undefined;
    slot.timer = undefined;
    return job;
  }

  #onReply(slot: Slot, reply: RenderReply): void {
    if (slot.job?.request.id !== reply.id) return; // a reply racing a timeout; its job already failed
    const job = this.#finish(slot)!;
    slot.used = true;
    if (reply.ok) {
      this.#rendered++;
      job.resolve({ png: reply.png, width: reply.width, height: reply.height });
    } else {
      this.#failed++;
      job.reject(rebuildError(job.request.template, reply.error));
    }
    this.#dispatch();
  }

  #timeOut(slot: Slot, timeoutMs: number): void {
    slot.endedBecause = new RenderError("render_timeout", `render took longer than ${timeoutMs} ms`);
    void slot.worker.terminate();
  }

  #onExit(slot: Slot, code: number, lastError: unknown): void {
    if (this.#closed || slot.retired) return;
    clearTimeout(slot.idleTimer);
    slot.dead = true;
    const job = this.#finish(slot);
    if (job) {
      this.#failed++;
      const detail = lastError instanceof Error ? lastError.message : `exit code ${code}`;
      job.reject(slot.endedBecause ?? new RenderError("worker_crashed", `render worker died: ${detail}`));
    }
    // A worker that dies young (a broken install, a crash at start-up) is replaced after a pause, not in a
    // tight loop; queued jobs wait for it.
    const quick = performance.now() - slot.startedAt < QUICK_DEATH_MS;
    if (quick) this.#quickDeaths++;
    const delay = quick ? RESPAWN_DELAY_MS : 0;
    this.#respawns++;
    const replace = () => {
      if (this.#closed) return;
      this.#slots[this.#slots.indexOf(slot)] = this.#spawn();
      this.#dispatch();
    };
    if (delay === 0) replace();
    else setTimeout(replace, delay).unref();
  }
}
