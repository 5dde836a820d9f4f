import { describe, expect, it } from 'vitest';
import { ALL_SCOPES } from '../domain/tenancy/tenancy.types.ts';
import { can, effectiveScopes, ROLE_SCOPES } from './policy.ts';

describe('effectiveScopes', () => {
  it('gives the roles’ scopes when the token carries no scope claim', () => {
    expect([...effectiveScopes(undefined, ['reader'])]).toEqual(['memories:read', 'code:read']);
    expect(effectiveScopes(undefined, ['owner']).size).toBe(ALL_SCOPES.length);
  });

  it('narrows role scopes to the token’s Engram scopes, never widening them', () => {
    expect([...effectiveScopes(['memories:read', 'admin:keys'], ['member'])]).toEqual(['memories:read']);
  });

  it('lets roles decide when the scope claim holds no Engram scope (openid profile email)', () => {
    expect([...effectiveScopes(['openid', 'profile', 'email'], ['admin'])].sort()).toEqual(
      [...ROLE_SCOPES.admin].sort(),
    );
  });

  it('uses the token’s scopes alone without roles, ignoring unknown names', () => {
    expect([...effectiveScopes(['audit:read', 'bogus:scope'], [])]).toEqual(['audit:read']);
    expect(effectiveScopes(['openid'], []).size).toBe(0);
  });
});

describe('can', () => {
  it('answers from the context’s scopes only', () => {
    const ctx = { scopes: new Set(['memories:read'] as const) };
    expect(can(ctx, 'memories:read')).toBe(true);
    expect(can(ctx, 'memories:write')).toBe(false);
  });
});
