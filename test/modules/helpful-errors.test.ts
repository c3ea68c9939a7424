/**
 * Errors an app developer can act on, over real HTTP: a misspelt field is refused naming the nearest known
 * one (never silently ignored), JSON sent without its Content-Type is read as JSON, enum errors list the valid
 * values, a missing recipe variable says "missing", the wrong method is a 405 with `Allow`, and messages
 * say how to fix what they refuse.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createUser, expectStatus } from "../fixtures/backlog";
import { startTestServer, type TestServer } from "../helpers";

type ErrorBody = { error: { code: string; message: string; details?: { path: string; message: string }[] } };

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer({ env: { BACKLOG_CRON: "0 0 1 1 *" } });
});
afterAll(() => server.close());

const generate = (json: unknown) => server.api("/api/jobs/generate-image", { method: "POST", json });

async function refused(res: Response, status: number, code: string): Promise<ErrorBody["error"]> {
  const body = await expectStatus<ErrorBody>(res, status);
  expect(body.error.code).toBe(code);
  return body.error;
}

describe("unknown fields", () => {
  test("a misspelt field is a 400 naming it and the field meant", async () => {
    const err = await refused(await generate({ prompt: "a fox", sizee: "256x256" }), 400, "unknown_field");
    expect(err.message).toBe("unknown field `sizee` (did you mean `size`?)");
    expect(err.details?.[0]?.path).toBe("sizee");
  });

  test("inside a batch item the path says which item", async () => {
    const err = await refused(
      await generate({
        items: [
          { id: "p1", prompt: "x" },
          { id: "p2", promt: "y" },
        ],
      }),
      400,
      "unknown_field",
    );
    expect(err.message).toBe("unknown field `items.1.promt` (did you mean `prompt`?)");
  });

  test("a field like none of the known ones lists them instead", async () => {
    const err = await refused(
      await server.api("/api/generate/instant", { method: "POST", json: { recipeId: "r", colour: "red" } }),
      400,
      "unknown_field",
    );
    expect(err.message).toBe("unknown field `colour`; known fields: `recipeId`, `userId`");
  });

  test("other routes' bodies are strict too", async () => {
    const err = await refused(
      await server.api("/api/cards", { method: "POST", json: { templat: "poll", data: {} } }),
      400,
      "unknown_field",
    );
    expect(err.message).toContain("did you mean `template`?");
  });
});

describe("bodies sent without a JSON content type", () => {
  const body = JSON.stringify({ prompt: "a fox", size: "256x256" });
  const send = (headers: Record<string, string>, raw: string | Uint8Array = body) =>
    server.api("/api/jobs/generate-image", { method: "POST", headers, body: raw });

  test("JSON with no Content-Type at all is read as JSON", async () => {
    const res = await send({}, new TextEncoder().encode(body));
    expect(res.headers.get("content-type") ?? "").toContain("json");
    expect((await expectStatus<{ jobId: string }>(res, 202)).jobId).toBeString();
  });

  test("JSON labelled as a form (curl -d) or as text is read as JSON", async () => {
    await expectStatus(await send({ "content-type": "application/x-www-form-urlencoded" }), 202);
    await expectStatus(await send({ "content-type": "text/plain;charset=utf-8" }), 202);
  });

  test("something else with no Content-Type is a 415 saying what to send", async () => {
    const err = await refused(
      await send({}, new TextEncoder().encode("prompt=a fox")),
      415,
      "unsupported_media_type",
    );
    expect(err.message).toContain("Content-Type: application/json");
  });

  test("a malformed multipart upload is told it is malformed multipart, not invalid JSON", async () => {
    const res = await server.api("/api/jobs/generate-image/upload", {
      method: "POST",
      headers: { "content-type": "multipart/form-data; boundary=XYZ" },
      body: '--XYZ\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na fox',
    });
    const err = await refused(res, 400, "invalid_body");
    expect(err.message).toContain("multipart/form-data body is malformed");
    expect(err.message).not.toContain("JSON");
  });
});

describe("enum errors list the valid values", () => {
  test("an unknown output preset names the presets", async () => {
    const err = await refused(
      await generate({ prompt: "x", output: "poster-9000" }),
      422,
      "validation_failed",
    );
    expect(err.message).toStartWith("body field 'output': must be one of `original`, ");
    expect(err.message).toContain("`og-1200x630`");
    expect(err.message).toEndWith("or an inline object");
  });

  test("providers and card templates list theirs the same way", async () => {
    const provider = await refused(
      await generate({ prompt: "x", provider: "dalle-9" }),
      422,
      "provider_not_found",
    );
    expect(provider.message).toStartWith('unknown provider "dalle-9": must be one of `openai`, ');
    expect(provider.message).toContain("`placeholder`");
    const unset = await refused(
      await generate({ prompt: "x", provider: "openai" }),
      422,
      "provider_not_configured",
    );
    expect(unset.message).toBe(
      'provider "openai" is not configured (set its key or URL); configured here: placeholder',
    );
    const template = await refused(
      await server.api("/api/cards", { method: "POST", json: { template: "pie", data: {} } }),
      422,
      "unknown_template",
    );
    expect(template.message).toBe('unknown card template "pie": must be one of `poll`, `og`');
  });

  test("a webhook event filter names the events", async () => {
    const err = await refused(
      await server.api("/api/webhooks", {
        method: "POST",
        json: { url: "https://example.com/hook", events: ["job.done"] },
      }),
      422,
      "validation_failed",
    );
    expect(err.message).toContain("must be one of `job.started`, `job.progress`, `job.completed`");
  });

  test("a missing required field says missing", async () => {
    const err = await refused(
      await server.api("/api/users", { method: "POST", json: { role: "user" } }),
      422,
      "validation_failed",
    );
    expect(err.message).toBe("body field 'name': missing");
  });
});

describe("recipe variables", () => {
  beforeAll(async () => {
    await expectStatus(
      await server.api("/api/recipes", {
        method: "POST",
        json: {
          id: "pet",
          name: "Pet",
          promptTemplate: "a {{animal}} in a {{hat}}",
          variables: [
            { name: "animal", type: "enum", required: true, options: [{ value: "cat" }, { value: "dog" }] },
            { name: "hat", type: "string", default: "beret" },
          ],
          creditCost: 1,
          backlogMin: 0,
        },
      }),
      201,
    );
  });

  test("a missing required variable says missing, with its options", async () => {
    const err = await refused(await generate({ recipeId: "pet" }), 422, "invalid_variables");
    expect(err.message).toBe("variable 'animal': missing (one of `cat`, `dog`)");
  });

  test("a wrong option lists the options; a misspelt variable names the one meant", async () => {
    const wrong = await refused(
      await generate({ recipeId: "pet", variables: { animal: "cow" } }),
      422,
      "invalid_variables",
    );
    expect(wrong.message).toBe("variable 'animal': must be one of `cat`, `dog`");
    const typo = await refused(
      await generate({ recipeId: "pet", variables: { animal: "cat", hta: "cap" } }),
      422,
      "invalid_variables",
    );
    expect(typo.message).toContain("unknown variable `hta` (did you mean `hat`?)");
  });
});

describe("methods", () => {
  test("the wrong method on a route is a 405 with Allow", async () => {
    const res = await server.api("/api/generate/instant");
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("POST");
    const body = (await res.json()) as ErrorBody;
    expect(body.error).toEqual({
      code: "method_not_allowed",
      message: "GET is not allowed on /api/generate/instant; use POST",
    });
  });

  test("a path with parameters lists every method it answers", async () => {
    const res = await server.api("/api/recipes/pet", { method: "PUT", json: {} });
    expect(res.status).toBe(405);
    expect(res.headers.get("allow")).toBe("GET, HEAD, PATCH");
  });

  test("a path no route has is still a 404", async () => {
    await refused(await server.api("/api/nothing-here", { method: "POST", json: {} }), 404, "not_found");
  });
});

describe("messages that say how to fix it", () => {
  test("url_not_allowed says how to allow private URLs in development", async () => {
    const err = await refused(
      await generate({ prompt: "x", webhookUrl: "http://127.0.0.1:9/hook" }),
      422,
      "url_not_allowed",
    );
    expect(err.message).toContain("set ALLOW_PRIVATE_URLS=true");
    const endpoint = await refused(
      await server.api("/api/webhooks", { method: "POST", json: { url: "http://10.0.0.7/hook" } }),
      422,
      "url_not_allowed",
    );
    expect(endpoint.message).toContain("set ALLOW_PRIVATE_URLS=true");
  });

  test("a count agrees with its noun: needs 1 credit", async () => {
    const user = await createUser(server.api, { credits: 0 });
    const err = await refused(
      await server.api("/api/jobs/generate-image", { method: "POST", key: user.key, json: { prompt: "x" } }),
      402,
      "insufficient_credits",
    );
    expect(err.message).toBe("this needs 1 credit; 0 available");
  });

  test("metadata is capped and may not use Easel's own keys", async () => {
    const big = await refused(
      await generate({ prompt: "x", metadata: { blob: "x".repeat(17 * 1024) } }),
      422,
      "validation_failed",
    );
    expect(big.message).toContain("metadata is larger than 16384 bytes");
    const reserved = await refused(
      await generate({ prompt: "x", metadata: { keep: true } }),
      422,
      "validation_failed",
    );
    expect(reserved.message).toContain("may not use Easel's own keys");
  });
});
