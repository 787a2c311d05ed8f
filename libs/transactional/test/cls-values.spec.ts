import { INestApplication, Injectable } from '@nestjs/common';
import { ClsService } from 'nestjs-cls';
import { Propagation, Transactional, TransactionHost } from '../src';
import { closeLibApp, createLibApp } from './support/lib-app';

@Injectable()
class Tagger {
  constructor(
    private readonly cls: ClsService,
    private readonly tx: TransactionHost,
  ) {}

  @Transactional()
  async required() {
    this.cls.set('tenant', 'acme');
    this.cls.set('seen.required', this.tx.isActive);
    await this.nested();
    await this.requiresNew();
    await this.notSupported();
  }

  @Transactional({ propagation: Propagation.Nested })
  async nested() {
    this.cls.set('seen.nested', this.tx.isActive);
  }

  @Transactional({ propagation: Propagation.RequiresNew })
  async requiresNew() {
    this.cls.set('seen.requiresNew', this.tx.isActive);
  }

  @Transactional({ propagation: Propagation.NotSupported })
  async notSupported() {
    this.cls.set('seen.notSupported', this.tx.isActive);
  }

  @Transactional()
  async afterCommitHookSets() {
    await this.tx.afterCommit(() => this.cls.set('hook', 'after-commit'));
  }
}

describe('when a @Transactional method sets CLS values', () => {
  let app: INestApplication;

  beforeAll(async () => {
    app = await createLibApp({
      providers: [Tagger],
      queues: [],
      listen: false,
      options: { registerClsModule: true },
    });
  });

  afterAll(() => closeLibApp(app, []));

  it('should keep them visible after it returns, from every propagation, as nestjs-cls alone does', async () => {
    const cls = app.get(ClsService);
    const tagger = app.get(Tagger);
    const after = await cls.run(async () => {
      cls.set('before', 1);
      await tagger.required();
      await tagger.afterCommitHookSets();
      return {
        before: cls.get('before'),
        tenant: cls.get('tenant'),
        seen: cls.get('seen'),
        hook: cls.get('hook'),
        transactionVisible: app.get(TransactionHost).isActive,
      };
    });
    expect(after).toEqual({
      before: 1,
      tenant: 'acme',
      seen: {
        required: true,
        nested: true,
        requiresNew: true,
        notSupported: false,
      },
      hook: 'after-commit',
      transactionVisible: false,
    });
  });

  it('should keep a nested cls.run() inside a scope in the transaction', async () => {
    const cls = app.get(ClsService);
    const host = app.get(TransactionHost);
    const seen = await cls.run(() =>
      host.withTransaction(async () =>
        cls.run({ ifNested: 'inherit' }, async () => host.isActive),
      ),
    );
    expect(seen).toBe(true);
  });
});
