/**
 * Save a workflow execution's event history (binary protobuf, temporal.api.history.v1.History),
 * to replay against later code:
 *
 *   node --import tsx scripts/export-workflow-history.ts WORKFLOW_ID OUT.bin [--address 127.0.0.1:7233]
 *
 * workflows/src/__tests__/replay.test.ts replays the saved histories of real executions, so a
 * change to workflow code that would break a days-long experiment still running fails a test.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';

async function main(): Promise<void> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { address: { type: 'string', default: '127.0.0.1:7233' } },
  });
  const [workflowId, out] = positionals;
  if (!workflowId || !out) throw new Error('usage: export-workflow-history.ts WORKFLOW_ID OUT.bin [--address HOST:PORT]');
  const connection = await Connection.connect({ address: values.address });
  try {
    const history = await new Client({ connection }).workflow.getHandle(workflowId).fetchHistory();
    writeFileSync(out, temporal.api.history.v1.History.encode(history).finish());
    console.log(`${workflowId}: ${history.events?.length ?? 0} events → ${out}`);
  } finally {
    await connection.close();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
