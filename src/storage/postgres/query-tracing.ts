import { SpanKind, type Span, type Tracer } from '@opentelemetry/api';
import {
  ATTR_DB_OPERATION_NAME,
  ATTR_DB_QUERY_TEXT,
  ATTR_DB_SYSTEM_NAME,
  DB_SYSTEM_NAME_VALUE_POSTGRESQL,
} from '@opentelemetry/semantic-conventions';
import {
  PostgresQueryCompiler,
  type KyselyPlugin,
  type PluginTransformQueryArgs,
  type PluginTransformResultArgs,
  type QueryResult,
  type RootOperationNode,
  type UnknownRow,
} from 'kysely';

/** Statements longer than this are cut in spans. */
export const MAX_STATEMENT_CHARS = 2_048;

const OPERATIONS: Partial<Record<RootOperationNode['kind'], string>> = {
  SelectQueryNode: 'SELECT',
  InsertQueryNode: 'INSERT',
  UpdateQueryNode: 'UPDATE',
  DeleteQueryNode: 'DELETE',
  MergeQueryNode: 'MERGE',
};

/**
 * A CLIENT span `db.query` per statement, child of whatever span is active
 * when the query runs. The span carries the operation and the statement text
 * as compiled (placeholders `$1…`, never parameter values), cut to
 * {@link MAX_STATEMENT_CHARS}.
 *
 * A plugin sees a query compiled and its result, not its failure: a
 * statement that fails leaves its span unfinished, so it is not exported —
 * the request's span still records the error.
 */
export class QueryTracingPlugin implements KyselyPlugin {
  private readonly spans = new WeakMap<object, Span>();
  private readonly compiler = new PostgresQueryCompiler();

  constructor(private readonly tracer: Tracer) {}

  transformQuery(args: PluginTransformQueryArgs): RootOperationNode {
    const span = this.tracer.startSpan('db.query', {
      kind: SpanKind.CLIENT,
      attributes: { [ATTR_DB_SYSTEM_NAME]: DB_SYSTEM_NAME_VALUE_POSTGRESQL },
    });
    if (span.isRecording()) {
      // Compiled only for sampled spans: the statement text costs a second compilation.
      const text = this.compiler.compileQuery(args.node, args.queryId).sql;
      const operation = OPERATIONS[args.node.kind] ?? /^\s*(\w+)/.exec(text)?.[1]?.toUpperCase();
      if (operation !== undefined) span.setAttribute(ATTR_DB_OPERATION_NAME, operation);
      span.setAttribute(
        ATTR_DB_QUERY_TEXT,
        text.length > MAX_STATEMENT_CHARS ? text.slice(0, MAX_STATEMENT_CHARS) : text,
      );
      this.spans.set(args.queryId, span);
    }
    return args.node;
  }

  async transformResult(args: PluginTransformResultArgs): Promise<QueryResult<UnknownRow>> {
    const span = this.spans.get(args.queryId);
    if (span !== undefined) {
      this.spans.delete(args.queryId);
      span.setAttribute('db.response.returned_rows', args.result.rows.length);
      span.end();
    }
    return args.result;
  }
}
