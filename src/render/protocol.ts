import type { EngineName } from "./engine";
import type { PngEncoder } from "./satori";

/** Messages between RenderPool and its worker threads. */

export interface RenderRequest {
  id: number;
  template: string;
  data: unknown;
}

export interface SerialisedError {
  name: string;
  code: string;
  message: string;
  details?: unknown;
}

export type RenderReply =
  | { id: number; ok: true; png: Uint8Array; width: number; height: number }
  | { id: number; ok: false; error: SerialisedError };

/** Sent once the worker has loaded its fonts; start-up time is not charged to the first render's timeout. */
export interface ReadyMessage {
  ready: true;
}

/** What the pool passes as `workerData`. */
export interface WorkerOptions {
  engine?: EngineName;
  encoder?: PngEncoder;
  /** Niceness of the render threads (Linux), so the event loop thread wins the CPU. */
  nice?: number;
}
