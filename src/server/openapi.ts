/** `GET /openapi.json`: an OpenAPI 3.1 document generated from the route table and its schemas. */
import type { RouteSpec } from './context.js';
import type { JsonSchema } from './schemas.js';

const STATUS_TEXT: Record<string, string> = {
  200: 'OK', 201: 'Granted', '4XX': 'Client error: { error: { code, message, ...data } }', '5XX': 'Store unavailable or internal error',
};

/** `/v1/leases/:id` → `/v1/leases/{id}`; `/v1/locks/*` → `/v1/locks/{key}`. */
function openapiPath(url: string): string {
  return url.replace(/:([A-Za-z]+)/g, '{$1}').replace(/\*$/, '{key}');
}

function parameters(route: RouteSpec): unknown[] {
  const out: unknown[] = [];
  const add = (where: 'path' | 'query', schema: JsonSchema | undefined): void => {
    const properties = (schema?.['properties'] ?? {}) as Record<string, JsonSchema>;
    const required = new Set((schema?.['required'] ?? []) as string[]);
    for (const [name, property] of Object.entries(properties)) {
      const { description, ...rest } = property as { description?: string };
      out.push({
        name: name === '*' ? 'key' : name, in: where, required: where === 'path' || required.has(name),
        ...(description === undefined ? {} : { description }), schema: rest,
      });
    }
  };
  add('path', route.schema.params);
  add('query', route.schema.querystring);
  return out;
}

export function openapiDocument(routes: readonly RouteSpec[], version: string): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const route of routes) {
    const path = openapiPath(route.url);
    const responses: Record<string, unknown> = {};
    for (const [status, schema] of Object.entries(route.schema.response ?? {})) {
      const type = status.startsWith('2') && route.produces ? route.produces : 'application/json';
      responses[status] = { description: STATUS_TEXT[status] ?? status, content: { [type]: { schema } } };
    }
    if (route.produces && !Object.keys(responses).some((s) => s.startsWith('2'))) {
      responses['200'] = { description: 'OK', content: { [route.produces]: { schema: { type: 'string' } } } };
    }
    const operation: Record<string, unknown> = {
      operationId: route.operationId,
      summary: route.summary,
      parameters: parameters(route),
      responses,
      ...(route.access === 'token' ? {} : { security: [] }),
    };
    if (route.schema.body) {
      const nullable = Array.isArray(route.schema.body['type']) && (route.schema.body['type'] as string[]).includes('null');
      operation['requestBody'] = { required: !nullable, content: { 'application/json': { schema: route.schema.body } } };
    }
    (paths[path] ??= {})[route.method.toLowerCase()] = operation;
  }
  return {
    openapi: '3.1.0',
    info: {
      title: 'holdfast',
      version,
      description:
        'Locks and leases with fencing tokens, fair queues and push hand-off. Errors are { error: { code, message, ...data } }; ' +
        'LOCK_BUSY answers carry Retry-After in whole seconds. Times are ISO 8601 UTC.',
    },
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
    security: [{ bearer: [] }],
    paths,
  };
}
