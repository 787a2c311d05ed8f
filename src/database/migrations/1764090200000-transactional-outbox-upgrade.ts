import { createOutboxUpgradeMigration } from 'nestjs-transactional-jobs';

/**
 * The outbox table of `TransactionalOutbox1764090100000` brought to the current library's shape
 * (`available_at`, rows keyed by queue and id); nothing to do on a database created since.
 */
export class TransactionalOutboxUpgrade1764090200000 extends createOutboxUpgradeMigration() {
  name = 'TransactionalOutboxUpgrade1764090200000';
}
