/**
 * What observability adds per request and per transaction, in isolation (ns per operation,
 * medians of 5 rounds): the library's span calls with `@opentelemetry/api` present but no SDK
 * (tracing off), one HTTP histogram observation (labels hashed, or a cached labelled child), and
 * one pino JSON line (a "request completed" line) to a null stream, with a JSON.stringify
 * baseline measured in the same run (the machine may be busy: compare ratios).
 * Run: npx ts-node bench/observability-cost.ts
 */
import pino from 'pino';
import { Writable } from 'stream';
import { Histogram, Registry } from 'prom-client';
import {
  endSpan,
  startSpan,
  withSpan,
} from '../libs/transactional/src/observability/tracing';

const N = 200_000;

function measure(name: string, op: () => void): void {
  const rounds: number[] = [];
  for (let r = 0; r < 5; r++) {
    for (let i = 0; i < 10_000; i++) op();
    const start = process.hrtime.bigint();
    for (let i = 0; i < N; i++) op();
    rounds.push(Number(process.hrtime.bigint() - start) / N);
  }
  rounds.sort((a, b) => a - b);
  console.log(`${name.padEnd(58)} ${rounds[2].toFixed(0).padStart(6)} ns/op`);
}

const transactionSpans = () => {
  const span = startSpan('transaction', 'internal', {
    'db.connection': 'default',
    'transaction.scope': 'TripsController.reportDelay',
    'transaction.isolation_level': 'default',
  });
  withSpan(span, () => {
    const enqueue = startSpan('q enqueue', 'producer', {
      'messaging.system': 'bull',
    });
    endSpan(enqueue, 'messaging.outcome', 'enqueued');
  });
  endSpan(span, 'transaction.outcome', 'commit');
};

measure('library spans per transaction, API present, no SDK', transactionSpans);

const registry = new Registry();
const histogram = new Histogram({
  name: 'http_request_duration_seconds',
  help: 'x',
  labelNames: ['method', 'route', 'status_code'],
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  registers: [registry],
});
measure('HTTP histogram observation (method, route, status)', () =>
  histogram.observe(
    { method: 'POST', route: '/v1/trips/:id/delays', status_code: 201 },
    0.0042,
  ),
);

const sink = new Writable({ write: (_c, _e, done) => done() });
const logger = pino({ level: 'info' }, sink).child({ reqId: 'abc-123' });
const req = { id: 'abc-123', method: 'POST', url: '/v1/trips/x/delays' };
measure('one pino JSON line (request completed)', () =>
  logger.info(
    { req, res: { statusCode: 201 }, responseTime: 4 },
    'request completed',
  ),
);

const child = histogram.labels({
  method: 'POST',
  route: '/v1/trips/:id/delays',
  status_code: 201,
});
const children = new Map([['POST /v1/trips/:id/delays 201', child]]);
measure('HTTP histogram observation, labelled child cached by key', () =>
  children.get(`${'POST'} ${'/v1/trips/:id/delays'} ${201}`)!.observe(0.0042),
);

// Baseline, to read the numbers above on a busy machine: one small JSON.stringify.
measure('baseline: JSON.stringify of a 3-field object', () =>
  JSON.stringify({ id: 'abc-123', method: 'POST', statusCode: 201 }),
);
