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
  // NOTE: the overload spec (issue 12) runs on demand, `npm run test:overload`: with one
  // endpoint it failed its throughput assertion (0.79-1.05x, three runs) while every arriving
  // job cost the worker a Bull job cycle; since jobs for a busy endpoint are parked at enqueue
  // it passed its one run so far (1.25x, see the README). It joins this suite once repeated
  // runs of both variants show it holds.
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
