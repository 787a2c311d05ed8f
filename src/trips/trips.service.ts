import {
  ConflictException,
  Injectable,
  NotFoundException,
} from '@nestjs/common';
import { QueryFailedError } from 'typeorm';
import { TransactionHost } from 'nestjs-transactional-jobs';
import {
  EventsService,
  PUBLISHED_COLUMNS,
  PUBLISHED_FROM,
  PublishedRow,
  present as presentEvent,
  publishCtes,
} from '../events/events.service';
import { preparedStatement } from '../database/prepared-query';
import { isoTimestampSql } from '../database/sql-json';
import { requireDateTime } from '../http/date-time';
import { CreateTripDto } from './dto/create-trip.dto';
import { ReportDelayDto } from './dto/report-delay.dto';
import { Trip, TripStatus } from './trip.entity';

/** Whether a query failed on a unique constraint (Postgres error 23505). */
function isUniqueViolation(error: unknown): boolean {
  return (
    error instanceof QueryFailedError && error.driverError?.code === '23505'
  );
}

/**
 * Delays a trip of an account unless it has arrived ($1 trip, $2 account, $3 minutes, $4
 * reason) and stores its `trip.delayed` event and deliveries ($5 ms to the first attempt, see
 * {@link publishCtes}), in one statement: a row per delivery with the trip's new row, the
 * delay's id and time and the event's payload text; no row (and nothing changed) when the trip
 * does not exist in the account or has arrived. `updated_at`, the delay's and the event's time
 * are the clock once the trip's row is locked (`locked`, before the UPDATE computes the new row:
 * an UPDATE computes it before it waits for the lock), not the transaction's start, which a delay
 * that waited for another one's lock would carry into the past: a trip's changes and its events
 * are in the order they committed. The payload is built here as `JSON.stringify` writes the response's `trip`
 * and `delay` (same keys in the same order, dates by {@link isoTimestampSql}); at most a few kB
 * (the text fields' lengths are capped), far below the
 * events' limit (`MAX_PAYLOAD_BYTES`).
 */
export const REPORT_DELAY_SQL = `WITH locked AS MATERIALIZED (
    SELECT id FROM trips WHERE id = $1 AND account_id = $2 FOR UPDATE),
  trip AS (
    UPDATE trips t SET status = 'delayed',
           delay_minutes_total = t.delay_minutes_total + $3,
           expected_arrival = t.expected_arrival + make_interval(mins => $3),
           updated_at = clock_timestamp()
      FROM locked
     WHERE t.id = locked.id AND t.status <> 'arrived'
     RETURNING t.id, t.account_id, t.reference, t.origin, t.destination, t.planned_arrival,
               t.expected_arrival, t.status, t.delay_minutes_total, t.created_at, t.updated_at),
  delay AS (
    INSERT INTO trip_delays (trip_id, minutes, reason, created_at)
    SELECT id, $3, $4, updated_at FROM trip RETURNING id, created_at),
  payload AS (
    SELECT row_to_json(p) AS json FROM (
      SELECT (SELECT row_to_json(t) FROM (
                SELECT trip.id, trip.reference, trip.origin, trip.destination, trip.status,
                       ${isoTimestampSql('trip.planned_arrival')} AS "plannedArrival",
                       ${isoTimestampSql('trip.expected_arrival')} AS "expectedArrival",
                       trip.delay_minutes_total AS "delayMinutesTotal",
                       ${isoTimestampSql('trip.created_at')} AS "createdAt",
                       ${isoTimestampSql('trip.updated_at')} AS "updatedAt") t) AS trip,
             (SELECT row_to_json(d) FROM (
                SELECT delay.id, $3::int AS minutes, $4::text AS reason) d) AS delay
        FROM trip, delay) p),
  ${publishCtes({
    account: '$2',
    type: "'trip.delayed'",
    payload: 'payload.json',
    trip: 'trip.id',
    delayMs: '$5',
    from: 'trip, payload',
    createdAt: 'trip.updated_at',
  })}
  SELECT trip.*, delay.id AS delay_id, delay.created_at AS delay_created_at,
         payload.json::text AS payload_text, ${PUBLISHED_COLUMNS}
    FROM trip, delay, payload, ${PUBLISHED_FROM}`;

const REPORT_DELAY = preparedStatement('report_delay', REPORT_DELAY_SQL);

/** A row of `trips` as Postgres returns it. */
interface TripRow {
  id: string;
  account_id: string;
  reference: string;
  origin: string;
  destination: string;
  planned_arrival: Date;
  expected_arrival: Date;
  status: TripStatus;
  delay_minutes_total: number;
  created_at: Date;
  updated_at: Date;
}

