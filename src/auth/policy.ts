import { ALL_SCOPES, isScope, type Role, type Scope } from '../domain/tenancy/tenancy.types.ts';

/**
 * The one RBAC policy: roles map to scopes, and every REST route and MCP tool
 * requires exactly one scope. Both faces ask `can(ctx, scope)`; nothing else
 * decides access.
 */
export const ROLE_SCOPES: Readonly<Record<Role, readonly Scope[]>> = {
  // The owner holds every scope, including ones added by later releases.
  owner: ALL_SCOPES,
  admin: [
    'memories:read',
    'memories:write',
    'admin:keys',
    'audit:read',
    'ops:read',
    'jobs:read',
    'jobs:write',
    'code:read',
    'code:write',
  ],
  // Reading the code graph is part of everyday agent work; registering repositories is an admin's.
  member: ['memories:read', 'memories:write', 'code:read'],
  reader: ['memories:read', 'code:read'],
  service: ['memories:read', 'memories:write', 'code:read'],
};

/**
 * What a token may do. With roles and Engram scopes both present, the token's
 * scopes narrow what the roles allow (a delegated token never exceeds its
 * user); with only one of them, that one decides. Scope values that are not
 * Engram scopes (`openid profile email`, typical of IdPs not configured with
 * Engram's scopes) are ignored, and a scope claim holding none of ours leaves
 * the decision to the roles — the audience check already bound the token to us.
 */
export function effectiveScopes(tokenScopes: readonly string[] | undefined, roles: readonly Role[]): Set<Scope> {
  const ours = tokenScopes?.filter(isScope);
  const granted = ours !== undefined && ours.length > 0 ? ours : undefined;
  if (roles.length === 0) return new Set(granted ?? []);
  const byRole = new Set(roles.flatMap((r) => ROLE_SCOPES[r]));
  return granted === undefined ? byRole : new Set(granted.filter((s) => byRole.has(s)));
}

/** Whether the caller holds `scope`. */
export const can = (ctx: { readonly scopes: ReadonlySet<Scope> }, scope: Scope): boolean => ctx.scopes.has(scope);
