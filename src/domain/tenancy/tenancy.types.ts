export interface Org {
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  /** Home region: only instances serving this region may touch the org's data. */
  readonly region: string;
  readonly createdAt: Date;
}

/** Every permission a credential can carry. Routes and MCP tools each require one. */
export const ALL_SCOPES = [
  'memories:read',
  'memories:write',
  'admin:keys',
  'audit:read',
  'ops:read',
  'jobs:read',
  'jobs:write',
  'code:read',
  'code:write',
] as const;
export type Scope = (typeof ALL_SCOPES)[number];

export const ALL_ROLES = ['owner', 'admin', 'member', 'reader', 'service'] as const;
export type Role = (typeof ALL_ROLES)[number];

export const isScope = (s: string): s is Scope => (ALL_SCOPES as readonly string[]).includes(s);
export const isRole = (s: string): s is Role => (ALL_ROLES as readonly string[]).includes(s);

export type AuthMethod = 'api_key' | 'jwt' | 'jwt_dpop' | 'system';

/** Who is calling, for which org, with which rights. Resolved once per request. */
export interface RequestContext {
  readonly orgId: string;
  readonly actor: {
    readonly type: 'api_key' | 'user' | 'service' | 'system';
    /** Key id, or the token's `sub`. */
    readonly id: string;
  };
  readonly roles: readonly Role[];
  readonly scopes: ReadonlySet<Scope>;
  readonly authMethod: AuthMethod;
  readonly requestId: string;
}

export interface ApiKey {
  readonly id: string;
  readonly name: string;
  readonly prefix: string;
  readonly scopes: readonly Scope[];
  readonly createdAt: Date;
  readonly expiresAt: Date | null;
  readonly revokedAt: Date | null;
  readonly lastUsedAt: Date | null;
}

/** A freshly created key: the only moment its secret exists in plain text. */
export interface IssuedApiKey {
  readonly key: ApiKey;
  readonly secret: string;
}
