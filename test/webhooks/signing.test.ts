import { expect, test } from "bun:test";
import { Webhook } from "standardwebhooks";
import { retryDelay } from "../../src/modules/webhooks/deliver";
import { generateSecret, signatureHeader, webhookHeaders } from "../../src/modules/webhooks/signing";

test("signatures verify with the standardwebhooks package, and fail for a changed body or another secret", () => {
  const secret = generateSecret();
  const body = JSON.stringify({
    type: "job.completed",
    timestamp: new Date().toISOString(),
    data: { jobId: "j1" },
  });
  const headers = webhookHeaders([secret], "msg_1", Math.floor(Date.now() / 1000), body);
  expect(new Webhook(secret).verify(body, headers)).toMatchObject({ type: "job.completed" });
  expect(() => new Webhook(secret).verify(`${body} `, headers)).toThrow();
  expect(() => new Webhook(generateSecret()).verify(body, headers)).toThrow();
});

test("one signature per secret, space-separated, each verifying on its own", () => {
  const [a, b] = [generateSecret(), generateSecret()];
  const ts = Math.floor(Date.now() / 1000);
  const header = signatureHeader([a, b], "msg_2", ts, "{}");
  expect(header.split(" ")).toHaveLength(2);
  expect(header.split(" ").every((s) => s.startsWith("v1,"))).toBe(true);
  for (const secret of [a, b]) {
    const h = { "webhook-id": "msg_2", "webhook-timestamp": String(ts), "webhook-signature": header };
    expect(new Webhook(secret).verify("{}", h)).toEqual({});
  }
});

test("the retry schedule: scaled, jittered ±10%, null once spent", () => {
  const schedule = [5000, 300_000, 1_800_000];
  expect(retryDelay(1, schedule, 1, () => 0)).toBe(4500);
  expect(retryDelay(1, schedule, 1, () => 1)).toBe(5500);
  expect(retryDelay(2, schedule, 0.01, () => 0.5)).toBe(3000);
  expect(retryDelay(3, schedule, 1, () => 0.5)).toBe(1_800_000);
  expect(retryDelay(4, schedule, 1)).toBeNull();
});
