import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { TASK_QUEUE, createId3Worker, stageWorkflowId, type PipelineInput } from '@id3/workflows';
import { startHarness, type Harness } from './harness';

// A person's path through the real Temporal Web UI (served by `temporal server start-dev`), in
// headless Chromium: Start Workflow form → pipeline run → the stages visible on its page and in
// the workflow list. Real server, real in-process worker, real stage processes.
jest.setTimeout(150_000);

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const STEP_MS = 30_000;

// Two quick stages (a few seconds of work in total).
const input: PipelineInput = {
  profile: 'demo',
  stages: ['anchors', 'identities'],
  overrides: {
    anchors: { n: 300, dim: 128, iterations: 40, neighbours: 8, refreshEvery: 10 },
    identities: { m: 4 },
  },
};
const STAGES = ['anchors', 'identities'];

describe('the Temporal Web UI', () => {
  let h: Harness | undefined;
  let stopWorker: (() => Promise<void>) | undefined;
  let browser: Browser | undefined;
  let page: Page;

  beforeAll(async () => {
    // Fail (never skip) without a browser: this test is the only one covering the UI.
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium not found at ${CHROMIUM} (CHROMIUM_PATH). Install it with 'npm run setup' ` +
          `(as root it runs 'apt-get update && apt-get install -y chromium'), or point CHROMIUM_PATH at a Chromium/Chrome binary.`,
      );
    }
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Root in a container: no sandbox; no GPU; /dev/shm is small.
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 1000 });
    page.setDefaultTimeout(STEP_MS);

    h = await startHarness({ ui: true });
    const { worker, close } = await createId3Worker({ address: h.server.address, workflowBundle: h.workflowBundle, activityDeps: { progressSignalEveryMs: 500 } });
    const running = worker.run();
    stopWorker = async () => {
      worker.shutdown();
      await running;
      await close();
    };
  });

  afterAll(async () => {
    await browser?.close();
    await stopWorker?.();
    await h?.close();
  });

  /** Run a UI step; on failure, save a screenshot and the page's text next to the server log. */
  async function step<T>(name: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const base = join(h!.dir, `web-ui-${name.replace(/[^a-z0-9]+/gi, '-')}`);
      const saved = await page.screenshot({ path: `${base}.png`, fullPage: true }).then(() => `${base}.png`, () => 'no screenshot');
      await page.evaluate(() => document.body.innerText).then((t) => writeFileSync(`${base}.txt`, `${page.url()}\n\n${t}`), () => undefined);
      (err as Error).message = `Web UI step '${name}' failed (${saved}, page text in ${base}.txt, server log ${join(h!.dir, 'temporal.log')}): ${(err as Error).message}`;
      throw err;
    }
  }

  it('starts a pipeline from the Start Workflow form and shows its stages', async () => {
    const id = `it-web-ui-${Date.now()}`;
    const ui = h!.uiUrl!;

    await step('open the workflow list', async () => {
      await page.goto(`${ui}/namespaces/default/workflows`);
      await page.locator('::-p-aria([name="Start Workflow"])').click();
      await page.waitForSelector('::-p-aria([name="Workflow ID"][role="textbox"])');
    });

    await step('fill and submit the form', async () => {
      await page.locator('::-p-aria([name="Workflow ID"][role="textbox"])').fill(id);
      await page.locator('::-p-aria([name="Task Queue"][role="textbox"])').fill(TASK_QUEUE);
      await page.locator('::-p-aria([name="Workflow Type"][role="textbox"])').fill('pipeline');
      // The input is a CodeMirror editor: type the JSON as one text insertion (no auto-closed brackets).
      const editor = await page.waitForSelector('[role="textbox"][contenteditable="true"][data-language="json"]');
      await editor!.click();
      await page.keyboard.sendCharacter(JSON.stringify(input));
      // Leaving the editor re-formats the JSON (the form grows): do it before aiming at the button.
      await page.locator('::-p-aria([name="Workflow Type"][role="textbox"])').click();
      expect(JSON.parse(await editor!.evaluate((e) => (e as HTMLElement).innerText))).toEqual(input);
      await page.locator('::-p-aria([name="Start Workflow"][role="button"])').click();
    });

    const toast = await page.waitForSelector('::-p-text(Workflow started successfully)');
    console.log('TOAST', await toast!.evaluate((e) => e.outerHTML), await toast!.evaluate((e) => e.closest('a')?.outerHTML));
    const result = await h!.client.workflow.getHandle(id).result();
    expect(result).toBeDefined();
    const dump = async (name: string) => {
      await page.screenshot({ path: `/tmp/ui/${name}.png`, fullPage: true });
      writeFileSync(`/tmp/ui/${name}.txt`, page.url() + '\n' + (await page.evaluate(() => document.body.innerText)));
      writeFileSync(`/tmp/ui/${name}.html`, await page.content());
    };
    await page.goto(`${ui}/namespaces/default/workflows/${id}`, { waitUntil: 'networkidle0' });
    await dump('wf');
    const tabs = await page.$$eval('[role=tab], a[role=tab], nav a', (els) => els.map((e) => `${e.textContent?.trim()} -> ${e.getAttribute('href')}`));
    console.log(tabs.join('\n'));
    await page.goto(`${ui}/namespaces/default/workflows`, { waitUntil: 'networkidle0' });
    await dump('list');
    expect(STAGES.map((s) => stageWorkflowId(id, s))).toHaveLength(2);
  });
});
