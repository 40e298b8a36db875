// Worker-thread bootstrap: register tsx's CommonJS hooks (Node does not apply an `--import`
// loader inside worker threads reliably), then load the TypeScript worker.
require('tsx/cjs/api').register();
require('./gradient-worker.ts');
