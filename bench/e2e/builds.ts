import { execFileSync } from 'child_process';
import { mkdirSync, rmSync } from 'fs';
import { resolve } from 'path';

const ROOT = resolve(__dirname, '../..');
const CACHE = resolve(ROOT, 'node_modules/.cache/bench-e2e');

function compile(srcRoot: string, outDir: string) {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const tsc = resolve(ROOT, 'node_modules/typescript/bin/tsc');
  const alias = resolve(ROOT, 'node_modules/tsc-alias/dist/bin/index.js');
  const project = resolve(srcRoot, 'tsconfig.build.json');
  execFileSync(
    process.execPath,
    [tsc, '-p', project, '--outDir', outDir, '--noCheck'],
    {
      cwd: srcRoot,
      stdio: 'inherit',
    },
  );
  execFileSync(process.execPath, [alias, '-p', project, '--outDir', outDir], {
    cwd: srcRoot,
    stdio: 'inherit',
  });
}

/** A compiled service: `FAULT_APP_BUILD` for the fault harness's `ServiceProcess`. */
export interface Build {
  name: string;
  dir: string;
  commit: string;
}

/** The working tree as it is (uncommitted changes included). */
export function buildCurrent(): Build {
  const dir = resolve(CACHE, 'current');
  compile(ROOT, dir);
  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
    cwd: ROOT,
  })
    .toString()
    .trim();
  return { name: 'after', dir, commit: `${commit}+worktree` };
}

/** A git ref (e.g. the commit before the redesign), extracted with `git archive` and compiled. */
export function buildRef(name: string, ref: string): Build {
  const commit = execFileSync('git', ['rev-parse', '--short', ref], {
    cwd: ROOT,
  })
    .toString()
    .trim();
  const src = resolve(CACHE, `src-${commit}`);
  rmSync(src, { recursive: true, force: true });
  mkdirSync(src, { recursive: true });
  execFileSync(
    'sh',
    [
      '-c',
      `git archive ${commit} src libs scripts tsconfig.json tsconfig.build.json | tar -x -C ${src}`,
    ],
    { cwd: ROOT },
  );
  const dir = resolve(CACHE, `build-${commit}`);
  compile(src, dir);
  return { name, dir, commit };
}
