import { Injectable } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import {
  InjectTransactionAwareQueue,
  Propagation,
  Transactional,
  TransactionalError,
  TransactionAwareQueue,
  TransactionHost,
} from '../src';
import {
  CapturedJob,
  JobProcessingError,
  TransactionalTestingKit,
  TransactionalTestingModule,
  TransactionalTestingModuleOptions,
} from '../src/testing';

interface Email {
  to: string;
}

/** A user-style service: no database, only deferred jobs. */
@Injectable()
class SignupService {
  constructor(
    readonly host: TransactionHost,
    @InjectTransactionAwareQueue('emails')
    private readonly emails: TransactionAwareQueue<Email>,
    @InjectTransactionAwareQueue('audit')
    private readonly audit: TransactionAwareQueue<string>,
  ) {}

  @Transactional()
  async signUp(to: string) {
    const id = await this.emails.add('welcome', { to });
    await this.host.afterCommit(() => this.audit.add('hook', `hook:${to}`));
    await this.emails.addBulk([{ name: 'tips', data: { to } }]);
    return id;
  }

  @Transactional()
  async signUpThenFail(to: string) {
    await this.emails.add('welcome', { to });
    throw new Error('validation failed');
  }

  @Transactional()
  async signUpWithReferral(to: string, referrer: string) {
    await this.emails.add('welcome', { to });
    await this.rewardReferrer(referrer).catch(() => undefined);
  }

  @Transactional({ propagation: Propagation.Nested })
  async rewardReferrer(referrer: string) {
    await this.emails.add('reward', { to: referrer });
    throw new Error('referrer not found');
  }

  @Transactional()
  scheduleDigest(to: string) {
    return this.emails.add('digest', { to }, { repeat: { cron: '0 8 * * *' } });
  }

  @Transactional()
  async countUsers() {
    return this.host.manager.count('User');
  }
}

const summary = (jobs: CapturedJob<Email>[]) =>
  jobs.map((job) => `${job.name}:${job.data.to}`);

