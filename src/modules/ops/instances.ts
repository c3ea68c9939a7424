import { hostname } from "node:os";
import pkg from "../../../package.json";
import { INSTANCE_TTL_MS, type InstanceRegistry, keepAlive } from "../../db/pg/instances";
import type { Logger } from "../../log";

type Deps = {
  instances: InstanceRegistry;
  queue: { workerId: string; active(): unknown[] };
  log: Logger;
};

/**
 * Puts this process in `instances` under its worker id (the id its leases carry), heartbeats it with its
 * running-job count, and on each beat reaps rows whose heartbeat lapsed (a process killed without
 * deregistering), so the list shows who is really there. `stop()` deregisters (a clean shutdown).
 */
export async function runInstance(
  { instances, queue, log }: Deps,
  opts: { heartbeatMs?: number; now?: () => number } = {},
): Promise<{ stop(): Promise<void> }> {
  const now = opts.now ?? Date.now;
  const id = queue.workerId;
  const register = () => instances.register({ id, host: hostname(), version: pkg.version }, now());
  await register();
  await instances.reap(now(), INSTANCE_TTL_MS);
  const alive = keepAlive(instances, {
    id,
    intervalMs: opts.heartbeatMs,
    jobsRunning: () => queue.active().length,
    now,
    onReaped: () => {
      log.warn({ instance: id }, "this instance was taken for dead (heartbeat lapsed); registering again");
      register().catch((err) => log.error({ err }, "instance registration failed"));
    },
    onError: (err) => log.error({ err }, "instance heartbeat failed"),
  });
  const reaper = setInterval(() => {
    instances.reap(now(), INSTANCE_TTL_MS).catch((err) => log.error({ err }, "instance reap failed"));
  }, INSTANCE_TTL_MS);
  reaper.unref?.();
  return {
    async stop() {
      clearInterval(reaper);
      await alive.stop();
      await instances.deregister(id).catch((err) => log.error({ err }, "instance deregistration failed"));
    },
  };
}
