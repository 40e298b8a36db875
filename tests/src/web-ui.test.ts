import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { TASK_QUEUE, stageWorkflowId, type PipelineInput } from '@id3/workflows';
import { startHarness, startInProcessWorker, waitFor, type Harness } from './harness';

// A person's path through the real Temporal Web UI (the one `temporal server start-dev` serves),
// in headless Chromium: the Start Workflow form → a pipeline run → its stages, by name, on the
// pipeline's page, in the workflow list and on a stage's own page. Real server, real in-process
// worker, real stage processes. Assertions are on rendered text; a failed step leaves a
// screenshot and the page's text in the harness's temp dir (named in the error).
jest.setTimeout(120_000);

const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const STEP_MS = 30_000;
const RUN_MS = 60_000;

// Two quick stages: a few seconds of work in all.
const input: PipelineInput = {
  profile: 'demo',
  stages: ['anchors', 'identities'],
  overrides: {
    anchors: { n: 300, dim: 128, iterations: 40, neighbours: 8, refreshEvery: 10 },
    identities: { m: 4 },
  },
};
const STAGES = ['anchors', 'identities'] as const;

// Functions passed to page.evaluate/waitForFunction run in the browser. This project compiles
// without lib.dom, so declare the little of the DOM they use (and cast to it: they are
// serialised into the page, so they cannot call helpers from this file).
interface DomElement {
  readonly textContent: string | null;
  readonly innerText: string;
  readonly parentElement: DomElement | null;
  getBoundingClientRect(): { readonly top: number; readonly bottom: number };
  closest(selector: string): DomElement | null;
  getAttribute(name: string): string | null;
  querySelector(selector: string): DomElement | null;
  querySelectorAll(selector: string): ArrayLike<DomElement>;
}
declare const document: DomElement & { readonly body: DomElement; readonly readyState: string };

/** The status badge next to the workflow id heading, once it is terminal (not Running). */
function terminalStatus(workflowId: string): string | false {
  const heading = document.querySelector('h1[data-testid="workflow-id-heading"]');
  if (!heading?.textContent?.includes(workflowId)) return false;
  const row = heading.getBoundingClientRect();
  const statuses = ['Running', 'Completed', 'Failed', 'Canceled', 'Terminated', 'Timed Out', 'Continued as New'];
  for (const el of Array.from(document.querySelectorAll('main span'))) {
    const text = el.textContent?.trim() ?? '';
    const box = el.getBoundingClientRect();
    if (statuses.includes(text) && box.bottom > row.top && box.top < row.bottom) return text === 'Running' ? false : text;
  }
  return false;
}

