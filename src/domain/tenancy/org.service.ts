import { v7 as uuidv7 } from 'uuid';
import { AppError, errors } from '../../errors.ts';
import type { SystemStore } from '../../ports/tenant-db.ts';
import type { Org } from './tenancy.types.ts';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const SLUG_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const CACHE_MS = 30_000;

/**
 * Orgs (the tenants) and where they live. Authentication resolves every
 * request's org through `resolve`, so lookups are cached briefly; a region
 * change reaches other replicas within `CACHE_MS`.
 */
export class OrgService {
  private readonly cache = new Map<string, { org: Org | undefined; until: number }>();

  constructor(
    private readonly deps: {
      system: SystemStore;
      /** This instance's home region (new orgs get it) and the regions it serves. */
      residency: { region: string; servedRegions: readonly string[] };
    },
  ) {}

  /** An org by id or slug (JWT org claims may carry either), or undefined. */
  async resolve(ref: string): Promise<Org | undefined> {
    const hit = this.cache.get(ref);
    if (hit !== undefined && hit.until > Date.now()) return hit.org;
    const org = UUID_RE.test(ref)
      ? await this.deps.system.findOrgById(ref)
      : SLUG_RE.test(ref)
        ? await this.deps.system.findOrgBySlug(ref)
        : undefined;
    if (this.cache.size > 10_000) this.cache.clear();
    this.cache.set(ref, { org, until: Date.now() + CACHE_MS });
    return org;
  }

  /** Refuses an org whose home region this instance does not serve (data residency). */
  assertServed(org: Org): void {
    if (this.deps.residency.servedRegions.includes(org.region)) return;
    throw new AppError(
      'RESIDENCY_VIOLATION',
      `Org ${org.slug} lives in region ${org.region}; this instance serves ${this.deps.residency.servedRegions.join(', ')}`,
      { details: { orgRegion: org.region, servedRegions: this.deps.residency.servedRegions } },
    );
  }

  async create(input: { slug: string; name?: string | undefined; region?: string | undefined }): Promise<Org> {
    if (!SLUG_RE.test(input.slug)) {
      throw errors.validation('slug must be lowercase letters, digits and -, up to 63', { field: 'slug' });
    }
    const region = input.region ?? this.deps.residency.region;
    if (!SLUG_RE.test(region))
      throw errors.validation('region must be lowercase letters, digits and -', { field: 'region' });
    if ((await this.deps.system.findOrgBySlug(input.slug)) !== undefined) {
      throw errors.conflict(`An org with slug ${input.slug} exists`, { slug: input.slug });
    }
    return this.deps.system.insertOrg({ id: uuidv7(), slug: input.slug, name: input.name ?? input.slug, region });
  }

  list(): Promise<Org[]> {
    return this.deps.system.findOrgs();
  }

  async setRegion(slug: string, region: string): Promise<Org> {
    if (!SLUG_RE.test(region))
      throw errors.validation('region must be lowercase letters, digits and -', { field: 'region' });
    const org = await this.deps.system.updateOrgRegion(slug, region);
    if (org === undefined) throw errors.notFound('org', slug);
    this.cache.clear();
    return org;
  }
}
