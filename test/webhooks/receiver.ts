import { Webhook } from "standardwebhooks";

export type Received = {
  id: string;
  timestamp: number;
  /** When the request arrived (performance.now()). */
  at: number;
  type: string;
  body: { type: string; timestamp: string; data: Record<string, unknown> };
  signature: string;
  verified: boolean;
  status: number;
  /** Accepted before under the same webhook-id (a redelivery). */
  duplicate: boolean;
};

type Answer = (r: Received) => Response | Promise<Response>;

/**
 * A webhook receiver as an integrator would write one: it verifies each request with the `standardwebhooks`
 * package (401 when the signature is wrong) and treats `webhook-id` as an idempotency key.
 */
export class Receiver {
  readonly received: Received[] = [];
  readonly acceptedIds = new Map<string, number>();
  /** Answers used in order, one per request; then `fallback`. */
  script: Answer[] = [];
  fallback: Answer = () => new Response("ok");
  /** The secret(s) requests are verified with; any one verifying is enough. */
  secrets: string[] = [];
  readonly server: ReturnType<typeof Bun.serve>;

  constructor() {
    this.server = Bun.serve({ port: 0, hostname: "127.0.0.1", fetch: (req) => this.#handle(req) });
  }

  get url(): string {
    return `http://127.0.0.1:${this.server.port}/hook`;
  }

  accepted(): Received[] {
    return this.received.filter((r) => r.status >= 200 && r.status < 300 && !r.duplicate);
  }

  ofType(type: string): Received[] {
    return this.accepted().filter((r) => r.type === type);
  }

  stop(): void {
    this.server.stop(true);
  }

  async #handle(req: Request): Promise<Response> {
    const raw = await req.text();
    const headers = Object.fromEntries(req.headers);
    const verified = this.secrets.some((secret) => {
      try {
        new Webhook(secret).verify(raw, headers);
        return true;
      } catch {
        return false;
      }
    });
    const id = headers["webhook-id"] ?? "";
    const body = JSON.parse(raw) as Received["body"];
    const r: Received = {
      id,
      timestamp: Number(headers["webhook-timestamp"]),
      at: performance.now(),
      type: body.type,
      body,
      signature: headers["webhook-signature"] ?? "",
      verified,
      status: 0,
      duplicate: false,
    };
    const res = verified
      ? await (this.script.shift() ?? this.fallback)(r)
      : new Response("bad signature", { status: 401 });
    r.status = res.status;
    if (res.status >= 200 && res.status < 300) {
      r.duplicate = this.acceptedIds.has(id);
      this.acceptedIds.set(id, (this.acceptedIds.get(id) ?? 0) + 1);
    }
    this.received.push(r);
    return res;
  }
}
