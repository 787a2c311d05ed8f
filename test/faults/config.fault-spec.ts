import { spawn } from 'child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { ROOT, serviceCommand } from './support/service-process';

/** Starts the real service process with `env` only; resolves with its exit code and output. */
function run(
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, serviceCommand(), {
      cwd: ROOT,
      // NOTE: PATH alone from outside: no variable of the test's environment leaks in.
      env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the service did not exit within 60 s:\n${output}`));
    }, 60_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, output });
    });
  });
}

describe('when the service starts with a bad configuration', () => {
  it('should refuse to start and name every bad or missing variable at once', async () => {
    const { code, output } = await run({
      PROCESS_ROLE: 'bogus',
      PORT: 'eighty',
      DATABASE_URL: 'mysql://user:hunter2@db/x',
      REDIS_URL: 'not a url',
      OUTBOX_RELAY: 'maybe',
      WORKER_CONCURRENCY: '0',
      WEBHOOK_ALLOW_SUBNETS: '10.0.0.0/99',
      ADMIN_TOKEN: 'short',
      LOG_LEVEL: 'loud',
      // SECRETS_ENCRYPTION_KEYS missing
    });
    expect(code).not.toBe(0);
    expect(output).toContain('Invalid configuration (10 problems)');
    for (const name of [
      'PROCESS_ROLE: must be one of all, api, worker, got "bogus"',
      'PORT: must be an integer 0..65535, got "eighty"',
      'DATABASE_URL: must be a postgres:// or postgresql:// URL',
      'REDIS_URL: must be a URL',
      'OUTBOX_RELAY: must be one of on, off, got "maybe"',
      'WORKER_CONCURRENCY: must be an integer >= 1, got "0"',
      'WEBHOOK_ALLOW_SUBNETS: Invalid WEBHOOK_ALLOW_SUBNETS entry "10.0.0.0/99"',
      'ADMIN_TOKEN: must be at least 12 characters',
      'LOG_LEVEL: must be one of fatal, error, warn, info, debug, trace, silent, got "loud"',
      'SECRETS_ENCRYPTION_KEYS: SECRETS_ENCRYPTION_KEYS is required',
    ])
      expect(output).toContain(name);
    // Secrets are never echoed: neither the URL's password nor the token.
    expect(output).not.toContain('hunter2');
    expect(output).not.toMatch(/"short"/);
    // The operator's error, not a stack trace.
    expect(output).not.toMatch(/\n\s+at /);
  });

  it('should read variables from .env (ENV_FILE), the environment winning', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ops-env-'));
    try {
      const file = join(dir, '.env');
      writeFileSync(
        file,
        'PROCESS_ROLE=api\nOUTBOX_RELAY=sometimes\nRETENTION_BATCH_SIZE=-1\n',
      );
      const { code, output } = await run({
        ENV_FILE: file,
        RETENTION_BATCH_SIZE: '10',
      });
      expect(code).not.toBe(0);
      expect(output).toContain('OUTBOX_RELAY: must be one of on, off');
      expect(output).toContain('SECRETS_ENCRYPTION_KEYS');
      expect(output).not.toContain('RETENTION_BATCH_SIZE');
      expect(output).toContain('Invalid configuration (2 problems)');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
