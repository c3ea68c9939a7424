/** How the dashboard answers: HTML with its security headers, and redirects. */
import type { Html } from "./html";

/** Only this origin's scripts and styles; images may come from storage on another host. */
function securityHeaders(request: Request): Record<string, string> {
  const host = request.headers.get("host") ?? new URL(request.url).host;
  return {
    "content-security-policy": [
      "default-src 'self'",
      "img-src 'self' data: blob: http: https:",
      `connect-src 'self' ws://${host} wss://${host}`,
      "script-src 'self'",
      "style-src 'self'",
      "object-src 'none'",
      "base-uri 'none'",
      "form-action 'self'",
      "frame-ancestors 'none'",
    ].join("; "),
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "cache-control": "no-store",
  };
}

/** A page or fragment, with the security headers. */
export function htmlResponse(
  request: Request,
  body: Html,
  status = 200,
  extra: Record<string, string> = {},
): Response {
  return new Response(body.toString(), {
    status,
    headers: { "content-type": "text/html; charset=utf-8", ...securityHeaders(request), ...extra },
  });
}

/** A 303 (after a form post, or to sign in), never cached. */
export function redirect(location: string, extra: Record<string, string> = {}): Response {
  return new Response(null, { status: 303, headers: { location, "cache-control": "no-store", ...extra } });
}
