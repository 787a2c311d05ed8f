/**
 * Base class of every error this library throws, so that callers can catch them all with one
 * `instanceof` check. Each subclass says what was wrong, where, and what to do about it.
 */
export class TransactionalError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}
