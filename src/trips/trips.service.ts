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
import { requireDateTime } from '../http/date-time';
import { CreateTripDto } from './dto/create-trip.dto';
import { ReportDelayDto } from './dto/report-delay.dto';
import { TripDelay } from './trip-delay.entity';
import { Trip } from './trip.entity';

/** Whether a query failed on a unique constraint (Postgres error 23505). */
function isUniqueViolation(error: unknown): boolean {
  return (
    error instanceof QueryFailedError && error.driverError?.code === '23505'
  );
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
   * together; the delivery jobs are enqueued only once all of it is committed.
   */
  async reportDelay(accountId: string, id: string, dto: ReportDelayDto) {
    const trip = await this.find(accountId, id, true);
    if (trip.status === 'arrived') {
      throw new ConflictException(
        `Trip ${id} has arrived; it can no longer be delayed`,
      );
    }
    trip.status = 'delayed';
    trip.delayMinutesTotal += dto.minutes;
    trip.expectedArrival = new Date(
      trip.expectedArrival.getTime() + dto.minutes * 60_000,
    );
    const saved = await this.tx.getRepository(Trip).save(trip);
    const delay = await this.tx
      .getRepository(TripDelay)
      .save({ tripId: trip.id, minutes: dto.minutes, reason: dto.reason });
    const event = await this.events.publish(
      accountId,
      'trip.delayed',
      {
        trip: present(saved),
        delay: { id: delay.id, minutes: delay.minutes, reason: delay.reason },
      },
      trip.id,
    );
    return {
      trip: present(saved),
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
