import { AppError, errors } from '../../errors.ts';

/** Translates driver errors (node-postgres or PGlite) into AppErrors at the storage boundary. */
export function translateDbError(e: unknown): unknown {
  if (e instanceof AppError) return e;
  const code = typeof e === 'object' && e !== null && 'code' in e ? String(e.code) : '';
  switch (code) {
    case '23505':
      return errors.conflict('A record with the same unique key already exists', {
        constraint: (e as { constraint?: string }).constraint,
      });
    case '57014':
      return errors.timeout('The database query', e);
    case '22P02':
    case '22007':
    case '22008':
      return errors.validation('A value has an invalid format for the database');
    case '57P01':
    case '57P03':
    case '08000':
    case '08003':
    case '08006':
    case 'ECONNREFUSED':
      return errors.unavailable('The database', e);
    default:
      return e;
  }
}

export async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw translateDbError(e);
  }
}
