import { ChildProcess, fork } from 'child_process';
import { join } from 'path';

/**
 * Writes deliveries as {@link DeliveryInjector} does, from a child process at a low CPU
 * priority (see injector-child.ts): the load a test offers beyond what the API takes, without
 * the generator competing with the service for the machine's cores. One injection at a time.
 */
export class InjectorProcess {
  /** Deliveries injected so far, all endpoints (ballast not included). */
  injected = 0;
  /** Ballast rows written so far, all endpoints. */
  ballast = 0;
  private pending?: {
    resolve: () => void;
    reject: (error: Error) => void;
  };

  private constructor(private readonly child: ChildProcess) {
    child.on(
      'message',
      (message: { injected?: number[]; ballast?: boolean; error?: string }) => {
        const pending = this.pending;
        this.pending = undefined;
        if (message.error) pending?.reject(new Error(message.error));
        else {
          const n = message.injected!.reduce((a, b) => a + b, 0);
          if (message.ballast) this.ballast += n;
          else this.injected += n;
          pending?.resolve();
        }
      },
    );
    child.on('exit', (code) =>
      this.pending?.reject(new Error(`the injector exited (${code})`)),
    );
  }

  /** Starts the child; resolves once it is connected to Postgres and Redis. */
  static async start(
    dbUrl: string,
    redisUrl: string,
    endpointIds: string[],
    /** The service's `PER_ENDPOINT_CONCURRENCY` (jobs are parked as the service parks them). */
    perEndpointConcurrency: number,
  ): Promise<InjectorProcess> {
    const child = fork(
      join(__dirname, 'injector-child.ts'),
      [dbUrl, redisUrl, ...endpointIds],
      {
        execArgv: ['-r', 'ts-node/register/transpile-only'],
        env: {
          ...process.env,
          PER_ENDPOINT_CONCURRENCY: String(perEndpointConcurrency),
        },
      },
    );
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) =>
        reject(new Error(`the injector exited (${code}) before it was ready`)),
      );
    });
    return new InjectorProcess(child);
  }

  /**
   * Commits `counts[i]` deliveries to the i-th endpoint (each with its job enqueued), or as
   * many ballast rows (`ballast`: see `DeliveryInjector.inject`).
   */
  inject(counts: number[], ballast = false): Promise<void> {
    if (this.pending) throw new Error('one injection at a time');
    return new Promise<void>((resolve, reject) => {
      this.pending = { resolve, reject };
      this.child.send({ counts, ballast });
    });
  }

  /** Ends the child (its connections closed). */
  async close() {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.send('close');
    await exited;
  }
}
