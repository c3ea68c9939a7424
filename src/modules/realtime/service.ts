import type { Config } from "../../config";
import type { EventBus, Queue } from "../../queue";
import type { CardEvents } from "../cards/service";
import type { JobService } from "../jobs/service";
import { type Publisher, RealtimeHub } from "./hub";
import type { NotifyFrameRelay } from "./relay";
import { WsSessions } from "./sessions";
import { JobEventStreams } from "./sse";

export type RealtimeOptions = {
  /** Progress frames per job are coalesced to at most one per window (latest wins). @defaultValue 250 */
  progressIntervalMs?: number;
  pingIntervalMs: number;
  pingTimeoutMs: number;
  maxBufferedBytes: number;
  sseHeartbeatMs: number;
};

export function realtimeOptions(config: Config): RealtimeOptions {
  return {
    pingIntervalMs: config.WS_PING_INTERVAL_MS,
    pingTimeoutMs: config.WS_PING_TIMEOUT_MS,
    maxBufferedBytes: config.WS_MAX_BUFFERED_BYTES,
    sseHeartbeatMs: config.SSE_HEARTBEAT_MS,
  };
}

/**
 * Bun's server-wide WebSocket settings (`listen({ websocket })`): a client whose backlog passes the limit is
 * closed rather than silently losing frames (it reconnects and resubscribes); liveness is our own ping/pong,
 * with Bun's idle timeout only as a backstop.
 */
export function socketServerOptions(config: Config) {
  const liveness = Math.ceil((config.WS_PING_INTERVAL_MS + config.WS_PING_TIMEOUT_MS) / 1000);
  return {
    backpressureLimit: config.WS_MAX_BUFFERED_BYTES,
    closeOnBackpressureLimit: true,
    sendPings: false,
    idleTimeout: Math.min(960, Math.max(30, 2 * liveness)),
    maxPayloadLength: 64 * 1024,
    perMessageDeflate: false,
  };
}

/** WebSocket sessions and SSE streams fed by one hub over the queue's events. */
export class RealtimeService {
  readonly hub: RealtimeHub;
  readonly sessions: WsSessions;
  readonly streams: JobEventStreams;

  readonly #relay: NotifyFrameRelay | undefined;

  /**
   * `cardEvents`: the card service's events, whose `card:rendered` reaches the card owner's sockets.
   * `relay` (cluster mode): frames cross to and from the other instances.
   */
  constructor(
    queue: Queue,
    jobs: JobService,
    opts: RealtimeOptions,
    cardEvents?: EventBus<CardEvents>,
    relay?: NotifyFrameRelay,
  ) {
    this.#relay = relay;
    this.hub = new RealtimeHub(queue.events, {
      progressIntervalMs: opts.progressIntervalMs ?? 250,
      describe: (job) => jobs.outcome(job),
      cardEvents,
      relay,
      getJob: (id) => queue.get(id),
    });
    this.sessions = new WsSessions(
      { jobs, getJob: (id) => queue.get(id), terminalMark: (id) => this.hub.terminalMark(id) },
      {
        pingIntervalMs: opts.pingIntervalMs,
        pingTimeoutMs: opts.pingTimeoutMs,
        maxBufferedBytes: opts.maxBufferedBytes,
      },
    );
    this.streams = new JobEventStreams(this.hub, jobs, (id) => queue.get(id), {
      heartbeatMs: opts.sseHeartbeatMs,
    });
  }

  /** The listening server, for native topic fan-out. */
  attach(server: Publisher | null | undefined): void {
    this.hub.attach(server ?? null);
  }

  /** Starts the hub and pings; in cluster mode resolves once the relay listens to the other instances. */
  async start(): Promise<void> {
    this.hub.start();
    this.sessions.start();
    await this.#relay?.start();
  }

  /** Closes every WebSocket and SSE stream, so the HTTP server can stop. */
  async stop(): Promise<void> {
    this.sessions.stop();
    this.streams.closeAll();
    this.hub.stop();
    await this.#relay?.stop();
  }

  stats(): { connections: number; streams: number } {
    return { connections: this.sessions.size, streams: this.streams.size };
  }
}
