/** The classes of routes that are rate-limited separately. */
export const RATE_CLASSES = ['read', 'write', 'search', 'admin'] as const;
export type RateClass = (typeof RATE_CLASSES)[number];

/** Requests per minute for each class. */
export type PerMinute = Readonly<Record<RateClass, number>>;

/** An org's overrides, in requests per minute; `null`: the configured default. */
export type OrgQuotas = Readonly<Record<RateClass, number | null>>;
