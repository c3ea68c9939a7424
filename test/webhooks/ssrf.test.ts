import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { z } from "zod";
import { ApiError } from "../../src/errors";
import { defineJob } from "../../src/queue";
import { startTestServer, type TestServer, waitFor } from "../helpers";
import { Receiver } from "./receiver";

/** Addresses a user must not make the server call, in the spellings attackers use. */
const CORPUS = [
  "http://127.0.0.1/hook",
  "http://0.0.0.0/hook",
  "http://10.0.0.1/hook",
  "http://172.16.0.1/hook",
  "http://192.168.1.1/hook",
  "http://169.254.169.254/latest/meta-data/",
  "http://100.64.0.1/hook",
  "http://[::1]/hook",
  "http://[::ffff:127.0.0.1]/hook",
  "http://2130706433/hook",
  "http://0x7f000001/hook",
  "http://localhost/hook",
  "http://localhost.:8080/hook",
  "https://api.localhost/hook",
];

describe("outbound URL guard (ALLOW_PRIVATE_URLS=false)", () => {
  let server: TestServer;
  let receiver: Receiver;
  beforeAll(async () => {
    server = await startTestServer({
      jobs: [defineJob({ type: "work", input: z.object({}), run: async () => ({ ok: true }) })],
      env: { ALLOW_PRIVATE_URLS: "false" },
    });
    receiver = new Receiver();
  });
  afterAll(async () => {
    receiver.stop();
    await server.close();
  });

  test.each(CORPUS)("refused at endpoint creation with 422 url_not_allowed: %s", async (url) => {
    const res = await server.api("/api/webhooks", { method: "POST", json: { url } });
    const body = (await res.json()) as { error: { code: string; message: string } };
    expect(res.status).toBe(422);
    expect(body.error.code).toBe("url_not_allowed");
  });

  test("non-http schemes and garbage are refused too", async () => {
    for (const url of ["ftp://example.com/x", "file:///etc/passwd", "not a url", "gopher://127.0.0.1:70/"]) {
      const res = await server.api("/api/webhooks", { method: "POST", json: { url } });
      expect(res.status).toBe(422);
    }
    const list = (await (await server.api("/api/webhooks")).json()) as { endpoints: unknown[] };
    expect(list.endpoints).toEqual([]);
  });

  test.each(CORPUS)("refused as a generation's webhookUrl with 422 url_not_allowed: %s", async (url) => {
    const res = await server.api("/api/jobs/generate-image", {
      method: "POST",
      json: { prompt: "a lighthouse", webhookUrl: url },
    });
    const body = (await res.json()) as { error: { code: string } };
    expect(`${res.status} ${body.error.code}`).toBe("422 url_not_allowed");
  });

  test("the service check other modules call for a webhookUrl refuses the same corpus", async () => {
    for (const url of CORPUS) {
      const err = await server.ctx.webhooks.checkUrl(url).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ApiError);
      expect(err).toMatchObject({ status: 422, code: "url_not_allowed" });
    }
  });

  test("and again at delivery time: a private webhookUrl that slipped in is never called", async () => {
    const admin = (await server.ctx.auth.bootstrapAdmin()).admin;
    const { id } = await server.ctx.queue.enqueue(
      "work",
      {},
      { ownerId: admin.id, webhookUrl: receiver.url },
    );
    const failedDeliveries = () =>
      server.ctx.db.$client
        .query(
          "SELECT status, last_error AS error FROM webhook_deliveries WHERE job_id = ? AND status = 'failed'",
        )
        .all(id) as { status: string; error: string }[];
    await waitFor(() => failedDeliveries().length === 2, { what: "started/completed deliveries to fail" });
    expect(failedDeliveries().every((d) => d.error.includes("not allowed"))).toBe(true);
    expect(receiver.received).toEqual([]);
  });
});