function fromRow(row: TripRow): Trip {
  return {
    id: row.id,
    accountId: row.account_id,
    reference: row.reference,
    origin: row.origin,
    destination: row.destination,
    plannedArrival: row.planned_arrival,
    expectedArrival: row.expected_arrival,
    status: row.status,
    delayMinutesTotal: row.delay_minutes_total,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
  };
}

/** A row of {@link REPORT_DELAY_SQL}. */
type ReportedDelayRow = TripRow &
  PublishedRow & {
    delay_id: string;
    delay_created_at: Date;
    payload_text: string;
  };

/** Trips and their state changes; each change stores its event in the same transaction. */
@Injectable()
export class TripsService {
  constructor(
    private readonly tx: TransactionHost,
    private readonly events: EventsService,
  ) {}

  /** Must run in a transaction (the controller's). */
  async create(accountId: string, dto: CreateTripDto) {
    const repo = this.tx.getRepository(Trip);
    const taken = () =>
      new ConflictException(`A trip with reference "${dto.reference}" exists`);
    if (await repo.existsBy({ accountId, reference: dto.reference }))
      throw taken();
    const plannedArrival = requireDateTime(
      dto.plannedArrival,
      'plannedArrival',
    );
    const trip = await repo
      .save(
        repo.create({
          ...dto,
          accountId,
          plannedArrival,
          expectedArrival: plannedArrival,
        }),
      )
      .catch((error: unknown) => {
        // NOTE: a concurrent request can take the reference between the check and the insert.
        throw isUniqueViolation(error) ? taken() : error;
      });
    await this.events.publish(
      accountId,
      'trip.created',
      { trip: present(trip) },
      trip.id,
    );
    return present(trip);
  }

  /** The trip, or 404 when it does not exist in this account. */
  async find(accountId: string, id: string, lock = false): Promise<Trip> {
    const trip = await this.tx.getRepository(Trip).findOne({
      where: { id, accountId },
      ...(lock ? { lock: { mode: 'pessimistic_write' as const } } : {}),
    });
    if (!trip) throw new NotFoundException(`Trip ${id} not found`);
    return trip;
  }

  async get(accountId: string, id: string) {
    return present(await this.find(accountId, id));
  }

  /**
   * The motivating case: the trip row, a delay row, the event and its deliveries change
   * together; the delivery jobs are enqueued only once all of it is committed. All four are
   * written by one statement (one round trip to Postgres); a trip that did not change is then
   * looked up to tell 404 from 409.
   */
  async reportDelay(accountId: string, id: string, dto: ReportDelayDto) {
    const {
      rows: [row],
      deliveries,
    } = await this.events.publishWith<ReportedDelayRow>(REPORT_DELAY, [
      id,
      accountId,
      dto.minutes,
      dto.reason,
    ]);
    if (!row) {
      await this.find(accountId, id);
      throw new ConflictException(
        `Trip ${id} has arrived; it can no longer be delayed`,
      );
    }
    const trip = present(fromRow(row));
    const delay = {
      tripId: row.id,
      minutes: dto.minutes,
      reason: dto.reason,
      id: row.delay_id,
      createdAt: row.delay_created_at,
    };
    const event = presentEvent({
      id: row.event_id,
      type: 'trip.delayed',
      payloadText: row.payload_text,
      createdAt: row.event_created_at,
    });
    return { trip, delay, event: { ...event, deliveries } };
  }

  async arrive(accountId: string, id: string) {
    const trip = await this.find(accountId, id, true);
    if (trip.status === 'arrived')
      throw new ConflictException(`Trip ${id} has already arrived`);
    // NOTE: the time once the row is locked, not the transaction's start (see REPORT_DELAY_SQL).
    const [[row]]: [TripRow[], number] = await this.tx.manager.query(
      `UPDATE trips SET status = 'arrived', updated_at = clock_timestamp()
        WHERE id = $1 RETURNING *`,
      [trip.id],
    );
    const saved = fromRow(row);
    await this.events.publish(
      accountId,
      'trip.arrived',
      { trip: present(saved) },
      trip.id,
    );
    return present(saved);
  }
}

/** The public shape of a trip. */
export function present(trip: Trip) {
  return {
    id: trip.id,
    reference: trip.reference,
    origin: trip.origin,
    destination: trip.destination,
    status: trip.status,
    plannedArrival: trip.plannedArrival,
    expectedArrival: trip.expectedArrival,
    delayMinutesTotal: trip.delayMinutesTotal,
    createdAt: trip.createdAt,
    updatedAt: trip.updatedAt,
  };
}
