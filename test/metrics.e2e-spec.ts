import request from 'supertest';
import { DelayFlow, runDelayFlow } from './support/delay-flow';
import { ADMIN_TOKEN, E2eApp, startE2eApp } from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/i;

/** `name{labels} value` lines of a Prometheus exposition, comments left out. */
function samples(
  text: string,
): { name: string; labels: string; value: number }[] {
  return text
    .split('\n')
    .filter((line) => line && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][\w:]*)(\{.*\})? (\S+)$/.exec(line);
      if (!match) throw new Error(`not a sample line: ${line}`);
      return {
        name: match[1],
        labels: match[2] ?? '',
        value: Number(match[3]),
      };
    });
}

function value(text: string, name: string, labels = ''): number | undefined {
  return samples(text).find((s) => s.name === name && s.labels === labels)
    ?.value;
}

describe('when Prometheus scrapes the service', () => {
  let svc: E2eApp;
  let worker: E2eApp | undefined;
  let receiver: Receiver;
  let flow: DelayFlow;
  const admin = { authorization: `Bearer ${ADMIN_TOKEN}` };

  beforeAll(async () => {
    svc = await startE2eApp();
    receiver = await startReceiver();
    flow = await runDelayFlow(svc, receiver, 'metrics-flow-1');
  });

  afterAll(async () => {
    await worker?.close();
    await svc?.close();
    await receiver?.close();
  });

  const scrape = async () =>
    (await request(svc.url).get('/metrics').set(admin).expect(200)).text;

  it('should refuse GET /metrics without the admin token, an API key included', async () => {
    await request(svc.url).get('/metrics').expect(401);
    await request(svc.url).get('/metrics').set(flow.tenant.auth).expect(401);
    await request(svc.url)
      .get('/metrics')
      .set({ authorization: 'Bearer not-the-admin-token' })
      .expect(401);
  });

  it('should publish every metric of the flow, the route as its template', async () => {
    const res = await request(svc.url).get('/metrics').set(admin).expect(200);
    expect(res.headers['content-type']).toMatch(
      /^text\/plain; charset=utf-8; version=0\.0\.4$/,
    );
    const text = res.text;
    expect(
      value(
        text,
        'http_request_duration_seconds_count',
        '{method="POST",route="/v1/trips/:id/delays",status_code="201"}',
      ),
    ).toBe(1);
    expect(
      value(text, 'transactional_transactions_total', '{outcome="committed"}'),
    ).toBeGreaterThanOrEqual(4);
    const queue = '{queue="webhook-deliveries"}';
    for (const name of [
      'transactional_jobs_deferred_total',
      'transactional_jobs_flushed_total',
    ]) {
      expect(value(text, name, queue)).toBeGreaterThanOrEqual(1);
    }
    expect(
      value(text, 'transactional_jobs_dropped_on_rollback_total', queue),
    ).toBe(0);
    expect(value(text, 'transactional_jobs_flush_failed_total', queue)).toBe(0);
    expect(
      value(text, 'webhook_deliveries_total', '{outcome="succeeded"}'),
    ).toBe(1);
    expect(
      value(text, 'webhook_attempt_duration_seconds_count', '{result="2xx"}'),
    ).toBe(1);
    for (const name of [
      'transactional_transactions_total',
      'transactional_jobs_left_to_relay_total',
      'transactional_jobs_late_marked_total',
      'transactional_outbox_pending',
      'transactional_outbox_oldest_pending_age_seconds',
      'transactional_outbox_failing',
      'transactional_outbox_relay_polls_total',
      'transactional_outbox_relay_batches_total',
      'transactional_outbox_relayed_jobs_total',
      'webhook_endpoints_disabled',
      'webhook_delivery_backlog_age_seconds',
      'webhook_queue_jobs',
      'process_cpu_seconds_total',
    ]) {
      expect(samples(text).some((s) => s.name === name)).toBe(true);
    }
    expect(value(text, 'webhook_queue_jobs', '{state="failed"}')).toBe(0);
  });

  it('should show how far the workers are behind: the age of the oldest due delivery', async () => {
    const backlog = async () =>
      value(await scrape(), 'webhook_delivery_backlog_age_seconds');
    // NOTE: the run's specs share the database: due deliveries that earlier specs left behind
    // (their apps are gone) are moved a day ahead, so that the gauge shows only this one.
    await svc.dataSource.query(
      `UPDATE deliveries SET next_attempt_at = now() + interval '1 day'
        WHERE status = 'pending' AND next_attempt_at <= now()`,
    );
    expect(await backlog()).toBe(0);
    // The flow's delivery, made due 10 s ago and not sent (the reconciler waits 30 s for it).
    await svc.dataSource.query(
      `UPDATE deliveries SET status = 'pending', next_attempt_at = now() - interval '10 seconds'
        WHERE event_id = $1`,
      [flow.eventId],
    );
    try {
      const age = await backlog();
      expect(age).toBeGreaterThanOrEqual(10);
      expect(age).toBeLessThan(20);
    } finally {
      await svc.dataSource.query(
        `UPDATE deliveries SET status = 'succeeded', next_attempt_at = NULL WHERE event_id = $1`,
        [flow.eventId],
      );
    }
    expect(await backlog()).toBe(0);
  });

  it('should count a request that matched no route as unmatched, never by its path', async () => {
    await request(svc.url)
      .get(`/v1/trips/${flow.tripId}/no-such-thing`)
      .set(flow.tenant.auth)
      .expect(404);
    const text = await scrape();
    expect(
      value(
        text,
        'http_request_duration_seconds_count',
        '{method="GET",route="unmatched",status_code="404"}',
      ),
    ).toBeGreaterThanOrEqual(1);
  });

  it('should put no id and no URL in any label', async () => {
    // A path no route matches, full of ids, and the dashboard's API (Express routes of its own).
    await request(svc.url)
      .get(`/v1/accounts/${flow.tenant.id}/${flow.eventId}`)
      .expect(404);
    await request(svc.url)
      .get('/admin/queues/api/queues')
      .set(admin)
      .expect(200);
    const text = await scrape();
    const labels = samples(text)
      .map((s) => s.labels)
      .join('\n');
    expect(labels).not.toMatch(UUID);
    for (const known of [
      flow.tenant.id,
      flow.endpointId,
      flow.tripId,
      flow.eventId,
      flow.requestId,
      new URL(receiver.url).host,
      '/hook',
      'http://',
    ]) {
      expect(labels).not.toContain(known);
    }
  });

  it('should refuse metrics with 403 while no ADMIN_TOKEN is set', async () => {
    const open = await startE2eApp({ adminToken: undefined });
    try {
      const res = await request(open.url)
        .get('/metrics')
        .set(admin)
        .expect(403);
      expect(res.body.message).toBe(
        'Admin routes (account creation, metrics) are disabled: the server has no ' +
          'ADMIN_TOKEN set',
      );
    } finally {
      await open.close();
    }
  });

  it("should serve a worker process's metrics on its health port, behind the admin token", async () => {
    // A worker-only process listens on HEALTH_PORT for health checks and metrics alone.
    worker = await startE2eApp({ role: 'worker' });
    const url = worker.url;
    await request(url).get('/metrics').expect(401);
    await request(url).get('/v1/endpoints').set(admin).expect(404);
    const res = await request(url).get('/metrics').set(admin).expect(200);
    expect(res.text).toContain('# TYPE webhook_deliveries_total counter');
    expect(res.text).toContain(
      '# TYPE transactional_jobs_deferred_total counter',
    );
  });
});