describe('the Temporal Web UI', () => {
  let h: Harness | undefined;
  let stopWorker: (() => Promise<void>) | undefined;
  let browser: Browser | undefined;
  let page: Page | undefined;

  beforeAll(async () => {
    // Fail, never skip, without a browser: this is the only test of the UI.
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium not found at ${CHROMIUM} (set CHROMIUM_PATH to use another Chromium/Chrome binary). ` +
          `Install it with 'npm run setup' (as root it runs 'apt-get update && apt-get install -y chromium'), ` +
          `or by hand: sudo apt-get install -y chromium`,
      );
    }
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      // Root in a container: no sandbox; no GPU; a small /dev/shm.
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
    });
    page = await browser.newPage();
    await page.setViewport({ width: 1400, height: 1000 });
    page.setDefaultTimeout(STEP_MS);

    h = await startHarness({ ui: true });
    stopWorker = await startInProcessWorker(h);
  });

  afterAll(async () => {
    await browser?.close();
    await stopWorker?.();
    await h?.close();
  });

  /** One UI step; when it fails, the error names a screenshot and a dump of the page's text. */
  async function step<T>(name: string, fn: (p: Page) => Promise<T>): Promise<T> {
    if (!page || !h) throw new Error('the browser or the Temporal server did not start (see beforeAll)');
    const p = page;
    try {
      return await fn(p);
    } catch (err) {
      const base = join(h.dir, `web-ui-${name.replace(/[^a-z0-9]+/gi, '-')}`);
      const shot = await p.screenshot({ path: `${base}.png`, fullPage: true }).then(
        () => `${base}.png`,
        (e: Error) => `no screenshot: ${e.message}`,
      );
      const text = await p
        .evaluate(() => document.body.innerText)
        .then(
          (t) => (writeFileSync(`${base}.txt`, `${p.url()}\n\n${t}`), `${base}.txt`),
          () => 'no page text',
        );
      const e = err instanceof Error ? err : new Error(String(err));
      e.message = `Web UI step '${name}' failed at ${p.url()}: ${e.message}\n  screenshot: ${shot}\n  page text: ${text}\n  server log: ${join(h.dir, 'temporal.log')}`;
      throw e;
    }
  }

  /**
   * Text rendered inside the page's markdown iframes (`/render?content=…`), keyed by the heading
   * above each, once every heading in `headings` has some. Retried: the frames load (and may be
   * re-rendered) after the page.
   */
  async function renderedMarkdown(p: Page, headings: readonly string[]): Promise<Record<string, string>> {
    let last = 'no markdown iframes yet';
    const read = async (): Promise<Record<string, string> | undefined> => {
      const out: Record<string, string> = {};
      for (const iframe of await p.$$('iframe[title="output"]')) {
        const heading = await iframe.evaluate((el) => {
          for (let a = (el as unknown as DomElement).parentElement; a; a = a.parentElement) {
            const h3 = a.querySelector('h3');
            if (h3) return h3.textContent?.trim() ?? '';
          }
          return '';
        });
        const frame = await iframe.contentFrame();
        const text = await frame?.evaluate(() => (document.readyState === 'complete' ? document.body.innerText.trim() : ''));
        if (text) out[heading] = text;
      }
      last = `rendered so far: ${JSON.stringify(out)}`;
      return headings.every((h) => h in out) ? out : undefined;
    };
    return waitFor(`markdown under ${headings.join(', ')}`, () => read().catch((err: Error) => void (last = err.message)), STEP_MS).catch(
      (err: Error) => {
        throw new Error(`${err.message} (${last})`);
      },
    );
  }

  it('starts a pipeline from the Start Workflow form, then shows each stage by name', async () => {
    const id = `it-web-ui-${Date.now()}`;
    const ui = h!.uiUrl!;
    const handle = h!.client.workflow.getHandle(id);

    await step('open Start Workflow from the workflow list', async (p) => {
      await p.goto(`${ui}/namespaces/default/workflows`);
      await p.locator('::-p-aria([name="Start Workflow"])').click();
      await p.waitForSelector('::-p-aria([name="Workflow ID"][role="textbox"])');
    });

    const started = await step('fill in and submit the form', async (p) => {
      // The fields, found by their visible labels.
      await p.locator('::-p-aria([name="Workflow ID"][role="textbox"])').fill(id);
      await p.locator('::-p-aria([name="Task Queue"][role="textbox"])').fill(TASK_QUEUE);
      await p.locator('::-p-aria([name="Workflow Type"][role="textbox"])').fill('pipeline');
      // The form looks the task queue up: our worker polls it.
      await p.waitForSelector('::-p-text(Task Queue is Active)');
      // Input › Data is a CodeMirror JSON editor: type the object as one text insertion (no auto-closed brackets).
      const editor = (await p.waitForSelector('[role="textbox"][contenteditable="true"][data-language="json"]'))!;
      await editor.click();
      await p.keyboard.sendCharacter(JSON.stringify(input));
      // Leaving the editor re-formats the JSON and the form grows: leave it before aiming at the button.
      await p.locator('::-p-aria([name="Workflow Type"][role="textbox"])').click();
      expect(JSON.parse(await editor.evaluate((el) => (el as unknown as DomElement).innerText))).toEqual(input);
      await p.locator('::-p-aria([name="Start Workflow"][role="button"])').click();
      // The toast links to the new run.
      const toast = (await p.waitForSelector('a ::-p-text(Workflow started successfully)'))!;
      return (await toast.evaluate((el) => (el as unknown as DomElement).closest('a')?.getAttribute('href'))) ?? '';
    });
    expect(started).toContain(`/namespaces/default/workflows/${id}/`);

    // The client is the backstop: a failed run is reported with Temporal's reason at once.
    const failed = handle.result().then(
      () => new Promise<never>(() => undefined),
      (err: unknown) => {
        const reasons: string[] = [];
        for (let e = err; e instanceof Error; e = e.cause) reasons.push(e.message);
        throw new Error(`the pipeline ${id} failed (per the Temporal client): ${reasons.join(': ')}`);
      },
    );
    failed.catch(() => undefined);

    await step('the pipeline page shows the run Completed', async (p) => {
      await p.goto(`${ui}${started}`);
      const shown = p.waitForFunction(terminalStatus, { timeout: RUN_MS }, id).then(
        async (s) => String(await s.jsonValue()),
        async (err: Error) => {
          const { status } = await handle.describe();
          throw new Error(`${err.message}; the Temporal client says the run is ${status.name}`);
        },
      );
      expect(await Promise.race([shown, failed])).toBe('Completed');
    });

    await step('the event history names each stage', async (p) => {
      // Each child start is an event row carrying the child's summary (the stage's own name).
      const rows = await p.waitForFunction(
        (n: number) => {
          const texts = Array.from(document.querySelectorAll('tr[data-testid="event-summary-row"]'), (r) => r.innerText).filter((t) =>
            t.includes('Start Child Workflow Execution Initiated'),
          );
          return texts.length >= n && texts;
        },
        {},
        STAGES.length,
      );
      const texts = (await rows.jsonValue()) as string[];
      for (const stage of STAGES) {
        expect(texts.some((t) => /Workflow Type Name\s+stage\b/.test(t) && new RegExp(`Summary\\s+${stage}\\b`).test(t))).toBe(true);
      }
      // The timeline above it labels each child workflow's bar.
      const labels = await p.$$eval('#event-history-timeline-graph text', (els) =>
        els.map((e) => (e as unknown as DomElement).textContent?.trim()),
      );
      expect(labels).toEqual(expect.arrayContaining([...STAGES]));
    });

    await step('the Relationships tab lists each stage workflow', async (p) => {
      await p.locator('[role="tab"][data-testid="relationships-tab"]').click();
      for (const stage of STAGES) await p.waitForSelector(`::-p-text(${stageWorkflowId(id, stage)})`);
    });

    await step('the User Metadata tab lists each child by its summary', async (p) => {
      await p.locator('[role="tab"][data-testid="user-metadata-tab"]').click();
      await p.waitForSelector('::-p-text(Events with Metadata)');
      const text = await p.waitForFunction(
        (stages: readonly string[]) => {
          const t = document.querySelector('main')?.innerText ?? '';
          return stages.every((s) => new RegExp(`Child Workflow\\s+${s}\\s+Completed`).test(t)) && t;
        },
        {},
        STAGES,
      );
      expect(await text.jsonValue()).toBeTruthy();
    });

    await step('the workflow list shows each stage workflow, completed', async (p) => {
      await p.goto(`${ui}/namespaces/default/workflows`);
      for (const stage of STAGES) {
        const row = await p.waitForFunction(
          (wid: string) =>
            Array.from(document.querySelectorAll('tr'), (r) => r.innerText).find(
              (t) => t.includes(wid) && /\bCompleted\b/.test(t) && /\bstage\b/.test(t),
            ),
          {},
          stageWorkflowId(id, stage),
        );
        expect(await row.jsonValue()).toContain(stageWorkflowId(id, stage));
      }
    });

    await step("a stage's own page shows its summary, details and current details", async (p) => {
      const child = stageWorkflowId(id, 'anchors');
      await p.locator(`a ::-p-text(${child})`).click();
      await p.waitForSelector(`h1[data-testid="workflow-id-heading"] ::-p-text(${child})`);
      await p.locator('[role="tab"][data-testid="user-metadata-tab"]').click();
      await p.waitForSelector('::-p-text(Current Details)');
      const md = await renderedMarkdown(p, ['Summary', 'Details', 'Current Details']);
      expect(md).toMatchObject({
        Summary: 'anchors',
        // Their wording is the workflow's to change; the stage's own name must be in both.
        Details: expect.stringMatching(/\banchors\b/),
        'Current Details': expect.stringMatching(/\banchors\b/),
      });
    });
  });
});
