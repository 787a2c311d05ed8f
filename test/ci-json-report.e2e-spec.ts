import { execFile } from 'child_process';
import { mkdtempSync, readFileSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';

/**
 * CI counts tests from jest's `--json` reports (.ci/run). A failing assertion that holds a BigInt
 * made jest write no report at all (`JSON.stringify` throws on BigInt), so a whole lane counted
 * as one failure with no details. The global setup now gives BigInt a `toJSON` in jest's own
 * realm (test/support/json-report-bigint.ts), not in the specs' realm.
 */
describe("CI's jest --json report", () => {
  const dir = mkdtempSync(join(tmpdir(), 'ci-json-report-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('should be written, with the failure, when a failing assertion holds a BigInt', async () => {
    const report = join(dir, 'report.json');
    await new Promise<void>((resolve) =>
      execFile(
        process.execPath,
        [
          require.resolve('jest/bin/jest'),
          '--testRegex',
          'test/fixtures/bigint-failure\\.fixture\\.ts$',
          '--json',
          `--outputFile=${report}`,
        ],
        { cwd: join(__dirname, '..'), timeout: 120_000 },
        // NOTE: jest exits 1 (a test fails, on purpose); the report is what is checked.
        () => resolve(),
      ),
    );
    const r = JSON.parse(readFileSync(report, 'utf8'));
    expect({
      passed: r.numPassedTests,
      failed: r.numFailedTests,
      failure: r.testResults[0].assertionResults.find(
        (a: { status: string }) => a.status === 'failed',
      )?.failureDetails[0]?.matcherResult,
    }).toMatchObject({
      passed: 1,
      failed: 1,
      failure: { actual: { n: '1n' }, expected: { n: '2n' } },
    });
  });
});
