/**
 * PostgreSQL connections through Bun's built-in SQL client (see docs/BENCHMARKS.md, "PostgreSQL driver"):
 * prepared statements, pipelining and LISTEN/NOTIFY without a dependency.
 */
import { SQL } from "bun";
import { DatabaseOpenError } from "../client";

/** True for a `DATABASE_URL` that names PostgreSQL (`postgres://` or `postgresql://`). */
export function isPostgresUrl(url: string): boolean {
  return /^postgres(ql)?:\/\//i.test(url);
}

/** The URL without its password, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = "***";
    return u.toString();
  } catch {
    return "DATABASE_URL";
  }
}

export type PgOptions = {
  /** Connections in the pool. @defaultValue 10 */
  max?: number;
  /** Shown in pg_stat_activity, so an operator can tell Easel's connections apart. @defaultValue "easel" */
  applicationName?: string;
  /** Session settings sent when each connection opens (e.g. `{ synchronous_commit: "off" }`). */
  settings?: Record<string, string>;
};

/**
 * A pool on `url`, checked with one round trip: throws DatabaseOpenError (one line naming the server, the
 * reason and what to do) when the server cannot be reached or refuses the login, instead of failing later
 * on the first query.
 */
export async function connectPg(url: string, opts: PgOptions = {}): Promise<SQL> {
  const sql = new SQL(url, {
    max: opts.max ?? 10,
    // JIT off: Easel's statements are short index lookups and small writes. With PostgreSQL's default (JIT
    // above a plan cost of 100,000), the instant claim's take, estimated high over a large backlog, spent
    // ~25-30 ms compiling itself against ~3 ms to run (docs/BENCHMARKS.md, "PostgreSQL's JIT compiled a claim
    // group's take for 10× longer than it ran").
    connection: { jit: "off", ...opts.settings, application_name: opts.applicationName ?? "easel" },
  });
  try {
    await sql`SELECT 1`;
  } catch (err) {
    await sql.close().catch(() => {});
    throw new DatabaseOpenError(redactUrl(url), connectFailure(err), { cause: err });
  }
  return sql;
}

function connectFailure(err: unknown): string {
  const code = String((err as { code?: unknown }).code ?? "");
  const reason = (err as Error).message ?? String(err);
  if (/AUTH|PASSWORD/i.test(code) || /password|authentication/i.test(reason)) {
    return `refused the login (${reason}): check the user and password in DATABASE_URL`;
  }
  return `cannot be reached (${reason}): check that PostgreSQL runs there and DATABASE_URL names it`;
}
