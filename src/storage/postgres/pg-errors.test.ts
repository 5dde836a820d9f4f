import { describe, expect, it } from 'vitest';
import { isConnectionFailure, isPoolTimeout, translateDbError } from './pg-errors.ts';

const pgError = (code: string, message = 'x') => Object.assign(new Error(message), { code });

describe(isConnectionFailure.name, () => {
  it.each([
    ['ECONNREFUSED', pgError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5432')],
    ['ECONNRESET', pgError('ECONNRESET')],
    ['57P01 admin_shutdown', pgError('57P01', 'terminating connection due to administrator command')],
    ['57P03 cannot_connect_now', pgError('57P03', 'the database system is starting up')],
    ['08006 connection_failure', pgError('08006')],
    ['a dropped connection', new Error('Connection terminated unexpectedly')],
    ['a connect timeout', new Error('Connection terminated due to connection timeout')],
    ['a broken client', new Error('Client has encountered a connection error and is not queryable')],
  ])('is true for %s', (_name, e) => {
    expect(isConnectionFailure(e)).toBe(true);
    expect(translateDbError(e)).toMatchObject({ code: 'UNAVAILABLE' });
  });

  it.each([
    ['a unique violation', pgError('23505', 'duplicate key')],
    ['a syntax error', pgError('42601')],
    ['a statement timeout', pgError('57014', 'canceling statement due to statement timeout')],
    ['a pool wait timeout', new Error('timeout exceeded when trying to connect')],
    ['a plain error', new Error('boom')],
  ])('is false for %s', (_name, e) => {
    expect(isConnectionFailure(e)).toBe(false);
  });

  it('maps a pool wait timeout to UNAVAILABLE without calling it a connection failure', () => {
    const e = new Error('timeout exceeded when trying to connect');
    expect(isPoolTimeout(e)).toBe(true);
    expect(translateDbError(e)).toMatchObject({ code: 'UNAVAILABLE' });
  });
});
