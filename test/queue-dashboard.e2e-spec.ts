import { existsSync, mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { chromium } from 'playwright-core';
import request from 'supertest';
import { createTenant, tripBody } from './support/api';
import {
  ADMIN_TOKEN,
  E2eApp,
  eventually,
  startE2eApp,
} from './support/harness';
import { Receiver, startReceiver } from './support/receiver';

/** Debian's chromium package (`apt-get install chromium`; `.ci/run` installs it). */
const CHROMIUM = '/usr/bin/chromium';

/** Set to write the screenshot kept in docs/ (otherwise it goes to a temporary folder). */
const UPDATE = process.env.UPDATE_SCREENSHOTS === '1';

const FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
];

const available = existsSync(CHROMIUM);
if (!available) {
  console.warn(
    `\n\n*** SKIPPED: the queue dashboard browser test needs ${CHROMIUM} ` +
      '(Debian package "chromium": apt-get install -y chromium) ***\n\n',
  );
}

(available ? describe : describe.skip)(
  'when an operator opens the queue dashboard in a browser',
  () => {
    // An API process only: no worker takes the jobs, so they wait in the queue to be seen.
    let svc: E2eApp;
    let receiver: Receiver;
    let jobIds: string[];
    const profile = mkdtempSync(join(tmpdir(), 'dashboard-profile-'));
    const shots = UPDATE ? 'docs' : mkdtempSync(join(tmpdir(), 'dashboard-'));

    beforeAll(async () => {
      svc = await startE2eApp({ role: 'api' });
      receiver = await startReceiver();
      const tenant = await createTenant(svc, 'dashboard');
      const api = () => request(svc.url);
      const endpoint = await api()
        .post('/v1/endpoints')
        .set(tenant.auth)
        .send({ url: receiver.url })
        .expect(201);
      for (let i = 0; i < 3; i++) {
        const trip = await api()
          .post('/v1/trips')
          .set(tenant.auth)
          .send(tripBody())
          .expect(201);
        await api()
          .post(`/v1/trips/${trip.body.id}/delays`)
          .set(tenant.auth)
          .send({ minutes: 10 + i, reason: 'traffic' })
          .expect(201);
      }
      // NOTE: this endpoint's jobs only: the queue may hold other specs' jobs (a delayed retry
      // of theirs is not on the page of waiting jobs; CI7 failed on one).
      jobIds = await eventually(async () => {
        const jobs = (await svc.queue.getJobs(['waiting'])).filter(
          (job) => job.data.endpointId === endpoint.body.id,
        );
        return jobs.length >= 3 && jobs.map((job) => String(job.id));
      }, 'delivery jobs of the endpoint waiting');
    });

    afterAll(async () => {
      await svc?.queue.empty();
      await svc?.close();
      await receiver?.close();
      rmSync(profile, { recursive: true, force: true });
    });

    it('should refuse the dashboard without the admin token', async () => {
      const res = await request(svc.url).get('/admin/queues').expect(401);
      expect(res.headers['www-authenticate']).toBe(
        'Basic realm="queues", charset="UTF-8"',
      );
      await request(svc.url)
        .get('/admin/queues/api/queues')
        .set('authorization', 'Bearer wrong')
        .expect(401);
    });

    it('should render the delivery queue with its jobs after the browser login', async () => {
      const browser = await chromium.launchPersistentContext(profile, {
        executablePath: CHROMIUM,
        headless: true,
        args: FLAGS,
        httpCredentials: { username: 'ops', password: ADMIN_TOKEN },
        viewport: { width: 1280, height: 800 },
      });
      try {
        const page = await browser.newPage();
        const home = await page.goto(`${svc.url}/admin/queues`);
        expect(home?.status()).toBe(200);
        await page.getByText('webhook-deliveries').first().waitFor();
        await page.goto(
          `${svc.url}/admin/queues/queue/webhook-deliveries?status=waiting`,
        );
        for (const id of jobIds) {
          await page.getByText(id).first().waitFor({ timeout: 30_000 });
        }
        await page.screenshot({
          path: join(shots, 'queue-dashboard.png'),
          fullPage: false,
        });
      } finally {
        await browser.close();
      }
    });
  },
);
