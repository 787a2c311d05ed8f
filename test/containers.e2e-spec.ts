import { spawn } from 'child_process';
import { existsSync, readFileSync } from 'fs';
import { resolve } from 'path';
import { parse } from 'yaml';
import { loadConfig } from '../src/config/app-config';
import {
  CONFIG_VARIABLES,
  envSchema,
  REQUIRED_VARIABLES,
} from '../src/config/env.schema';
import { E2eApp, startE2eApp } from './support/harness';

const ROOT = resolve(__dirname, '..');

interface ComposeService {
  build?: string;
  image?: string;
  command?: string[];
  restart?: string;
  environment?: Record<string, string | number>;
  healthcheck?: { test?: string[]; disable?: boolean };
  depends_on?: Record<string, { condition: string }>;
  ports?: string[];
  deploy?: { replicas?: number };
}

const compose = parse(
  readFileSync(resolve(ROOT, 'docker-compose.yml'), 'utf8'),
  {
    merge: true,
  },
) as { services: Record<string, ComposeService> };
const services = compose.services;
const appServices = Object.entries(services).filter(([, s]) => s.build === '.');

/** The source file tsc compiles to `dist/<path>.js` (tsconfig.build.json: rootDir ./). */
function sourceOf(distPath: string): string {
  const match = /^dist\/(.+)\.js$/.exec(distPath);
  if (!match) throw new Error(`${distPath} is not under dist/`);
  return resolve(ROOT, `${match[1]}.ts`);
}

/**
 * Compose's `${VAR:-default}` / `${VAR:?error}` with the operator's values in `given`; fails
 * when a required one is missing.
 */
function interpolate(value: string, given: Record<string, string>): string {
  return value.replace(
    /\$\{(\w+)(?::([-?])([^}]*))?\}/g,
    (_all, name: string, kind?: string, rest?: string) => {
      if (given[name] !== undefined && given[name] !== '') return given[name];
      if (kind === '?') throw new Error(`${name} is required: ${rest}`);
      return rest ?? '';
    },
  );
}

const OPERATOR = {
  ADMIN_TOKEN: 'a-long-operator-token-0123456789',
  SECRETS_ENCRYPTION_KEYS: 'k1:ZTJlLXRlc3Qta2V5LW5vdC1hLXNlY3JldC0zMmJ5dGU=',
};

describe('docker-compose.yml', () => {
  it('should run postgres, redis, the migration, api and worker, each with a restart policy', () => {
    expect(Object.keys(services).sort()).toEqual(
      ['api', 'migrate', 'postgres', 'redis', 'worker'].sort(),
    );
    for (const [name, service] of Object.entries(services)) {
      expect([name, service.restart]).toEqual([
        name,
        name === 'migrate' ? 'on-failure' : 'unless-stopped',
      ]);
    }
  });

  it('should health-check every long-running service, the app ones with the image script', () => {
    for (const [name, service] of Object.entries(services)) {
      if (name === 'migrate') {
        expect(service.healthcheck).toEqual({ disable: true });
        continue;
      }
      expect([name, service.healthcheck?.test?.length]).toEqual([
        name,
        expect.any(Number),
      ]);
    }
    for (const name of ['api', 'worker']) {
      const test = services[name].healthcheck!.test!;
      expect(test.slice(0, 2)).toEqual(['CMD', 'node']);
      expect(existsSync(sourceOf(test[2]))).toBe(true);
    }
  });

  it('should set only variables the config schema accepts, and every required one', () => {
    for (const [name, service] of appServices) {
      const env = service.environment ?? {};
      const unknown = Object.keys(env).filter(
        (key) => !CONFIG_VARIABLES.includes(key),
      );
      expect([name, unknown]).toEqual([name, []]);
      if (name === 'migrate') continue;
      for (const required of [...REQUIRED_VARIABLES, 'ADMIN_TOKEN'])
        expect([name, required, required in env]).toEqual([
          name,
          required,
          true,
        ]);
    }
  });

  it('should start api and worker with a configuration the schema accepts, given the required secrets', () => {
    for (const [name, service] of appServices) {
      const env = Object.fromEntries(
        Object.entries(service.environment ?? {}).map(([k, v]) => [
          k,
          interpolate(String(v), OPERATOR),
        ]),
      );
      if (name === 'migrate') {
        // The migration reads DATABASE_URL alone (database/data-source.ts).
        expect(Object.keys(env)).toEqual(['DATABASE_URL']);
        expect(
          envSchema.shape.DATABASE_URL.safeParse(env.DATABASE_URL).success,
        ).toBe(true);
        continue;
      }
      const config = loadConfig(env);
      if (name === 'api')
        expect(config).toMatchObject({ role: 'api', port: 3000 });
      if (name === 'worker')
        expect(config).toMatchObject({ role: 'worker', healthPort: 3001 });
    }
  });

  it('should have no default for ADMIN_TOKEN or SECRETS_ENCRYPTION_KEYS: compose refuses to start without them', () => {
    for (const name of ['api', 'worker']) {
      const env = services[name].environment!;
      for (const secret of ['ADMIN_TOKEN', 'SECRETS_ENCRYPTION_KEYS']) {
        expect(String(env[secret])).toMatch(new RegExp(`^\\$\\{${secret}:\\?`));
        expect(() => interpolate(String(env[secret]), {})).toThrow(
          `${secret} is required`,
        );
      }
    }
  });

  it('should let workers scale: no host port, no fixed replica count, migrations before start', () => {
    expect(services.worker.ports).toBeUndefined();
    expect(services.worker.deploy?.replicas).toBeUndefined();
    for (const name of ['api', 'worker'])
      expect(services[name].depends_on).toEqual({
        postgres: { condition: 'service_healthy' },
        redis: { condition: 'service_healthy' },
        migrate: { condition: 'service_completed_successfully' },
      });
    expect(existsSync(sourceOf(services.migrate.command![1]))).toBe(true);
  });
});

