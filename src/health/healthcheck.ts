/**
 * The container HEALTHCHECK: exits 0 when this container's process answers
 * `GET /health/live` with 200 within 3 s, else 1. It probes the port the process serves health
 * on: `PORT` for an API (`PROCESS_ROLE` all or api), `HEALTH_PORT` for a worker.
 * Liveness, not readiness: a Redis outage must not get every container replaced.
 */
const role = process.env.PROCESS_ROLE || 'all';
const port =
  role === 'worker' ? process.env.HEALTH_PORT : process.env.PORT || '3000';

if (!port) {
  console.error('healthcheck: a worker needs HEALTH_PORT to be checked');
  process.exit(1);
}

fetch(`http://127.0.0.1:${port}/health/live`, {
  signal: AbortSignal.timeout(3000),
}).then(
  (res) => process.exit(res.status === 200 ? 0 : 1),
  (error: unknown) => {
    console.error(`healthcheck: ${String(error)}`);
    process.exit(1);
  },
);
