import { Injectable } from '@nestjs/common';
import { Transactional, TransactionHost } from '@app/transactional';
import { uniqueName } from './support/env';
import { closeLibApp, createLibApp } from './support/lib-app';
import { Order } from './support/order.entity';

const QUEUE = uniqueName('shutdown');

@Injectable()
class SlowCommitter {
  readonly events: string[] = [];

  constructor(private readonly tx: TransactionHost) {}

  @Transactional()
  async create() {
    await this.tx.getRepository(Order).save({ label: 'shutdown' });
    await this.tx.afterCommit(async () => {
      this.events.push('after-commit started');
      await new Promise((resolve) => setTimeout(resolve, 300));
      this.events.push('after-commit finished');
    });
    this.events.push('committing');
  }
}

describe('when the application shuts down while after-commit work is in flight', () => {
  it('should let that work finish before the connections close', async () => {
    const app = await createLibApp({
      providers: [SlowCommitter],
      queues: [{ name: QUEUE }],
    });
    const service = app.get(SlowCommitter);
    const request = service.create();
    // Let the transaction reach its after-commit step, then close the app at once.
    while (!service.events.includes('after-commit started')) {
      await new Promise((resolve) => setImmediate(resolve));
    }
    await closeLibApp(app, [QUEUE]);
    service.events.push('closed');
    await request;
    expect(service.events).toEqual([
      'committing',
      'after-commit started',
      'after-commit finished',
      'closed',
    ]);
  });
});
