import {
  ConflictException,
  Injectable,
  NotFoundException,
} from '@nestjs/common';
import { QueryFailedError } from 'typeorm';
import { TransactionHost } from 'nestjs-transactional-jobs';
import {
  EventsService,
  present as presentEvent,
} from '../events/events.service';
import { preparedQuery, preparedStatement } from '../database/prepared-query';
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
 * reason): the trip's new row and the delay's id and time; no row when the trip does not exist
 * in the account or has arrived. `updated_at` is the transaction's time, as TypeORM sets it.
 */
export const REPORT_DELAY_SQL = `WITH trip AS (
    UPDATE trips SET status = 'delayed',
           delay_minutes_total = delay_minutes_total + $3,
           expected_arrival = expected_arrival + make_interval(mins => $3),
           updated_at = now()
     WHERE id = $1 AND account_id = $2 AND status <> 'arrived'
     RETURNING id, account_id, reference, origin, destination, planned_arrival,
               expected_arrival, status, delay_minutes_total, created_at, updated_at),
  delay AS (
    INSERT INTO trip_delays (trip_id, minutes, reason)
    SELECT id, $3, $4 FROM trip RETURNING id, created_at)
  SELECT trip.*, delay.id AS delay_id, delay.created_at AS delay_created_at
    FROM trip, delay`;

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
   * together; the delivery jobs are enqueued only once all of it is committed. The trip is
   * updated (its row locked) and the delay inserted in one statement; a trip that did not
   * change is then looked up to tell 404 from 409.
   */
  async reportDelay(accountId: string, id: string, dto: ReportDelayDto) {
    const [row] = await preparedQuery<
      TripRow & { delay_id: string; delay_created_at: Date }
    >(this.tx.manager, REPORT_DELAY, [id, accountId, dto.minutes, dto.reason]);
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
    const event = await this.events.publish(
      accountId,
      'trip.delayed',
      {
        trip,
        delay: { id: delay.id, minutes: delay.minutes, reason: delay.reason },
      },
      row.id,
    );
    return {
      trip,
      delay,
      event: { ...presentEvent(event), deliveries: event.deliveries },
    };
  }

  async arrive(accountId: string, id: string) {
    const trip = await this.find(accountId, id, true);
    if (trip.status === 'arrived')
      throw new ConflictException(`Trip ${id} has already arrived`);
    trip.status = 'arrived';
    const saved = await this.tx.getRepository(Trip).save(trip);
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
