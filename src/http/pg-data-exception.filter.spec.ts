import {
  dataExceptionCode,
  transientConflictCode,
} from './pg-data-exception.filter';

describe('Postgres error classes', () => {
  it('recognises deadlocks and serialization failures, bare or wrapped by TypeORM', () => {
    expect(transientConflictCode({ code: '40P01' })).toBe('40P01');
    expect(transientConflictCode({ driverError: { code: '40001' } })).toBe(
      '40001',
    );
    expect(transientConflictCode({ code: '23505' })).toBeUndefined();
    expect(transientConflictCode(new Error('x'))).toBeUndefined();
    expect(dataExceptionCode({ code: '40P01' })).toBeUndefined();
    expect(dataExceptionCode({ driverError: { code: '22P02' } })).toBe('22P02');
  });
});