describe('TransactionalTestingModule', () => {
  let moduleRef: TestingModule;
  let kit: TransactionalTestingKit;
  let service: SignupService;

  async function boot(options: TransactionalTestingModuleOptions) {
    moduleRef = await Test.createTestingModule({
      imports: [TransactionalTestingModule.forRoot(options)],
      providers: [SignupService],
    }).compile();
    await moduleRef.init();
    kit = moduleRef.get(TransactionalTestingKit);
    service = moduleRef.get(SignupService);
  }

  afterEach(() => moduleRef?.close());

  describe('when queues capture jobs', () => {
    beforeEach(() => boot({ queues: ['emails', 'audit'] }));

    it('should record the jobs only after the outermost commit', async () => {
      const id = await service.host.withTransaction(async () => {
        const jobId = await service.signUp('ann');
        expect(summary(kit.deferred('emails'))).toEqual([
          'welcome:ann',
          'tips:ann',
        ]);
        expect(kit.jobs('emails')).toEqual([]);
        return jobId;
      });
      expect(kit.jobs('emails')).toEqual([
        { id, name: 'welcome', data: { to: 'ann' }, opts: { jobId: id } },
        expect.objectContaining({ name: 'tips', data: { to: 'ann' } }),
      ]);
      expect(kit.jobs('audit').map((job) => job.data)).toEqual(['hook:ann']);
      expect(kit.deferred('emails')).toEqual([]);
      expect(kit.statements()).toEqual(['BEGIN', 'COMMIT']);
    });

    it('should record a repeatable job under the schedule key add() resolves with, with no generated jobId', async () => {
      const key = await service.scheduleDigest('eve');

      // Bull's key of the schedule: name, job id, end date, time zone, cron.
      expect(key).toBe('digest::::0 8 * * *');
      expect(kit.deferred('emails')).toEqual([]);
      expect(kit.jobs('emails')).toEqual([
        {
          id: key,
          name: 'digest',
          data: { to: 'eve' },
          opts: { repeat: { cron: '0 8 * * *' } },
        },
      ]);
    });

    it('should drop the jobs of a method that throws', async () => {
      await expect(service.signUpThenFail('bob')).rejects.toThrow(
        'validation failed',
      );
      expect(kit.jobs('emails')).toEqual([]);
      expect(summary(kit.dropped('emails'))).toEqual(['welcome:bob']);
      expect(kit.statements()).toEqual(['BEGIN', 'ROLLBACK']);
    });

    it('should drop only the jobs of a NESTED scope that rolls back', async () => {
      await service.signUpWithReferral('cid', 'dee');
      expect(summary(kit.jobs('emails'))).toEqual(['welcome:cid']);
      expect(summary(kit.dropped('emails'))).toEqual(['reward:dee']);
      expect(kit.statements()).toEqual([
        'BEGIN',
        'SAVEPOINT tx_sp_1',
        'ROLLBACK TO SAVEPOINT tx_sp_1',
        'COMMIT',
      ]);
    });

    it('should drop the jobs when the commit fails', async () => {
      kit.failNextCommit(new Error('serialization failure'));
      await expect(service.signUp('eve')).rejects.toThrow(
        'serialization failure',
      );
      expect(kit.jobs('emails')).toEqual([]);
      expect(summary(kit.dropped('emails'))).toEqual([
        'welcome:eve',
        'tips:eve',
      ]);
      expect(kit.statements()).toEqual(['BEGIN', 'COMMIT', 'ROLLBACK']);
    });

    it('should say which option to set when code uses the EntityManager', async () => {
      await expect(service.countUsers()).rejects.toThrow(
        /EntityManager\.count .*forRoot\(\{ entityManager \}\)/,
      );
      expect(kit.statements()).toEqual(['BEGIN', 'ROLLBACK']);
    });

    it('should forget everything on clear()', async () => {
      await service.signUp('fay');
      kit.clear();
      expect(kit.jobs('emails')).toEqual([]);
      expect(kit.statements()).toEqual([]);
    });

    it('should refuse handlers and unknown queues with a clear error', () => {
      expect(() => kit.process('emails', () => undefined)).toThrow(
        /'capture' mode/,
      );
      expect(() => kit.jobs('typo')).toThrow(/registered: "emails", "audit"/);
    });
  });

  describe('when queues run jobs', () => {
    const handled: string[] = [];

    beforeEach(async () => {
      handled.length = 0;
      await boot({ queues: ['emails', 'audit'], mode: 'run' });
      kit
        .process<Email>('emails', async (job) => {
          await new Promise((resolve) => setImmediate(resolve));
          handled.push(`${job.name}:${job.data.to}:${service.host.isActive}`);
        })
        .process<string>('audit', (job) => handled.push(job.data));
    });

    it('should process each job after commit, in order, before the method resolves', async () => {
      await service.signUp('ann');
      expect(handled).toEqual([
        'welcome:ann:false',
        'hook:ann',
        'tips:ann:false',
      ]);
      kit.assertNoFailures();
    });

    it('should not process the jobs a rollback dropped', async () => {
      await expect(service.signUpThenFail('bob')).rejects.toThrow();
      await service.signUpWithReferral('cid', 'dee');
      expect(handled).toEqual(['welcome:cid:false']);
    });

    it('should record a handler error without failing the committed method', async () => {
      const boom = new Error('SMTP down');
      kit.process('emails', 'tips', () => Promise.reject(boom));
      await expect(service.signUp('gus')).resolves.toEqual(expect.any(String));
      expect(handled).toEqual(['welcome:gus:false', 'hook:gus']);
      expect(kit.failures()).toEqual([
        { queue: 'emails', job: kit.jobs('emails')[1], error: boom },
      ]);
      expect(() => kit.assertNoFailures()).toThrow(JobProcessingError);
    });

    it('should stop serving @Transactional once the module is closed', async () => {
      await moduleRef.close();
      // NOTE: the decorator may throw before returning a promise; the async wrapper takes both.
      await expect(async () => service.signUp('hal')).rejects.toThrow(
        TransactionalError,
      );
    });
  });
});
