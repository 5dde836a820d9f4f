/**
 * The classes of routes that are rate-limited separately. `import` is the
 * bulk write (POST /v1/memories/batch), charged per item rather than per request.
 */
export const RATE_CLASSES = ['read', 'write', 'search', 'admin', 'import'] as const;
export type RateClass = (typeof RATE_CLASSES)[number];

/** Requests (for `import`: items) per minute for each class. */
export type PerMinute = Readonly<Record<RateClass, number>>;

/** An org's overrides, in requests per minute; `null`: the configured default. */
export type OrgQuotas = Readonly<Record<RateClass, number | null>>;
