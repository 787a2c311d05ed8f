/**
 * The `trip.delayed` event's payload is built in SQL, in the statement that delays the trip
 * (one round trip): it must read exactly as `JSON.stringify` writes the response's `trip` and
 * `delay`, for any text, any accepted date-time and any total delay (years past 9999 too).
 */
import fc from 'fast-check';
import request from 'supertest';
import { isoTimestampSql } from '../src/database/sql-json';
import { Tenant, createTenant, tripBody } from './support/api';
import { E2eApp, startE2eApp } from './support/harness';

const RUNS = Number(process.env.DELAY_PAYLOAD_RUNS ?? 60);

/** Microseconds since 1970 from 4713 BC (Postgres' first day) to JavaScript's last one. */
const MIN_US = -210_800_000_000_000_000n;
const MAX_US = 8_640_000_000_000_000_000n;

/** What `Date.prototype.toISOString` writes for the instant `us` (truncated to the ms). */
function jsIso(us: bigint): string {
  const ms = us / 1000n - (us % 1000n < 0n ? 1n : 0n);
  return new Date(Number(ms)).toISOString();
}

/** Text the API stores: no NUL, no unpaired surrogate (those are refused or replaced). */
const text = (maxLength: number) =>
  fc
    .string({ unit: 'binary', minLength: 1, maxLength })
    .filter(
      (s) =>
        !s.includes('\u0000') &&
        !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(
          s,
        ),
    );

const pad = (n: number, width = 2) => String(n).padStart(width, '0');

/** Date-times the API accepts: years 0001-9999, fractions of 0-9 digits, offsets to ±14:00. */
const dateTime = fc
  .record({
    year: fc.oneof(fc.integer({ min: 1, max: 9999 }), fc.constantFrom(1, 9999)),
    month: fc.integer({ min: 1, max: 12 }),
    day: fc.integer({ min: 1, max: 28 }),
    hour: fc.integer({ min: 0, max: 23 }),
    minute: fc.integer({ min: 0, max: 59 }),
    second: fc.integer({ min: 0, max: 59 }),
    fraction: fc.stringMatching(/^\d{0,9}$/),
    offset: fc.oneof(
      fc.constant('Z'),
      fc
        .record({
          sign: fc.constantFrom('+', '-'),
          minutes: fc.integer({ min: 0, max: 14 * 60 }),
        })
        .map(
          ({ sign, minutes }) =>
            `${sign}${pad(Math.floor(minutes / 60))}:${pad(minutes % 60)}`,
        ),
    ),
  })
  .map(
    (d) =>
      `${pad(d.year, 4)}-${pad(d.month)}-${pad(d.day)}T${pad(d.hour)}:${pad(d.minute)}:` +
      `${pad(d.second)}${d.fraction ? `.${d.fraction}` : ''}${d.offset}`,
  );

