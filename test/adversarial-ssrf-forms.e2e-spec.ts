/**
 * Adversarial: address forms beyond test/redteam-ssrf.e2e-spec.ts (metadata, link-local,
 * private, SIIT/IPv4-compatible/Teredo/NAT64 IPv6 forms, octal/hex/decimal spellings) are
 * refused with a 4xx on POST and PATCH, and nothing is stored.
 */
import request from 'supertest';
import { Tenant, createTenant } from './support/api';
import { E2eApp, startE2eApp } from './support/harness';

describe('adversarial: SSRF address forms with only 127.0.0.2 allowed', () => {
  let svc: E2eApp;
  let t: Tenant;

  beforeAll(async () => {
    svc = await startE2eApp({ allowSubnets: ['127.0.0.2/32'] });
    t = await createTenant(svc, 'adv-ssrf');
  });
  afterAll(async () => {
    await svc?.close();
  });

  const forms = [
    'http://169.254.169.254/latest/meta-data/',
    'http://169.254.169.254./',
    'http://0251.0376.0251.0376/',
    'http://0xa9.0xfe.0xa9.0xfe/',
    'http://2852039166/',
    'http://0xa9fea9fe/',
    'http://169.254.43518/',
    'http://[::ffff:169.254.169.254]/',
    'http://[::ffff:a9fe:a9fe]/',
    'http://[::ffff:0:a9fe:a9fe]/',
    'http://[::a9fe:a9fe]/',
    'http://[64:ff9b::169.254.169.254]/',
    'http://[2002:a9fe:a9fe::1]/',
    'http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/',
    'http://[fd00:ec2::254]/',
    'http://[fe80::1]/',
    'http://[fc00::1]/',
    'http://[ff02::1]/',
    'http://[::]/',
    'http://[0:0:0:0:0:0:0:1]/',
    'http://100.100.100.200/',
    'http://168.63.129.16/',
    'http://10.0.0.1/',
    'http://0x0a.1/',
    'http://172.16.0.1/',
    'http://192.168.1.1/',
    'http://100.64.0.1/',
    'http://255.255.255.255/',
    'http://224.0.0.1/',
    'http://240.0.0.1/',
    'http://192.0.0.170/',
    'http://198.18.0.1/',
    'https://127.0.0.1:443/',
    'http://ip6-localhost/',
    'http://localhost.localdomain/',
  ];

  it('should refuse every form on POST with a 4xx and store nothing', async () => {
    const accepted: string[] = [];
    for (const url of forms) {
      const res = await request(svc.url)
        .post('/v1/endpoints')
        .set(t.auth)
        .send({ url });
      if (res.status < 400 || res.status >= 500)
        accepted.push(`${url} -> ${res.status}`);
    }
    expect(accepted).toEqual([]);
    const list = await request(svc.url)
      .get('/v1/endpoints')
      .set(t.auth)
      .expect(200);
    expect(list.body.data).toEqual([]);
  });

  it('should refuse every form on PATCH and keep the old URL', async () => {
    const ep = (
      await request(svc.url)
        .post('/v1/endpoints')
        .set(t.auth)
        .send({ url: 'http://127.0.0.2:9/ok' })
        .expect(201)
    ).body;
    const accepted: string[] = [];
    for (const url of forms) {
      const res = await request(svc.url)
        .patch(`/v1/endpoints/${ep.id}`)
        .set(t.auth)
        .send({ url });
      if (res.status < 400 || res.status >= 500)
        accepted.push(`${url} -> ${res.status}`);
    }
    expect(accepted).toEqual([]);
    const after = await request(svc.url)
      .get(`/v1/endpoints/${ep.id}`)
      .set(t.auth)
      .expect(200);
    expect(after.body.url).toBe('http://127.0.0.2:9/ok');
  });
});
