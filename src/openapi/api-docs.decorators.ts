import { applyDecorators, Type } from '@nestjs/common';
import {
  ApiBearerAuth,
  ApiExtraModels,
  ApiOkResponse,
  ApiResponse,
  getSchemaPath,
} from '@nestjs/swagger';
import { ErrorResponseDto } from './error-response.dto';

/** Security scheme of `Authorization: Bearer <api key>` (every `/v1` route but accounts). */
export const API_KEY_SCHEME = 'api-key';
/** Security scheme of `Authorization: Bearer <ADMIN_TOKEN>`. */
export const ADMIN_TOKEN_SCHEME = 'admin-token';

const ERROR_DESCRIPTIONS: Record<number, string> = {
  400: 'The request is malformed or a field is invalid (nothing was changed).',
  401: 'The Authorization header is missing, malformed, or holds an unknown key.',
  404: 'No such resource in the caller\u2019s account.',
  409: 'The request conflicts with the resource\u2019s state (nothing was changed).',
  422: 'The request is well-formed but refused (e.g. a webhook URL the SSRF policy forbids).',
  429: 'The account\u2019s rate limit is exhausted; retry after `Retry-After` seconds.',
};

/** Documents each error status with the shared error body. */
export function ApiErrors(...statuses: number[]) {
  return applyDecorators(
    ...statuses.map((status) =>
      ApiResponse({
        status,
        description: ERROR_DESCRIPTIONS[status],
        type: ErrorResponseDto,
        ...(status === 429
          ? {
              headers: {
                'Retry-After': {
                  description: 'Seconds until the account may call again.',
                  schema: { type: 'integer' },
                },
              },
            }
          : {}),
      }),
    ),
  );
}

/** A controller whose routes authenticate with an API key and count against its rate limit. */
export function ApiKeyAuth() {
  return applyDecorators(ApiBearerAuth(API_KEY_SCHEME), ApiErrors(401, 429));
}

/**
 * A `200` page of `item`s (a response DTO): `data` and the `nextCursor` to pass as `cursor`
 * for the next page (`null` on the last page).
 */
export function ApiPage(item: Type<unknown>, description: string) {
  return applyDecorators(
    ApiExtraModels(item),
    ApiOkResponse({
      description,
      schema: {
        type: 'object',
        required: ['data', 'nextCursor'],
        properties: {
          data: { type: 'array', items: { $ref: getSchemaPath(item) } },
          nextCursor: {
            type: 'string',
            nullable: true,
            description:
              'Pass as `cursor` to get the next page; null on the last one.',
          },
        },
      },
    }),
  );
}
