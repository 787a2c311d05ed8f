import { probe } from './health.controller';

describe('probe', () => {
  it('should answer up or down, and keep the error for the log', async () => {
    const warn = jest.fn();
    await expect(probe(Promise.resolve(1), 'redis', { warn })).resolves.toBe(
      'up',
    );
    const refused = new Error('connect ECONNREFUSED 10.1.2.3:6379');
    await expect(
      probe(Promise.reject(refused), 'redis', { warn }),
    ).resolves.toBe('down');
    expect(warn).toHaveBeenCalledWith(
      'health: redis is down: Error: connect ECONNREFUSED 10.1.2.3:6379',
    );
  });
});
