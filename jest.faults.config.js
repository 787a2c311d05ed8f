/**
 * Process-level fault specs (`npm run test:faults`): each starts the service as child
 * processes with its own database and redis-server, and kills things. Not part of `npm test`.
 * @type {import('jest').Config}
 */
module.exports = {
  moduleFileExtensions: ['js', 'json', 'ts'],
  rootDir: '.',
  testEnvironment: 'node',
  testRegex: 'test/faults/.*\\.fault-spec\\.ts$',
  // NOTE: the overload spec (issue 12) runs on demand, `npm run test:overload`. On 2026-12-04
  // five one-endpoint runs read 1.05x, 1.04x, 1.04x, 0.83x and 0.95x: one in five under 0.9x is
  // too many for a check that blocks every landing (bench/results/overload-2026-12-04-runs.txt
  // says why: with one endpoint the rate follows the machine's wake-up latency).
  testPathIgnorePatterns: process.env.OVERLOAD_SPEC
    ? []
    : ['/overload\\.fault-spec\\.ts$'],
  transform: {
    '^.+\\.ts$': 'ts-jest',
  },
  globalSetup: '<rootDir>/test/faults/global-setup.ts',
  globalTeardown: '<rootDir>/test/faults/global-teardown.ts',
  testTimeout: 180000,
};
