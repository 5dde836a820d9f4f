export interface Org {
  readonly id: string;
  readonly slug: string;
  readonly name: string;
  readonly createdAt: Date;
}

export type Scope = 'memories:read' | 'memories:write' | 'keys:admin';
export const ALL_SCOPES: readonly Scope[] = ['memories:read', 'memories:write', 'keys:admin'];

/** Who is calling, for which org, with which rights. Resolved once per request. */
export interface RequestContext {
  readonly orgId: string;
  readonly actor: { readonly type: 'api_key' | 'system'; readonly id: string };
  readonly scopes: ReadonlySet<Scope>;
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
