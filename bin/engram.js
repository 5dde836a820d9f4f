#!/usr/bin/env node
// Runs the TypeScript sources directly through tsx's loader: no build step,
// so `npm start` serves what is in src/ right after `npm install`.
import { register } from 'tsx/esm/api';

register();
const { runCli } = await import('../src/cli/main.ts');
await runCli(process.argv);
