import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { v7 as uuidv7 } from 'uuid';
import { AppError, errors } from '../../errors.ts';
import type { SystemStore, TenantDb } from '../../ports/tenant-db.ts';
import {
  ALL_SCOPES,
  isScope,
  type ApiKey,
  type IssuedApiKey,
  type Org,
  type RequestContext,
  type Scope,
} from './tenancy.types.ts';

/**
 * API keys look like `egm_<prefix>_<secret>`. The prefix is a public lookup
 * handle; the secret (256 random bits) is stored only as a SHA-256 hash, which
 * is enough for high-entropy secrets and keeps verification cheap.
 */
const KEY_RE = /^egm_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$/;
const TOUCH_EVERY_MS = 60_000;

const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

export class ApiKeyService {
  private readonly lastTouch = new Map<string, number>();

  constructor(private readonly deps: { tenantDb: TenantDb; system: SystemStore }) {}

  /**
   * Issues a key. `grantor` is the creating caller's scopes: a key never gets
   * a scope its creator lacks (no privilege escalation through key minting);
   * without scopes in the input it inherits the grantor's. Only bootstrap and
   * operator CLI calls omit `grantor`.
   */
  async create(
    orgId: string,
    input: { name: string; scopes?: readonly Scope[] | undefined; expiresAt?: Date | null | undefined },
    grantor?: ReadonlySet<Scope>,
  ): Promise<IssuedApiKey> {
    const name = input.name.trim();
    if (name.length === 0 || name.length > 100)
      throw errors.validation('name must be 1–100 characters', { field: 'name' });
    const scopes = [...new Set(input.scopes ?? (grantor === undefined ? ALL_SCOPES : [...grantor]))];
    if (scopes.length === 0) throw errors.validation('a key needs at least one scope', { field: 'scopes' });
    const beyond = grantor === undefined ? [] : scopes.filter((s) => !grantor.has(s));
    if (beyond.length > 0) {
      throw new AppError('FORBIDDEN', `A key cannot get scopes its creator lacks: ${beyond.join(', ')}`, {
        details: { scopes: beyond },
      });
    }
    if (input.expiresAt != null && input.expiresAt.getTime() <= Date.now()) {
      throw errors.validation('expiresAt must be in the future', { field: 'expiresAt' });
    }
    const prefix = randomBytes(9)
      .toString('base64url')
      .toLowerCase()
      .replace(/[^a-z0-9]/g, '0')
      .slice(0, 12);
    const secret = randomBytes(32).toString('base64url');
    const key = await this.deps.tenantDb.withTenant(orgId, ({ apiKeys }) =>
      apiKeys.insertKey({
        id: uuidv7(),
        name,
        prefix,
        secretHash: sha256(secret),
        scopes,
        expiresAt: input.expiresAt ?? null,
      }),
    );
    return { key, secret: `egm_${prefix}_${secret}` };
  }

  list(ctx: RequestContext): Promise<ApiKey[]> {
    return this.deps.tenantDb.withTenant(ctx.orgId, ({ apiKeys }) => apiKeys.findKeys());
  }

  async revoke(ctx: RequestContext, id: string): Promise<ApiKey> {
    const k = await this.deps.tenantDb.withTenant(ctx.orgId, ({ apiKeys }) => apiKeys.revokeKey(id));
    if (k === undefined) throw errors.notFound('api key', id);
    return k;
  }

  /** Resolves a presented key to a request context, or throws UNAUTHENTICATED. */
  async authenticate(token: string, requestId: string): Promise<RequestContext> {
    const m = KEY_RE.exec(token);
    if (m === null) throw errors.unauthenticated('The API key is malformed');
    const [, prefix = '', secret = ''] = m;
    const cred = await this.deps.system.findApiKeyByPrefix(prefix);
    const presented = Buffer.from(sha256(secret), 'hex');
    // Compare even when the key is unknown, so timing does not reveal prefixes.
    const stored = Buffer.from(cred?.secretHash ?? sha256('unknown'), 'hex');
    const match = presented.length === stored.length && timingSafeEqual(presented, stored);
    if (cred === undefined || !match) throw errors.unauthenticated('The API key is not valid');
    // The cause (never sent to clients) lets the audit log file the attempt under the key's org.
    const known = { orgId: cred.orgId, actorId: cred.id };
    if (cred.revokedAt !== null) {
      throw new AppError('UNAUTHENTICATED', 'The API key has been revoked', { cause: known });
    }
    if (cred.expiresAt !== null && cred.expiresAt.getTime() <= Date.now()) {
      throw new AppError('UNAUTHENTICATED', 'The API key has expired', { cause: known });
    }
    const now = Date.now();
    if ((this.lastTouch.get(cred.id) ?? 0) + TOUCH_EVERY_MS < now) {
      this.lastTouch.set(cred.id, now);
      await this.deps.tenantDb.withTenant(cred.orgId, ({ apiKeys }) => apiKeys.touchKey(cred.id));
    }
    return {
      orgId: cred.orgId,
      actor: { type: 'api_key', id: cred.id },
      roles: [],
      scopes: new Set(cred.scopes.filter(isScope)),
      authMethod: 'api_key',
      requestId,
    };
  }

  /**
   * First start: creates the org `default` and an admin key with every scope.
   * Returns the key's secret when it was just created (it is never shown again).
   */
  async bootstrap(region: string): Promise<{ org: Org; adminKey: string | undefined }> {
    const existing = await this.deps.system.findOrgBySlug('default');
    if (existing !== undefined) return { org: existing, adminKey: undefined };
    const org = await this.deps.system.insertOrg({ id: uuidv7(), slug: 'default', name: 'Default', region });
    const issued = await this.create(org.id, { name: 'admin (bootstrap)', scopes: ALL_SCOPES });
    return { org, adminKey: issued.secret };
  }
}
