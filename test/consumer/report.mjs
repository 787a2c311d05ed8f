/**
 * node:test reporter for the consumer test: one JSON line shaped like the parts of a jest --json
 * report that .ci/run sums (numPassedTests, numFailedTests, numRuntimeErrorTestSuites). Suites
 * are not counted; a spec file that fails to load counts as one failed test.
 */
export default async function* consumerReport(source) {
  let passed = 0;
  let failed = 0;
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    if (event.data.details?.type === 'suite') continue;
    if (event.type === 'test:pass' && !event.data.skip && !event.data.todo)
      passed += 1;
    if (event.type === 'test:fail') failed += 1;
  }
  // No test at all is a failure too: the run proved nothing.
  const numRuntimeErrorTestSuites = passed + failed === 0 ? 1 : 0;
  yield `${JSON.stringify({ numPassedTests: passed, numFailedTests: failed, numRuntimeErrorTestSuites })}\n`;
}