describe('the trip.delayed payload built in SQL', () => {
  let svc: E2eApp;
  let tenant: Tenant;

  beforeAll(async () => {
    svc = await startE2eApp();
    tenant = await createTenant(svc, 'delay-payload');
  });

  afterAll(async () => {
    await svc?.close();
  });

  it('should write every timestamp as toISOString writes the Date node-postgres reads', async () => {
    const edges = [
      MIN_US,
      MAX_US,
      -62_167_219_200_000_000n, // 0000-01-01T00:00:00Z (1 BC)
      -62_167_219_200_000_001n,
      -62_135_596_800_000_001n, // the last microsecond of 1 BC
      253_402_300_799_999_999n, // 9999-12-31T23:59:59.999999Z
      253_402_300_800_000_000n, // 10000-01-01
      -1n,
      0n,
      999n,
      1_000n,
    ];
    const check = async (instants: bigint[]) => {
      const rows: { us: string; iso: string }[] = await svc.dataSource.query(
        `SELECT us::text, ${isoTimestampSql(
          // NOTE: in whole days and microseconds (interval arithmetic is float8: exact below 2^53).
          `('epoch'::timestamp + (us / 86400000000) * interval '1 day'
              + (us % 86400000000) * interval '1 microsecond') AT TIME ZONE 'UTC'`,
        )} AS iso FROM unnest($1::bigint[]) us`,
        [instants.map(String)],
      );
      expect(rows.map((r) => [r.us, r.iso])).toEqual(
        instants.map((us) => [String(us), jsIso(us)]),
      );
    };
    await check(edges);
    // In another session time zone: the text must not move.
    const runner = svc.dataSource.createQueryRunner();
    try {
      await runner.query(`SET TimeZone = 'Pacific/Chatham'`);
      const [row] = await runner.query(
        `SELECT ${isoTimestampSql(`'2026-03-01 12:34:56.789999+00'::timestamptz`)} AS iso`,
      );
      expect(row.iso).toBe('2026-03-01T12:34:56.789Z');
    } finally {
      await runner.release();
    }
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.bigInt({ min: MIN_US, max: MAX_US }), {
          minLength: 1,
          maxLength: 50,
        }),
        check,
      ),
      { numRuns: RUNS },
    );
  });

  it('should store the payload exactly as JSON.stringify writes the response, for any text and date', async () => {
    let n = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.record({
          reference: text(40),
          origin: text(200),
          destination: text(200),
          plannedArrival: dateTime,
          delays: fc.array(
            fc.record({
              minutes: fc.oneof(
                fc.integer({ min: 1, max: 30 * 24 * 60 }),
                fc.constant(30 * 24 * 60),
              ),
              reason: text(500),
            }),
            { minLength: 1, maxLength: 3 },
          ),
        }),
        async ({ reference, origin, destination, plannedArrival, delays }) => {
          n += 1;
          const created = await request(svc.url)
            .post('/v1/trips')
            .set(tenant.auth)
            .send(
              tripBody({
                reference: `${n}-${reference}`,
                origin,
                destination,
                plannedArrival,
              }),
            )
            .expect(201);
          for (const { minutes, reason } of delays) {
            const res = await request(svc.url)
              .post(`/v1/trips/${created.body.id}/delays`)
              .set(tenant.auth)
              .send({ minutes, reason })
              .expect(201);
            const { trip, delay, event } = res.body;
            const expected = JSON.stringify({
              trip,
              delay: { id: delay.id, minutes, reason },
            });
            const [stored] = await svc.dataSource.query(
              'SELECT type, payload::text AS text, trip_id FROM events WHERE id = $1',
              [event.id],
            );
            expect(stored).toEqual({
              type: 'trip.delayed',
              text: expected,
              trip_id: created.body.id,
            });
            expect(event.payload).toEqual(JSON.parse(expected));
            expect(trip.reference).toBe(`${n}-${reference}`);
            expect(delay.reason).toBe(reason);
            const got = await request(svc.url)
              .get(`/v1/trips/${created.body.id}`)
              .set(tenant.auth)
              .expect(200);
            expect(got.body).toEqual(trip);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it('should write the delay past year 9999 as JavaScript does (+010000)', async () => {
    const created = await request(svc.url)
      .post('/v1/trips')
      .set(tenant.auth)
      .send(tripBody({ plannedArrival: '9999-12-31T23:00:00.123456+14:00' }))
      .expect(201);
    expect(created.body.expectedArrival).toBe('9999-12-31T09:00:00.123Z');
    let last;
    for (let i = 0; i < 2; i++)
      last = await request(svc.url)
        .post(`/v1/trips/${created.body.id}/delays`)
        .set(tenant.auth)
        .send({ minutes: 30 * 24 * 60, reason: 'very late' })
        .expect(201);
    expect(last!.body.trip.expectedArrival).toBe('+010000-02-29T09:00:00.123Z');
    const [stored] = await svc.dataSource.query(
      'SELECT payload::text AS text FROM events WHERE id = $1',
      [last!.body.event.id],
    );
    expect(stored.text).toContain(
      '"expectedArrival":"+010000-02-29T09:00:00.123Z"',
    );
  });
});
