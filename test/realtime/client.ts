import { createConnection, type Socket } from "node:net";

export type Frame = { type: string; [key: string]: unknown };

/** A real WebSocket client that records every frame and lets a test wait for the ones it expects. */
export class WsClient {
  readonly frames: Frame[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: (() => void)[] = [];

  private constructor(readonly ws: WebSocket) {
    ws.onmessage = (e) => {
      this.frames.push(JSON.parse(String(e.data)) as Frame);
      for (const w of this.#waiters.splice(0)) w();
    };
    this.closed = new Promise((resolve) => {
      ws.onclose = (e) => {
        resolve({ code: e.code, reason: e.reason });
        for (const w of this.#waiters.splice(0)) w();
      };
    });
  }

  /** Connects; resolves once `connection_confirmed` arrived or the server closed the socket. */
  static async connect(url: string, init?: { headers?: Record<string, string> }): Promise<WsClient> {
    // Bun's WebSocket takes headers as a second argument (browsers cannot).
    const ws = new (WebSocket as unknown as new (u: string, o?: object) => WebSocket)(url, init);
    const client = new WsClient(ws);
    await Promise.race([client.next("connection_confirmed"), client.closed]);
    return client;
  }

  send(message: unknown): void {
    this.ws.send(typeof message === "string" ? message : JSON.stringify(message));
  }

  ofType(type: string): Frame[] {
    return this.frames.filter((f) => f.type === type);
  }

  /** The first frame of `type` matching `where` (already received or still to come); rejects after `timeoutMs`. */
  async next(type: string, where: (f: Frame) => boolean = () => true, timeoutMs = 5000): Promise<Frame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.frames.find((f) => f.type === type && where(f));
      if (hit) return hit;
      if (this.ws.readyState === WebSocket.CLOSED) throw new Error(`socket closed while waiting for ${type}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${type}; got ${JSON.stringify(this.frames)}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Sends `ping` and waits for a `pong`: everything the server sent before it has arrived. */
  async roundTrip(): Promise<void> {
    const before = this.ofType("pong").length;
    this.send({ type: "ping" });
    const deadline = Date.now() + 5000;
    while (this.ofType("pong").length === before) {
      if (Date.now() > deadline) throw new Error("no pong");
      await Bun.sleep(5);
    }
  }

  close(): void {
    this.ws.close();
  }
}

/**
 * A bare TCP connection that completes the WebSocket handshake and then does nothing a client should:
 * it answers no pings and (with `pause`) reads nothing — a dead or stalled peer.
 */
export async function rawUpgrade(
  url: string,
  opts: { pause?: boolean; bearer?: string } = {},
): Promise<Socket> {
  const u = new URL(url);
  const sock = createConnection({ host: u.hostname, port: Number(u.port) });
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", resolve);
    sock.once("error", reject);
  });
  const key = Buffer.from(crypto.getRandomValues(new Uint8Array(16))).toString("base64");
  const auth = opts.bearer ? `Authorization: Bearer ${opts.bearer}\r\n` : "";
  sock.write(
    `GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `${auth}Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const head = await new Promise<string>((resolve) => sock.once("data", (d) => resolve(String(d))));
  if (!head.startsWith("HTTP/1.1 101")) throw new Error(`upgrade refused: ${head.split("\r\n")[0]}`);
  if (opts.pause) sock.pause();
  return sock;
}
