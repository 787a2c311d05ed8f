import { Queue } from 'bullmq';
import { TransactionalError } from '../src';
import {
  assertSupportedBullMQ,
  SUPPORTED_BULLMQ_MAJORS,
} from '../src/adapters/optional-peers';
import { createQueueAdapter } from '../src/adapters/queue-adapter.factory';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const pkg = require('../package.json') as {
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
};

describe('peer versions', () => {
  it('accepts the supported bullmq majors and refuses the others with an actionable message', () => {
    expect(SUPPORTED_BULLMQ_MAJORS).toEqual([5, 6]);
    for (const ok of ['5.0.0', '5.81.5', '6.7.0', '6.0.0-beta.1', undefined]) {
      expect(() => assertSupportedBullMQ(ok)).not.toThrow();
    }
    for (const bad of ['4.17.0', '7.0.0', '3.0.0', 'not-a-version']) {
      expect(() => assertSupportedBullMQ(bad)).toThrow(TransactionalError);
    }
    expect(() => assertSupportedBullMQ('7.1.0')).toThrow(
      'nestjs-transactional-jobs supports bullmq 5 and 6, but bullmq 7.1.0 is installed. ' +
        'Install a supported major (npm install bullmq@6).',
    );
  });

  it('wraps a queue of the installed bullmq (its version is supported)', async () => {
    const queue = new Queue('peer-versions', {
      connection: { lazyConnect: true },
    });
    try {
      expect(createQueueAdapter(queue, undefined, 'peer-versions').kind).toBe(
        'bullmq',
      );
    } finally {
      await queue.close();
    }
  });

  // npm (cli#8416) resolves the peers of an optional peer when it builds the peer set and fails
  // with ERESOLVE on their conflicts even though it never installs them: bullmq 6's optional peer
  // ioredis (>=5, resolved to 6) against typeorm 0.3's optional peer ioredis ^5.0.4 / ^4.28.3, and
  // a mysql2 range against typeorm 0.3.0-0.3.11's ^2.2.5. So the package declares no npm range for
  // them: bullmq / @nestjs/bullmq are optional peers by peerDependenciesMeta only (pnpm and yarn
  // read that), their version is checked at run time (above), and mysql2 is TypeORM's peer.
  it('declares no npm range for bullmq, @nestjs/bullmq or mysql2 (npm cli#8416)', () => {
    for (const name of ['bullmq', '@nestjs/bullmq', 'mysql2']) {
      expect(pkg.peerDependencies[name]).toBeUndefined();
    }
    for (const name of ['bull', '@nestjs/bull', 'bullmq', '@nestjs/bullmq']) {
      expect(pkg.peerDependenciesMeta[name]).toEqual({ optional: true });
    }
    expect(pkg.peerDependenciesMeta.mysql2).toBeUndefined();
  });
});
