import fastifyCors from '@fastify/cors';
import fastifyHelmet from '@fastify/helmet';
import type { FastifyInstance } from 'fastify';
import type { HttpConfig } from '../../config/config.ts';

/** Headers a client may send and read cross-origin, when an origin is allowed at all. */
const ALLOWED_HEADERS = ['authorization', 'content-type', 'dpop', 'x-request-id', 'traceparent', 'mcp-session-id'];
const EXPOSED_HEADERS = [
  'www-authenticate',
  'dpop-nonce',
  'x-request-id',
  'retry-after',
  'ratelimit-limit',
  'ratelimit-remaining',
  'ratelimit-reset',
  'mcp-session-id',
];

/**
 * Security headers (helmet) and CORS. The API answers JSON, so its CSP denies
 * everything; `/docs` widens it for Swagger UI's own assets. CORS is closed
 * unless origins are listed; HSTS goes only on requests that came over TLS
 * (directly or, with TRUST_PROXY, per X-Forwarded-Proto), since a browser
 * ignores it on plain HTTP and it would pin a local dev host to HTTPS.
 */
export async function registerSecurity(app: FastifyInstance, http: HttpConfig): Promise<void> {
  await app.register(fastifyHelmet, {
    global: true,
    hsts: false,
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'none'"],
        baseUri: ["'none'"],
        formAction: ["'none'"],
        frameAncestors: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'no-referrer' },
    crossOriginResourcePolicy: { policy: 'same-origin' },
  });
  await app.register(fastifyCors, {
    origin: http.corsOrigins.length === 0 ? false : [...http.corsOrigins],
    methods: ['GET', 'POST', 'PATCH', 'PUT', 'DELETE'],
    allowedHeaders: ALLOWED_HEADERS,
    exposedHeaders: EXPOSED_HEADERS,
    credentials: false,
    maxAge: 600,
    strictPreflight: true,
  });
  if (http.hstsMaxAgeSeconds > 0) {
    app.addHook('onSend', async (req, reply) => {
      if (req.protocol === 'https') {
        void reply.header('strict-transport-security', `max-age=${http.hstsMaxAgeSeconds}; includeSubDomains`);
      }
    });
  }
}

/** CSP for the Swagger UI pages: its own scripts and styles, nothing from elsewhere. */
export const DOCS_CSP =
  "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
  "connect-src 'self'; font-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";
