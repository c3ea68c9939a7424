import { beforeAll, describe, expect, test } from "bun:test";
import { openDb } from "../../src/db/client";
import type { ApiKey, User } from "../../src/db/schema";
import { sqliteClient } from "../../src/db/sqlite";
import { KeyService } from "../../src/modules/auth/keys";
import { escapeHtml, html, raw } from "../../src/modules/dashboard/html";
import { DashboardSessions, isSameOrigin, sessionCookie } from "../../src/modules/dashboard/session";
import { UserService } from "../../src/modules/users/service";

describe("html", () => {
  test("escapes every interpolation unless it is itself html", () => {
    const name = `<script>alert("x")</script>&'`;
    const out = html`<p title="${name}">${name}</p>${html`<b>${name}</b>`}${raw("<i>ok</i>")}`;
    expect(out.toString()).toBe(
      `<p title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;</p>` +
        `<b>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;</b><i>ok</i>`,
    );
  });

  test("joins arrays and drops null, undefined and false", () => {
    expect(
      html`${["a", "<b>"].map((x) => html`<li>${x}</li>`)}${null}${undefined}${false}${0}`.toString(),
    ).toBe("<li>a</li><li>&lt;b&gt;</li>0");
    expect(escapeHtml("plain")).toBe("plain");
  });
});

describe("DashboardSessions", () => {
  // Sessions are rows naming a real user and key (foreign keys): one of each in an in-memory database.
  const sql = sqliteClient(openDb(":memory:").$client);
  let user: User;
  let key: ApiKey;
  beforeAll(async () => {
    user = await new UserService(sql).create({ name: "ops", role: "admin" });
    key = (await new KeyService(sql, Date.now).create(user.id, "ops")).row;
  });
  const make = (now: () => number, secret = "s".repeat(40)) =>
    new DashboardSessions({ sql, secret, ttlSeconds: 60, secure: false, now });

  test("issues and verifies a session; expiry, another secret and sign-out end it", async () => {
    let t = 1_700_000_000_000;
    const sessions = make(() => t);
    const { token, session } = await sessions.issue(user.id, key.id);
    expect(await sessions.verify(token)).toEqual(session);
    expect(await make(() => t, "t".repeat(40)).verify(token)).toBeNull();
    expect(await sessions.verify(`${token}x`)).toBeNull();
    t += 61_000;
    expect(await sessions.verify(token)).toBeNull();
    t -= 61_000;
    await sessions.revoke(session);
    expect(await sessions.verify(token)).toBeNull();
  });

  test("a sign-out is kept in the database: another instance on it (a restart) refuses the cookie", async () => {
    const before = make(Date.now);
    const out = await before.issue(user.id, key.id);
    const kept = await before.issue(user.id, key.id);
    await before.revoke(out.session);
    const after = make(Date.now);
    expect(await after.verify(out.token)).toBeNull();
    expect(await after.verify(kept.token)).toEqual(kept.session);
  });

  test("refuses a token signed with the base secret directly (a client token's key)", async () => {
    const { SignJWT } = await import("jose");
    const secret = "s".repeat(40);
    const forged = await new SignJWT({ scope: "dashboard", kid: "key-1" })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject("user-1")
      .setJti("x")
      .setAudience("easel-dashboard")
      .setIssuer("easel")
      .setExpirationTime("1h")
      .sign(new TextEncoder().encode(secret));
    expect(await make(Date.now, secret).verify(forged)).toBeNull();
  });

  test("the CSRF token is bound to the session", async () => {
    const sessions = make(Date.now);
    const a = await sessions.issue(user.id, key.id);
    const b = await sessions.issue(user.id, key.id);
    const token = await sessions.csrfToken(a.session);
    expect(await sessions.checkCsrf(a.session, token)).toBe(true);
    expect(await sessions.checkCsrf(b.session, token)).toBe(false);
    expect(await sessions.checkCsrf(a.session, undefined)).toBe(false);
    const tampered = `${token[0] === "A" ? "B" : "A"}${token.slice(1)}`;
    expect(await sessions.checkCsrf(a.session, tampered)).toBe(false);
  });

  test("the cookie is httpOnly and SameSite=Strict, scoped to /dashboard, Secure behind https", () => {
    expect(make(Date.now).cookie("abc")).toBe(
      "easel_session=abc; Path=/dashboard; Max-Age=60; HttpOnly; SameSite=Strict",
    );
    const secure = new DashboardSessions({ sql, secret: "s".repeat(40), ttlSeconds: 60, secure: true });
    expect(secure.cookie("abc")).toEndWith("; Secure");
    expect(sessionCookie("a=1; easel_session=tok.en=; b=2")).toBe("tok.en=");
    expect(sessionCookie("a=1")).toBeNull();
  });
});

describe("isSameOrigin", () => {
  const req = (headers: Record<string, string>) =>
    new Request("http://127.0.0.1:3000/dashboard/logout", {
      method: "POST",
      headers: { host: "127.0.0.1:3000", ...headers },
    });
  const publicUrl = "https://easel.example";

  test("accepts this server's origin (as reached, or its public URL) and same-origin fetches", () => {
    expect(isSameOrigin(req({ origin: "http://127.0.0.1:3000" }), publicUrl)).toBe(true);
    expect(isSameOrigin(req({ origin: "https://easel.example" }), publicUrl)).toBe(true);
    expect(isSameOrigin(req({ "sec-fetch-site": "same-origin" }), publicUrl)).toBe(true);
    expect(isSameOrigin(req({}), publicUrl)).toBe(true);
  });

  test("refuses other origins, opaque origins and cross-site fetches", () => {
    expect(isSameOrigin(req({ origin: "https://evil.example" }), publicUrl)).toBe(false);
    expect(isSameOrigin(req({ origin: "null" }), publicUrl)).toBe(false);
    expect(isSameOrigin(req({ "sec-fetch-site": "cross-site" }), publicUrl)).toBe(false);
    expect(isSameOrigin(req({ "sec-fetch-site": "same-site" }), publicUrl)).toBe(false);
  });
});
