import { execFileSync } from 'child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'fs';
import { dirname, join, relative, resolve } from 'path';

const ROOT = resolve(__dirname, '../..');
const CACHE = resolve(ROOT, 'node_modules/.cache/bench-e2e');

function compile(srcRoot: string, outDir: string) {
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const tsc = resolve(ROOT, 'node_modules/typescript/bin/tsc');
  const project = resolve(srcRoot, 'tsconfig.build.json');
  execFileSync(
    process.execPath,
    [tsc, '-p', project, '--outDir', outDir, '--noCheck'],
    { cwd: srcRoot, stdio: 'inherit' },
  );
}

function jsFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) return jsFiles(path);
    return path.endsWith('.js') ? [path] : [];
  });
}

/**
 * Builds of before the npm workspace imported the library as `@app/transactional` (a tsconfig
 * path): its compiled `require`s are pointed at the compiled library, as tsc-alias did.
 */
function rewriteAppAlias(outDir: string) {
  const lib = join(outDir, 'libs/transactional/src');
  if (!existsSync(lib)) return;
  for (const file of jsFiles(outDir)) {
    const text = readFileSync(file, 'utf8');
    if (!text.includes('@app/transactional')) continue;
    const rel = relative(dirname(file), lib) || '.';
    writeFileSync(
      file,
      text.replace(
        /require\("@app\/transactional(\/[^"]*)?"\)/g,
        (_m, sub: string | undefined) =>
          `require("${rel.startsWith('.') ? rel : `./${rel}`}${sub ?? ''}")`,
      ),
    );
  }
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
  rewriteAppAlias(dir);
  return { name, dir, commit };
}