describe('Dockerfile', () => {
  const lines = readFileSync(resolve(ROOT, 'Dockerfile'), 'utf8')
    .replace(/\\\n\s*/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  const instructions = (keyword: string) =>
    lines.filter((line) => line.startsWith(`${keyword} `));
  const finalStage = lines.slice(
    lines.lastIndexOf(instructions('FROM').slice(-1)[0]),
  );
  const json = (line: string) =>
    JSON.parse(line.slice(line.indexOf('['))) as string[];

  it('should build on Node 24 in several stages and run as a non-root user', () => {
    const froms = instructions('FROM');
    expect(froms.length).toBeGreaterThanOrEqual(2);
    for (const from of froms) expect(from).toMatch(/^FROM node:24-/);
    const user = finalStage.filter((l) => l.startsWith('USER '));
    expect(user).toEqual(['USER node']);
  });

  it('should install production dependencies only in the final image, and copy no dev-only code', () => {
    expect(lines.some((l) => /npm ci --omit=dev/.test(l))).toBe(true);
    for (const copy of instructions('COPY')) {
      // A workspace's manifest may be copied (npm ci needs every one), never its code.
      if (/^COPY \w+\/package\.json \.\/\w+\/$/.test(copy)) continue;
      expect(copy).not.toMatch(/\b(scripts|bench|test)\b/);
    }
    expect(finalStage.filter((l) => l.startsWith('COPY '))).toEqual([
      'COPY --from=deps /app/node_modules ./node_modules',
      'COPY --from=build /app/libs/transactional/package.json ./libs/transactional/package.json',
      'COPY --from=build /app/libs/transactional/dist ./libs/transactional/dist',
      'COPY --from=build /app/dist ./dist',
    ]);
  });

  it('should build the workspace library and ship what its package.json points to', () => {
    const lib = JSON.parse(
      readFileSync(resolve(ROOT, 'libs/transactional/package.json'), 'utf8'),
    ) as { name: string; main: string; dependencies?: Record<string, string> };
    expect(lib.name).toBe('nestjs-transactional-jobs');
    // main is dist/index.js, compiled from src/index.ts (libs/transactional/tsconfig.build.json).
    expect(lib.main).toBe('./dist/index.js');
    expect(existsSync(resolve(ROOT, 'libs/transactional/src/index.ts'))).toBe(
      true,
    );
    const libBuild = JSON.parse(
      readFileSync(
        resolve(ROOT, 'libs/transactional/tsconfig.build.json'),
        'utf8',
      ),
    ) as { compilerOptions: { rootDir: string; outDir: string } };
    expect(libBuild.compilerOptions).toMatchObject({
      rootDir: './src',
      outDir: './dist',
    });
    // The root build script builds the library first; the build stage runs it.
    const root = JSON.parse(
      readFileSync(resolve(ROOT, 'package.json'), 'utf8'),
    ) as {
      workspaces: string[];
      scripts: Record<string, string>;
    };
    expect(root.workspaces).toContain('libs/transactional');
    // npm ci needs the manifest of every workspace the lockfile lists.
    for (const workspace of root.workspaces)
      expect(lines).toContain(`COPY ${workspace}/package.json ./${workspace}/`);
    expect(root.scripts.build).toMatch(/^npm run build:lib && /);
    expect(lines).toContain('RUN npm run build');
    for (const copied of [
      'COPY libs/transactional/package.json ./libs/transactional/',
      'COPY libs/transactional/tsconfig.build.json ./libs/transactional/',
      'COPY libs/transactional/src ./libs/transactional/src',
    ])
      expect(lines).toContain(copied);
    // Both npm ci run without lifecycle scripts: the library's `prepare` needs dev tools.
    for (const ci of lines.filter((l) => /npm ci/.test(l)))
      expect(ci).toMatch(/--ignore-scripts/);
  });

  it('should start and health-check files the build produces, on the ports the config uses', () => {
    const cmd = json(instructions('CMD').slice(-1)[0]);
    expect(cmd).toEqual(['node', 'dist/src/main.js']);
    expect(existsSync(sourceOf(cmd[1]))).toBe(true);
    const healthcheck = instructions('HEALTHCHECK');
    expect(healthcheck).toHaveLength(1);
    const probe = json(healthcheck[0].slice(healthcheck[0].indexOf('CMD ')));
    expect(probe.slice(0, 1)).toEqual(['node']);
    expect(existsSync(sourceOf(probe[1]))).toBe(true);
    const env = finalStage.filter((l) => l.startsWith('ENV ')).join(' ');
    const port = /PORT=(\d+)/.exec(env)![1];
    const healthPort = /HEALTH_PORT=(\d+)/.exec(env)![1];
    expect(instructions('EXPOSE')).toEqual([`EXPOSE ${port} ${healthPort}`]);
    expect(
      loadConfig({ ...OPERATOR, PORT: port, HEALTH_PORT: healthPort }),
    ).toMatchObject({ port: Number(port), healthPort: Number(healthPort) });
    // The build compiles what CMD and HEALTHCHECK name (tsconfig.build.json includes src).
    const build = JSON.parse(
      readFileSync(resolve(ROOT, 'tsconfig.build.json'), 'utf8'),
    ) as { include: string[] };
    expect(build.include).toContain('src');
  });
});

describe('the HEALTHCHECK script', () => {
  let svc: E2eApp;

  beforeAll(async () => {
    svc = await startE2eApp();
  });

  afterAll(async () => {
    await svc?.close();
  });

  // NOTE: asynchronous: the app answering the probe runs in this process.
  const probe = (env: Record<string, string>) =>
    new Promise<{ status: number | null }>((done) => {
      const child = spawn(
        process.execPath,
        ['-r', 'ts-node/register/transpile-only', 'src/health/healthcheck.ts'],
        {
          cwd: ROOT,
          env: { PATH: process.env.PATH ?? '', ...env },
          stdio: 'ignore',
          timeout: 30_000,
        },
      );
      child.once('exit', (status) => done({ status }));
    });

  it('should exit 0 when the process answers /health/live, 1 when nothing listens', async () => {
    const port = new URL(svc.url).port;
    expect(await probe({ PROCESS_ROLE: 'api', PORT: port })).toEqual({
      status: 0,
    });
    expect(await probe({ PROCESS_ROLE: 'worker', HEALTH_PORT: port })).toEqual({
      status: 0,
    });
    expect(await probe({ PROCESS_ROLE: 'api', PORT: '1' })).toEqual({
      status: 1,
    });
    // A worker is probed on HEALTH_PORT, never on PORT.
    expect(await probe({ PROCESS_ROLE: 'worker', PORT: port })).toEqual({
      status: 1,
    });
  });
});
