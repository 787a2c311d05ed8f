import {
  RetrySchedule,
  STANDARD_WEBHOOKS_SCHEDULE_MS,
  parseRetryAfter,
} from './retry-schedule';

const S = 1_000;
const M = 60 * S;
const H = 60 * M;
const noJitter = () => 0.5;

describe('RetrySchedule', () => {
  it('follows the Standard Webhooks schedule', () => {
    expect(STANDARD_WEBHOOKS_SCHEDULE_MS).toEqual([
      0,
      5 * S,
      5 * M,
      30 * M,
      2 * H,
      5 * H,
      10 * H,
      14 * H,
      20 * H,
      24 * H,
    ]);
    const schedule = new RetrySchedule({ random: noJitter });
    expect(schedule.maxAttempts).toBe(10);
    expect(schedule.initialDelay()).toBe(0);
    const delays = [1, 2, 3, 4, 5, 6, 7, 8, 9].map((n) =>
      schedule.nextDelay(n),
    );
    expect(delays).toEqual(STANDARD_WEBHOOKS_SCHEDULE_MS.slice(1));
    expect(schedule.nextDelay(10)).toBeNull();
    expect(schedule.nextDelay(11)).toBeNull();
  });

  it('applies ±20% jitter', () => {
    expect(new RetrySchedule({ random: () => 0 }).nextDelay(2)).toBe(4 * M);
    expect(new RetrySchedule({ random: () => 0.75 }).nextDelay(2)).toBe(
      5.5 * M,
    );
    const real = new RetrySchedule();
    for (let i = 0; i < 200; i++) {
      const delay = real.nextDelay(1) as number;
      expect(delay).toBeGreaterThanOrEqual(4 * S);
      expect(delay).toBeLessThanOrEqual(6 * S);
    }
  });

  it('lets a longer Retry-After win over the step', () => {
    const schedule = new RetrySchedule({ random: noJitter });
    expect(schedule.nextDelay(1, { retryAfterMs: 60 * S })).toBe(60 * S);
    expect(
      schedule.nextDelay(1, { retryAfterMs: 60 * S, minimumNextStep: true }),
    ).toBe(60 * S);
  });

  it('never shortens the step for 429 and timeouts', () => {
    const schedule = new RetrySchedule({ random: noJitter });
    expect(
      schedule.nextDelay(2, { retryAfterMs: 2 * S, minimumNextStep: true }),
    ).toBe(5 * M);
    expect(schedule.nextDelay(2, { minimumNextStep: true })).toBe(5 * M);
  });

  it('honours a shorter Retry-After otherwise (e.g. 503)', () => {
    const schedule = new RetrySchedule({ random: noJitter });
    expect(schedule.nextDelay(2, { retryAfterMs: 2 * S })).toBe(2 * S);
    expect(schedule.nextDelay(2, { retryAfterMs: null })).toBe(5 * M);
  });

  it('stays exhausted whatever Retry-After says', () => {
    const schedule = new RetrySchedule({ scheduleMs: [0, 100, 200] });
    expect(schedule.maxAttempts).toBe(3);
    expect(schedule.nextDelay(3, { retryAfterMs: 5 * S })).toBeNull();
  });

  it('rejects bad configuration and attempt numbers', () => {
    expect(() => new RetrySchedule({ scheduleMs: [] })).toThrow();
    expect(() => new RetrySchedule({ scheduleMs: [0, -1] })).toThrow();
    expect(() => new RetrySchedule({ scheduleMs: [0, NaN] })).toThrow();
    expect(() => new RetrySchedule({ jitter: 1 })).toThrow();
    expect(() => new RetrySchedule().nextDelay(0)).toThrow(RangeError);
    expect(() => new RetrySchedule().nextDelay(1.5)).toThrow(RangeError);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2024-03-01T12:00:00Z');

  it.each([
    ['120', 120 * S],
    [' 7 ', 7 * S],
    ['0', 1 * S],
    ['100000', 24 * H],
    ['99999999999999999999999', 24 * H],
    ['Fri, 01 Mar 2024 12:00:30 GMT', 30 * S],
    ['Friday, 01-Mar-24 12:05:00 GMT', 5 * M],
    ['Fri Mar  1 12:00:45 2024', 45 * S],
    ['Fri, 01 Mar 2024 11:00:00 GMT', 1 * S],
    ['Sat, 02 Mar 2024 18:00:00 GMT', 24 * H],
  ])('parses %j', (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });

  it.each([
    undefined,
    null,
    '',
    'soon',
    '1.5',
    '-5',
    '12abc',
    '0x10',
    'Fri, 01 Mar 2024 12:00:30',
    '2024-03-01T12:00:30Z',
    'Fri, 01 Foo 2024 12:00:30 GMT',
  ])('returns null for %j', (value) => {
    expect(parseRetryAfter(value, now)).toBeNull();
  });

  it('takes the first of repeated headers, a Date, and custom bounds', () => {
    expect(parseRetryAfter(['3', '9'], now)).toBe(3 * S);
    expect(parseRetryAfter('60', new Date(now))).toBe(60 * S);
    const bounds = { minMs: 10 * S, maxMs: 30 * S };
    expect(parseRetryAfter('1', now, bounds)).toBe(10 * S);
    expect(parseRetryAfter('3600', now, bounds)).toBe(30 * S);
  });
});
