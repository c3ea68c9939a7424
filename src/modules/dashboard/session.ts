/**
 * Dashboard sessions: a signed JWT in an httpOnly, SameSite=Strict cookie. Its audience and scope are the
 * dashboard's and its key is derived apart from the client-token key, so a session cookie is never accepted
 * as a bearer token and a client token is never accepted as a session. Each session is also a row in
 * `dashboard_sessions`, checked on every request, so signing out holds across restarts.
 *
 * State-changing requests need the cookie, a CSRF token bound to the session (hidden form field or
 * `X-CSRF-Token`), and must not come from another site (Origin / Sec-Fetch-Site).
 */
import { timingSafeEqual } from "node:crypto";
import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import type { Sql } from "../../db/sql";
import { SessionRepository } from "./repository";

export const COOKIE_NAME = "easel_session";
export const COOKIE_PATH = "/dashboard";
const AUDIENCE = "easel-dashboard";
const ISSUER = "easel";
const SCOPE = "dashboard";

export type Session = { sid: string; userId: string; keyId: string; expiresAt: number };

export type SessionOptions = {
  sql: Sql;
  /** Base secret (JWT_SECRET, or one generated into the data dir). */
  secret: string;
  ttlSeconds: number;
  /** Sets the cookie's Secure flag (the public URL is https). */
  secure: boolean;
  now?: () => number;
};

/** HMAC-SHA256, synchronous (Bun.CryptoHasher takes the key): cheap enough for every request. */
function hmac(key: Uint8Array<ArrayBuffer> | string, data: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new Bun.CryptoHasher("sha256", key).update(data).digest());
}

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export class DashboardSessions {
  readonly #o: SessionOptions;
  readonly #now: () => number;
  #key: Uint8Array<ArrayBuffer> | null = null;
  readonly #sessions: SessionRepository;

  constructor(opts: SessionOptions) {
    this.#o = opts;
    this.#now = opts.now ?? Date.now;
    this.#sessions = new SessionRepository(opts.sql);
  }

  /** The signing key: derived from the base secret, so it differs from the client-token key. */
  #signingKey(): Uint8Array<ArrayBuffer> {
    this.#key ??= hmac(this.#o.secret, "easel dashboard session v1");
    return this.#key;
  }

  async issue(userId: string, keyId: string): Promise<{ token: string; session: Session }> {
    const now = this.#now();
    const iat = Math.floor(now / 1000);
    const exp = iat + this.#o.ttlSeconds;
    const sid = Bun.randomUUIDv7();
    // Rows past their expiry can never verify again: signing in is a fine moment to drop them.
    await this.#sessions.deleteExpired(now);
    await this.#sessions.insert({ id: sid, userId, keyId, createdAt: now, expiresAt: exp * 1000 });
    const token = await new SignJWT({ scope: SCOPE, kid: keyId })
      .setProtectedHeader({ alg: "HS256" })
      .setSubject(userId)
      .setJti(sid)
      .setAudience(AUDIENCE)
      .setIssuer(ISSUER)
      .setIssuedAt(iat)
      .setExpirationTime(exp)
      .sign(this.#signingKey());
    return { token, session: { sid, userId, keyId, expiresAt: exp * 1000 } };
  }

  async verify(token: string | undefined | null): Promise<Session | null> {
    if (!token) return null;
    try {
      const { payload } = await jwtVerify(token, this.#signingKey(), {
        algorithms: ["HS256"],
        audience: AUDIENCE,
        issuer: ISSUER,
        currentDate: new Date(this.#now()),
      });
      if (payload.scope !== SCOPE || !payload.sub || !payload.jti || typeof payload.kid !== "string")
        return null;
      if (!(await this.#sessions.live(payload.jti, this.#now()))) return null;
      return {
        sid: payload.jti,
        userId: payload.sub,
        keyId: payload.kid,
        expiresAt: (payload.exp ?? 0) * 1000,
      };
    } catch (err) {
      if (err instanceof joseErrors.JOSEError) return null;
      throw err;
    }
  }

  /** Signs a session out for good: its cookie is refused from now on, after restarts too. */
  revoke(session: Session): Promise<void> {
    return this.#sessions.revoke(session.sid, this.#now());
  }

  /** The CSRF token of a session: an HMAC of its id, so nothing needs storing. */
  async csrfToken(session: Session): Promise<string> {
    return Buffer.from(hmac(this.#signingKey(), `csrf:${session.sid}`)).toString("base64url");
  }

  async checkCsrf(session: Session, token: string | undefined | null): Promise<boolean> {
    return typeof token === "string" && equal(token, await this.csrfToken(session));
  }

  cookie(token: string): string {
    return this.#cookie(token, this.#o.ttlSeconds);
  }

  clearCookie(): string {
    return this.#cookie("", 0);
  }

  #cookie(value: string, maxAge: number): string {
    const secure = this.#o.secure ? "; Secure" : "";
    return `${COOKIE_NAME}=${value}; Path=${COOKIE_PATH}; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${secure}`;
  }
}

/** The session cookie's value from a Cookie header. */
export function sessionCookie(header: string | null | undefined): string | null {
  for (const part of (header ?? "").split(";")) {
    const [name, ...rest] = part.trim().split("=");
    if (name === COOKIE_NAME) return rest.join("=") || null;
  }
  return null;
}

/**
 * False when a browser says the request comes from another site. Origin must name this server (as the
 * request reached it, or its public URL); without Origin, Sec-Fetch-Site must not be cross-site. Clients
 * that send neither (curl, scripts) still need the CSRF token.
 */
export function isSameOrigin(request: Request, publicUrl: string): boolean {
  const origin = request.headers.get("origin");
  if (origin !== null) {
    if (origin === "null") return false;
    const host = request.headers.get("host");
    const allowed = new Set([new URL(publicUrl).origin]);
    if (host) allowed.add(`${new URL(request.url).protocol}//${host}`);
    return allowed.has(origin);
  }
  const site = request.headers.get("sec-fetch-site");
  return site === null || site === "same-origin" || site === "none";
}
