import { createOutboxMigration } from 'nestjs-transactional-jobs';

/** The transactional outbox that the durable delivery queue writes to. */
export class TransactionalOutbox1764090100000 extends createOutboxMigration() {
  name = 'TransactionalOutbox1764090100000';
}
