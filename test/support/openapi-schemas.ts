import Ajv, { type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import type { Response } from 'supertest';

type Schema = Record<string, unknown>;

/** The methods of the API's operations, as supertest names them. */
export type HttpMethod = 'get' | 'post' | 'patch' | 'delete';

interface MediaType {
  schema?: Schema;
}

interface ResponseObject {
  content?: Record<string, MediaType>;
}

/** The parts of `/docs-json` the validator reads. */
export interface OpenApiDocument {
  paths: Record<
    string,
    Record<string, { responses: Record<string, ResponseObject> }>
  >;
  components: { schemas: Record<string, Schema> };
}

/** Where the document's `components.schemas` live in the validator (`$defs` of one schema). */
const ROOT = 'openapi';

/** OpenAPI annotations JSON Schema has no keyword for (Ajv's strict mode refuses them). */
const ANNOTATIONS = ['example', 'xml', 'externalDocs', 'deprecated'];

/**
 * An OpenAPI 3.0 schema as a JSON Schema (draft-07) that Ajv validates strictly:
 * - `nullable: true` becomes a `null` in `type` (and in `enum`), or an `anyOf` with `null`
 *   for a `$ref` / `allOf` schema, which has no `type`;
 * - `$ref`s to `#/components/schemas/X` point into the validator's copy of the components;
 * - every object schema with `properties` and no `additionalProperties` of its own gets
 *   `additionalProperties: false`: a response member that no DTO declares is an error
 *   (free-form objects, e.g. an event payload, say `additionalProperties: true`).
 */
export function toStrictJsonSchema(schema: unknown): unknown {
  if (Array.isArray(schema)) return schema.map(toStrictJsonSchema);
  if (schema === null || typeof schema !== 'object') return schema;
  const out: Schema = {};
  for (const [key, value] of Object.entries(schema)) {
    if (ANNOTATIONS.includes(key) || key === 'nullable') continue;
    if (key === '$ref' && typeof value === 'string') {
      out.$ref = value.replace('#/components/schemas/', `${ROOT}#/$defs/`);
    } else if (key === 'properties' || key === 'patternProperties') {
      // A map of names to schemas: its keys are not keywords.
      out[key] = Object.fromEntries(
        Object.entries(value as Schema).map(([name, sub]) => [
          name,
          toStrictJsonSchema(sub),
        ]),
      );
    } else {
      out[key] = toStrictJsonSchema(value);
    }
  }
  if (out.properties !== undefined && out.additionalProperties === undefined)
    out.additionalProperties = false;
  if ((schema as Schema).nullable !== true) return out;
  if (out.type === undefined) return { anyOf: [out, { type: 'null' }] };
  out.type = [out.type, 'null'];
  if (Array.isArray(out.enum)) out.enum = [...out.enum, null];
  return out;
}

/** The media type of a `content-type` header, without parameters. */
function mediaType(res: Response): string | undefined {
  return res.headers['content-type']?.split(';')[0].trim().toLowerCase();
}

/**
 * Checks real responses against the responses an OpenAPI document declares for their
 * operation and status, and records which (operation, status) pairs it checked.
 */
export class ResponseValidator {
  /** Every mismatch seen, one line each (`METHOD /template STATUS: problem`). */
  readonly problems: string[] = [];
  /** `METHOD /template STATUS` of every response checked. */
  readonly checked = new Set<string>();
  private readonly ajv = new Ajv({
    allErrors: true,
    strict: true,
    // NOTE: `nullable` becomes a type union (`['string', 'null']`).
    allowUnionTypes: true,
  });
  private readonly compiled = new Map<string, ValidateFunction>();

  constructor(private readonly doc: OpenApiDocument) {
    addFormats(this.ajv);
    const $defs = Object.fromEntries(
      Object.entries(doc.components.schemas).map(([name, schema]) => [
        name,
        toStrictJsonSchema(schema),
      ]),
    );
    this.ajv.addSchema({ $id: ROOT, $defs });
  }

  /** Checks `res`, the answer to `method` on the document path `template` (`/v1/trips/{id}`). */
  check(method: string, template: string, res: Response): void {
    const op = `${method.toUpperCase()} ${template} ${res.status}`;
    this.checked.add(op);
    const operation = this.doc.paths[template]?.[method.toLowerCase()];
    if (!operation) {
      this.problems.push(`${op}: no such operation in the document`);
      return;
    }
    const declared = operation.responses[String(res.status)];
    if (!declared) {
      this.problems.push(`${op}: status not documented`);
      return;
    }
    const contents = declared.content ?? {};
    if (Object.keys(contents).length === 0) {
      if (res.text)
        this.problems.push(`${op}: documented without a body, got one`);
      return;
    }
    const type = mediaType(res);
    const media = type ? contents[type] : undefined;
    if (!media?.schema) {
      this.problems.push(
        `${op}: content-type ${type} not documented (${Object.keys(contents).join(', ')})`,
      );
      return;
    }
    const body = type === 'application/json' ? res.body : res.text;
    const validate = this.validator(`${op} ${type}`, media.schema);
    if (!validate(body)) {
      for (const error of validate.errors ?? []) {
        const extra =
          error.keyword === 'additionalProperties'
            ? ` (${String(error.params.additionalProperty)})`
            : '';
        this.problems.push(
          `${op}: ${error.instancePath || '/'} ${error.message}${extra}`,
        );
      }
    }
  }

  /**
   * Documented responses with a body whose status matches `statuses` that were never
   * checked (a `match` on the path narrows them further).
   */
  unchecked(statuses: RegExp, match: (path: string) => boolean = () => true) {
    const missing: string[] = [];
    for (const [path, ops] of Object.entries(this.doc.paths)) {
      if (!match(path)) continue;
      for (const [method, operation] of Object.entries(ops))
        for (const [status, response] of Object.entries(operation.responses)) {
          const op = `${method.toUpperCase()} ${path} ${status}`;
          if (
            statuses.test(status) &&
            response.content &&
            !this.checked.has(op)
          )
            missing.push(op);
        }
    }
    return missing;
  }

  private validator(key: string, schema: Schema): ValidateFunction {
    let validate = this.compiled.get(key);
    if (!validate) {
      validate = this.ajv.compile(toStrictJsonSchema(schema) as Schema);
      this.compiled.set(key, validate);
    }
    return validate;
  }
}
