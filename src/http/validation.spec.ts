import { BadRequestException } from '@nestjs/common';
import { IsOptional, IsString } from 'class-validator';
import { validationPipe } from './validation';

class QueryDto {
  @IsOptional()
  @IsString()
  type?: string;
}

const query = (text: string) =>
  validationPipe().transform(Object.fromEntries(new URLSearchParams(text)), {
    type: 'query',
    metatype: QueryDto,
  });

/** The way Express's default (node:querystring) parser hands a query over: no prototype. */
const nullPrototype = (entries: Record<string, string>) =>
  Object.assign(Object.create(null) as object, entries);

describe('validationPipe', () => {
  it('should pass a known key', async () => {
    await expect(query('type=a')).resolves.toEqual({ type: 'a' });
  });

  it('should refuse an unknown key', async () => {
    await expect(query('sort=asc')).rejects.toThrow(BadRequestException);
  });

  it.each([
    '__proto__',
    'constructor',
    'prototype',
    'hasOwnProperty',
    'toString',
    'valueOf',
    'isPrototypeOf',
    '__defineGetter__',
  ])('should refuse a key named %s like any unknown key', async (key) => {
    const pipe = validationPipe();
    const value = nullPrototype({ [key]: '1', type: 'a' });
    const error = await pipe
      .transform(value, { type: 'query', metatype: QueryDto })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BadRequestException);
    expect((error as BadRequestException).getResponse()).toMatchObject({
      statusCode: 400,
      message: [`property ${key} should not exist`],
    });
  });
});
