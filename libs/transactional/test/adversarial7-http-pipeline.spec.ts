import {
  BadRequestException,
  CallHandler,
  CanActivate,
  ClassSerializerInterceptor,
  Controller,
  ExecutionContext,
  ForbiddenException,
  Get,
  INestApplication,
  Injectable,
  MessageEvent,
  NestInterceptor,
  Param,
  PipeTransform,
  Post,
  Redirect,
  Res,
  Sse,
  StreamableFile,
  UseGuards,
  UseInterceptors,
} from '@nestjs/common';
import { Exclude, Expose } from 'class-transformer';
import type { Response } from 'express';
import * as http from 'http';
import { Readable } from 'stream';
import { Observable, concatMap, defer, from, range, timeout } from 'rxjs';
import request from 'supertest';
import { DataSource } from 'typeorm';
import {
  InjectTransactionAwareQueue,
  Transactional,
  TransactionAwareQueue,
  TransactionHost,
  TransactionRunner,
} from '../src';
import { backendId, killBackend } from './support/db';
import { uniqueName } from './support/env';
import { Order } from './support/order.entity';
import {
  bullQueue,
  closeLibApp,
  createLibApp,
  inRedis,
  waitFor,
} from './support/lib-app';
import {
  nextMacrotask,
  watchProcessFailures,
} from './support/process-failures';

/**
 * adversarial7: the commit-vs-response contract through Nest's request pipeline (interceptors,
 * pipes, guards, @Res(), @Sse, StreamableFile, redirects, client aborts). A 2xx must mean the
 * row and the job exist; a 5xx must mean neither does.
 */
