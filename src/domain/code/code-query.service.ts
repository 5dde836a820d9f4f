import type { TenantDb } from '../../ports/tenant-db.ts';
import type { RequestContext } from '../tenancy/tenancy.types.ts';
import type { CodeReference, CodeSymbol, SymbolMatch, SymbolQuery } from './code.types.ts';
import { looksLikeScipSymbol } from './scip.ts';

/** Definitions considered when a plain name matches many symbols. */
const MAX_DEFINITIONS = 50;

/**
 * How a `symbol=` value is read: a SCIP id (`scip-typescript npm pkg 1.0 src/a.ts/f().`),
 * a qualified name (`Parser.parse`, `Parser#parse`, `a::b`) or a plain name.
 */
export function parseSymbolRef(symbol: string): SymbolMatch {
  const s = symbol.trim();
  if (looksLikeScipSymbol(s)) return { by: 'scip', value: s };
  if (/[.#]|::/.test(s)) return { by: 'qualified', value: s.replace(/::|#/g, '.') };
  return { by: 'name', value: s };
}

/** Questions about the org's code graph: find symbols, their definitions and who references them. */
export class CodeQueryService {
  constructor(private readonly deps: { readonly tenantDb: TenantDb }) {}

  /** Case-insensitive; exact names first, then prefixes, then names containing `q`. */
  async findSymbols(ctx: RequestContext, q: SymbolQuery): Promise<CodeSymbol[]> {
    return this.deps.tenantDb.withTenant(ctx.orgId, ({ code }) => code.findSymbols(q));
  }

  async getDefinition(ctx: RequestContext, symbol: string, repoId?: string): Promise<CodeSymbol[]> {
    const match = parseSymbolRef(symbol);
    return this.deps.tenantDb.withTenant(ctx.orgId, ({ code }) => code.findDefinitions(match, repoId, MAX_DEFINITIONS));
  }

  /** The symbols `symbol` names, and the resolved edges into them, strongest first. */
  async findReferences(
    ctx: RequestContext,
    symbol: string,
    opts: { repoId?: string | undefined; limit: number },
  ): Promise<{ symbols: CodeSymbol[]; references: CodeReference[] }> {
    const match = parseSymbolRef(symbol);
    return this.deps.tenantDb.withTenant(ctx.orgId, async ({ code }) => {
      const symbols = await code.findDefinitions(match, opts.repoId, MAX_DEFINITIONS);
      const references = await code.findReferences(
        symbols.map((s) => s.id),
        opts.limit,
      );
      return { symbols, references };
    });
  }
}
