// Worker-thread bootstrap: register tsx's CommonJS hooks (Node does not apply an `--import`
// loader inside worker threads reliably), then load the TypeScript worker module named in
// workerData, so worker bodies run from source like the rest of id3 (no build step).
const { workerData } = require('node:worker_threads');
require('tsx/cjs/api').register();
require(workerData.module);
