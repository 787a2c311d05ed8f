import { ChildProcess, spawn } from 'child_process';
import type { ServerResponse } from 'http';
import { resolve } from 'path';
import { Webhook } from 'standardwebhooks';
import { deliveryApi } from './support/delivery-api';
import {
  E2E_BULL_PREFIX,
  E2E_ENCRYPTION_KEYS,
  E2eApp,
  e2eDatabaseUrl,
  e2eRedisUrl,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/** The worker's request timeout; its lease on a delivery is this plus 10 s. */
const TIMEOUT_MS = 2_000;
const LEASE_MARGIN_MS = 2_000;
const LEASE_MS = TIMEOUT_MS + LEASE_MARGIN_MS;

/** A worker running as its own OS process, as in production. */
interface WorkerProcess {
  child: ChildProcess;
  output: () => string;
  exited: Promise<unknown>;
}

const workers: WorkerProcess[] = [];

/** Starts `src/main.ts` as a worker-only process; resolves once it processes jobs. */
async function startWorker(): Promise<WorkerProcess> {
  const child = spawn(
    process.execPath,
    ['-r', 'ts-node/register/transpile-only', 'src/main.ts'],
    {
      cwd: resolve(__dirname, '..'),
      env: {
        ...process.env,
        PROCESS_ROLE: 'worker',
        DATABASE_URL: e2eDatabaseUrl(),
        REDIS_URL: e2eRedisUrl(),
        BULL_PREFIX: E2E_BULL_PREFIX,
        SECRETS_ENCRYPTION_KEYS: E2E_ENCRYPTION_KEYS,
        WEBHOOK_ALLOW_SUBNETS: '127.0.0.0/8,::1/128',
        WEBHOOK_RETRY_SCHEDULE_MS: '0,200,400,600',
        WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS),
        DELIVERY_LEASE_MARGIN_MS: String(LEASE_MARGIN_MS),
        RECONCILE_INTERVAL_MS: '1000',
        BULL_STALLED_INTERVAL_MS: '1000',
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise((done) => child.once('exit', done));
  const worker = { child, output: () => output, exited };
  workers.push(worker);
  await eventually(
    () => {
      if (child.exitCode !== null)
        throw new Error(`worker exited early:\n${output}`);
      return output.includes('worker started');
    },
    'the worker process to start',
    30_000,
  );
  return worker;
}

/** SIGKILLs a worker that is still running and waits for it to be gone. */
async function kill(worker: WorkerProcess): Promise<void> {
  if (worker.child.exitCode === null && worker.child.signalCode === null) {
    worker.child.kill('SIGKILL');
  }
  await worker.exited;
}

// A crashed jest run must not leave workers behind either.
process.once('exit', () => workers.forEach((w) => w.child.kill('SIGKILL')));

describe('when a worker is killed while a delivery is in flight', () => {
  let svc: E2eApp;
  let receiver: Receiver;
  let held: ServerResponse | undefined;
  let heldClosed = false;
  let first: WorkerProcess;

  beforeAll(async () => {
    svc = await startE2eApp({ role: 'api' });
    first = await startWorker();
    receiver = await startReceiver((n, _r, res) => {
      if (n > 0) return void res.end('ok');
      // Hold the first request open until its sender goes away.
      held = res;
      res.on('close', () => (heldClosed = true));
    });
  });

  afterAll(async () => {
    await Promise.all(workers.map(kill));
    await receiver?.close();
    await svc?.close();
  });

  it('should redeliver the same message after the lease and record the attempt as interrupted', async () => {
    const client = deliveryApi(svc, await svc.createAccount());
    const endpoint = await client.createEndpoint(receiver.url);
    const event = await client.publish('trip.delayed', { minutes: 40 });

    await eventually(() => held, 'the first request');
    const sending = await client.deliveryWhen(
      event.id,
      (d) => d.attempts.length === 1,
      'the first attempt to be claimed',
    );
    expect(sending).toMatchObject({ status: 'sending', attemptCount: 1 });
    expect(sending.attempts[0]).toMatchObject({ status: 'in_progress' });

    await kill(first);
    const killedAt = Date.now();
    await eventually(() => heldClosed, 'the killed worker to drop the request');
    await startWorker();

    const delivery = await client.deliveryWhen(
      event.id,
      (d) => d.status === 'succeeded',
      'the redelivery to succeed',
      LEASE_MS + 15_000,
    );
    expect(receiver.received).toHaveLength(2);
    const webhook = new Webhook(endpoint.secret);
    for (const got of receiver.received) {
      expect(got.headers['webhook-id']).toBe(event.id);
      expect(webhook.verify(got.body, got.headers as any)).toMatchObject({
        type: 'trip.delayed',
        data: { minutes: 40 },
      });
    }
    // The dead worker's lease, taken before the kill, had to run out first.
    const [firstAt, secondAt] = receiver.received.map((got) => got.at);
    expect(secondAt - firstAt).toBeGreaterThanOrEqual(LEASE_MS - 500);
    expect(secondAt).toBeGreaterThan(killedAt);
    expect(
      Number(receiver.received[1].headers['webhook-timestamp']),
    ).toBeGreaterThan(
      Number(receiver.received[0].headers['webhook-timestamp']),
    );

    expect(delivery).toMatchObject({
      status: 'succeeded',
      attemptCount: 2,
      lastStatusCode: 200,
    });
    expect(delivery.attempts).toHaveLength(2);
    expect(delivery.attempts[0]).toMatchObject({
      number: 1,
      trigger: 'scheduled',
      status: 'interrupted',
      errorClass: 'interrupted',
      statusCode: null,
    });
    expect(delivery.attempts[0].finishedAt).not.toBeNull();
    expect(delivery.attempts[1]).toMatchObject({
      number: 2,
      trigger: 'scheduled',
      status: 'succeeded',
      statusCode: 200,
    });
  });
});
