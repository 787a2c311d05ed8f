/**
 * The safety net for values Postgres refuses: a data exception (SQLSTATE class 22) raised by
 * a real query is a JSON 400 that leaks neither SQL nor the database's message; every other
 * error keeps Nest's default handling. The filter is the one AppModule registers.
 */
import { Controller, Get, INestApplication, Query } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { DataSource } from 'typeorm';
import { AppModule } from '../src/app.module';
import { PublicRoute } from '../src/auth/auth.decorators';
import { SILENT, e2eConfig } from './support/harness';

@Controller('probe')
class ProbeController {
  constructor(private readonly dataSource: DataSource) {}

  @PublicRoute()
  @Get('cast')
  async cast(@Query('value') value: string, @Query('type') type: string) {
    const types: Record<string, string> = {
      timestamptz: 'timestamptz',
      int: 'int',
      uuid: 'uuid',
      jsonb: 'jsonb',
    };
    const [row] = await this.dataSource.query(
      `SELECT $1::${types[type]}::text AS v`,
      [value],
    );
    return row;
  }

  @PublicRoute()
  @Get('too-long')
  async tooLong(@Query('value') value: string) {
    return this.dataSource.transaction(async (m) => {
      await m.query('CREATE TEMP TABLE probe (v varchar(3)) ON COMMIT DROP');
      await m.query('INSERT INTO probe VALUES ($1)', [value]);
      return { ok: true };
    });
  }

  @PublicRoute()
  @Get('syntax')
  async syntax() {
    return this.dataSource.query('SELEC 1');
  }

  @PublicRoute()
  @Get('throw')
  fail() {
    throw new Error('not a database error');
  }
}

describe('Postgres data exceptions (class 22) answer 400', () => {
  let app: INestApplication;

  beforeAll(async () => {
    const moduleRef = await Test.createTestingModule({
      imports: [AppModule.forRoot(e2eConfig(), SILENT)],
      controllers: [ProbeController],
    }).compile();
    app = moduleRef.createNestApplication({ logger: false });
    await app.init();
  });

  afterAll(async () => {
    await app?.close();
  });

  it.each([
    // 22007 invalid_datetime_format
    ['timestamptz', '2024', /date or time is not in a form/],
    // 22009 invalid_time_zone_displacement_value
    ['timestamptz', '2024-01-01T10:00:00+99:00', /time zone offset/],
    // 22008 datetime_field_overflow
    ['timestamptz', '2024-13-01T00:00:00Z', /date or time is out of range/],
    // 22003 numeric_value_out_of_range
    ['int', '99999999999', /number is out of range/],
    // 22P02 invalid_text_representation
    ['uuid', 'not-a-uuid', /not in the form its type takes/],
    ['jsonb', '{"a":', /not in the form its type takes/],
  ])('should answer 400 for %s %j', async (type, value, message) => {
    const res = await request(app.getHttpServer())
      .get('/probe/cast')
      .query({ type, value });
    expect(res.status).toBe(400);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.body).toEqual({
      statusCode: 400,
      error: 'Bad Request',
      message: expect.stringMatching(/^a value in the request is not valid: /),
    });
    expect(res.body.message).toMatch(message);
    expect(res.text).not.toMatch(/SELECT|syntax|invalid input|\$1/i);
  });

  it('should answer 400 for a text too long for its column (22001)', async () => {
    const res = await request(app.getHttpServer())
      .get('/probe/too-long')
      .query({ value: 'abcd' });
    expect(res.status).toBe(400);
    expect(res.body.message).toBe(
      'a value in the request is not valid: a text is too long',
    );
  });

  it('should keep a 200 when Postgres reads the value', async () => {
    const res = await request(app.getHttpServer())
      .get('/probe/cast')
      .query({ type: 'int', value: '42' })
      .expect(200);
    expect(res.body).toEqual({ v: '42' });
  });

  it('should keep other database errors a 500 that leaks nothing', async () => {
    const res = await request(app.getHttpServer()).get('/probe/syntax');
    expect(res.status).toBe(500);
    expect(res.body).toEqual({
      statusCode: 500,
      message: 'Internal server error',
    });
  });

  it('should keep other errors a 500', async () => {
    const res = await request(app.getHttpServer()).get('/probe/throw');
    expect(res.status).toBe(500);
    expect(res.body).toEqual({
      statusCode: 500,
      message: 'Internal server error',
    });
  });

  it('should keep HTTP exceptions as they are', async () => {
    const res = await request(app.getHttpServer()).get('/probe/nowhere');
    expect(res.status).toBe(404);
    expect(res.body.statusCode).toBe(404);
  });
});