const QUEUE = uniqueName('a7p');
const failures = watchProcessFailures();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** rxjs timeout() around the handler (as Nest's docs show it, without mapping the error). */
@Injectable()
class Timeout100 implements NestInterceptor {
  intercept(_context: ExecutionContext, next: CallHandler) {
    return next.handle().pipe(timeout(100));
  }
}

@Injectable()
class DenyGuard implements CanActivate {
  canActivate(): boolean {
    throw new ForbiddenException('no');
  }
}

/** A pipe that writes a row and adds a job through the transaction (inside it with useInterceptor). */
@Injectable()
class WritingPipe implements PipeTransform {
  constructor(
    private readonly tx: TransactionHost,
    @InjectTransactionAwareQueue(QUEUE)
    private readonly queue: TransactionAwareQueue<{ label: string }>,
  ) {}
  async transform(label: string) {
    await this.tx.getRepository(Order).save({ label });
    await this.queue.add({ label }, { jobId: label });
    return label;
  }
}

@Injectable()
class RefusingPipe implements PipeTransform {
  transform(): never {
    throw new BadRequestException('refused');
  }
}

/** A response entity whose serialization (ClassSerializerInterceptor) throws. */
class Poisoned {
  @Exclude()
  hidden = 1;
  @Expose()
  get boom(): string {
    throw new Error('getter failed while serializing');
  }
}

@Controller()
class PipelineController {
  constructor(
    private readonly tx: TransactionHost,
    private readonly ds: DataSource,
    @InjectTransactionAwareQueue(QUEUE)
    private readonly queue: TransactionAwareQueue<{ label: string }>,
  ) {}

  private async write(label: string) {
    await this.tx.getRepository(Order).save({ label });
    await this.queue.add({ label }, { jobId: label });
  }

  /** Terminates the transaction's own backend: the COMMIT that follows fails. */
  private async killOwnBackend() {
    await killBackend(this.ds, await backendId(this.tx.manager));
    await sleep(100);
  }

  // ---- @Res(): the handler sends the response itself, before COMMIT ----
  @Post('res/:label')
  @Transactional()
  async manual(@Param('label') label: string, @Res() res: Response) {
    await this.write(label);
    res.status(201).json({ ok: true });
    await this.killOwnBackend();
  }

  @Post('res-i/:label')
  @Transactional({ useInterceptor: true })
  async manualIntercepted(@Param('label') label: string, @Res() res: Response) {
    return this.manual(label, res);
  }

  // ---- results Nest turns into a response after the handler: commit must come first ----
  @Get('redirect/:label')
  @Redirect('/elsewhere', 302)
  @Transactional()
  async redirect(@Param('label') label: string) {
    await this.write(label);
    await this.killOwnBackend();
  }

  @Get('file/:label')
  @Transactional()
  async file(@Param('label') label: string) {
    await this.write(label);
    await this.killOwnBackend();
    return new StreamableFile(Readable.from([Buffer.from('hello')]));
  }

  @Sse('sse-fail/:label')
  @Transactional({ useInterceptor: true })
  sseFail(@Param('label') label: string): Observable<MessageEvent> {
    return defer(async () => {
      await this.write(label);
      await this.killOwnBackend();
      return { data: { ok: true } };
    });
  }

  @Sse('sse/:label')
  @Transactional({ useInterceptor: true })
  sse(@Param('label') label: string): Observable<MessageEvent> {
    return range(1, 3).pipe(
      concatMap((i) =>
        from(
          (async () => {
            await this.write(`${label}-${i}`);
            return { data: { i } };
          })(),
        ),
      ),
    );
  }

  // ---- timeouts ----
  /**
   * rxjs timeout() outside the transaction's interceptor. NOTE: Nest runs the interceptors in
   * the order their decorators are applied (bottom up): the one written lower runs outside.
   */
  @Post('timeout-outer/:label')
  @Transactional({ useInterceptor: true })
  @UseInterceptors(Timeout100)
  async timeoutOuter(@Param('label') label: string) {
    await this.write(label);
    await sleep(300);
    return { ok: true };
  }

  /** The same with the default placement (the wrapper). */
  @Post('timeout-wrapped/:label')
  @UseInterceptors(Timeout100)
  @Transactional()
  async timeoutWrapped(@Param('label') label: string) {
    return this.timeoutOuter(label);
  }

  /** rxjs timeout() inside the transaction's interceptor (written above it): a rollback. */
  @Post('timeout-inner/:label')
  @UseInterceptors(Timeout100)
  @Transactional({ useInterceptor: true })
  async timeoutInner(@Param('label') label: string) {
    await this.tx.getRepository(Order).save({ label });
    await sleep(300);
    // runs after the timeout rolled the transaction back: must be refused, not autocommitted
    await this.tx.getRepository(Order).save({ label: `${label}-late` });
    await this.queue.add({ label }, { jobId: label });
    return { ok: true };
  }

  // ---- serialization after the handler ----
  @Post('bigint/:label')
  @Transactional()
  async bigint(@Param('label') label: string) {
    await this.write(label);
    return { n: BigInt(1) };
  }

  @Post('serializer-outer/:label')
  @Transactional({ useInterceptor: true })
  @UseInterceptors(ClassSerializerInterceptor)
  async serializerOuter(@Param('label') label: string) {
    await this.write(label);
    return new Poisoned();
  }

  @Post('serializer-inner/:label')
  @UseInterceptors(ClassSerializerInterceptor)
  @Transactional({ useInterceptor: true })
  async serializerInner(@Param('label') label: string) {
    return this.serializerOuter(label);
  }

  // ---- guards and pipes ----
  @Post('guarded/:label')
  @UseGuards(DenyGuard)
  @Transactional({ useInterceptor: true })
  async guarded(@Param('label') label: string) {
    await this.write(label);
    return { ok: true };
  }

  @Post('pipes/:label/:other')
  @Transactional({ useInterceptor: true })
  async pipes(
    @Param('label', WritingPipe) label: string,
    @Param('other', RefusingPipe) _other: string,
  ) {
    return { label };
  }

  // ---- client abort ----
  @Post('slow/:label')
  @Transactional()
  async slow(@Param('label') label: string) {
    await this.write(label);
    await sleep(300);
    return { ok: true };
  }
}

describe('adversarial7-http: the commit-vs-response contract through the Nest pipeline', () => {
  let app: INestApplication;
  let url: string;
  const rows = (label: string) =>
    app.get(DataSource).getRepository(Order).countBy({ label });
  const job = (label: string) => inRedis(bullQueue(app, QUEUE), label);
  const committed = async (label: string) => {
    const [r, j] = [await rows(label), await job(label)];
    if (r === 1 && j) return true;
    if (r === 0 && !j) return false;
    return `inconsistent: ${r} rows, job ${j}`;
  };
  /** 'ok', or how the answer the client got contradicts what the database did. */
  const verdict = (status: number, isCommitted: boolean | string) => {
    if (typeof isCommitted === 'string') return isCommitted;
    if (status < 300 && !isCommitted)
      return `${status} for a transaction that did not commit`;
    if (status >= 500 && isCommitted)
      return `${status} for a transaction that committed`;
    return 'ok';
  };

  beforeAll(async () => {
    app = await createLibApp({
      controllers: [PipelineController],
      providers: [Timeout100, DenyGuard, WritingPipe, RefusingPipe],
      queues: [{ name: QUEUE }],
    });
    url = await app.getUrl();
  });

  afterAll(async () => {
    await closeLibApp(app, [QUEUE]);
    failures.dispose();
  });

  // NOTE: documented (README, Controllers): a response the handler sends itself goes out before
  // the commit. What the library still owes: no row, no job.
  it.each(['res', 'res-i'])(
    '@Res() with a manual send, then COMMIT fails (%s): the answer is already out (documented), and neither the row nor its job exists',
    async (route) => {
      const label = uniqueName(route);
      const res = await request(url).post(`/${route}/${label}`);
      await sleep(100);
      expect({ status: res.status, committed: await committed(label) }).toEqual(
        { status: 201, committed: false },
      );
    },
  );

  it.each(['redirect', 'file', 'sse-fail'])(
    'a %s result, then COMMIT fails: the client must not get a 2xx/3xx success',
    async (route) => {
      const label = uniqueName(route);
      const res = await request(url)
        .get(`/${route}/${label}`)
        .redirects(0)
        .buffer(true)
        .parse((r, cb) => {
          let body = '';
          r.on('data', (c: Buffer) => (body += c.toString()));
          r.on('end', () => cb(null, body));
        });
      expect(await committed(label)).toBe(false);
      expect(res.status).toBeGreaterThanOrEqual(400);
    },
  );

  it('@Sse with useInterceptor: every event reaches the client with its work committed, or the route is refused', async () => {
    const label = uniqueName('sse');
    const res = await request(url)
      .get(`/sse/${label}`)
      .buffer(true)
      .parse((r, cb) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => cb(null, body));
      });
    const states = [];
    for (const i of [1, 2, 3]) states.push(await committed(`${label}-${i}`));
    const events = (String(res.body).match(/^data: /gm) ?? []).length;
    const outcome =
      res.status === 200 && events === 3 && states.every((c) => c === true)
        ? 'all events, all committed'
        : res.status >= 400 && states.every((c) => c === false)
          ? 'refused, nothing committed'
          : `status ${res.status}, ${events} event(s), committed: ${states.join(',')}`;
    expect([
      'all events, all committed',
      'refused, nothing committed',
    ]).toContain(outcome);
  });

  it('an rxjs timeout() outside the transaction, useInterceptor: a 5xx must not be sent for a transaction that then commits', async () => {
    const label = uniqueName('timeout-outer');
    const res = await request(url).post(`/timeout-outer/${label}`);
    await sleep(400); // the handler finishes, the transaction ends
    expect(verdict(res.status, await committed(label))).toBe('ok');
  });

  // NOTE: documented (README, Controllers): in the default placement Nest gives the method no
  // signal that the answer went out; the transaction commits, with its job.
  it('an rxjs timeout() outside the transaction, default placement: the 5xx goes out and the transaction then commits, row and job (documented)', async () => {
    const label = uniqueName('timeout-wrapped');
    const res = await request(url).post(`/timeout-wrapped/${label}`);
    await sleep(400);
    expect({ status: res.status, committed: await committed(label) }).toEqual({
      status: 500,
      committed: true,
    });
  });

  it('an rxjs timeout() inside the transaction: 500, rollback, and the late statements and add() are refused', async () => {
    const label = uniqueName('timeout-inner');
    const res = await request(url).post(`/timeout-inner/${label}`);
    expect(res.status).toBe(500);
    await sleep(400);
    expect(await rows(label)).toBe(0);
    expect(await rows(`${label}-late`)).toBe(0);
    expect(await job(label)).toBe(false);
  });

  // NOTE: documented (README, Controllers): what fails after the commit (the body's
  // serialization, interceptors outside the scope) answers 500 for a committed transaction.
  it.each(['bigint', 'serializer-outer'])(
    'a failure after the commit (%s): 500 for a committed transaction, row and job (documented)',
    async (route) => {
      const label = uniqueName(route);
      const res = await request(url).post(`/${route}/${label}`);
      expect({
        status: res.status,
        committed: await committed(label),
      }).toEqual({ status: 500, committed: true });
    },
  );

  it('ClassSerializerInterceptor inside the scope whose serialization throws: no 5xx for a committed transaction', async () => {
    const label = uniqueName('serializer-inner');
    const res = await request(url).post(`/serializer-inner/${label}`);
    expect(verdict(res.status, await committed(label))).toBe('ok');
  });

  it('a guard that throws: 403, no transaction opened, nothing written', async () => {
    const runner = app.get(TransactionRunner);
    const before = { ...runner.stats };
    const label = uniqueName('guarded');
    await request(url).post(`/guarded/${label}`).expect(403);
    expect(await committed(label)).toBe(false);
    expect(runner.stats.committed).toBe(before.committed);
    expect(runner.stats.rolledBack).toBe(before.rolledBack);
  });

  it('useInterceptor: a pipe writes and adds inside the transaction, a later pipe refuses: 400, nothing', async () => {
    const label = uniqueName('pipes');
    await request(url).post(`/pipes/${label}/x`).expect(400);
    expect(await committed(label)).toBe(false);
  });

  it('the client aborts mid-transaction: the transaction still ends consistently, the app keeps serving', async () => {
    const label = uniqueName('slow');
    const { port } = new URL(url);
    await new Promise<void>((resolve) => {
      const req = http.request({
        host: '127.0.0.1',
        port: Number(port),
        method: 'POST',
        path: `/slow/${label}`,
      });
      req.on('error', () => resolve());
      req.end();
      setTimeout(() => {
        req.destroy();
        resolve();
      }, 100);
    });
    await waitFor(async () => (await rows(label)) === 1, 'the slow commit');
    await waitFor(() => job(label), 'the job after commit');
    const next = uniqueName('slow');
    const res = await request(url).post(`/slow/${next}`);
    expect(res.status).toBe(201);
    expect(await committed(next)).toBe(true);
  });

  it('no unhandled rejection or uncaught exception', async () => {
    await sleep(300);
    await nextMacrotask();
    expect(failures.unhandledRejections).toEqual([]);
    expect(failures.uncaughtExceptions).toEqual([]);
  });
});
