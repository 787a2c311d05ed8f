import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

/** Resolves as the app's own modules do (CommonJS or ESM alike). */
const appRequire = createRequire(join(process.cwd(), 'package.json'));

/** The entries of the tarball `npm pack` made, relative to its `package/` folder. */
function tarballEntries(): string[] {
  const tarball = process.env.CONSUMER_TARBALL;
  if (!tarball) throw new Error('CONSUMER_TARBALL is not set (run.sh sets it)');
  return execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((entry) => {
      assert.ok(entry.startsWith('package/'), entry);
      return entry.slice('package/'.length);
    })
    .sort();
}

const DOCS = ['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE'];

describe('the published tarball', () => {
  const entries = tarballEntries();

  it('should hold the manifest, the docs, and dist with a declaration file per module', () => {
    for (const file of [
      ...DOCS,
      'dist/index.js',
      'dist/index.d.ts',
      'dist/testing/index.js',
      'dist/testing/index.d.ts',
    ]) {
      assert.ok(entries.includes(file), `${file} is missing`);
    }
    const others = entries.filter((entry) => !DOCS.includes(entry));
    assert.deepEqual(
      others.filter((entry) => !/^dist\/.+\.(js|d\.ts)$/.test(entry)),
      [],
    );
    assert.deepEqual(
      others
        .filter((entry) => entry.endsWith('.js'))
        .filter((entry) => !entries.includes(entry.replace(/\.js$/, '.d.ts'))),
      [],
    );
  });

  it('should hold no tests, no TypeScript sources and no source maps', () => {
    assert.deepEqual(
      entries.filter((entry) =>
        /(^|\/)(test|tests|__tests__)\/|\.spec\.|\.map$|(?<!\.d)\.ts$|tsbuildinfo/.test(
          entry,
        ),
      ),
      [],
    );
  });

  it('should resolve both entry points into dist, with their types', () => {
    const manifest = JSON.parse(
      readFileSync(
        appRequire.resolve('nestjs-transactional-jobs/package.json'),
        'utf8',
      ),
    );
    assert.deepEqual(manifest.exports['.'], {
      types: './dist/index.d.ts',
      default: './dist/index.js',
    });
    assert.deepEqual(manifest.exports['./testing'], {
      types: './dist/testing/index.d.ts',
      default: './dist/testing/index.js',
    });
    assert.match(
      appRequire.resolve('nestjs-transactional-jobs'),
      /node_modules\/nestjs-transactional-jobs\/dist\/index\.js$/,
    );
    assert.match(
      appRequire.resolve('nestjs-transactional-jobs/testing'),
      /node_modules\/nestjs-transactional-jobs\/dist\/testing\/index\.js$/,
    );
  });
});
