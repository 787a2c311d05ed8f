import { Inject } from '@nestjs/common';
import {
  DEFAULT_CONNECTION_NAME,
  getTransactionAwareFlowProducerToken,
  getTransactionAwareQueueToken,
  getTransactionHostToken,
} from './transactional.constants';

/** Injects the `TransactionAwareQueue` registered for the Bull queue `name`. */
export function InjectTransactionAwareQueue(name: string): ParameterDecorator {
  return Inject(getTransactionAwareQueueToken(name));
}

/** Injects the `TransactionHost` of a named connection (default: `'default'`). */
export function InjectTransactionHost(
  connectionName: string = DEFAULT_CONNECTION_NAME,
): ParameterDecorator {
  return Inject(getTransactionHostToken(connectionName));
}

/** Injects the `TransactionAwareFlowProducer` registered for the BullMQ flow producer `name`. */
export function InjectTransactionAwareFlowProducer(
  name: string,
): ParameterDecorator {
  return Inject(getTransactionAwareFlowProducerToken(name));
}
