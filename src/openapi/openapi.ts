import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, OpenAPIObject, SwaggerModule } from '@nestjs/swagger';
import { ADMIN_TOKEN_SCHEME, API_KEY_SCHEME } from './api-docs.decorators';

/** The OpenAPI document of the service, generated from its controllers and DTOs. */
export function buildOpenApiDocument(app: INestApplication): OpenAPIObject {
  const config = new DocumentBuilder()
    .setTitle('Transactional webhooks')
    .setDescription(
      'Trips, delays and events of a logistics platform, delivered to each account\u2019s ' +
        'webhook endpoints (Standard Webhooks signatures). Every `/v1` route takes ' +
        '`Authorization: Bearer <api key>` (accounts: the admin token) and counts against the ' +
        'account\u2019s rate limit. Lists are pages: `limit` and the `cursor` of the previous page.',
    )
    .setVersion('1')
    .addBearerAuth(
      {
        type: 'http',
        scheme: 'bearer',
        description: 'An account\u2019s API key.',
      },
      API_KEY_SCHEME,
    )
    .addBearerAuth(
      {
        type: 'http',
        scheme: 'bearer',
        description:
          'The ADMIN_TOKEN: creates accounts; shows health details on /health routes.',
      },
      ADMIN_TOKEN_SCHEME,
    )
    .build();
  return SwaggerModule.createDocument(app, config);
}

/** Serves the document at `/docs-json` and Swagger UI at `/docs`. */
export function setupOpenApi(app: INestApplication): void {
  SwaggerModule.setup('docs', app, () => buildOpenApiDocument(app), {
    jsonDocumentUrl: 'docs-json',
    yamlDocumentUrl: 'docs-yaml',
  });
}
