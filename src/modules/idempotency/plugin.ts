import { type DocumentDecoration, Elysia } from "elysia";
import type { Principal } from "../auth/service";
import {
  type IdempotencyService,
  type IdempotentAnswer,
  NO_KEY,
  type Reservation,
  requestFingerprint,
} from "./service";

/** Where a route's reservation waits between its resolve and its after-handle / error hooks. */
const held = new WeakMap<Request, Reservation>();

/**
 * `Idempotency-Key` for a route, as a macro: `{ auth: …, idempotent: 201 }` (the route's success status; list
 * it after `auth`, whose caller it needs). Before the handler runs the key is reserved, or the stored answer
 * replayed; the handler gets `idem`, whose `commit(body)` its work calls inside its own transaction; after it,
 * the answer is stored (if the work did not), or on an error `settleFailedRequest` stores or frees the key.
 */
export const idempotencyPlugin = (svc: IdempotencyService) =>
  new Elysia({ name: "idempotency" }).macro({
    idempotent: (successStatus: number) => ({
      // Read by the OpenAPI document (modules/docs), so the header is documented where it is accepted.
      detail: { "x-idempotent": true } as DocumentDecoration,
      async resolve({ headers, request, body, set, ...rest }): Promise<{ idem: IdempotentAnswer }> {
        set.status = successStatus;
        const key = headers["idempotency-key"];
        const principal = (rest as { principal?: Principal }).principal;
        if (!key || !principal) return { idem: NO_KEY };
        const hash = await requestFingerprint(request.method, new URL(request.url).pathname, body);
        const reservation = await svc.reserve(principal.user.id, key, hash);
        held.set(request, reservation);
        return { idem: reservation.answer(successStatus) };
      },
      async afterHandle({ request, response, set }) {
        const reservation = held.get(request);
        if (!reservation) return;
        held.delete(request);
        await reservation.settle(typeof set.status === "number" ? set.status : successStatus, response);
      },
    }),
  });

/**
 * Settles the key of a request whose handler threw: a client error becomes the stored answer, anything else
 * gives the key back. Called first by the app's global error handler (a route's own error hook would run only
 * after the global one had already answered).
 */
export async function settleFailedRequest(request: Request, error: unknown): Promise<void> {
  const reservation = held.get(request);
  if (!reservation) return;
  held.delete(request);
  await reservation.fail(error);
}
