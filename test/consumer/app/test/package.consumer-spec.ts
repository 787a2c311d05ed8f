import { execFileSync } from 'child_process';
import { readFileSync } from 'fs';

/** The entries of the tarball `npm pack` made, relative to its `package/` folder. */
function tarballEntries(): string[] {
  const tarball = process.env.CONSUMER_TARBALL;
  if (!tarball) throw new Error('CONSUMER_TARBALL is not set (run.sh sets it)');
  return execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((entry) => {
      expect(entry.startsWith('package/')).toBe(true);
      return entry.slice('package/'.length);
    })
    .sort();
}

describe('the published tarball', () => {
  const entries = tarballEntries();

  it('should hold the manifest, the docs, and dist with a declaration file per module', () => {
    for (const file of [
      'package.json',
      'README.md',
      'CHANGELOG.md',
      'LICENSE',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/testing/index.js',
      'dist/testing/index.d.ts',
    ]) {
      expect(entries).toContain(file);
    }
    const others = entries.filter(
      (entry) =>
        !['package.json', 'README.md', 'CHANGELOG.md', 'LICENSE'].includes(
          entry,
        ),
    );
    expect(
      others.filter((entry) => !/^dist\/.+\.(js|d\.ts)$/.test(entry)),
    ).toEqual([]);
    const modules = others.filter((entry) => entry.endsWith('.js'));
    expect(
      modules.filter(
        (entry) => !entries.includes(entry.replace(/\.js$/, '.d.ts')),
      ),
    ).toEqual([]);
  });

  it('should hold no tests, no TypeScript sources and no source maps', () => {
    expect(
      entries.filter((entry) =>
        /(^|\/)(test|tests|__tests__)\/|\.spec\.|\.map$|(?<!\.d)\.ts$|tsbuildinfo/.test(
          entry,
        ),
      ),
    ).toEqual([]);
  });

  it('should resolve both entry points into dist, with their types', () => {
    const manifest = JSON.parse(
      readFileSync(
        require.resolve('nestjs-transactional-jobs/package.json'),
        'utf8',
      ),
    );
    expect(manifest.exports['.']).toEqual({
      types: './dist/index.d.ts',
      default: './dist/index.js',
    });
    expect(manifest.exports['./testing']).toEqual({
      types: './dist/testing/index.d.ts',
      default: './dist/testing/index.js',
    });
    expect(require.resolve('nestjs-transactional-jobs')).toMatch(
      /node_modules\/nestjs-transactional-jobs\/dist\/index\.js$/,
    );
    expect(require.resolve('nestjs-transactional-jobs/testing')).toMatch(
      /node_modules\/nestjs-transactional-jobs\/dist\/testing\/index\.js$/,
    );
  });
});
