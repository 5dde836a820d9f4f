import { AppError } from '../errors.ts';

/** The OAuth error codes a resource server sends back (RFC 6750 §3.1, RFC 9449 §7.1, §8). */
export type OAuthErrorCode =
  'invalid_request' | 'invalid_token' | 'insufficient_scope' | 'invalid_dpop_proof' | 'use_dpop_nonce';

/** A `WWW-Authenticate` challenge: which scheme to retry with and why the last try failed. */
export interface AuthChallenge {
  readonly scheme: 'Bearer' | 'DPoP';
  readonly error?: OAuthErrorCode | undefined;
  readonly description?: string | undefined;
  /** The scope that was missing (insufficient_scope). */
  readonly scope?: string | undefined;
}

/**
 * An authentication or authorisation failure that carries the challenge the
 * client needs. `http/` turns it into a 401/403 with `WWW-Authenticate`;
 * `message` is safe to show and never includes the token.
 */
export class AuthError extends AppError {
  readonly challenge: AuthChallenge;

  constructor(
    code: 'UNAUTHENTICATED' | 'FORBIDDEN',
    message: string,
    challenge: AuthChallenge,
    options: { cause?: unknown; details?: unknown } = {},
  ) {
    super(code, message, {
      cause: options.cause,
      details: {
        ...(challenge.error === undefined ? {} : { oauthError: challenge.error }),
        ...(options.details ?? {}),
      },
    });
    this.challenge = challenge;
  }
}

export const isAuthError = (e: unknown): e is AuthError => e instanceof AuthError;

export const authErrors = {
  /** No credentials at all: a bare challenge, no error code (RFC 6750 §3.1). */
  missing: (message = 'Credentials are required: Authorization: Bearer <API key or token>') =>
    new AuthError('UNAUTHENTICATED', message, { scheme: 'Bearer' }),
  invalidToken: (description: string, scheme: 'Bearer' | 'DPoP' = 'Bearer', cause?: unknown) =>
    new AuthError('UNAUTHENTICATED', description, { scheme, error: 'invalid_token', description }, { cause }),
  invalidRequest: (description: string, scheme: 'Bearer' | 'DPoP' = 'Bearer') =>
    new AuthError('UNAUTHENTICATED', description, { scheme, error: 'invalid_request', description }),
  invalidDpopProof: (description: string, cause?: unknown) =>
    new AuthError(
      'UNAUTHENTICATED',
      `Invalid DPoP proof: ${description}`,
      { scheme: 'DPoP', error: 'invalid_dpop_proof', description },
      { cause },
    ),
  useDpopNonce: () =>
    new AuthError('UNAUTHENTICATED', 'Resend the DPoP proof with the server nonce from the DPoP-Nonce header', {
      scheme: 'DPoP',
      error: 'use_dpop_nonce',
      description: 'Authorization server requires nonce in DPoP proof',
    }),
  insufficientScope: (scope: string, scheme: 'Bearer' | 'DPoP' = 'Bearer') =>
    new AuthError(
      'FORBIDDEN',
      `The credentials lack the scope ${scope}`,
      { scheme, error: 'insufficient_scope', description: `requires ${scope}`, scope },
      { details: { requiredScope: scope } },
    ),
};
